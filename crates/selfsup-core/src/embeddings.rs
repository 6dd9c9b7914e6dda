//! Embedding files (`selfsup embed`): an encoder's embeddings of a dataset split, with labels
//! and sample names, as safetensors or NumPy files, for users' own analysis.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::bail;
pub use crate::downstream::Embeddings;
use crate::error::Result;
use crate::fs::write_atomic;

/// Label written for an image without one.
pub const NO_LABEL: i64 = -1;

fn labels_i64(labels: &[Option<u32>]) -> Vec<i64> {
    labels
        .iter()
        .map(|l| l.map_or(NO_LABEL, i64::from))
        .collect()
}

/// The embeddings (f32) and labels (i64) as little-endian bytes: what both file formats store.
fn little_endian_bytes(e: &Embeddings) -> (Vec<u8>, Vec<u8>) {
    let emb = e
        .features
        .data
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let lab = labels_i64(&e.labels)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    (emb, lab)
}

/// `FILE.safetensors`: `embeddings` [N, D] f32 and `labels` [N] i64 (−1 = unlabeled); the
/// metadata holds `paths` and `class_names` as JSON lists.
pub fn write_safetensors(path: &Path, e: &Embeddings) -> Result<()> {
    let (emb, lab) = little_endian_bytes(e);
    let views = vec![
        (
            "embeddings".to_string(),
            TensorView::new(Dtype::F32, vec![e.features.n, e.features.dim], &emb)?,
        ),
        (
            "labels".to_string(),
            TensorView::new(Dtype::I64, vec![e.features.n], &lab)?,
        ),
    ];
    let mut meta = std::collections::HashMap::new();
    meta.insert("paths".to_string(), serde_json::to_string(&e.paths)?);
    meta.insert(
        "class_names".to_string(),
        serde_json::to_string(&e.class_names)?,
    );
    let bytes = safetensors::serialize(views, Some(meta))?;
    write_atomic(path, &bytes)
}

/// A version-1.0 `.npy` file: magic, header dict padded to a 64-byte boundary, raw data.
fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_str = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_str}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// `FILE.npy` (embeddings, float32 [N, D]), `FILE.labels.npy` (int64 [N], −1 = unlabeled),
/// `FILE.paths.txt` (one source path per line).
pub fn write_npy(path: &Path, e: &Embeddings) -> Result<Vec<PathBuf>> {
    let stem = path.with_extension("");
    let (emb, lab) = little_endian_bytes(e);
    let labels_path = stem.with_extension("labels.npy");
    let paths_path = stem.with_extension("paths.txt");
    write_atomic(
        path,
        &npy_bytes("<f4", &[e.features.n, e.features.dim], &emb),
    )?;
    write_atomic(&labels_path, &npy_bytes("<i8", &[e.features.n], &lab))?;
    write_atomic(&paths_path, (e.paths.join("\n") + "\n").as_bytes())?;
    Ok(vec![path.to_path_buf(), labels_path, paths_path])
}

/// Writes `e` in the format named by `path`'s extension; returns the files written.
pub fn write(path: &Path, e: &Embeddings) -> Result<Vec<PathBuf>> {
    match path.extension().and_then(|x| x.to_str()) {
        Some("safetensors") => write_safetensors(path, e).map(|_| vec![path.to_path_buf()]),
        Some("npy") => write_npy(path, e),
        _ => bail!(
            "--out {}: use a .safetensors or .npy file name",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_readable() {
        let b = npy_bytes("<f4", &[3, 2], &[0u8; 24]);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }"),
            "{header}"
        );
        assert!(header.ends_with('\n'));
        assert_eq!(b.len(), 10 + hlen + 24);
        let one_d = npy_bytes("<i8", &[5], &[0u8; 40]);
        assert!(
            std::str::from_utf8(&one_d[10..74])
                .unwrap()
                .contains("'shape': (5,)")
        );
    }
}
