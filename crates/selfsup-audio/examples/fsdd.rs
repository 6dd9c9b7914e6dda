//! FSDD spoken digits: masked-frame pretraining on the train clips (labels unused), then
//! fine-tuning with few labels, against the same fine-tuning from a random init.
//!
//! ```text
//! cargo run --release -p selfsup-audio --example fsdd -- [pretrain_steps=N] [finetune_steps=N]
//!     [seeds=N] [batch=N] [heldout_speaker=NAME]
//! ```
//! With `heldout_speaker`, that speaker's clips (both splits) are the test set and neither
//! pretraining nor fine-tuning sees them. The last line printed is one JSON object.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use selfsup_audio::{
    AudioClassifier, AudioDataset, AudioEncoder, AudioEncoderConfig, FeatureStats, FrameBatch,
    LogMelConfig, MaskedFrameModel, Reconstruction, SpanMaskConfig, SpecAugmentConfig, Spectrogram,
    Split,
};
use selfsup_data::SampleRng;
use selfsup_eval::{SubsetSpec, stratified_subset};
use selfsup_methods::optim::{Optimizer, OptimizerConfig, OptimizerKind, cosine_with_warmup};

/// Training crops: 1 s (100 frames at a 10 ms hop) covers nearly every FSDD digit.
const CROP: usize = 100;

struct Args {
    pretrain_steps: usize,
    finetune_steps: usize,
    seeds: u64,
    batch: usize,
    heldout_speaker: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        pretrain_steps: 800,
        finetune_steps: 150,
        seeds: 3,
        batch: 32,
        heldout_speaker: None,
    };
    for arg in std::env::args().skip(1) {
        let (k, v) = arg
            .split_once('=')
            .unwrap_or_else(|| panic!("arguments are key=value, got {arg:?}"));
        let num = || {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("{k} needs a number, got {v:?}"))
        };
        match k {
            "pretrain_steps" => a.pretrain_steps = num(),
            "finetune_steps" => a.finetune_steps = num(),
            "seeds" => a.seeds = num() as u64,
            "batch" => a.batch = num(),
            "heldout_speaker" => a.heldout_speaker = Some(v.to_string()),
            _ => panic!(
                "unknown argument {k:?}; known: pretrain_steps, finetune_steps, seeds, batch, heldout_speaker"
            ),
        }
    }
    a
}

fn adamw(weight_decay: f64) -> Optimizer {
    OptimizerConfig {
        kind: OptimizerKind::AdamW {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
        },
        weight_decay,
        exclude_bias_and_norm: true,
    }
    .init()
    .expect("valid AdamW config")
}

fn encoder_config(n_mels: usize) -> AudioEncoderConfig {
    // The tiny default (d_model 64, 2 layers): about 0.5 s per batch of 32 on 2 busy cores.
    AudioEncoderConfig::new(n_mels)
}

/// A random `CROP`-frame window of clips longer than that.
fn random_crop(spec: &Spectrogram, rng: &mut SampleRng) -> Spectrogram {
    if spec.frames <= CROP {
        return spec.clone();
    }
    spec.crop(rng.below((spec.frames - CROP + 1) as u64) as usize, CROP)
}

/// Indices `0..n` in batches, reshuffled every pass, forever.
fn batches(n: usize, batch: usize, seed: u64) -> impl Iterator<Item = Vec<usize>> {
    let batch = batch.min(n);
    (0u64..).flat_map(move |pass| {
        let mut order: Vec<usize> = (0..n).collect();
        SampleRng::for_sample(seed, pass, u64::MAX, 0).shuffle(&mut order);
        order
            .chunks_exact(batch)
            .map(<[usize]>::to_vec)
            .collect::<Vec<_>>()
    })
}

fn pretrain(specs: &[Spectrogram], args: &Args, device: &Device) -> AudioEncoder {
    let n_mels = specs[0].n_mels;
    device.seed(1234);
    let mut model = MaskedFrameModel::new(&encoder_config(n_mels), device);
    let mut optim = adamw(0.01);
    let mask = SpanMaskConfig::new(0.15, 5, 10).expect("valid mask config");
    let (steps, base_lr) = (args.pretrain_steps, 1e-3);
    let t0 = Instant::now();
    let mut recent = Vec::new();
    for (step, idx) in batches(specs.len(), args.batch, 99).take(steps).enumerate() {
        let mut rng = SampleRng::for_sample(7, step as u64, 0, 1);
        let clips: Vec<Spectrogram> = idx
            .iter()
            .map(|&i| random_crop(&specs[i], &mut rng))
            .collect();
        // Masked frames are set to 0, the per-bin mean after normalisation.
        let loss = model.loss(
            &clips,
            &mask,
            Reconstruction::L1,
            0.0,
            (11, step as u64),
            device,
        );
        recent.push(loss.clone().into_scalar::<f32>());
        let lr = cosine_with_warmup(step, steps, steps / 20, base_lr, base_lr * 0.01);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        if (step + 1) % 100 == 0 || step + 1 == steps {
            let mean = recent.iter().sum::<f32>() / recent.len() as f32;
            eprintln!(
                "pretrain step {:>5}/{steps}  masked L1 {mean:.4}  lr {lr:.2e}  {:.0} s",
                step + 1,
                t0.elapsed().as_secs_f64()
            );
            recent.clear();
        }
    }
    model.encoder
}

