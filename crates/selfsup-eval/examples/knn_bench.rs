//! Timing: `cargo run -p selfsup-eval --release --example knn_bench [n_train n_test dim]`.
use std::time::Instant;

use selfsup_eval::{Features, KnnConfig, MatmulBackend, knn_classify};

fn rand_features(n: usize, d: usize, mut s: u64) -> Features {
    let data = (0..n * d)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Features::new(data, n, d).unwrap()
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let (n_train, n_test, dim) = if a.len() == 3 {
        (a[0], a[1], a[2])
    } else {
        (50_000, 10_000, 128)
    };
    let train = rand_features(n_train, dim, 1);
    let test = rand_features(n_test, dim, 2);
    let tl: Vec<u32> = (0..n_train).map(|i| (i % 10) as u32).collect();
    let tel: Vec<u32> = (0..n_test).map(|i| (i % 10) as u32).collect();
    println!("threads: {}", rayon::current_num_threads());
    for backend in [MatmulBackend::Blocked, MatmulBackend::Burn] {
        let cfg = KnnConfig {
            backend,
            ..Default::default()
        };
        let t = Instant::now();
        let r = knn_classify(&train, &tl, &test, &tel, &cfg).unwrap();
        println!(
            "{backend:?}: {n_test} test x {n_train} train x {dim}-d, k=200: {:.2} s (top1 {:.4})",
            t.elapsed().as_secs_f64(),
            r.top1
        );
    }
}
