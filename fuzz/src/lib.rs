//! A small mutation fuzzer for selfsup's parsers of outside input, on stable Rust.
//!
//! cargo-fuzz would need a nightly, sanitizer-instrumented rebuild of every dependency (burn
//! included); this engine links the normal release build instead. It is AFL-"havoc" style:
//! stacked byte-level mutations of corpus inputs, a per-target dictionary, and, instead of
//! coverage, the *outcome signature* (accepted, or the error message with numbers and paths
//! removed) as feedback: an input that produces a signature not seen before joins the corpus,
//! so the fuzzer walks deeper through each parser's validation steps.
//!
//! Failures it detects: a panic (the input is saved under `fuzz/artifacts/`), a hang (one
//! input running longer than [`Budget`]'s hang limit, 20 s by default), and an unbounded allocation (one allocation
//! above [`MAX_ALLOCATION`] or more than [`MAX_LIVE`] bytes live); the last two abort the
//! process after writing the input being run to `fuzz/artifacts/<target>-current.bin`.

pub mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One allocation above this is treated as an unbounded allocation driven by the input.
pub const MAX_ALLOCATION: usize = 1 << 30;
/// Total live heap above this is treated the same way.
pub const MAX_LIVE: usize = 3 << 30;
/// One input running longer than this is a hang.
pub const HANG_AFTER: Duration = Duration::from_secs(20);
/// Inputs are kept at or below this many bytes.
pub const MAX_INPUT: usize = 64 * 1024;

/// How a target treated one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Refused with an error message (a clean refusal is success for the fuzzer).
    Refused(String),
}

pub struct Target {
    pub name: &'static str,
    /// Parse `input`; panics are failures, errors are refusals.
    pub run: fn(&Path, &[u8]) -> Outcome,
    /// Valid (and a few invalid) inputs to start from, built in code; `init-corpus` writes them.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens the mutator splices in (keys, magic numbers, syntax).
    pub dictionary: &'static [&'static [u8]],
}

// ---------------------------------------------------------------------------------------
// Guards: allocation limits, the input being run, hang watchdog.

struct LimitedAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static GUARD_ARMED: AtomicBool = AtomicBool::new(false);

#[global_allocator]
static ALLOC: LimitedAlloc = LimitedAlloc;

