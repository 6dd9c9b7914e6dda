//! Text datasets: CSV/TSV files with a text column and an optional integer label column, and
//! plain-text files with one document per line. [`TextSource::documents`] streams a file one
//! document at a time (corpora larger than memory); [`TextSource::load`] collects it.
//!
//! Blank documents (empty or whitespace-only text) are skipped: they carry nothing to learn.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::error::{Result, TextError};

/// How a file's documents are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextFormat {
    /// Delimited file with a header row (RFC-4180 quoting).
    Delimited {
        delimiter: u8,
        text_column: String,
        label_column: Option<String>,
    },
    /// One document per line, no header, no labels.
    Lines,
}

/// A file of documents and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSource {
    pub path: PathBuf,
    pub format: TextFormat,
}

/// One document as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub text: String,
    pub label: Option<u32>,
    /// 1-based line where the document starts in its file.
    pub line: u64,
}

/// Documents held in memory; `labels` is `Some` when the source had a label column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextDataset {
    pub texts: Vec<String>,
    pub labels: Option<Vec<u32>>,
}

impl TextDataset {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The labels, or an error naming `what` when the source had no label column.
    pub fn labels(&self, what: &str) -> Result<&[u32]> {
        self.labels.as_deref().ok_or_else(|| TextError::Config {
            field: "label_column",
            reason: format!("{what} has no labels; name its label column"),
        })
    }
}

impl TextSource {
    /// A CSV file (a `.tsv` extension selects tab as the delimiter) whose texts are in column
    /// `text_column` and, if given, integer labels in `label_column`.
    pub fn delimited(
        path: impl Into<PathBuf>,
        text_column: &str,
        label_column: Option<&str>,
    ) -> Self {
        let path = path.into();
        let tsv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
        Self {
            path,
            format: TextFormat::Delimited {
                delimiter: if tsv { b'\t' } else { b',' },
                text_column: text_column.to_string(),
                label_column: label_column.map(str::to_string),
            },
        }
    }

    /// A plain-text file with one document per line.
    pub fn lines(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: TextFormat::Lines,
        }
    }

    /// Streams the documents. The header (for delimited files) is checked here, so a missing
    /// column is reported before any document is read; a file without any document yields one
    /// [`TextError::EmptyCorpus`].
    pub fn documents(&self) -> Result<Documents> {
        let file = File::open(&self.path).map_err(|source| TextError::Io {
            path: self.path.clone(),
            source,
        })?;
        let reader = match &self.format {
            TextFormat::Lines => Reader::Lines {
                reader: BufReader::new(file),
                line: 0,
                buf: Vec::new(),
            },
            TextFormat::Delimited {
                delimiter,
                text_column,
                label_column,
            } => {
                let mut csv = csv::ReaderBuilder::new()
                    .delimiter(*delimiter)
                    .has_headers(true)
                    .from_reader(BufReader::new(file));
                let header = csv.byte_headers().map_err(|e| self.csv_error(e))?.clone();
                let names = header
                    .iter()
                    .map(|h| {
                        std::str::from_utf8(h)
                            .map(str::to_string)
                            .map_err(|e| self.bad_utf8(1, e))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let find = |column: &str, role: &'static str| {
                    names
                        .iter()
                        .position(|n| n == column)
                        .ok_or_else(|| TextError::MissingColumn {
                            path: self.path.clone(),
                            column: column.to_string(),
                            role,
                            present: names.clone(),
                        })
                };
                let text = find(text_column, "text")?;
                let label = label_column
                    .as_deref()
                    .map(|c| find(c, "label").map(|i| (i, c.to_string())))
                    .transpose()?;
                Reader::Delimited {
                    csv: Box::new(csv),
                    text,
                    label,
                    record: csv::ByteRecord::new(),
                }
            }
        };
        Ok(Documents {
            path: self.path.clone(),
            reader,
            seen: 0,
            finished: false,
        })
    }

    /// Reads every document into memory.
    pub fn load(&self) -> Result<TextDataset> {
        let mut data = TextDataset {
            texts: Vec::new(),
            labels: match &self.format {
                TextFormat::Delimited {
                    label_column: Some(_),
                    ..
                } => Some(Vec::new()),
                _ => None,
            },
        };
        for doc in self.documents()? {
            let doc = doc?;
            if let (Some(labels), Some(label)) = (data.labels.as_mut(), doc.label) {
                labels.push(label);
            }
            data.texts.push(doc.text);
        }
        Ok(data)
    }

    fn bad_utf8(&self, line: u64, e: std::str::Utf8Error) -> TextError {
        TextError::BadEncoding {
            path: self.path.clone(),
            line,
            reason: e.to_string(),
        }
    }

    fn csv_error(&self, e: csv::Error) -> TextError {
        csv_error(&self.path, e)
    }
}

