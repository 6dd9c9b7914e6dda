//! `selfsup-fuzz`: run the fuzz targets (see the crate docs in lib.rs and docs/reliability.md).
//!
//! selfsup-fuzz list
//! selfsup-fuzz init-corpus                      write each target's seeds to fuzz/corpus/<target>/
//! selfsup-fuzz run TARGET|all [--seconds N | --execs N] [--seed S] [--save-novel K] [--signatures]
//! selfsup-fuzz repro TARGET FILE                run one input and print the outcome

use std::path::Path;
use std::time::Duration;

use selfsup_fuzz::{Budget, Target, corpus_dir, fuzz, read_corpus, run_one, scratch_dir, targets};

fn usage() -> ! {
    eprintln!(
        "usage: selfsup-fuzz list | init-corpus | run TARGET|all [--seconds N | --execs N] [--seed S] [--save-novel K] | repro TARGET FILE"
    );
    std::process::exit(2)
}

fn find(name: &str) -> Vec<Target> {
    let all = targets::all();
    if name == "all" {
        return all;
    }
    let found: Vec<Target> = all.into_iter().filter(|t| t.name == name).collect();
    if found.is_empty() {
        let names: Vec<&str> = targets::all().iter().map(|t| t.name).collect();
        eprintln!("unknown target `{name}`; targets: {}", names.join(", "));
        std::process::exit(2);
    }
    found
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == name)?;
        Some(
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage()),
        )
    };
    match args.first().map(String::as_str) {
        Some("list") => {
            for t in targets::all() {
                println!("{}", t.name);
            }
        }
        Some("init-corpus") => {
            for t in targets::all() {
                let dir = corpus_dir(t.name);
                std::fs::create_dir_all(&dir).unwrap();
                for old in std::fs::read_dir(&dir).unwrap().flatten() {
                    if old.file_name().to_string_lossy().starts_with("seed-") {
                        std::fs::remove_file(old.path()).unwrap();
                    }
                }
                let seeds = (t.seeds)();
                for (i, s) in seeds.iter().enumerate() {
                    std::fs::write(dir.join(format!("seed-{i:02}.bin")), s).unwrap();
                }
                eprintln!("{}: {} seeds in {}", t.name, seeds.len(), dir.display());
            }
        }
        Some("run") => {
            let name = args.get(1).unwrap_or_else(|| usage());
            let seed = flag("--seed").unwrap_or(1);
            let budget = match (flag("--seconds"), flag("--execs")) {
                (Some(s), None) => Budget::Time(Duration::from_secs(s)),
                (None, Some(n)) => Budget::Executions(n),
                (None, None) => Budget::Time(Duration::from_secs(10)),
                _ => usage(),
            };
            let save_novel = flag("--save-novel").unwrap_or(0) as usize;
            let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
            for t in find(name) {
                let dir = corpus_dir(t.name);
                let corpus = read_corpus(&dir);
                let budget = match &budget {
                    Budget::Time(d) => Budget::Time(*d),
                    Budget::Executions(n) => Budget::Executions(*n),
                };
                match fuzz(&t, corpus, seed, budget, Some(&artifacts)) {
                    Ok((stats, novel)) => {
                        if args.iter().any(|a| a == "--signatures") {
                            for sig in novel.keys() {
                                eprintln!("{}: {sig}", t.name);
                            }
                        }
                        // Keep the smallest inputs of the first K outcome signatures.
                        let mut kept = 0;
                        for input in novel.values().take(save_novel) {
                            let p = dir.join(format!("novel-{:016x}.bin", fnv(input)));
                            if !p.exists() {
                                std::fs::write(&p, input).unwrap();
                                kept += 1;
                            }
                        }
                        println!(
                            "{{\"target\":\"{}\",\"execs\":{},\"accepted\":{},\"refused\":{},\"seconds\":{:.1},\"execs_per_second\":{:.0},\"signatures\":{},\"corpus\":{},\"seed\":{seed},\"saved_to_corpus\":{kept}}}",
                            t.name,
                            stats.execs,
                            stats.accepted,
                            stats.refused,
                            stats.seconds,
                            stats.execs as f64 / stats.seconds.max(1e-9),
                            stats.signatures,
                            stats.corpus
                        );
                    }
                    Err(f) => {
                        eprintln!(
                            "{}: FAILED: {} (input of {} bytes saved to {})",
                            t.name,
                            f.message,
                            f.input.len(),
                            f.saved.map(|p| p.display().to_string()).unwrap_or_default()
                        );
                        std::process::exit(1);
                    }
                }
            }
        }
        Some("repro") => {
            let (Some(name), Some(file)) = (args.get(1), args.get(2)) else {
                usage()
            };
            let t = find(name).remove(0);
            let input = std::fs::read(file).expect("read input");
            let scratch = scratch_dir(t.name);
            let outcome = run_one(&t, &scratch, &input);
            let _ = std::fs::remove_dir_all(&scratch);
            println!("{outcome:?}");
        }
        _ => usage(),
    }
}
