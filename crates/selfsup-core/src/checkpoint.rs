//! Checkpoints: one safetensors file per save holding the model's tensors (`model.*`), the
//! optimizer's state (`optim.*`) and, in its metadata, the run state (epoch, step, config).
//!
//! Written atomically: a temporary file in the same directory, fsync, rename, fsync of the
//! directory, so a crash or a full disk mid-write leaves the previous checkpoint intact.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::bail;
use crate::error::{Context, Result};
use crate::fs::write_atomic_with;
use safetensors::tensor::{Dtype, TensorView};
use selfsup_models::NamedTensor;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "selfsup-checkpoint-v1";

/// Run state stored beside the tensors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub format: String,
    pub method: String,
    /// Epochs completed (1-based count; 0 = initialisation).
    pub epoch: usize,
    pub global_step: usize,
    /// The full config the run was started with, as TOML.
    pub config: String,
}

pub struct Checkpoint {
    /// The file it was read from.
    pub path: PathBuf,
    pub state: RunState,
    pub tensors: BTreeMap<String, NamedTensor>,
}

impl Checkpoint {
    /// Tensors under `prefix.` with the prefix removed.
    pub fn section(&self, prefix: &str) -> BTreeMap<String, NamedTensor> {
        let p = format!("{prefix}.");
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&p).map(|k| (k.to_string(), v.clone())))
            .collect()
    }
}

/// CRC-32 over every tensor's name and bytes in name order: safetensors checks its header,
/// not its data, so a flipped bit in the weights would otherwise load silently.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = crc32fast::Hasher::new();
    for (name, bytes) in tensors {
        h.update(name.as_bytes());
        h.update(bytes);
    }
    format!("{:08x}", h.finalize())
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The first tensor (in name order) holding NaN or infinity, and that value.
pub fn first_non_finite(tensors: &BTreeMap<String, NamedTensor>) -> Option<(&str, f32)> {
    tensors.iter().find_map(|(name, t)| {
        t.values
            .iter()
            .find(|v| !v.is_finite())
            .map(|&v| (name.as_str(), v))
    })
}

/// Write `tensors` and `state` to `path` atomically. A tensor holding NaN or infinity is
/// refused (naming it): a diverged model must not replace the last good checkpoint.
pub fn save(path: &Path, state: &RunState, tensors: &BTreeMap<String, NamedTensor>) -> Result<()> {
    if let Some((name, bad)) = first_non_finite(tensors) {
        bail!(
            "not writing checkpoint {}: tensor `{name}` holds {bad} after epoch {} (global step {}); \
             the run has diverged (lower optim.lr); earlier checkpoints are untouched",
            path.display(),
            state.epoch,
            state.global_step
        );
    }
    let dir = path
        .parent()
        .context("checkpoint path has no parent directory")?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    let data = encode(state, tensors)?;
    write(path, &data, &|p| Ok(Box::new(std::fs::File::create(p)?)))
}

/// [`crate::fs::write_atomic_with`], saying how the run goes on when a checkpoint cannot be written.
fn write(
    path: &Path,
    data: &[u8],
    create: &dyn Fn(&Path) -> std::io::Result<Box<dyn crate::fs::DurableWrite>>,
) -> Result<()> {
    write_atomic_with(path, data, create).map_err(|e| {
        crate::Error::msg(format!(
            "could not write checkpoint {}: {} (earlier checkpoints are untouched; free disk space or fix the permissions, then continue with --resume)",
            path.display(),
            match &e {
                crate::Error::Context { source, .. } => source.to_string(),
                other => other.to_string(),
            }
        ))
    })
}