fn csv_error(path: &Path, e: csv::Error) -> TextError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => TextError::Io {
            path: path.to_path_buf(),
            source,
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => TextError::BadRecord {
            path: path.to_path_buf(),
            line,
            reason: format!(
                "{len} fields where the header has {expected_len}; quote fields that contain the delimiter"
            ),
        },
        other => TextError::BadRecord {
            path: path.to_path_buf(),
            line,
            reason: format!("{other:?}"),
        },
    }
}

enum Reader {
    Lines {
        reader: BufReader<File>,
        line: u64,
        buf: Vec<u8>,
    },
    Delimited {
        csv: Box<csv::Reader<BufReader<File>>>,
        text: usize,
        label: Option<(usize, String)>,
        record: csv::ByteRecord,
    },
}

/// Streaming iterator over a [`TextSource`]'s documents; see [`TextSource::documents`].
pub struct Documents {
    path: PathBuf,
    reader: Reader,
    seen: usize,
    finished: bool,
}

impl Documents {
    /// The next raw document, `None` at the end of the file; blank documents included.
    fn read(&mut self) -> Option<Result<Document>> {
        let path = &self.path;
        let utf8 = |bytes: &[u8], line: u64| {
            std::str::from_utf8(bytes)
                .map(str::to_string)
                .map_err(|e| TextError::BadEncoding {
                    path: path.clone(),
                    line,
                    reason: e.to_string(),
                })
        };
        match &mut self.reader {
            Reader::Lines { reader, line, buf } => {
                buf.clear();
                match reader.read_until(b'\n', buf) {
                    Ok(0) => None,
                    Ok(_) => {
                        *line += 1;
                        let bytes = buf.strip_suffix(b"\n").unwrap_or(buf);
                        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                        Some(utf8(bytes, *line).map(|text| Document {
                            text,
                            label: None,
                            line: *line,
                        }))
                    }
                    Err(source) => Some(Err(TextError::Io {
                        path: path.clone(),
                        source,
                    })),
                }
            }
            Reader::Delimited {
                csv,
                text,
                label,
                record,
            } => match csv.read_byte_record(record) {
                Ok(false) => None,
                Err(e) => Some(Err(csv_error(path, e))),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let doc = utf8(&record[*text], line).and_then(|text| {
                        let label = label
                            .as_ref()
                            .map(|(i, name)| {
                                let raw = utf8(&record[*i], line)?;
                                raw.trim().parse::<u32>().map_err(|_| TextError::BadRecord {
                                    path: path.clone(),
                                    line,
                                    reason: format!(
                                        "label column {name:?} holds {raw:?}, not a non-negative integer class id"
                                    ),
                                })
                            })
                            .transpose()?;
                        Ok(Document { text, label, line })
                    });
                    Some(doc)
                }
            },
        }
    }
}

