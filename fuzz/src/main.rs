//! `selfsup-fuzz`: run the fuzz targets (see the crate docs in lib.rs and docs/reliability.md).
//!
//! selfsup-fuzz list
//! selfsup-fuzz init-corpus                      write each target's seeds to fuzz/corpus/<target>/
//! selfsup-fuzz run TARGET|all [--seconds N | --execs N] [--seed S] [--save-novel K] [--signatures]
//! selfsup-fuzz repro TARGET FILE                run one input and print the outcome
//! selfsup-fuzz selftest panic|alloc|hang        a target that fails that way (tests the guards)
//!
//! `run` and `selftest` take `--artifacts DIR` (default fuzz/artifacts) and `--hang-seconds N`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use selfsup_fuzz::{
    Budget, HANG_AFTER, Outcome, Target, corpus_dir, fuzz, read_corpus, run_one, scratch_dir,
    targets,
};

/// Targets that fail on purpose, so the tests can check that each failure is caught.
fn selftest_target(kind: &str) -> Target {
    fn panics(_: &Path, input: &[u8]) -> Outcome {
        if input.len() > 3 {
            panic!("selftest panic on {} bytes", input.len());
        }
        Outcome::Refused("short".into())
    }
    fn allocates(_: &Path, input: &[u8]) -> Outcome {
        if input.len() > 3 {
            // What a reader trusting a header's size would do.
            let v = vec![1u8; 2 << 30];
            return Outcome::Refused(format!("{}", v[input.len()]));
        }
        Outcome::Refused("short".into())
    }
    fn hangs(_: &Path, input: &[u8]) -> Outcome {
        if input.len() > 3 {
            std::thread::sleep(Duration::from_secs(3600));
        }
        Outcome::Refused("short".into())
    }
    let run = match kind {
        "panic" => panics,
        "alloc" => allocates,
        "hang" => hangs,
        _ => usage(),
    };
    fn seeds() -> Vec<Vec<u8>> {
        vec![b"ab".to_vec(), b"abcdef".to_vec()]
    }
    Target {
        name: "selftest",
        run,
        seeds,
        dictionary: &[],
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: selfsup-fuzz list | init-corpus | run TARGET|all [--seconds N | --execs N] [--seed S] [--save-novel K] [--signatures] [--artifacts DIR] [--hang-seconds N] | repro TARGET FILE | selftest panic|alloc|hang"
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

/// `--artifacts DIR`, else fuzz/artifacts.
fn artifacts_dir(args: &[String]) -> PathBuf {
    match args.iter().position(|a| a == "--artifacts") {
        Some(i) => PathBuf::from(args.get(i + 1).unwrap_or_else(|| usage())),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts"),
    }
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
        Some("run" | "selftest") => {
            let name = args.get(1).unwrap_or_else(|| usage());
            let seed = flag("--seed").unwrap_or(1);
            let budget = match (flag("--seconds"), flag("--execs")) {
                (Some(s), None) => Budget::Time(Duration::from_secs(s)),
                (None, Some(n)) => Budget::Executions(n),
                (None, None) => Budget::Time(Duration::from_secs(10)),
                _ => usage(),
            };
            let save_novel = flag("--save-novel").unwrap_or(0) as usize;
            let hang_after = flag("--hang-seconds").map_or(HANG_AFTER, Duration::from_secs);
            let artifacts = artifacts_dir(&args);
            let (targets, selftest) = if args[0] == "selftest" {
                (vec![selftest_target(name)], true)
            } else {
                (find(name), false)
            };
            for t in targets {
                let dir = corpus_dir(t.name);
                let corpus = if selftest {
                    (t.seeds)()
                } else {
                    read_corpus(&dir)
                };
                match fuzz(&t, corpus, seed, budget, Some(&artifacts), hang_after) {
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
