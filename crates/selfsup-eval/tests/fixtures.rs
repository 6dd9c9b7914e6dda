//! Checks against reference numbers from PyTorch / LightlySSL / sklearn,
//! produced by `fixtures/make_fixtures.py` into `fixtures/eval_fixture.json`.

use selfsup_eval::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    knn: Knn,
    metrics: Vec<MetricsCase>,
    linear: Linear,
    linear_large: LinearLarge,
}

#[derive(Deserialize)]
struct Knn {
    n_train: usize,
    n_test: usize,
    dim: usize,
    num_classes: usize,
    train: Vec<f32>,
    test: Vec<f32>,
    train_labels: Vec<u32>,
    test_labels: Vec<u32>,
    cases: Vec<KnnCase>,
}

#[derive(Deserialize)]
struct KnnCase {
    k: usize,
    t: f32,
    pred: Vec<u32>,
    scores: Vec<f32>,
    top1: f64,
    top5: f64,
}

#[derive(Deserialize)]
struct MetricsCase {
    n: usize,
    dim: usize,
    z: Vec<f32>,
    y: Vec<f32>,
    std: f64,
    rankme: f64,
    alignment: f64,
    uniformity: f64,
}

#[derive(Deserialize)]
struct Linear {
    n_train: usize,
    n_test: usize,
    dim: usize,
    num_classes: usize,
    lr: f32,
    weight_decay: f32,
    epochs: usize,
    train: Vec<f32>,
    test: Vec<f32>,
    train_labels: Vec<u32>,
    test_labels: Vec<u32>,
    weights: Vec<f32>,
    bias: Vec<f32>,
    train_loss: f64,
    train_top1: f64,
    test_top1: f64,
    sklearn_test_top1: f64,
}

#[derive(Deserialize)]
struct LinearLarge {
    n_train: usize,
    n_test: usize,
    dim: usize,
    num_classes: usize,
    first_values: Vec<f32>,
    first_test_values: Vec<f32>,
    sklearn_test_top1: f64,
    torch_adam_test_top1: f64,
}

fn load() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/eval_fixture.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn knn_matches_lightly() {
    let f = load().knn;
    let train = Features::new(f.train, f.n_train, f.dim).unwrap();
    let test = Features::new(f.test, f.n_test, f.dim).unwrap();
    for case in &f.cases {
        for backend in [MatmulBackend::Blocked, MatmulBackend::Burn] {
            let cfg = KnnConfig {
                k: case.k,
                temperature: case.t,
                num_classes: Some(f.num_classes),
                backend,
                ..Default::default()
            };
            let (scores, ..) = knn_scores(&train, &f.train_labels, &test, &cfg).unwrap();
            for (a, b) in scores.iter().zip(&case.scores) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "k={} {backend:?}: {a} vs {b}",
                    case.k
                );
            }
            let r = knn_classify(&train, &f.train_labels, &test, &f.test_labels, &cfg).unwrap();
            assert_eq!(r.predictions, case.pred, "k={}", case.k);
            assert!((r.top1 - case.top1).abs() < 1e-6);
            assert!((r.top5.unwrap() - case.top5).abs() < 1e-6);
        }
    }
}

#[test]
fn metrics_match_torch() {
    for m in load().metrics {
        let z = Features::new(m.z, m.n, m.dim).unwrap();
        let y = Features::new(m.y, m.n, m.dim).unwrap();
        let close = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{what}: {a} vs {b}"
            )
        };
        close(embedding_std(&z).unwrap(), m.std, "std");
        close(rankme(&z).unwrap(), m.rankme, "rankme");
        close(alignment(&z, &y, 2.0).unwrap(), m.alignment, "alignment");
        close(uniformity(&z, 2.0).unwrap(), m.uniformity, "uniformity");
    }
}

