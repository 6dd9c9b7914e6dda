//! Trains a WordPiece `tokenizer.json` on the text column of CSV/TSV files or on plain-text
//! files (one document per line), streaming them.
//!
//! ```text
//! cargo run --release -p selfsup-text --example train_tokenizer -- OUT.json VOCAB FILE[:COLUMN]...
//! ```
//! `FILE:COLUMN` reads a CSV/TSV file's column; a bare `FILE` is one document per line.
//! Prints the vocabulary size and the encoding of a sample sentence.

use selfsup_text::{Result, TextSource, TextTokenizer, WordPieceConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: train_tokenizer OUT.json VOCAB FILE[:COLUMN]...");
        std::process::exit(2);
    }
    let vocab_size: usize = args[1]
        .parse()
        .unwrap_or_else(|_| panic!("VOCAB must be a number, got {:?}", args[1]));
    let sources: Vec<TextSource> = args[2..]
        .iter()
        .map(|a| match a.rsplit_once(':') {
            Some((file, column)) => TextSource::delimited(file, column, None),
            None => TextSource::lines(a),
        })
        .collect();
    let mut streams = Vec::new();
    for s in &sources {
        streams.push(s.documents().unwrap_or_else(|e| panic!("{e}")));
    }
    // Stops at the first bad document, reporting it after training was cut short.
    let mut failure: Option<selfsup_text::TextError> = None;
    let texts = streams
        .into_iter()
        .flatten()
        .map_while(|d: Result<_>| match d {
            Ok(doc) => Some(doc.text),
            Err(e) => {
                failure = Some(e);
                None
            }
        });
    let config = WordPieceConfig {
        vocab_size,
        ..Default::default()
    };
    let tokenizer = TextTokenizer::train(texts, &config, 512).unwrap_or_else(|e| panic!("{e}"));
    if let Some(e) = failure {
        panic!("{e}");
    }
    tokenizer
        .save(std::path::Path::new(&args[0]))
        .unwrap_or_else(|e| panic!("{e}"));
    let sample = "This movie wasn't great, but the actors were wonderful!";
    let ids = tokenizer.encode(sample).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{}: vocabulary {}; {sample:?} -> {:?}",
        args[0],
        tokenizer.vocab_size(),
        tokenizer.tokens(&ids)
    );
}
