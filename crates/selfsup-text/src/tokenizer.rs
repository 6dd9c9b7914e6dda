//! WordPiece tokenization with the Hugging Face `tokenizers` crate: train a vocabulary on a
//! corpus, save and load `tokenizer.json` (the file the Python `tokenizers` and `transformers`
//! libraries read), encode with `[CLS] … [SEP]` truncated to a maximum length.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::normalizers::{BertNormalizer, Replace, Sequence};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer, TruncationParams};

use crate::error::{Result, TextError};

/// The special tokens, in id order: a trained vocabulary gives them ids 0..5.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// How to train a WordPiece vocabulary.
#[derive(Debug, Clone)]
pub struct WordPieceConfig {
    /// Vocabulary size including the special tokens.
    pub vocab_size: usize,
    /// Pairs seen fewer times are not merged.
    pub min_frequency: u64,
    /// Lowercase (and strip accents) before splitting, as BERT uncased does.
    pub lowercase: bool,
}

impl Default for WordPieceConfig {
    fn default() -> Self {
        Self {
            vocab_size: 8000,
            min_frequency: 2,
            lowercase: true,
        }
    }
}

/// Ids of the special tokens in a vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    pub unk: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
}

/// A WordPiece tokenizer that encodes one text as `[CLS] tokens… [SEP]`, at most `max_len` ids.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialIds,
    max_len: usize,
}

fn tok_err(step: &str) -> impl FnOnce(tokenizers::Error) -> TextError + '_ {
    move |e| TextError::Tokenizer(format!("{step}: {e}"))
}

