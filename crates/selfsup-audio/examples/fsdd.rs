//! FSDD spoken digits: masked-frame pretraining on the train clips (labels unused), then
//! fine-tuning with few labels, against the same fine-tuning from a random init.
//!
//! ```text
//! cargo run --release -p selfsup-audio --example fsdd -- [pretrain_steps=N] [finetune_steps=N]
//!     [seeds=N] [batch=N] [heldout_speaker=NAME] [backbone_lr_mult=X] [d_model=N]
//!     [mask_ratio=X] [finetune_lr=X]
//! ```
//! With `heldout_speaker`, that speaker's clips (both splits) are the test set and neither
//! pretraining nor fine-tuning sees them. The last line printed is one JSON object.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use selfsup_audio::finetune::{adamw, random_crop, shuffled_batches};
use selfsup_audio::{
    AudioDataset, AudioEncoder, AudioEncoderConfig, FeatureStats, FinetuneConfig, LogMelConfig,
    MaskedFrameModel, Reconstruction, SpanMaskConfig, SpecAugmentConfig, Spectrogram, Split,
    finetune,
};
use selfsup_data::SampleRng;
use selfsup_eval::{SubsetSpec, stratified_subset};
use selfsup_methods::optim::cosine_with_warmup;

/// Training crops: 1 s (100 frames at a 10 ms hop) covers nearly every FSDD digit.
const CROP: usize = 100;

struct Args {
    pretrain_steps: usize,
    finetune_steps: usize,
    seeds: u64,
    batch: usize,
    heldout_speaker: Option<String>,
    backbone_lr_mult: f64,
    d_model: usize,
    mask_ratio: f64,
    finetune_lr: f64,
}

fn parse_args() -> Args {
    let mut a = Args {
        pretrain_steps: 800,
        finetune_steps: 150,
        seeds: 3,
        batch: 32,
        heldout_speaker: None,
        backbone_lr_mult: 1.0,
        d_model: 64,
        mask_ratio: 0.15,
        finetune_lr: 5e-4,
    };
    for arg in std::env::args().skip(1) {
        let (k, v) = arg
            .split_once('=')
            .unwrap_or_else(|| panic!("arguments are key=value, got {arg:?}"));
        let num = || {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("{k} needs a number, got {v:?}"))
        };
        let real = || {
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("{k} needs a number, got {v:?}"))
        };
        match k {
            "pretrain_steps" => a.pretrain_steps = num(),
            "finetune_steps" => a.finetune_steps = num(),
            "seeds" => a.seeds = num() as u64,
            "batch" => a.batch = num(),
            "heldout_speaker" => a.heldout_speaker = Some(v.to_string()),
            "backbone_lr_mult" => a.backbone_lr_mult = real(),
            "d_model" => a.d_model = num(),
            "mask_ratio" => a.mask_ratio = real(),
            "finetune_lr" => a.finetune_lr = real(),
            _ => panic!(
                "unknown argument {k:?}; known: pretrain_steps, finetune_steps, seeds, batch, \
                 heldout_speaker, backbone_lr_mult, d_model, mask_ratio, finetune_lr"
            ),
        }
    }
    a
}

fn encoder_config(n_mels: usize, d_model: usize) -> AudioEncoderConfig {
    // The tiny default (d_model 64, 2 layers): about 0.5 s per batch of 32 on 2 busy cores.
    AudioEncoderConfig::new(n_mels)
        .with_d_model(d_model)
        .with_d_ff(2 * d_model)
}

fn pretrain(specs: &[Spectrogram], args: &Args, device: &Device) -> AudioEncoder {
    let n_mels = specs[0].n_mels;
    device.seed(1234);
    let mask = SpanMaskConfig::new(args.mask_ratio, 5, 10).expect("valid mask config");
    let mut model = MaskedFrameModel::new(
        &encoder_config(n_mels, args.d_model),
        mask,
        Reconstruction::L1,
        device,
    );
    let mut optim = adamw(0.01);
    let (steps, base_lr) = (args.pretrain_steps, 1e-3);
    let t0 = Instant::now();
    let mut recent = Vec::new();
    let batches = (0u64..).flat_map(|pass| shuffled_batches(specs.len(), args.batch, 99, pass));
    for (step, idx) in batches.take(steps).enumerate() {
        let mut rng = SampleRng::for_sample(7, step as u64, 0, 1);
        let clips: Vec<Spectrogram> = idx
            .iter()
            .map(|&i| random_crop(&specs[i], CROP, &mut rng))
            .collect();
        let loss = model.loss(&clips, (11, step as u64), device);
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
    model.backbone
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
            let recipe = |backbone_lr_mult| FinetuneConfig {
                steps: args.finetune_steps,
                batch_size: args.batch,
                lr: args.finetune_lr,
                backbone_lr_mult,
                weight_decay: 0.01,
                crop_frames: CROP,
                augment: SpecAugmentConfig::speech(),
                seed,
                classes: 10,
                probe_head: None,
            };
            let run = |encoder, mult| {
                finetune(encoder, &subset, &test_set, &recipe(mult), &device)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .top1
            };
            let a = run(pretrained.clone(), args.backbone_lr_mult);
            device.seed(5000 + seed);
            let b = run(
                encoder_config(stats.mean.len(), args.d_model).init(&device),
                1.0,
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
        "{{\"pretrain_steps\": {}, \"pretrain_seconds\": {pretrain_secs:.0}, \"finetune_steps\": {}, \"backbone_lr_mult\": {}, \"d_model\": {}, \"mask_ratio\": {}, \"finetune_lr\": {}, \"heldout_speaker\": {:?}, {}}}",
        args.pretrain_steps,
        args.finetune_steps,
        args.backbone_lr_mult,
        args.d_model,
        args.mask_ratio,
        args.finetune_lr,
        args.heldout_speaker.as_deref().unwrap_or(""),
        report.join(", ")
    );
}
