//! The fuzzer's failure detection, checked with targets that fail on purpose (`selftest`):
//! a panic, an over-limit allocation and a hang must each stop the run, say what happened and
//! leave the failing input on disk.

use std::process::{Command, Stdio};

/// Runs a selftest target. Only the hang test needs a short limit: a panic's backtrace alone
/// can take over a second on a loaded machine, which the others must not mistake for a hang.
fn selftest(kind: &str, artifacts: &std::path::Path) -> (bool, String) {
    let hang_seconds = if kind == "hang" { "1" } else { "60" };
    let child = Command::new(env!("CARGO_BIN_EXE_selfsup-fuzz"))
        .args([
            "selftest",
            kind,
            "--execs",
            "100",
            "--hang-seconds",
            hang_seconds,
        ])
        .arg("--artifacts")
        .arg(artifacts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    // An aborted run cannot remove its scratch directory.
    let _ = std::fs::remove_dir_all(selfsup_fuzz::scratch_dir_of(pid, "selftest"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The selftest targets fail on inputs longer than 3 bytes; the first such seed is "abcdef".
const FAILING_INPUT: &[u8] = b"abcdef";

#[test]
fn panic_is_caught_and_its_input_saved() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = selftest("panic", dir.path());
    assert!(
        !ok && err.contains("FAILED: selftest panic on 6 bytes"),
        "{err}"
    );
    let saved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("selftest-crash-")
        })
        .collect();
    assert_eq!(saved.len(), 1, "{err}");
    assert_eq!(std::fs::read(saved[0].path()).unwrap(), FAILING_INPUT);
}

#[test]
fn over_limit_allocation_aborts_with_its_input_saved() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = selftest("alloc", dir.path());
    assert!(!ok && err.contains("unbounded allocation"), "{err}");
    let current = std::fs::read(dir.path().join("selftest-current.bin")).unwrap();
    assert_eq!(current, FAILING_INPUT);
}

#[test]
fn hang_aborts_with_its_input_saved() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = selftest("hang", dir.path());
    assert!(!ok && err.contains("hang: one input ran longer"), "{err}");
    let current = std::fs::read(dir.path().join("selftest-current.bin")).unwrap();
    assert_eq!(current, FAILING_INPUT);
}