/// Same recipe as torch (full-batch Adam, zero init, standardised, weight decay
/// on W only): weights within 2e-3 absolute, loss within 1e-4, accuracies within
/// one sample.
#[test]
fn linear_probe_matches_torch() {
    let f = load().linear;
    let train = Features::new(f.train, f.n_train, f.dim).unwrap();
    let test = Features::new(f.test, f.n_test, f.dim).unwrap();
    let cfg = LinearProbeConfig {
        epochs: f.epochs,
        batch_size: None,
        lr: f.lr,
        weight_decay: f.weight_decay,
        num_classes: Some(f.num_classes),
        ..Default::default()
    };
    let r = linear_probe(&train, &f.train_labels, &test, &f.test_labels, &cfg).unwrap();
    let max_dw = r
        .weights
        .iter()
        .zip(&f.weights)
        .chain(r.bias.iter().zip(&f.bias))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max_dw < 2e-3, "max |ΔW| = {max_dw}");
    assert!(
        (r.train_loss - f.train_loss).abs() < 1e-4,
        "{} vs {}",
        r.train_loss,
        f.train_loss
    );
    assert!((r.train_top1 - f.train_top1).abs() <= 1.0 / f.n_train as f64 + 1e-9);
    assert!((r.test_top1 - f.test_top1).abs() <= 1.0 / f.n_test as f64 + 1e-9);
    // sklearn (lbfgs, C=1) on the same standardised data, for reference.
    assert!(
        (r.test_top1 - f.sklearn_test_top1).abs() < 0.03,
        "{} vs sklearn {}",
        r.test_top1,
        f.sklearn_test_top1
    );
    // Label-subset use: 20 % of the labels per class still learns.
    let idx = stratified_subset(&f.train_labels, SubsetSpec::Fraction(0.2), 0).unwrap();
    let sub = linear_probe(
        &train.select(&idx),
        &select_labels(&f.train_labels, &idx),
        &test,
        &f.test_labels,
        &cfg,
    )
    .unwrap();
    assert!(sub.test_top1 > 0.8, "{}", sub.test_top1);
}

// ---- 50k × 128 synthetic set, regenerated exactly as in make_fixtures.py ----

fn splitmix(idx: u64) -> u64 {
    let mut z = idx.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
fn unif(i: u64) -> f64 {
    ((splitmix(i) >> 11) as f64 + 0.5) / 2f64.powi(53)
}
fn gauss(idx: u64) -> f64 {
    let i = idx * 2;
    (-2.0 * unif(i).ln()).sqrt() * (2.0 * std::f64::consts::PI * unif(i + 1)).cos()
}
fn synth(n: usize, d: usize, c: usize, offset: u64) -> (Features, Vec<u32>) {
    let mu: Vec<f64> = (0..c * d)
        .map(|i| 0.2 * gauss(i as u64 + (1 << 40)))
        .collect();
    let mut data = Vec::with_capacity(n * d);
    let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
    for i in 0..n {
        for j in 0..d {
            let scale = 0.5 + 2.0 * j as f64 / d as f64;
            data.push((mu[(i % c) * d + j] + gauss((i * d + j) as u64 + offset) * scale) as f32);
        }
    }
    (Features::new(data, n, d).unwrap(), y)
}

/// Run with `cargo test -p selfsup-eval --release -- --ignored` (a few seconds).
#[test]
#[ignore]
fn linear_probe_50k_vs_sklearn() {
    let f = load().linear_large;
    let (train, yl) = synth(f.n_train, f.dim, f.num_classes, 0);
    let (test, yt) = synth(f.n_test, f.dim, f.num_classes, 1 << 36);
    for (a, b) in train
        .data
        .iter()
        .zip(&f.first_values)
        .chain(test.data.iter().zip(&f.first_test_values))
    {
        assert!((a - b).abs() < 1e-6, "data generator differs: {a} vs {b}");
    }
    let t = std::time::Instant::now();
    let r = linear_probe(&train, &yl, &test, &yt, &LinearProbeConfig::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "50k x 128, 10 classes, default config: {secs:.2} s, test top1 {:.4} (sklearn {:.4}, torch {:.4})",
        r.test_top1, f.sklearn_test_top1, f.torch_adam_test_top1
    );
    assert!((r.test_top1 - f.sklearn_test_top1).abs() < 0.01);
    assert!((r.test_top1 - f.torch_adam_test_top1).abs() < 0.01);
}
