//! Statistical checks of the random-parameter samplers and the seeding scheme.

use selfsup_data::{
    Jitter, Normalization, Pipeline, RgbImage, SampleRng, sample_color_jitter, sample_resized_crop,
};

#[test]
fn resized_crop_boxes_follow_scale_and_ratio() {
    let (h, w) = (64usize, 80usize);
    let n = 20_000;
    let mut fractions = Vec::with_capacity(n);
    for i in 0..n {
        let mut rng = SampleRng::for_sample(1, 0, i as u64, 0);
        let b = sample_resized_crop(h, w, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), &mut rng);
        assert!(b.top + b.height <= h && b.left + b.width <= w && b.height > 0 && b.width > 0);
        let frac = (b.height * b.width) as f64 / (h * w) as f64;
        let ratio = b.width as f64 / b.height as f64;
        // Rounding the side lengths moves area/ratio slightly past the bounds.
        assert!((0.06..=1.0).contains(&frac), "area fraction {frac}");
        assert!((0.6..=1.6).contains(&ratio), "aspect {ratio}");
        fractions.push(frac);
    }
    // Accepted draws are uniform on [0.08, 1] truncated by the image bounds, so the
    // mean sits below 0.54; re-derive it by rejection sampling in f64 here.
    let mean = fractions.iter().sum::<f64>() / n as f64;
    let mut reference = SampleRng::from_key(&[99]);
    let (mut acc, mut cnt) = (0.0, 0);
    while cnt < 200_000 {
        let s = reference.uniform(0.08, 1.0);
        let r = reference.uniform((0.75f64).ln(), (4.0f64 / 3.0).ln()).exp();
        let (cw, ch) = (
            ((s * (h * w) as f64) * r).sqrt(),
            ((s * (h * w) as f64) / r).sqrt(),
        );
        if cw.round() <= w as f64 && ch.round() <= h as f64 {
            acc += s;
            cnt += 1;
        }
    }
    let expected = acc / cnt as f64;
    assert!(
        (mean - expected).abs() < 0.01,
        "mean area fraction {mean}, expected about {expected}"
    );
    let small = fractions.iter().filter(|&&f| f < 0.3).count() as f64 / n as f64;
    assert!(small > 0.2, "small crops too rare: {small}");
}

#[test]
fn resized_crop_falls_back_to_center_for_extreme_images() {
    // A 4x400 strip never fits a 3/4..4/3 box; torchvision then centre-crops at ratio 4/3.
    let mut rng = SampleRng::from_key(&[5]);
    let b = sample_resized_crop(4, 400, (0.9, 1.0), (3.0 / 4.0, 4.0 / 3.0), &mut rng);
    assert_eq!((b.height, b.width), (4, 5));
    assert_eq!((b.top, b.left), (0, (400 - 5) / 2));
}

#[test]
fn color_jitter_factors_and_order() {
    let mut first_counts = [0usize; 4];
    for i in 0..8000 {
        let mut rng = SampleRng::for_sample(3, 1, i, 0);
        let js = sample_color_jitter(0.8, 0.8, 0.8, 0.2, &mut rng);
        assert_eq!(js.len(), 4);
        for j in &js {
            match *j {
                Jitter::Brightness(f) | Jitter::Contrast(f) | Jitter::Saturation(f) => {
                    assert!((0.2..1.8).contains(&f))
                }
                Jitter::Hue(f) => assert!((-0.2..0.2).contains(&f)),
            }
        }
        let k = match js[0] {
            Jitter::Brightness(_) => 0,
            Jitter::Contrast(_) => 1,
            Jitter::Saturation(_) => 2,
            Jitter::Hue(_) => 3,
        };
        first_counts[k] += 1;
    }
    // Each adjustment comes first a quarter of the time (random order).
    assert!(
        first_counts.iter().all(|&c| (1800..2200).contains(&c)),
        "{first_counts:?}"
    );
    let mut rng = SampleRng::from_key(&[1]);
    assert_eq!(sample_color_jitter(0.0, 0.5, 0.0, 0.0, &mut rng).len(), 1);
}

#[test]
fn simclr_pipeline_is_reproducible_and_applies_probabilities() {
    let img = RgbImage::new(
        32,
        32,
        (0..32 * 32 * 3).map(|i| (i * 7 % 256) as u8).collect(),
    );
    let p = Pipeline::simclr(32, 0.0, Normalization::CIFAR10).unwrap();
    assert_eq!(p.output_size(), (32, 32));
    let run = |s: u64| p.augment(img.view(), &mut SampleRng::for_sample(s, 2, 17, 0));
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    // Grayscale at p=0.2 (plus jitter saturation ~0 never exactly gray): count gray outputs.
    let gray = (0..2000)
        .filter(|&s| {
            run(s)
                .data
                .chunks_exact(3)
                .all(|px| px[0] == px[1] && px[1] == px[2])
        })
        .count() as f64
        / 2000.0;
    assert!((0.16..0.24).contains(&gray), "gray fraction {gray}");
}

/// `RandomCrop(32, padding=4)` draws top and left uniformly from 0..=8 (torchvision's
/// `randint(0, h + 2p - size + 1)`) and returns the zero-padded crop at that offset.
#[test]
fn random_crop_offsets_cover_the_padding_uniformly() {
    let (h, w, pad) = (32usize, 32usize, 4usize);
    // Distinct non-zero pixels, so each offset gives a different crop.
    let data = (0..h * w * 3).map(|i| (i % 251 + 1) as u8).collect();
    let img = RgbImage::new(h, w, data);
    let step = selfsup_data::Transform::RandomCrop {
        size: (h, w),
        padding: pad,
    };
    let crops: Vec<Vec<u8>> = (0..=2 * pad)
        .flat_map(|t| (0..=2 * pad).map(move |l| (t, l)))
        .map(|(t, l)| selfsup_data::ops::padded_crop(img.view(), pad, t, l, h, w).data)
        .collect();
    let mut counts = vec![0usize; crops.len()];
    let n = 8100;
    for i in 0..n {
        let mut rng = SampleRng::for_sample(3, 0, i as u64, 0);
        let out = step.apply(img.clone(), &mut rng);
        assert_eq!((out.h, out.w), (h, w));
        let k = crops
            .iter()
            .position(|c| *c == out.data)
            .expect("the output is a padded crop");
        counts[k] += 1;
    }
    // 81 offsets, 100 expected each: every one is drawn, none far off uniform.
    let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(*lo >= 55 && *hi <= 150, "offset counts from {lo} to {hi}");
}