/// Fine-tunes encoder + linear head on `train` (SpecAugment, random crops) and returns the
/// test accuracy.
#[allow(clippy::too_many_arguments)]
fn finetune(
    encoder: AudioEncoder,
    train: &[(Spectrogram, u32)],
    test: &[(Spectrogram, u32)],
    steps: usize,
    batch: usize,
    seed: u64,
    device: &Device,
) -> f64 {
    device.seed(seed);
    let mut model = AudioClassifier::new(encoder, 10, device);
    let mut optim = adamw(0.01);
    let augment = SpecAugmentConfig::speech();
    let base_lr = 5e-4;
    for (step, idx) in batches(train.len(), batch, seed).take(steps).enumerate() {
        let mut rng = SampleRng::for_sample(seed, step as u64, 1, 2);
        let clips: Vec<Spectrogram> = idx
            .iter()
            .map(|&i| {
                let mut s = random_crop(&train[i].0, &mut rng);
                augment.apply(&mut s, &mut rng, 0.0);
                s
            })
            .collect();
        let labels: Vec<i64> = idx.iter().map(|&i| train[i].1 as i64).collect();
        let batch = FrameBatch::collate(&clips, device);
        let logits = model.forward(&batch);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [idx.len()]), device);
        let loss = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits, targets);
        let lr = cosine_with_warmup(step, steps, steps / 10, base_lr, 0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    accuracy(&model.valid(), test)
}

fn accuracy(model: &AudioClassifier, test: &[(Spectrogram, u32)]) -> f64 {
    let device = Device::flex();
    let mut correct = 0usize;
    for chunk in test.chunks(64) {
        let specs: Vec<Spectrogram> = chunk.iter().map(|c| c.0.clone()).collect();
        let logits = model.forward(&FrameBatch::collate(&specs, &device));
        let pred = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        correct += pred
            .iter()
            .zip(chunk)
            .filter(|(p, c)| **p == c.1 as i64)
            .count();
    }
    correct as f64 / test.len() as f64
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

fn main() {
    let args = parse_args();
    let root = selfsup_data::data_root().join("fsdd");
    let all = AudioDataset::fsdd(&root).unwrap_or_else(|e| panic!("{e}"));
    let (train, test) = match &args.heldout_speaker {
        None => (all.split(Split::Train), all.split(Split::Test)),
        Some(s) => {
            assert!(
                all.speakers().contains(s),
                "unknown speaker {s:?}: {:?}",
                all.speakers()
            );
            (
                all.filter(|c| c.speaker.as_ref() != Some(s)),
                all.filter(|c| c.speaker.as_ref() == Some(s)),
            )
        }
    };
    let t0 = Instant::now();
    let logmel = LogMelConfig::speech_8k()
        .init()
        .expect("valid log-mel config");
    let features = |ds: &AudioDataset| -> Vec<Spectrogram> {
        ds.load(8000)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|a| logmel.compute(a).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    };
    let (mut train_specs, mut test_specs) = (features(&train), features(&test));
    let stats = FeatureStats::fit(&train_specs);
    train_specs
        .iter_mut()
        .chain(&mut test_specs)
        .for_each(|s| stats.normalize(s));
    eprintln!(
        "{} train / {} test clips, log-mel in {:.1} s",
        train.len(),
        test.len(),
        t0.elapsed().as_secs_f64()
    );

    let device = Device::flex().autodiff();
    let t_pre = Instant::now();
    let pretrained = pretrain(&train_specs, &args, &device);
    let pretrain_secs = t_pre.elapsed().as_secs_f64();

    let labelled: Vec<(Spectrogram, u32)> =
        train_specs.iter().cloned().zip(train.labels()).collect();
    let test_set: Vec<(Spectrogram, u32)> = test_specs.into_iter().zip(test.labels()).collect();
    let mut report = Vec::new();
    for (name, spec) in [
        ("5_per_digit", SubsetSpec::PerClass(5)),
        ("10_percent", SubsetSpec::Fraction(0.1)),
    ] {
        let (mut pre, mut scratch) = (Vec::new(), Vec::new());
        for seed in 0..args.seeds {
            let idx = stratified_subset(&train.labels(), spec, seed).expect("valid subset");
            let subset: Vec<(Spectrogram, u32)> =
                idx.iter().map(|&i| labelled[i].clone()).collect();
            let t = Instant::now();
            let a = finetune(
                pretrained.clone(),
                &subset,
                &test_set,
                args.finetune_steps,
                args.batch,
                seed,
                &device,
            );
            device.seed(5000 + seed);
            let fresh = encoder_config(stats.mean.len()).init(&device);
            let b = finetune(
                fresh,
                &subset,
                &test_set,
                args.finetune_steps,
                args.batch,
                seed,
                &device,
            );
            eprintln!(
                "{name} seed {seed}: {} labelled clips, pretrained {:.1} %, scratch {:.1} % ({:.0} s)",
                subset.len(),
                100.0 * a,
                100.0 * b,
                t.elapsed().as_secs_f64()
            );
            pre.push(100.0 * a);
            scratch.push(100.0 * b);
        }
        let ((pm, ps), (sm, ss)) = (mean_std(&pre), mean_std(&scratch));
        eprintln!(
            "{name}: pretrained {pm:.1} ± {ps:.1} %, scratch {sm:.1} ± {ss:.1} % over {} seeds",
            args.seeds
        );
        report.push(format!(
            "\"{name}\": {{\"pretrained\": {pre:?}, \"scratch\": {scratch:?}, \"pretrained_mean\": {pm:.2}, \"scratch_mean\": {sm:.2}}}"
        ));
    }
    println!(
        "{{\"pretrain_steps\": {}, \"pretrain_seconds\": {pretrain_secs:.0}, \"finetune_steps\": {}, \"heldout_speaker\": {:?}, {}}}",
        args.pretrain_steps,
        args.finetune_steps,
        args.heldout_speaker.as_deref().unwrap_or(""),
        report.join(", ")
    );
}