/// The safetensors bytes of a checkpoint, with the run state and checksum in its metadata.
fn encode(state: &RunState, tensors: &BTreeMap<String, NamedTensor>) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone(), to_bytes(&t.values)))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(k, shape, b)| Ok((k.clone(), TensorView::new(Dtype::F32, shape.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let mut meta = HashMap::new();
    meta.insert("selfsup".to_string(), serde_json::to_string(state)?);
    meta.insert(
        "crc32".to_string(),
        checksum(bytes.iter().map(|(k, _, b)| (k.as_str(), b.as_slice()))),
    );
    Ok(safetensors::serialize(views, Some(meta))?)
}

/// safetensors refuses headers above 100 MB; checked before reading the file.
const MAX_HEADER: u64 = 100_000_000;

pub fn load(path: &Path) -> Result<Checkpoint> {
    check_header_size(path)?;
    let data = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&data).with_context(|| {
        format!(
            "checkpoint {} is truncated or corrupt (not a readable safetensors file)",
            path.display()
        )
    })?;
    let st = safetensors::SafeTensors::deserialize(&data)
        .with_context(|| format!("checkpoint {} is truncated or corrupt", path.display()))?;
    let state_json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("selfsup"))
        .with_context(|| {
            format!(
                "{} is a safetensors file but not a selfsup checkpoint (no run state)",
                path.display()
            )
        })?;
    let state: RunState = serde_json::from_str(state_json)
        .with_context(|| format!("checkpoint {} has an unreadable run state", path.display()))?;
    if state.format != FORMAT {
        bail!(
            "checkpoint {} has format `{}`; this selfsup reads `{FORMAT}`",
            path.display(),
            state.format
        );
    }
    let mut named = st.tensors();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    match meta.metadata().as_ref().and_then(|m| m.get("crc32")) {
        Some(expected) => {
            let actual = checksum(named.iter().map(|(k, v)| (k.as_str(), v.data())));
            if *expected != actual {
                bail!(
                    "checkpoint {} is corrupt: its checksum does not match its contents (expected {expected}, found {actual})",
                    path.display()
                );
            }
        }
        // Checkpoints from before checksums were written.
        None => eprintln!(
            "warning: checkpoint {} has no checksum; its contents are not verified",
            path.display()
        ),
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in named {
        if view.dtype() != Dtype::F32 {
            bail!(
                "checkpoint {}: tensor `{name}` is {:?}, expected F32",
                path.display(),
                view.dtype()
            );
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        // Never written by `save`; a run cannot continue from it.
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            bail!(
                "checkpoint {}: tensor `{name}` holds {bad}; the model it stores has diverged",
                path.display()
            );
        }
        tensors.insert(
            name,
            NamedTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        state,
        tensors,
    })
}

/// A safetensors file starts with its header's length (u64, little-endian) and the header's
/// `{`. Checking both before reading the whole file refuses a wrong file given as a
/// checkpoint (an archive, a dataset) without allocating its size.
fn check_header_size(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut head = Vec::with_capacity(9);
    (&mut f)
        .take(9)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let n = head
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    if head.len() < 9 || n < 2 || n > MAX_HEADER || n > len - 8 || head[8] != b'{' {
        bail!(
            "checkpoint {} is truncated or corrupt (not a safetensors file: its first bytes do not describe a header within the file)",
            path.display()
        );
    }
    Ok(())
}

/// `RUN_DIR/checkpoints/epoch_NNNN.safetensors`.
pub fn epoch_path(run_dir: &Path, epoch: usize) -> PathBuf {
    run_dir
        .join("checkpoints")
        .join(format!("epoch_{epoch:04}.safetensors"))
}

/// Checkpoints in `RUN_DIR/checkpoints`, newest epoch first.
pub fn list(run_dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(run_dir.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let name = p.file_name()?.to_str()?;
            let epoch = name
                .strip_prefix("epoch_")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((epoch, p))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found
}

/// Remove the temporary files of checkpoint writes a crash interrupted (they are never read:
/// only renamed, complete files count as checkpoints).
pub fn remove_partial_writes(run_dir: &Path) -> Result<()> {
    let partial = std::fs::read_dir(run_dir.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".safetensors.tmp"));
    for p in partial {
        eprintln!(
            "note: removing {}, left by a checkpoint write that did not finish",
            p.display()
        );
        std::fs::remove_file(&p)
            .with_context(|| format!("cannot remove partial checkpoint {}", p.display()))?;
    }
    Ok(())
}

/// The newest checkpoint of a run that loads; unreadable ones are reported and skipped.
pub fn latest_good(run_dir: &Path) -> Result<Option<Checkpoint>> {
    for (_, path) in list(run_dir) {
        match load(&path) {
            Ok(c) => return Ok(Some(c)),
            Err(e) => eprintln!("warning: {e:#}; trying the previous checkpoint"),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::temp_path;
    use crate::fs::tests::FullDisk;

    fn state() -> RunState {
        RunState {
            format: FORMAT.into(),
            method: "simclr".into(),
            epoch: 2,
            global_step: 10,
            config: "x = 1".into(),
        }
    }

    #[test]
    fn round_trip_and_corruption_is_named() {
        let dir = std::env::temp_dir().join(format!("selfsup-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut t = BTreeMap::new();
        t.insert(
            "model.w".to_string(),
            NamedTensor {
                shape: vec![2, 3],
                values: vec![1., 2., 3., 4., 5., -6.5],
            },
        );
        let p1 = epoch_path(&dir, 1);
        let p2 = epoch_path(&dir, 2);
        save(
            &p1,
            &RunState {
                epoch: 1,
                ..state()
            },
            &t,
        )
        .unwrap();
        save(&p2, &state(), &t).unwrap();
        let c = load(&p2).unwrap();
        assert_eq!(c.state, state());
        assert_eq!(c.section("model")["w"].values, t["model.w"].values);

        // A flipped byte in the tensor data is caught by the checksum.
        let mut flipped = std::fs::read(&p2).unwrap();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let p3 = epoch_path(&dir, 3);
        std::fs::write(&p3, &flipped).unwrap();
        let err = format!("{:#}", load(&p3).err().unwrap());
        assert!(
            err.contains("epoch_0003.safetensors") && err.contains("checksum"),
            "{err}"
        );
        std::fs::remove_file(&p3).unwrap();

        // A huge file that is not a checkpoint is refused from its first bytes, without
        // reading it (a sparse 1 TiB file: reading it whole would exhaust memory).
        let huge = dir.join("huge.safetensors");
        let f = std::fs::File::create(&huge).unwrap();
        f.set_len(1 << 40).unwrap();
        std::fs::write(&p3, b"PK\x03\x04 an archive").unwrap();
        for p in [&huge, &p3] {
            let err = format!("{:#}", load(p).err().unwrap());
            assert!(err.contains("not a safetensors file"), "{err}");
        }
        std::fs::remove_file(&huge).unwrap();

        // A file holding a NaN (never written by `save`) is refused by name.
        let mut nan = t.clone();
        nan.get_mut("model.w").unwrap().values[1] = f32::NAN;
        std::fs::write(&p3, encode(&state(), &nan).unwrap()).unwrap();
        let err = format!("{:#}", load(&p3).err().unwrap());
        assert!(err.contains("`model.w` holds NaN"), "{err}");
        std::fs::remove_file(&p3).unwrap();

        // Truncate the newest: it is named in the error and the previous one is used.
        let bytes = std::fs::read(&p2).unwrap();
        std::fs::write(&p2, &bytes[..bytes.len() / 2]).unwrap();
        let err = format!("{:#}", load(&p2).err().unwrap());
        assert!(
            err.contains("epoch_0002.safetensors") && err.contains("truncated"),
            "{err}"
        );
        let good = latest_good(&dir).unwrap().unwrap();
        assert_eq!(good.state.epoch, 1);
        assert!(list(&dir).len() == 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_keeps_the_previous_checkpoint() {
        let dir = std::env::temp_dir().join(format!("selfsup-ckpt-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut t = BTreeMap::new();
        t.insert(
            "model.w".to_string(),
            NamedTensor {
                shape: vec![1000],
                values: (0..1000).map(|i| i as f32).collect(),
            },
        );
        // The run's newest checkpoint, then a failed attempt to overwrite the same name.
        let path = epoch_path(&dir, 1);
        save(&path, &state(), &t).unwrap();
        let before = std::fs::read(&path).unwrap();

        let mut t2 = t.clone();
        t2.get_mut("model.w").unwrap().values[0] = 42.0;
        let data = safetensors::serialize(
            [(
                "model.w",
                TensorView::new(Dtype::F32, vec![1000], &to_bytes(&t2["model.w"].values)).unwrap(),
            )],
            None,
        )
        .unwrap();
        for room in [0, 100, data.len() / 2 + 10] {
            let err = write(&path, &data, &|p| {
                Ok(Box::new(FullDisk {
                    file: std::fs::File::create(p)?,
                    room,
                }))
            })
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("epoch_0001.safetensors") && err.contains("no storage space"),
                "{err}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), before, "room {room}");
            assert!(!temp_path(&path).exists(), "temporary file left behind");
            assert_eq!(load(&path).unwrap().tensors["model.w"].values[0], 0.0);
        }

        // A diverged model is refused by name and leaves the file alone.
        let mut diverged = t.clone();
        diverged.get_mut("model.w").unwrap().values[7] = f32::INFINITY;
        let err = format!("{:#}", save(&path, &state(), &diverged).unwrap_err());
        assert!(err.contains("`model.w` holds inf"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);

        // An unwritable destination (the temporary name is taken by a directory): same guarantees
        // through the real file writer.
        std::fs::create_dir_all(temp_path(&path)).unwrap();
        let err = format!("{:#}", save(&path, &state(), &t2).unwrap_err());
        assert!(err.contains("could not write checkpoint"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
