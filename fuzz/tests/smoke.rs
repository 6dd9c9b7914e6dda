//! Smoke run of every fuzz target in the normal test suite: each target replays its stored
//! corpus (seeds and inputs kept from long runs) and then runs a fixed number of mutated
//! inputs with a fixed seed. Any panic, hang or over-limit allocation fails the test.

use selfsup_fuzz::{Budget, HANG_AFTER, corpus_dir, fuzz, read_corpus, targets};

const MUTATED_EXECS: u64 = 3000;

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let mut report = Vec::new();
    for t in targets::all() {
        let corpus = read_corpus(&corpus_dir(t.name));
        assert!(
            !corpus.is_empty(),
            "{}: no corpus in {} (run `cargo run --release -p selfsup-fuzz -- init-corpus`)",
            t.name,
            corpus_dir(t.name).display()
        );
        let n = corpus.len() as u64;
        let (stats, _) = fuzz(
            &t,
            corpus,
            7,
            Budget::Executions(n + MUTATED_EXECS),
            None,
            HANG_AFTER,
        )
        .unwrap_or_else(|f| {
            panic!(
                "{}: {} on an input of {} bytes: {:?}",
                t.name,
                f.message,
                f.input.len(),
                &f.input[..f.input.len().min(64)]
            )
        });
        // A harness that only ever refuses (or only accepts) is not exercising the parser.
        assert!(
            stats.accepted > 0 && stats.refused > 0,
            "{}: {} accepted, {} refused",
            t.name,
            stats.accepted,
            stats.refused
        );
        report.push(format!(
            "{}: {} execs, {} accepted, {} refused, {} outcomes, {:.1}s",
            t.name, stats.execs, stats.accepted, stats.refused, stats.signatures, stats.seconds
        ));
    }
    eprintln!("{}", report.join("\n"));
}
