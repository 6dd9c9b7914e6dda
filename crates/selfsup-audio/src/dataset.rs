//! Labelled clip lists: a folder tree (`ROOT/<label>/*.wav`) or a CSV manifest
//! (`path,label[,speaker][,split]`, paths relative to the manifest), e.g. FSDD's `labels.csv`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
pub use selfsup_data::Split;

use crate::error::{AudioError, Result};
use crate::wav::load_mono;

/// One clip of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipInfo {
    pub path: PathBuf,
    /// Index into [`AudioDataset::classes`].
    pub label: u32,
    pub speaker: Option<String>,
    pub split: Option<Split>,
}

/// Clips with class labels. `classes` is sorted (numerically when every name is an integer, so
/// FSDD's digit `d` has label `d`).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioDataset {
    pub clips: Vec<ClipInfo>,
    pub classes: Vec<String>,
}

fn sorted_classes(names: BTreeSet<String>) -> Vec<String> {
    let mut classes: Vec<String> = names.into_iter().collect();
    if classes.iter().all(|c| c.parse::<i64>().is_ok()) {
        classes.sort_by_key(|c| c.parse::<i64>().unwrap());
    }
    classes
}

impl AudioDataset {
    /// `root/<class>/*.wav` (case-insensitive extension, sorted by path); no split or speaker.
    pub fn from_folder(root: &Path) -> Result<Self> {
        let io = |source| AudioError::Io {
            path: root.into(),
            source,
        };
        let mut entries: Vec<(String, PathBuf)> = Vec::new();
        for dir in std::fs::read_dir(root).map_err(io)? {
            let dir = dir.map_err(io)?.path();
            if !dir.is_dir() {
                continue;
            }
            let class = dir.file_name().unwrap().to_string_lossy().into_owned();
            for file in std::fs::read_dir(&dir).map_err(|source| AudioError::Io {
                path: dir.clone(),
                source,
            })? {
                let file = file
                    .map_err(|source| AudioError::Io {
                        path: dir.clone(),
                        source,
                    })?
                    .path();
                let is_wav = file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
                if is_wav && file.is_file() {
                    entries.push((class.clone(), file));
                }
            }
        }
        if entries.is_empty() {
            return Err(AudioError::NoClips {
                path: root.into(),
                reason: "expected ROOT/<label>/*.wav".into(),
            });
        }
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        let classes = sorted_classes(entries.iter().map(|e| e.0.clone()).collect());
        let clips = entries
            .into_iter()
            .map(|(class, path)| ClipInfo {
                label: classes.iter().position(|c| *c == class).unwrap() as u32,
                path,
                speaker: None,
                split: None,
            })
            .collect();
        Ok(Self { clips, classes })
    }

