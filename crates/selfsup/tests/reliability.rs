//! Reliability of `selfsup pretrain` as users meet it (issue #7): bitwise determinism, resume
//! after SIGKILL at random moments, corrupt images, divergence, nonsense config values.
//! Checkpoint write failures (disk full, unwritable) are tested in src/checkpoint.rs.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Tiny deterministic runs: 16 images per class and split (48 train images: 3 steps of 16).
fn deterministic_args(data: &Path, out: &Path, epochs: usize) -> Vec<String> {
    let mut args = tiny_args(data, out);
    args.extend([
        "--set".into(),
        format!("train.epochs={epochs}"),
        "--set".into(),
        "train.deterministic=true".into(),
    ]);
    args
}

/// Every tensor of two checkpoints (model and optimizer state) is bitwise equal.
fn assert_same_bits(a: &Path, b: &Path) {
    let (ta, tb) = (read_tensors(a), read_tensors(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "{} and {} hold different tensors",
        a.display(),
        b.display()
    );
    for (name, va) in &ta {
        let differing = va
            .iter()
            .zip(&tb[name])
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        assert_eq!(
            differing,
            0,
            "{name}: {differing} of {} values differ between {} and {}",
            va.len(),
            a.display(),
            b.display()
        );
    }
}

#[test]
fn deterministic_weights_do_not_depend_on_loader_or_compute_threads() {
    let dir = scratch("determinism");
    let data = small_dataset(&dir, 16);
    let mut outs = Vec::new();
    // Loader threads 0 (inline), 1 and 3; the last also asks rayon for 4 compute threads,
    // which deterministic mode overrides.
    for (workers, rayon_threads) in [(0, None), (1, None), (3, Some("4"))] {
        let out = dir.join(format!("w{workers}"));
        let mut cmd = bin();
        cmd.args(deterministic_args(&data, &out, 2))
            .args(["--set", &format!("data.workers={workers}")]);
        if let Some(n) = rayon_threads {
            cmd.env("RAYON_NUM_THREADS", n);
        }
        let o = run(&mut cmd);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(last_json(&o)["steps"], 6);
        // The mechanism, not only its effect (at this size even multi-threaded runs agree).
        let start: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(out.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(start["compute_threads"], 1, "{start}");
        outs.push(out.join("checkpoints/epoch_0002.safetensors"));
    }
    assert_same_bits(&outs[0], &outs[1]);
    assert_same_bits(&outs[0], &outs[2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SplitMix64, for reproducible "random" kill moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

fn partial_checkpoints(out: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(out.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".safetensors.tmp"))
        .collect()
}

fn step_records(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"type\":\"step\""))
        .count()
}

/// Waits until `ready` or the child exits; returns whether the child is still running.
fn wait_for(child: &mut Child, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the child neither reached the kill point nor exited within 120 s");
}

#[test]
fn sigkill_mid_step_and_mid_checkpoint_then_resume_matches_uninterrupted_run() {
    let dir = scratch("sigkill");
    let data = small_dataset(&dir, 32); // 96 images: 6 steps of 16 per epoch
    let epochs = 6;
    let reference = dir.join("reference");
    let o = run(bin().args(deterministic_args(&data, &reference, epochs)));
    assert!(o.status.success(), "{}", stderr(&o));

    let out = dir.join("killed");
    let mut rng = Rng(20261128);
    let (mut mid_write, mut mid_step) = (0, 0);
    let mut attempts = 0;
    let mut fallback = None;
    let last_stderr: String;
    loop {
        attempts += 1;
        assert!(attempts <= 12, "the run did not finish after 12 attempts");
        let resume = !selfsup::checkpoint::list(&out).is_empty();
        let spawned = std::time::SystemTime::now();
        let mut child = bin()
            .args(deterministic_args(&data, &out, epochs))
            .args(resume.then_some("--resume"))
            // Halfway through each checkpoint's temporary file, pause 300 ms: a window to kill in.
            .env("SELFSUP_TEST_CHECKPOINT_PAUSE_MS", "300")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Six kills, alternating the moment; then the run is left to finish.
        let killed = if attempts > 6 {
            false
        } else if attempts % 2 == 1 {
            // Mid-checkpoint-write: this attempt's temporary file exists, the rename has not
            // happened (a stale one left by an earlier kill does not count).
            let written_now = || {
                partial_checkpoints(&out).iter().any(|p| {
                    std::fs::metadata(p)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t >= spawned)
                })
            };
            let alive = wait_for(&mut child, written_now);
            if alive {
                std::thread::sleep(Duration::from_millis(rng.below(200)));
                child.kill().unwrap();
                child.wait().unwrap();
                assert!(written_now(), "the kill was meant to land mid-write");
                mid_write += 1;
            }
            alive
        } else {
            // Mid-step: 7 to 11 steps into this attempt (so past one checkpoint, and not at an
            // epoch's end, where the next checkpoint is written), plus a random delay.
            let target = step_records(&out) + 7 + rng.below(5) as usize;
            let alive = wait_for(&mut child, || step_records(&out) >= target);
            if alive {
                std::thread::sleep(Duration::from_millis(rng.below(60)));
                child.kill().unwrap();
                child.wait().unwrap();
                mid_step += 1;
            }
            alive
        };
        if !killed {
            let o = child.wait_with_output().unwrap();
            last_stderr = stderr(&o);
            assert!(o.status.success(), "{last_stderr}");
            break;
        }
        // Whatever the moment, every checkpoint under its final name is complete and verified.
        for (_, path) in selfsup::checkpoint::list(&out) {
            selfsup::checkpoint::load(&path)
                .unwrap_or_else(|e| panic!("after kill {attempts}: {e:#}"));
        }
        if attempts == 6 {
            // Before the last attempt, truncate the newest checkpoint: resume names it and
            // falls back to the previous one (and still ends bit-identical).
            let list = selfsup::checkpoint::list(&out);
            assert!(list.len() >= 2, "{list:?}");
            let (newest_epoch, newest) = list[0].clone();
            let bytes = std::fs::read(&newest).unwrap();
            std::fs::write(&newest, &bytes[..bytes.len() / 3]).unwrap();
            fallback = Some((newest_epoch, newest));
        }
    }
    let (newest_epoch, newest) = fallback.expect("six kills happened");
    let e = last_stderr;
    assert!(
        e.contains(&newest.display().to_string())
            && e.contains("truncated or corrupt")
            && e.contains(&format!("resuming after epoch {}", newest_epoch - 1)),
        "{e}"
    );
    assert!(
        mid_write >= 2 && mid_step >= 2,
        "kills: {mid_write} mid-write, {mid_step} mid-step"
    );
    // The truncated checkpoint was rewritten when the resumed run got past its epoch.
    for (_, path) in selfsup::checkpoint::list(&out) {
        selfsup::checkpoint::load(&path).unwrap_or_else(|e| panic!("at the end: {e:#}"));
    }
    let last = format!("checkpoints/epoch_{epochs:04}.safetensors");
    assert_same_bits(&reference.join(&last), &out.join(&last));
    assert!(
        partial_checkpoints(&out).is_empty(),
        "resume removes partial writes"
    );
    // metrics.jsonl stays valid JSON lines (an append cut by the kill is repaired on resume),
    // with resume records and the final epoch logged.
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line `{l}`: {e}")))
        .collect();
    assert!(records.iter().any(|r| r["type"] == "resume"));
    let last_epoch = records.iter().rev().find(|r| r["type"] == "epoch").unwrap();
    assert_eq!(last_epoch["epoch"], epochs);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn save_image(path: &Path, img: impl Into<image::DynamicImage>) {
    img.into().save(path).unwrap();
}

#[test]
fn corrupt_images_stop_the_run_or_are_skipped_and_counted() {
    let dir = scratch("corrupt");
    let data = small_dataset(&dir, 16); // 48 good train images
    let jpeg = std::fs::read(data.join("train/cat/0000.jpg")).unwrap();
    let airplane = data.join("train/airplane");
    // Sorted after the good files of the first class: the truncated JPEG is the first bad file.
    std::fs::write(
        airplane.join("bad_1_truncated.jpg"),
        &jpeg[..jpeg.len() / 2],
    )
    .unwrap();
    std::fs::write(airplane.join("bad_2_empty.jpg"), b"").unwrap();
    std::fs::write(airplane.join("bad_3_text.png"), b"a text file named .png\n").unwrap();
    // Convertible: a 16-bit RGB PNG and an RGBA PNG.
    save_image(
        &data.join("train/cat/wide_16bit.png"),
        image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(40, 36, |x, y| {
            image::Rgb([x as u16 * 1600, y as u16 * 1800, 30000])
        }),
    );
    save_image(
        &data.join("train/ship/alpha.png"),
        image::RgbaImage::from_fn(32, 32, |x, y| {
            image::Rgba([x as u8 * 8, y as u8 * 8, 100, 128])
        }),
    );
    let mut args = tiny_args(&data, &dir.join("strict"));
    args.extend(["--set".into(), "train.epochs=1".into()]);
    let o = run(bin().args(&args));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&airplane.join("bad_1_truncated.jpg").display().to_string())
            && e.contains("skip_corrupt"),
        "{e}"
    );

    let skip_out = dir.join("skip");
    let mut args = tiny_args(&data, &skip_out);
    args.extend([
        "--set".into(),
        "train.epochs=1".into(),
        "--skip-corrupt".into(),
    ]);
    let o = run(bin().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = last_json(&o);
    // 48 JPEGs + the 16-bit and RGBA PNGs converted; the three unreadable files skipped.
    assert_eq!(
        (j["images"].clone(), j["skipped_corrupt"].clone()),
        (50.into(), 3.into())
    );
    let start: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(skip_out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(start["type"], "start");
    assert_eq!(start["skipped_corrupt"], 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn divergence_stops_within_a_step_and_the_last_checkpoint_stays_loadable() {
    let dir = scratch("diverge");
    let data = small_dataset(&dir, 32); // 6 steps per epoch
    let out = dir.join("run");
    // This learning rate blows the weights up after the first checkpoint (measured: BatchNorm
    // running variances overflow to inf at global step 10–13, depending on the kernels, while
    // the loss is still finite, so the per-step check of the model state is what stops it).
    let mut args = deterministic_args(&data, &out, 6);
    args.extend(["--set".into(), "optim.lr=2e4".into()]);
    let o = run(bin().args(&args));
    assert!(!o.status.success());
    let e = stderr(&o);
    let bad_step = e
        .split("(global step ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no global step in: {e}"));
    assert!(
        ["is NaN", "is inf", "is -inf"]
            .iter()
            .any(|v| e.contains(v)),
        "the message names the value: {e}"
    );
    // Stopped at the first bad step: every logged step before it had a finite loss.
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == "step")
        .map(|r| r["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len() + 1, bad_step, "{e}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(
        bad_step > 6,
        "divergence came before the first checkpoint: {e}"
    );
    // The message names the last good checkpoint (the last finished epoch: 6 steps each),
    // which loads and holds finite weights.
    let ckpt = out.join(format!(
        "checkpoints/epoch_{:04}.safetensors",
        (bad_step - 1) / 6
    ));
    assert!(e.contains(&ckpt.display().to_string()), "{e}");
    let c = selfsup::checkpoint::load(&ckpt).unwrap();
    assert!(
        c.tensors
            .values()
            .all(|t| t.values.iter().all(|v| v.is_finite()))
    );
    let o = run(bin()
        .args(["eval", "knn", "--k", "5", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data));
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nonsense_config_values_are_refused_before_any_work() {
    let dir = scratch("config");
    let data = small_dataset(&dir, 2);
    for (i, (set, key)) in [
        ("train.batch_size=-3", "train.batch_size"),
        ("method.temperature=0", "method.temperature"),
        ("model.backbone=vgg11", "model.backbone"),
        ("augment.crop_scale=[0.5, 1.5]", "augment.crop_scale"),
        ("augment.hflip_prob=1.5", "augment.hflip_prob"),
        ("data.workers=1000000", "data.workers"),
        ("data.max_side=16", "data.max_side"),
        ("train.sync_batch_norm=everything", "train.sync_batch_norm"),
        ("data.cache_format=png", "data.cache_format"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.join(format!("run{i}"));
        let o = run(bin()
            .args(["pretrain", "--quiet", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--set", set]));
        assert!(!o.status.success(), "{set} accepted");
        assert!(stderr(&o).contains(key), "{set}: {}", stderr(&o));
        assert!(
            !out.exists(),
            "{set}: work started before the config was checked"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
