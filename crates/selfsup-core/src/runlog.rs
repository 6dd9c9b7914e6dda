//! Crash repair of a run's append-only `metrics.jsonl`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Context, Result};

/// A process killed mid-append leaves a last line without its newline; the next append would
/// glue a new record onto it. Cut the file back to its last complete line. Returns whether
/// anything was cut; a missing file is left missing.
pub fn drop_partial_last_line(path: &Path) -> Result<bool> {
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    // Records are short; scan backwards in blocks for the last newline.
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let buf = &mut block[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep == len {
                return Ok(false);
            }
            return truncate(&f, path, keep);
        }
        end = start;
    }
    truncate(&f, path, 0)
}

fn truncate(f: &std::fs::File, path: &Path, keep: u64) -> Result<bool> {
    f.set_len(keep)
        .with_context(|| format!("cannot repair {}", path.display()))?;
    eprintln!(
        "note: removed an incomplete last record from {} (the previous run was interrupted)",
        path.display()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_last_line_is_cut() {
        let dir = std::env::temp_dir().join(format!("selfsup-runlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("metrics.jsonl");
        for (before, after, cut) in [
            ("{\"a\":1}\n{\"b\":2}\n", "{\"a\":1}\n{\"b\":2}\n", false),
            ("{\"a\":1}\n{\"b\":", "{\"a\":1}\n", true),
            ("{\"a\"", "", true),
            ("", "", false),
        ] {
            std::fs::write(&p, before).unwrap();
            assert_eq!(drop_partial_last_line(&p).unwrap(), cut, "{before:?}");
            assert_eq!(std::fs::read_to_string(&p).unwrap(), after, "{before:?}");
        }
        // A long partial record spanning several read blocks.
        let long = format!("{{\"a\":1}}\n{}", "x".repeat(200_000));
        std::fs::write(&p, long).unwrap();
        assert!(drop_partial_last_line(&p).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}\n");
        assert!(!drop_partial_last_line(&dir.join("none.jsonl")).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
