//! Linear-probe timing: `cargo run -p selfsup-eval --release --example linear_bench
//! [n_train n_test dim classes epochs]` (default 50,000 × 512, 10,000 test, 10 classes,
//! 30 epochs), once with mini-batches of 256 and once full-batch.
use std::time::Instant;

use selfsup_eval::{Features, LinearProbeConfig, linear_probe};

/// Class `i % c` centred at a fixed random mean (scale 0.06), plus uniform noise.
fn features(n: usize, d: usize, c: usize, seed: u64) -> (Features, Vec<u32>) {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut m = 99u64;
    let means: Vec<f32> = (0..c * d)
        .map(|_| {
            m = m
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            0.06 * ((m >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        })
        .collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
    let data = (0..n * d)
        .map(|i| means[(i / d % c) * d + i % d] + next())
        .collect();
    (Features::new(data, n, d).unwrap(), labels)
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let (n_train, n_test, dim, classes, epochs) = if a.len() == 5 {
        (a[0], a[1], a[2], a[3], a[4])
    } else {
        (50_000, 10_000, 512, 10, 30)
    };
    let (train, yl) = features(n_train, dim, classes, 1);
    let (test, yt) = features(n_test, dim, classes, 2);
    println!(
        "threads: {}; {n_train} x {dim} train, {n_test} test, {classes} classes, {epochs} epochs",
        rayon::current_num_threads()
    );
    for batch_size in [Some(256), None] {
        let cfg = LinearProbeConfig {
            epochs,
            batch_size,
            ..Default::default()
        };
        let t = Instant::now();
        let r = linear_probe(&train, &yl, &test, &yt, &cfg).unwrap();
        println!(
            "batch {:>5}: {:.2} s  train loss {:.5}  train top1 {:.4}  test top1 {:.4}",
            batch_size.map_or("full".to_string(), |b| b.to_string()),
            t.elapsed().as_secs_f64(),
            r.train_loss,
            r.train_top1,
            r.test_top1
        );
    }
}