    /// A CSV with a header holding `path` and `label` columns, and optionally `speaker` and
    /// `split` (`train` or `test`); other columns are ignored. Relative paths are taken from the
    /// manifest's folder. Files are not opened here; [`load`](Self::load) names any bad one.
    pub fn from_manifest(manifest: &Path) -> Result<Self> {
        let bad = |line: Option<u64>, reason: String| AudioError::Manifest {
            path: manifest.into(),
            line,
            reason,
        };
        let mut reader = csv::Reader::from_path(manifest).map_err(|e| bad(None, e.to_string()))?;
        let header = reader
            .headers()
            .map_err(|e| bad(Some(1), e.to_string()))?
            .clone();
        let column = |name: &str| header.iter().position(|h| h.trim() == name);
        let (Some(path_col), Some(label_col)) = (column("path"), column("label")) else {
            return Err(bad(
                Some(1),
                format!(
                    "the header must name a `path` and a `label` column, found {:?}",
                    header.iter().collect::<Vec<_>>()
                ),
            ));
        };
        let (speaker_col, split_col) = (column("speaker"), column("split"));
        let base = manifest.parent().unwrap_or(Path::new("."));
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line());
                bad(line, e.to_string())
            })?;
            let line = record.position().map(|p| p.line());
            let field = |col: usize| record.get(col).unwrap_or("").trim().to_string();
            let path = field(path_col);
            let label = field(label_col);
            if path.is_empty() || label.is_empty() {
                return Err(bad(line, "empty `path` or `label`".into()));
            }
            let split = match split_col.map(field).as_deref() {
                None | Some("") => None,
                Some("train") => Some(Split::Train),
                Some("test") => Some(Split::Test),
                Some(other) => {
                    return Err(bad(
                        line,
                        format!("split must be `train` or `test`, got {other:?}"),
                    ));
                }
            };
            let speaker = speaker_col.map(field).filter(|s| !s.is_empty());
            rows.push((base.join(path), label, speaker, split));
        }
        if rows.is_empty() {
            return Err(AudioError::NoClips {
                path: manifest.into(),
                reason: "the manifest has a header but no rows".into(),
            });
        }
        let classes = sorted_classes(rows.iter().map(|r| r.1.clone()).collect());
        let clips = rows
            .into_iter()
            .map(|(path, label, speaker, split)| ClipInfo {
                path,
                label: classes.iter().position(|c| *c == label).unwrap() as u32,
                speaker,
                split,
            })
            .collect();
        Ok(Self { clips, classes })
    }

    /// The Free Spoken Digit Dataset in `root` (its `labels.csv`, official split: takes 0–4 test).
    pub fn fsdd(root: &Path) -> Result<Self> {
        Self::from_manifest(&root.join("labels.csv"))
    }

    /// The clips for which `keep` is true, with the same classes.
    pub fn filter(&self, keep: impl Fn(&ClipInfo) -> bool) -> Self {
        Self {
            clips: self.clips.iter().filter(|c| keep(c)).cloned().collect(),
            classes: self.classes.clone(),
        }
    }

    /// The clips of `split` (clips without a split are dropped).
    pub fn split(&self, split: Split) -> Self {
        self.filter(|c| c.split == Some(split))
    }

    pub fn len(&self) -> usize {
        self.clips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    pub fn labels(&self) -> Vec<u32> {
        self.clips.iter().map(|c| c.label).collect()
    }

    /// Distinct speakers, sorted.
    pub fn speakers(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .clips
            .iter()
            .filter_map(|c| c.speaker.as_ref())
            .collect();
        set.into_iter().cloned().collect()
    }

    /// Every clip decoded to mono at `sample_rate` Hz, in order (decoded in parallel).
    pub fn load(&self, sample_rate: u32) -> Result<Vec<Vec<f32>>> {
        self.clips
            .par_iter()
            .map(|c| load_mono(&c.path, sample_rate))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(path: &Path, n: usize) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..n {
            w.write_sample(((i % 50) as i16 - 25) * 100).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn folder_tree_labels_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("yes", 2), ("no", 1), ("maybe", 0)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..n {
                tone(&dir.path().join(class).join(format!("{i}.WAV")), 100);
            }
        }
        std::fs::write(dir.path().join("yes/readme.txt"), "x").unwrap();
        let ds = AudioDataset::from_folder(dir.path()).unwrap();
        assert_eq!(ds.classes, ["no", "yes"]);
        assert_eq!(ds.labels(), [0, 1, 1]);
        let audio = ds.load(16000).unwrap();
        assert_eq!(audio.iter().map(Vec::len).collect::<Vec<_>>(), [200; 3]);
        let empty = tempfile::tempdir().unwrap();
        let e = AudioDataset::from_folder(empty.path()).unwrap_err();
        assert!(e.to_string().contains("ROOT/<label>/*.wav"), "{e}");
    }

    #[test]
    fn manifest_rows_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        tone(&dir.path().join("a.wav"), 80);
        std::fs::write(
            dir.path().join("m.csv"),
            "path,label,speaker,split\na.wav,10,ann,train\nb.wav,9,bob,test\n",
        )
        .unwrap();
        let ds = AudioDataset::from_manifest(&dir.path().join("m.csv")).unwrap();
        assert_eq!(ds.classes, ["9", "10"]);
        assert_eq!(ds.labels(), [1, 0]);
        assert_eq!(ds.speakers(), ["ann", "bob"]);
        assert_eq!(
            ds.split(Split::Test).clips[0].path,
            dir.path().join("b.wav")
        );
        // b.wav does not exist: loading names it.
        let e = ds.load(8000).unwrap_err();
        assert!(e.to_string().contains("b.wav"), "{e}");

        std::fs::write(
            dir.path().join("bad.csv"),
            "path,label,split\na.wav,1,dev\n",
        )
        .unwrap();
        let e = AudioDataset::from_manifest(&dir.path().join("bad.csv")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("bad.csv line 2") && msg.contains("\"dev\""),
            "{msg}"
        );

        std::fs::write(dir.path().join("nolabel.csv"), "file,digit\na.wav,1\n").unwrap();
        let e = AudioDataset::from_manifest(&dir.path().join("nolabel.csv")).unwrap_err();
        assert!(e.to_string().contains("`label`"), "{e}");
    }

    #[test]
    fn fsdd_official_split_counts() {
        let root = selfsup_data::data_root().join("fsdd");
        let ds = AudioDataset::fsdd(&root).unwrap();
        assert_eq!(ds.len(), 3000);
        assert_eq!(
            ds.classes,
            (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(ds.speakers().len(), 6);
        let (train, test) = (ds.split(Split::Train), ds.split(Split::Test));
        assert_eq!((train.len(), test.len()), (2700, 300));
        for d in 0..10 {
            assert_eq!(train.labels().iter().filter(|&&l| l == d).count(), 270);
            assert_eq!(test.labels().iter().filter(|&&l| l == d).count(), 30);
        }
        // Takes 0-4 are the test split: file names are <digit>_<speaker>_<take>.wav.
        for c in &test.clips {
            let name = c.path.file_stem().unwrap().to_string_lossy().into_owned();
            let take: u32 = name.rsplit('_').next().unwrap().parse().unwrap();
            assert!(take < 5, "{name}");
            assert!(name.starts_with(&format!("{}_", c.label)), "{name}");
        }
        let audio = test.load(8000).unwrap();
        assert!(audio.iter().all(|a| !a.is_empty()));
    }
}