impl TextTokenizer {
    /// Trains a WordPiece vocabulary on `texts` (BERT normalisation and pre-splitting; the
    /// HTML line breaks `<br />` of IMDB reviews become spaces).
    pub fn train<I, S>(texts: I, config: &WordPieceConfig, max_len: usize) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if config.vocab_size <= SPECIAL_TOKENS.len() {
            return Err(TextError::Config {
                field: "vocab_size",
                reason: format!(
                    "{} leaves no room beside the {} special tokens",
                    config.vocab_size,
                    SPECIAL_TOKENS.len()
                ),
            });
        }
        let mut inner = Tokenizer::new(WordPiece::default());
        let br = Replace::new("<br />", " ").map_err(tok_err("normalizer"))?;
        inner
            .with_normalizer(Some(Sequence::new(vec![
                br.into(),
                BertNormalizer::new(true, true, Some(config.lowercase), config.lowercase).into(),
            ])))
            .map_err(tok_err("normalizer"))?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_decoder(Some(WordPieceDecoder::default()));
        let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
            .vocab_size(config.vocab_size)
            .min_frequency(config.min_frequency)
            .show_progress(false)
            .special_tokens(
                SPECIAL_TOKENS
                    .iter()
                    .map(|t| AddedToken::from(t.to_string(), true))
                    .collect(),
            )
            .build()
            .into();
        inner
            .train(&mut trainer, texts)
            .map_err(tok_err("training"))?;
        let renumbered = canonical_ids(inner.get_vocab(false))?;
        inner.with_model(renumbered);
        let special = special_ids(&inner)?;
        inner.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), special.sep),
            ("[CLS]".into(), special.cls),
        )));
        Self::wrap(inner, max_len)
    }

    /// Loads a `tokenizer.json` with the five special tokens (any WordPiece or BPE model the
    /// `tokenizers` library wrote, e.g. a BERT uncased vocabulary).
    pub fn load(path: &Path, max_len: usize) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| TextError::Tokenizer(format!("{}: cannot load: {e}", path.display())))?;
        Self::wrap(inner, max_len)
    }

    fn wrap(mut inner: Tokenizer, max_len: usize) -> Result<Self> {
        if max_len < 3 {
            return Err(TextError::Config {
                field: "max_len",
                reason: format!("{max_len} leaves no room for [CLS], a token and [SEP]"),
            });
        }
        let special = special_ids(&inner)?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(tok_err("truncation"))?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            special,
            max_len,
        })
    }

    /// Writes `tokenizer.json` (without the truncation setting, which belongs to the run).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut plain = self.inner.clone();
        plain.with_truncation(None).map_err(tok_err("save"))?;
        plain
            .save(path, true)
            .map_err(|e| TextError::Tokenizer(format!("{}: cannot save: {e}", path.display())))
    }

    /// `[CLS] tokens… [SEP]`, truncated to `max_len` ids (the `[SEP]` is kept).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, true)
            .map_err(tok_err("encode"))?
            .get_ids()
            .to_vec())
    }

    /// [`encode`](Self::encode) of every text, in parallel.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        Ok(self
            .inner
            .encode_batch_fast(inputs, true)
            .map_err(tok_err("encode"))?
            .iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Text of `ids`, without special tokens, sub-words joined.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err("decode"))
    }

    pub fn tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| self.inner.id_to_token(i).unwrap_or_default())
            .collect()
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn special(&self) -> SpecialIds {
        self.special
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// A WordPiece model of `vocab` with ids that depend on its tokens alone: the special tokens
/// first, then every other token in byte order. The trainer numbers its alphabet in hash-map
/// order (a new random order in every process), so the same corpus gave the same vocabulary
/// under different ids, and the same seed different embeddings. WordPiece splits by longest
/// match in the vocabulary, so ids do not change how a text is split. (Ties between equally
/// frequent merges are broken by those ids, so on a corpus with ties at the vocabulary's
/// boundary the token set itself can still differ between runs.)
fn canonical_ids(vocab: HashMap<String, u32>) -> Result<WordPiece> {
    let mut rest: Vec<String> = vocab
        .into_keys()
        .filter(|t| !SPECIAL_TOKENS.contains(&t.as_str()))
        .collect();
    rest.sort_unstable();
    let ids: ahash::AHashMap<String, u32> = SPECIAL_TOKENS
        .iter()
        .map(|t| t.to_string())
        .chain(rest)
        .enumerate()
        .map(|(id, t)| (t, id as u32))
        .collect();
    WordPiece::builder()
        .vocab(ids)
        .unk_token(SPECIAL_TOKENS[1].into())
        .continuing_subword_prefix("##".into())
        .build()
        .map_err(tok_err("renumbering the vocabulary"))
}

fn special_ids(inner: &Tokenizer) -> Result<SpecialIds> {
    let id = |t: &str| {
        inner.token_to_id(t).ok_or_else(|| {
            TextError::Tokenizer(format!(
                "the vocabulary has no {t} token; selfsup needs {SPECIAL_TOKENS:?}"
            ))
        })
    };
    Ok(SpecialIds {
        pad: id("[PAD]")?,
        unk: id("[UNK]")?,
        cls: id("[CLS]")?,
        sep: id("[SEP]")?,
        mask: id("[MASK]")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::Model;

    fn corpus() -> Vec<String> {
        let words = [
            "the",
            "movie",
            "was",
            "great",
            "terrible",
            "acting",
            "plot",
            "boring",
            "loved",
            "hated",
            "wonderful",
            "films",
            "actors",
            "director",
        ];
        (0..200)
            .map(|i| {
                (0..12)
                    .map(|j| words[(i * 7 + j * 3 + i * j) % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
                    + "."
            })
            .collect()
    }

    fn small() -> WordPieceConfig {
        WordPieceConfig {
            vocab_size: 120,
            min_frequency: 1,
            lowercase: true,
        }
    }

    #[test]
    fn ids_depend_on_the_tokens_alone() {
        let tok = TextTokenizer::train(corpus().iter(), &small(), 16).unwrap();
        let mut tokens = tok.tokens(&(0..tok.vocab_size() as u32).collect::<Vec<_>>());
        assert_eq!(&tokens[..5], &SPECIAL_TOKENS);
        let rest = tokens.split_off(5);
        assert!(rest.windows(2).all(|w| w[0] < w[1]), "{rest:?}");
        // The same tokens under other ids (as the trainer numbers them in another process).
        let vocab = tok.inner.get_vocab(false);
        let n = vocab.len() as u32;
        let shuffled = vocab
            .iter()
            .map(|(t, &id)| (t.clone(), if id < 5 { id } else { n + 4 - id }))
            .collect::<HashMap<_, _>>();
        assert_ne!(shuffled, vocab);
        assert_eq!(canonical_ids(shuffled).unwrap().get_vocab(), vocab);
    }

    #[test]
    fn round_trip_through_tokenizer_json() {
        let tok = TextTokenizer::train(corpus().iter(), &small(), 16).unwrap();
        assert_eq!(
            tok.special(),
            SpecialIds {
                pad: 0,
                unk: 1,
                cls: 2,
                sep: 3,
                mask: 4
            }
        );
        assert!(
            tok.vocab_size() <= 120 && tok.vocab_size() > 40,
            "{}",
            tok.vocab_size()
        );
        let text = "The movie was GREAT. the actors wonderful.";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids[0], 2);
        assert_eq!(*ids.last().unwrap(), 3);
        assert_eq!(
            tok.decode(&ids).unwrap(),
            "the movie was great. the actors wonderful."
        );
        // An unseen word is split into known pieces or [UNK], never dropped.
        let odd = tok.encode("moviez").unwrap();
        assert!(odd.len() >= 3, "{:?}", tok.tokens(&odd));

        let dir = crate::ScratchDir::new();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let loaded = TextTokenizer::load(&path, 16).unwrap();
        assert_eq!(loaded.special(), tok.special());
        assert_eq!(loaded.vocab_size(), tok.vocab_size());
        for t in corpus().iter().take(20).chain([&text.to_string()]) {
            assert_eq!(loaded.encode(t).unwrap(), tok.encode(t).unwrap());
        }
        // The saved file carries no truncation: that is the run's max_len.
        let json = std::fs::read_to_string(&path).unwrap();
        assert!(json.contains("\"truncation\": null"), "{}", &json[..200]);
    }

    #[test]
    fn python_reads_the_same_ids() {
        // A tokenizer.json written by this crate, encoded by Python `tokenizers` and
        // `transformers` (fixtures/make_tokenizer_fixture.py): Rust must give the same ids.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let tok = TextTokenizer::load(&dir.join("tokenizer_sst2_500.json"), 512).unwrap();
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("tokenizer_python.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            tok.vocab_size() as u64,
            fixture["vocab_size"].as_u64().unwrap()
        );
        for case in fixture["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(tok.encode(text).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn truncates_to_max_len_keeping_cls_and_sep() {
        let tok = TextTokenizer::train(corpus().iter(), &small(), 8).unwrap();
        let long = corpus()[..3].join(" ");
        let ids = tok.encode(&long).unwrap();
        assert_eq!(ids.len(), 8);
        assert_eq!((ids[0], ids[7]), (2, 3));
        let batch = tok.encode_batch(&[long.as_str(), "great"]).unwrap();
        assert_eq!(batch[0], ids);
        assert_eq!(batch[1], tok.encode("great").unwrap());
    }

    #[test]
    fn bad_settings_and_files_are_named() {
        let err = TextTokenizer::train(
            corpus().iter(),
            &WordPieceConfig {
                vocab_size: 5,
                ..small()
            },
            16,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("vocab_size"), "{err}");
        let err = TextTokenizer::load(Path::new("/nonexistent/tokenizer.json"), 16)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/tokenizer.json"), "{err}");
        let err = TextTokenizer::train(corpus().iter(), &small(), 2)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("max_len"), "{err}");
    }
}