unsafe impl GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !admit(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Whether an allocation of `extra` bytes stays within the limits; when it does not (and an
/// input is running) the input is saved and the refusal reported before the process aborts.
fn admit(extra: usize) -> bool {
    if !GUARD_ARMED.load(Ordering::Relaxed) {
        return true;
    }
    let live = LIVE.load(Ordering::Relaxed);
    if extra <= MAX_ALLOCATION && live.saturating_add(extra) <= MAX_LIVE {
        return true;
    }
    GUARD_ARMED.store(false, Ordering::Relaxed);
    report_abort(b"unbounded allocation: the input asked for more than the fuzz limit");
    false
}

/// The input being run, kept where an abort (allocation limit, hang) can save it without
/// allocating.
static CURRENT: Mutex<Option<Box<[u8; MAX_INPUT]>>> = Mutex::new(None);
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
static CURRENT_FILE: OnceLock<std::fs::File> = OnceLock::new();

/// Write the current input to the artifact file and a message to stderr, allocation-free.
fn report_abort(message: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\nselfsup-fuzz: ");
    let _ = err.write_all(message);
    if let (Some(mut f), Ok(cur)) = (CURRENT_FILE.get(), CURRENT.try_lock())
        && let Some(buf) = cur.as_ref()
    {
        let n = CURRENT_LEN.load(Ordering::Relaxed).min(MAX_INPUT);
        let _ = f.rewind();
        let _ = f.write_all(&buf[..n]);
        let _ = f.set_len(n as u64);
        let _ = err.write_all(b"; the input is saved as fuzz/artifacts/<target>-current.bin");
    }
    let _ = err.write_all(b"\n");
}

fn stash(input: &[u8]) {
    let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    let buf = cur.get_or_insert_with(|| Box::new([0u8; MAX_INPUT]));
    buf[..input.len()].copy_from_slice(input);
    CURRENT_LEN.store(input.len(), Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// Mutation.

/// SplitMix64: small, fast, seedable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING_U32: &[u32] = &[
    0,
    1,
    2,
    3,
    8,
    16,
    28,
    32,
    255,
    256,
    3073,
    65535,
    65536,
    1_000_000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// One stacked havoc mutation of `base`, possibly spliced with `other`.
pub fn mutate(rng: &mut Rng, base: &[u8], other: &[u8], dictionary: &[&[u8]]) -> Vec<u8> {
    let mut v = base.to_vec();
    let rounds = 1 << rng.below(4);
    for _ in 0..rounds {
        let len = v.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'"', b'\n'][rng.below(9)];
            }
            2 if len >= 4 => {
                let i = rng.below(len - 3);
                let x = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
                let bytes = if rng.below(2) == 0 {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                };
                v[i..i + 4].copy_from_slice(&bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                v[i] = v[i].wrapping_add(rng.below(70) as u8).wrapping_sub(35);
            }
            4 if len > 1 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64.min(len - a))).min(len);
                v.drain(a..b);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64.min(len - a))).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            6 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            7 if len > 0 => v.truncate(rng.below(len)),
            8 if !other.is_empty() => {
                let cut_a = rng.below(len + 1);
                let cut_b = rng.below(other.len());
                v.truncate(cut_a);
                v.extend_from_slice(&other[cut_b..]);
            }
            9 | 10 if !dictionary.is_empty() => {
                let token = dictionary[rng.below(dictionary.len())];
                let at = rng.below(len + 1);
                if rng.below(2) == 0 || at + token.len() > len {
                    v.splice(at..at, token.iter().copied());
                } else {
                    v[at..at + token.len()].copy_from_slice(token);
                }
            }
            _ => {}
        }
    }
    v.truncate(MAX_INPUT);
    v
}

/// An error message's first line reduced to its kind: digits, quoted values, paths and any
/// word that also occurs in the (small) input are dropped, so `file 17 of 300` and
/// `file 18 of 300`, or two unknown keys, count as one outcome.
pub fn signature(outcome: &Outcome, input: &[u8]) -> String {
    let Outcome::Refused(msg) = outcome else {
        return "accepted".into();
    };
    let first = msg.lines().next().unwrap_or("");
    let mut out = String::new();
    let mut quoted = false;
    for c in first.chars() {
        if c == '`' {
            quoted = !quoted;
            out.push(' ');
        } else if !quoted && !c.is_ascii_digit() {
            out.push(c);
        }
    }
    let echoes_input =
        |w: &str| input.len() <= 8192 && input.windows(w.len()).any(|win| win == w.as_bytes());
    // Words of plain letters only, not echoed from the input, and few of them: the kind of
    // refusal, not its details (input text that escaped the filters mostly comes later).
    out.split_whitespace()
        .map(|w| w.trim_end_matches([':', ',', ';', '.']))
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic()) && !echoes_input(w))
        .take(8)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------
// Running.

/// A scratch directory for one target's files, on tmpfs when there is one.
pub fn scratch_dir(target: &str) -> PathBuf {
    scratch_dir_of(std::process::id(), target)
}

/// The scratch directory process `pid` uses for `target` (for cleaning up after an abort).
pub fn scratch_dir_of(pid: u32, target: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("selfsup-fuzz-{pid}-{target}"))
}

/// Run one input in a fresh scratch directory.
pub fn run_one(target: &Target, scratch: &Path, input: &[u8]) -> Outcome {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).expect("create fuzz scratch directory");
    (target.run)(scratch, input)
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub execs: u64,
    pub accepted: u64,
    pub refused: u64,
    pub seconds: f64,
    /// Inputs in the corpus at the end (seeds + novel-outcome inputs).
    pub corpus: usize,
    /// Distinct outcome signatures seen.
    pub signatures: usize,
}