impl Iterator for Documents {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            match self.read() {
                Some(Ok(doc)) if doc.text.trim().is_empty() => continue,
                Some(Ok(doc)) => {
                    self.seen += 1;
                    return Some(Ok(doc));
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                None => {
                    self.finished = true;
                    return (self.seen == 0).then(|| {
                        Err(TextError::EmptyCorpus {
                            path: self.path.clone(),
                            reason: "the file has no non-blank document".to_string(),
                        })
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(name: &str, bytes: &[u8]) -> (crate::ScratchDir, PathBuf) {
        let dir = crate::ScratchDir::new();
        let path = dir.path().join(name);
        File::create(&path).unwrap().write_all(bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_csv_with_quotes_and_labels() {
        let (_d, path) = file(
            "a.csv",
            b"id,text,label\n1,\"a, quoted\nreview\",1\n2,plain,0\n3,  ,1\n",
        );
        let data = TextSource::delimited(&path, "text", Some("label"))
            .load()
            .unwrap();
        assert_eq!(data.texts, ["a, quoted\nreview", "plain"]);
        assert_eq!(data.labels, Some(vec![1, 0]));
        // Without a label column the labels are absent, not empty.
        let data = TextSource::delimited(&path, "text", None).load().unwrap();
        assert_eq!(data.labels, None);
        assert!(
            data.labels("a.csv")
                .unwrap_err()
                .to_string()
                .contains("label")
        );
    }

    #[test]
    fn reads_tsv_and_lines() {
        let (_d, path) = file("a.tsv", b"text\tlabel\nx, y\t2\n");
        let data = TextSource::delimited(&path, "text", Some("label"))
            .load()
            .unwrap();
        assert_eq!(data.texts, ["x, y"]);
        assert_eq!(data.labels, Some(vec![2]));
        let (_d, path) = file("c.txt", b"first doc\r\n\nsecond doc");
        let docs: Vec<Document> = TextSource::lines(&path)
            .documents()
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].text.as_str(), docs[0].line), ("first doc", 1));
        assert_eq!((docs[1].text.as_str(), docs[1].line), ("second doc", 3));
    }

    #[test]
    fn missing_column_names_it_and_the_present_ones() {
        let (_d, path) = file("a.csv", b"review,sentiment\nx,1\n");
        let err = TextSource::delimited(&path, "text", None)
            .documents()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"text\""), "{err}");
        assert!(err.contains("review") && err.contains("sentiment"), "{err}");
        assert!(err.contains("a.csv"), "{err}");
        let err = TextSource::delimited(&path, "review", Some("label"))
            .documents()
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("\"label\"") && err.contains("label column"),
            "{err}"
        );
    }

    #[test]
    fn bad_utf8_names_the_line() {
        let (_d, path) = file("c.txt", b"good\nalso good\nbad \xff byte\n");
        let results: Vec<Result<Document>> =
            TextSource::lines(&path).documents().unwrap().collect();
        assert_eq!(
            results.len(),
            3,
            "two documents, then the error, then nothing"
        );
        let err = results[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("UTF-8"), "{err}");

        let (_d, path) = file(
            "a.csv",
            b"text,label\nok,1\n\"multi\nline\",0\n\xe9t\xe9,1\n",
        );
        let err = TextSource::delimited(&path, "text", Some("label"))
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 5") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn empty_corpus_is_an_error() {
        for (name, bytes) in [
            ("e.txt", &b""[..]),
            ("blank.txt", b"\n  \n\n"),
            ("e.csv", b"text,label\n"),
        ] {
            let (_d, path) = file(name, bytes);
            let source = if name.ends_with(".csv") {
                TextSource::delimited(&path, "text", None)
            } else {
                TextSource::lines(&path)
            };
            let err = source.load().unwrap_err().to_string();
            assert!(err.contains("empty corpus") && err.contains(name), "{err}");
        }
    }

    #[test]
    fn bad_label_and_ragged_rows_name_the_line() {
        let (_d, path) = file("a.csv", b"text,label\nfine,1\nworse,pos\n");
        let err = TextSource::delimited(&path, "text", Some("label"))
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("\"pos\""), "{err}");
        let (_d, path) = file("a.csv", b"text,label\nfine,1\nun, quoted,0\n");
        let err = TextSource::delimited(&path, "text", Some("label"))
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("3 fields"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = TextSource::lines("/nonexistent/corpus.txt")
            .documents()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/corpus.txt"), "{err}");
    }
}
