//! Views/s of one SimCLR training step (forward, backward, optimizer) on random data.
//! `cargo run --release -p selfsup-methods --example step_speed -- WIDTH BATCH STEPS`
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use selfsup_methods::loss::TripletMining;
use selfsup_methods::optim::OptimizerConfig;
use selfsup_methods::simclr::{ContrastiveObjective, SimClrConfig};
use selfsup_models::ResNetConfig;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (width, batch, steps) = (
        args.first().copied().unwrap_or(16),
        args.get(1).copied().unwrap_or(128),
        args.get(2).copied().unwrap_or(5),
    );
    let device = Device::flex().autodiff();
    let cfg = SimClrConfig {
        backbone: ResNetConfig::new().with_width(width).into(),
        projection_dims: vec![width * 8, 128],
        objective: ContrastiveObjective::NtXent { temperature: 0.5 },
    };
    let _ = TripletMining::Hardest;
    let mut model = cfg.init(&device);
    let mut optim = OptimizerConfig::sgd_momentum(5e-4, true).init().unwrap();
    let mut times = Vec::new();
    for s in 0..steps + 1 {
        let a = Tensor::<4>::random(
            [batch, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let b = Tensor::<4>::random(
            [batch, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let t = Instant::now();
        let out = model.step(a, b, cfg.objective, s as u64);
        let loss_val: f32 = out.loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(0.06, model, grads);
        let dt = t.elapsed().as_secs_f64();
        if s > 0 {
            times.push(dt);
        }
        eprintln!(
            "step {s}: loss {loss_val:.4} {:.3}s {:.1} views/s",
            dt,
            2.0 * batch as f64 / dt
        );
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "median {:.1} views/s",
        2.0 * batch as f64 / times[times.len() / 2]
    );
}