#[derive(Clone, Copy)]
pub enum Budget {
    Executions(u64),
    Time(Duration),
}

/// A failing input: the panic message and where the input was saved.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub input: Vec<u8>,
    pub saved: Option<PathBuf>,
}

/// Fuzz `target` from `corpus` until the budget is spent or an input fails.
/// `artifacts`: where failing inputs are written (none in the smoke test's replay).
pub fn fuzz(
    target: &Target,
    mut corpus: Vec<Vec<u8>>,
    seed: u64,
    budget: Budget,
    artifacts: Option<&Path>,
    hang_after: Duration,
) -> Result<(Stats, BTreeMap<String, Vec<u8>>), Failure> {
    let scratch = scratch_dir(target.name);
    if let Some(dir) = artifacts {
        std::fs::create_dir_all(dir).expect("create artifacts directory");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(dir.join(format!("{}-current.bin", target.name)))
            .expect("open artifact file");
        let _ = CURRENT_FILE.set(f);
    }
    corpus.retain(|c| c.len() <= MAX_INPUT);
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    // Smallest input seen per outcome signature: the novel inputs worth keeping.
    let mut novel: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut stats = Stats::default();
    let started = Instant::now();
    let exec_started_ms = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (exec_started_ms, done) = (exec_started_ms.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let t = exec_started_ms.load(Ordering::Relaxed);
                let now = started.elapsed().as_millis() as u64;
                if t != u64::MAX && now.saturating_sub(t) > hang_after.as_millis() as u64 {
                    report_abort(b"hang: one input ran longer than the limit");
                    std::process::abort();
                }
            }
        })
    };
    let mut rng = Rng::new(seed);
    let mut result = Ok(());
    let mut i = 0u64;
    loop {
        let over = match budget {
            Budget::Executions(n) => stats.execs >= n,
            Budget::Time(d) => started.elapsed() >= d,
        };
        if over {
            break;
        }
        // Seeds first, as they are, then mutations.
        let input = if (i as usize) < corpus.len() {
            corpus[i as usize].clone()
        } else {
            let a = rng.below(corpus.len());
            let b = rng.below(corpus.len());
            mutate(&mut rng, &corpus[a], &corpus[b], target.dictionary)
        };
        i += 1;
        stash(&input);
        exec_started_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        GUARD_ARMED.store(true, Ordering::Relaxed);
        let ran = std::panic::catch_unwind(|| run_one(target, &scratch, &input));
        GUARD_ARMED.store(false, Ordering::Relaxed);
        exec_started_ms.store(u64::MAX, Ordering::Relaxed);
        stats.execs += 1;
        match ran {
            Ok(outcome) => {
                match outcome {
                    Outcome::Accepted => stats.accepted += 1,
                    Outcome::Refused(_) => stats.refused += 1,
                }
                let sig = signature(&outcome, &input);
                let known = novel.get(&sig).map(Vec::len);
                if known.is_none_or(|n| input.len() < n) {
                    if known.is_none() && corpus.len() < 4096 {
                        corpus.push(input.clone());
                    }
                    novel.insert(sig, input);
                }
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                let saved = artifacts.map(|dir| {
                    let p = dir.join(format!("{}-crash-{seed}-{i}.bin", target.name));
                    std::fs::write(&p, &input).expect("write crash artifact");
                    p
                });
                result = Err(Failure {
                    message,
                    input,
                    saved,
                });
                break;
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let _ = std::fs::remove_dir_all(&scratch);
    stats.seconds = started.elapsed().as_secs_f64();
    stats.corpus = corpus.len();
    stats.signatures = novel.len();
    result.map(|()| (stats, novel))
}

/// Every file in `dir` (a target's stored corpus), sorted by name.
pub fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read corpus file"))
        .collect()
}

/// `fuzz/corpus/<target>` in this repository.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}
