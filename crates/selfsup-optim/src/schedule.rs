//! Learning-rate schedule.

/// Linear warm-up from 0 followed by a cosine decay to `final_lr`.
///
/// With `s = step`, `W = warmup_steps`, `T = total_steps`:
/// - `s < W`: `base_lr · s / W` (so step 0 uses lr 0, step W-1 uses `base_lr·(W-1)/W`);
/// - otherwise, with `progress = min(1, (s - W) / max(1, T - W))`:
///   `final_lr + (base_lr - final_lr) · ½(1 + cos(π · progress))`, so step W uses `base_lr` and
///   every step >= T uses `final_lr`.
///
/// With `final_lr = 0` this is the `LambdaLR` multiplier of Hugging Face's
/// `get_cosine_schedule_with_warmup` times `base_lr`; after warm-up it equals
/// `torch.optim.lr_scheduler.CosineAnnealingLR(T_max = T - W, eta_min = final_lr)`.
/// `step` counts optimizer steps from 0.
///
/// Panics if `warmup_steps > total_steps` or a learning rate is negative or not finite.
pub fn cosine_with_warmup(
    step: usize,
    total_steps: usize,
    warmup_steps: usize,
    base_lr: f64,
    final_lr: f64,
) -> f64 {
    assert!(
        warmup_steps <= total_steps,
        "warmup_steps ({warmup_steps}) must be <= total_steps ({total_steps})"
    );
    assert!(
        base_lr.is_finite() && base_lr >= 0.0,
        "base_lr must be finite and >= 0, got {base_lr}"
    );
    assert!(
        final_lr.is_finite() && final_lr >= 0.0,
        "final_lr must be finite and >= 0, got {final_lr}"
    );
    if step < warmup_steps {
        return base_lr * step as f64 / warmup_steps as f64;
    }
    let decay_steps = (total_steps - warmup_steps).max(1) as f64;
    let progress = ((step - warmup_steps) as f64 / decay_steps).min(1.0);
    final_lr + (base_lr - final_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let lr = |s| cosine_with_warmup(s, 10, 2, 1.0, 0.1);
        assert_eq!(lr(0), 0.0);
        assert_eq!(lr(1), 0.5);
        assert!((lr(2) - 1.0).abs() < 1e-15);
        // Halfway through the 8 decay steps: (1 + 0.1) / 2.
        assert!((lr(6) - 0.55).abs() < 1e-15);
        // A quarter: 0.1 + 0.9 · ½(1 + cos(π/4)).
        assert!((lr(4) - (0.1 + 0.45 * (1.0 + std::f64::consts::FRAC_1_SQRT_2))).abs() < 1e-15);
        assert!((lr(10) - 0.1).abs() < 1e-15);
        assert!((lr(25) - 0.1).abs() < 1e-15);
        // No warm-up starts at base_lr.
        assert_eq!(cosine_with_warmup(0, 10, 0, 0.3, 0.0), 0.3);
    }

    #[test]
    fn matches_torch_schedulers() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/lr_schedule.json"
        ))
        .unwrap();
        let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            let get = |k: &str| case[k].as_f64().unwrap();
            let (total, warmup) = (get("total_steps") as usize, get("warmup_steps") as usize);
            for (step, want) in case["lr"].as_array().unwrap().iter().enumerate() {
                let got = cosine_with_warmup(step, total, warmup, get("base_lr"), get("final_lr"));
                let want = want.as_f64().unwrap();
                assert!(
                    (got - want).abs() < 1e-12,
                    "step {step}: got {got}, want {want}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "warmup_steps (5) must be <= total_steps (3)")]
    fn warmup_longer_than_schedule_panics() {
        cosine_with_warmup(0, 3, 5, 0.1, 0.0);
    }
}
