//! IMDB sentiment with few labels: language-model pretraining on the IMDB train reviews plus
//! the SST-2 train sentences (labels unused; never a test text), then fine-tuning on k labelled
//! IMDB reviews, against the same fine-tuning from a random init with the same budget.
//!
//! ```text
//! cargo run --release -p selfsup-text --example imdb -- [objective=mlm|causal]
//!     [pretrain_steps=N] [finetune_steps=N] [batch=N] [max_len=N] [vocab=N] [labels=N]
//!     [test=N] [seeds=N] [eval_every=N] [layers=N] [d_model=N] [pooling=cls|mean]
//!     [out=DIR] [tokenizer=PATH]
//! ```
//! Every 100th corpus document is held out of pretraining; MLM accuracy and perplexity (or
//! next-token accuracy and perplexity for `objective=causal`) are measured on it. The
//! tokenizer is trained on the pretraining documents and written to `out/tokenizer.json`
//! unless `tokenizer=` names one. The last line printed is one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use selfsup_data::SampleRng;
use selfsup_eval::{SubsetSpec, stratified_subset};
use selfsup_methods::optim::{Optimizer, OptimizerConfig, OptimizerKind, cosine_with_warmup};
use selfsup_text::{
    CausalLmModel, LmMetrics, MaskedBatch, MlmMaskConfig, MlmModel, Pooling, SpecialIds,
    TextClassifier, TextEncoder, TextEncoderConfig, TextSource, TextTokenizer, TokenBatch,
    WordPieceConfig,
};

struct Args {
    objective: String,
    pretrain_steps: usize,
    finetune_steps: usize,
    batch: usize,
    max_len: usize,
    vocab: usize,
    labels: usize,
    test: usize,
    seeds: u64,
    eval_every: usize,
    layers: usize,
    d_model: usize,
    pooling: Pooling,
    out: PathBuf,
    tokenizer: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        objective: "mlm".into(),
        pretrain_steps: 2000,
        finetune_steps: 300,
        batch: 32,
        max_len: 128,
        vocab: 8000,
        labels: 250,
        test: 25_000,
        seeds: 1,
        eval_every: 500,
        layers: 4,
        d_model: 256,
        pooling: Pooling::Cls,
        out: PathBuf::from("runs/text_imdb"),
        tokenizer: None,
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
            "objective" if v == "mlm" || v == "causal" => a.objective = v.into(),
            "objective" => panic!("objective must be mlm or causal, got {v:?}"),
            "pretrain_steps" => a.pretrain_steps = num(),
            "finetune_steps" => a.finetune_steps = num(),
            "batch" => a.batch = num(),
            "max_len" => a.max_len = num(),
            "vocab" => a.vocab = num(),
            "labels" => a.labels = num(),
            "test" => a.test = num(),
            "seeds" => a.seeds = num() as u64,
            "eval_every" => a.eval_every = num().max(1),
            "layers" => a.layers = num(),
            "d_model" => a.d_model = num(),
            "pooling" => a.pooling = v.parse().unwrap_or_else(|e| panic!("{e}")),
            "out" => a.out = v.into(),
            "tokenizer" => a.tokenizer = Some(v.into()),
            _ => panic!(
                "unknown argument {k:?}; known: objective, pretrain_steps, finetune_steps, batch, \
                 max_len, vocab, labels, test, seeds, eval_every, layers, d_model, pooling, out, tokenizer"
            ),
        }
    }
    a
}

fn adamw(weight_decay: f64) -> Optimizer {
    OptimizerConfig {
        kind: OptimizerKind::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        weight_decay,
        exclude_bias_and_norm: true,
    }
    .init()
    .expect("valid AdamW config")
}

fn encoder_config(args: &Args, vocab: usize) -> TextEncoderConfig {
    TextEncoderConfig::new(vocab)
        .with_n_layers(args.layers)
        .with_d_model(args.d_model)
        .with_n_heads(args.d_model / 64)
        .with_d_ff(4 * args.d_model)
        .with_max_len(args.max_len)
}

/// Indices `0..n` in batches, reshuffled every pass, forever; yields `(pass, batch)`.
fn batches(n: usize, batch: usize, seed: u64) -> impl Iterator<Item = (u64, Vec<usize>)> {
    let batch = batch.min(n);
    (0u64..).flat_map(move |pass| {
        let mut order: Vec<usize> = (0..n).collect();
        SampleRng::for_sample(seed, pass, u64::MAX, 0).shuffle(&mut order);
        order
            .chunks_exact(batch)
            .map(|c| (pass, c.to_vec()))
            .collect::<Vec<_>>()
    })
}

struct Pretrained {
    encoder: TextEncoder,
    heldout: LmMetrics,
    seconds: f64,
    tokens_per_second: f64,
}

fn mlm_heldout(model: &MlmModel, heldout: &[Vec<u32>], special: &SpecialIds) -> LmMetrics {
    model.valid().evaluate(
        heldout,
        &MlmMaskConfig::default(),
        special,
        4242,
        64,
        &Device::flex(),
    )
}

fn causal_heldout(model: &CausalLmModel, heldout: &[Vec<u32>], special: &SpecialIds) -> LmMetrics {
    model
        .valid()
        .evaluate(heldout, special.pad, 64, &Device::flex())
}

fn pretrain(
    corpus: &[Vec<u32>],
    heldout: &[Vec<u32>],
    special: &SpecialIds,
    vocab: usize,
    args: &Args,
    device: &Device,
) -> Pretrained {
    device.seed(1234);
    let config = encoder_config(args, vocab);
    let causal = args.objective == "causal";
    let mut mlm = (!causal).then(|| MlmModel::new(&config, device));
    let mut clm = causal.then(|| CausalLmModel::new(&config, device));
    let mut optim = adamw(0.01);
    let mask = MlmMaskConfig::default();
    let (steps, base_lr) = (args.pretrain_steps, 1e-3);
    let t0 = Instant::now();
    let (mut tokens, mut recent, mut correct, mut predicted) = (0usize, Vec::new(), 0, 0);
    let evaluate = |mlm: &Option<MlmModel>, clm: &Option<CausalLmModel>| match (mlm, clm) {
        (Some(m), _) => mlm_heldout(m, heldout, special),
        (_, Some(c)) => causal_heldout(c, heldout, special),
        _ => unreachable!(),
    };
    for (step, (epoch, idx)) in batches(corpus.len(), args.batch, 99)
        .take(steps)
        .enumerate()
    {
        let seqs: Vec<Vec<u32>> = idx.iter().map(|&i| corpus[i].clone()).collect();
        tokens += seqs.iter().map(Vec::len).sum::<usize>();
        let lr = cosine_with_warmup(step, steps, steps / 20, base_lr, base_lr * 0.01);
        let out = if let Some(model) = mlm.take() {
            let batch = MaskedBatch::new(&seqs, &idx, &mask, special, vocab, (7, epoch), device);
            let out = model.loss(&batch);
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            mlm = Some(optim.step(lr, model, grads));
            out
        } else {
            let model = clm.take().unwrap();
            let out = model.loss(&seqs, special.pad, device);
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            clm = Some(optim.step(lr, model, grads));
            out
        };
        let loss = out.loss.clone().into_scalar::<f32>();
        assert!(
            loss.is_finite(),
            "pretraining loss is {loss} at step {step}"
        );
        recent.push(loss);
        correct += out.correct();
        predicted += out.count();
        if (step + 1) % 50 == 0 || step + 1 == steps {
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "pretrain step {:>5}/{steps} epoch {epoch}  loss {:.3}  train acc {:.3}  lr {lr:.2e}  {:.0} tokens/s  {secs:.0} s",
                step + 1,
                recent.iter().sum::<f32>() / recent.len() as f32,
                correct as f64 / predicted.max(1) as f64,
                tokens as f64 / secs,
            );
            (recent, correct, predicted) = (Vec::new(), 0, 0);
        }
        if (step + 1) % args.eval_every == 0 && step + 1 != steps {
            let m = evaluate(&mlm, &clm);
            eprintln!(
                "held-out at step {}: accuracy {:.4}  perplexity {:.2}  ({} tokens)",
                step + 1,
                m.accuracy,
                m.perplexity,
                m.tokens
            );
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let heldout = evaluate(&mlm, &clm);
    eprintln!(
        "held-out after {steps} steps: accuracy {:.4}  perplexity {:.2}  ({} tokens)",
        heldout.accuracy, heldout.perplexity, heldout.tokens
    );
    let encoder = match (mlm, clm) {
        // The causal encoder is fine-tuned as it was pretrained, with its causal mask.
        (Some(m), _) => m.encoder,
        (_, Some(c)) => c.encoder,
        _ => unreachable!(),
    };
    Pretrained {
        encoder,
        heldout,
        seconds,
        tokens_per_second: tokens as f64 / seconds,
    }
}

/// Fine-tunes encoder + linear head on `train` and returns the test accuracy.
#[allow(clippy::too_many_arguments)]
fn finetune(
    encoder: TextEncoder,
    train: &[(Vec<u32>, u32)],
    test: &[(Vec<u32>, u32)],
    args: &Args,
    pad: u32,
    seed: u64,
    device: &Device,
) -> f64 {
    device.seed(seed);
    let mut model = TextClassifier::new(encoder, 2, args.pooling, device);
    let mut optim = adamw(0.01);
    let (steps, base_lr) = (args.finetune_steps, 1e-4);
    for (step, (_, idx)) in batches(train.len(), args.batch, seed)
        .take(steps)
        .enumerate()
    {
        let seqs: Vec<Vec<u32>> = idx.iter().map(|&i| train[i].0.clone()).collect();
        let labels: Vec<i64> = idx.iter().map(|&i| train[i].1 as i64).collect();
        let logits = model.forward(&TokenBatch::collate(&seqs, pad, None, device));
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [idx.len()]), device);
        let loss = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits, targets);
        let lr = cosine_with_warmup(step, steps, steps / 10, base_lr, 0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    accuracy(&model.valid(), test, pad)
}

fn accuracy(model: &TextClassifier, test: &[(Vec<u32>, u32)], pad: u32) -> f64 {
    let device = Device::flex();
    let mut correct = 0usize;
    for chunk in test.chunks(64) {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|c| c.0.clone()).collect();
        let pred = model
            .forward(&TokenBatch::collate(&seqs, pad, None, &device))
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap();
        correct += pred
            .iter()
            .zip(chunk)
            .filter(|(p, c)| **p == c.1 as i64)
            .count();
    }
    correct as f64 / test.len() as f64
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn main() {
    let args = parse_args();
    let root = selfsup_data::data_root().join("text");
    let load = |path: PathBuf, label: Option<&str>| {
        TextSource::delimited(path, "text", label)
            .load()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let imdb_train = load(root.join("imdb/train.csv"), Some("label"));
    let imdb_test = load(root.join("imdb/test.csv"), Some("label"));
    let sst_train = load(root.join("sst2/train.csv"), None);

    // Pretraining corpus: IMDB train reviews + SST-2 train sentences; every 100th held out.
    let corpus: Vec<&str> = imdb_train
        .texts
        .iter()
        .chain(&sst_train.texts)
        .map(String::as_str)
        .collect();
    let (heldout_texts, pretrain_texts): (Vec<(usize, &str)>, Vec<(usize, &str)>) = corpus
        .iter()
        .copied()
        .enumerate()
        .partition(|(i, _)| i % 100 == 99);
    let strip = |v: Vec<(usize, &str)>| v.into_iter().map(|(_, t)| t).collect::<Vec<_>>();
    let (heldout_texts, pretrain_texts) = (strip(heldout_texts), strip(pretrain_texts));

    let t0 = Instant::now();
    std::fs::create_dir_all(&args.out)
        .unwrap_or_else(|e| panic!("{}: cannot create: {e}", args.out.display()));
    let tokenizer = match &args.tokenizer {
        Some(path) => TextTokenizer::load(path, args.max_len),
        None => {
            let config = WordPieceConfig {
                vocab_size: args.vocab,
                ..Default::default()
            };
            TextTokenizer::train(pretrain_texts.iter(), &config, args.max_len)
        }
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let tokenizer_path = args.out.join("tokenizer.json");
    if args.tokenizer.is_none() {
        tokenizer
            .save(&tokenizer_path)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let t_tok = t0.elapsed().as_secs_f64();
    let encode = |texts: &[&str]| {
        tokenizer
            .encode_batch(texts)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let pretrain_ids = encode(pretrain_texts.as_slice());
    let heldout_ids = encode(heldout_texts.as_slice());
    let special = tokenizer.special();
    let vocab = tokenizer.vocab_size();
    eprintln!(
        "{} pretraining / {} held-out documents, vocabulary {vocab} (trained in {t_tok:.1} s), \
         {} pretraining tokens, encoded in {:.1} s",
        pretrain_ids.len(),
        heldout_ids.len(),
        pretrain_ids.iter().map(Vec::len).sum::<usize>(),
        t0.elapsed().as_secs_f64() - t_tok
    );

    let device = Device::flex().autodiff();
    let pre = pretrain(&pretrain_ids, &heldout_ids, &special, vocab, &args, &device);

    let train_labels = imdb_train
        .labels("imdb/train.csv")
        .unwrap_or_else(|e| panic!("{e}"));
    let test_labels = imdb_test
        .labels("imdb/test.csv")
        .unwrap_or_else(|e| panic!("{e}"));
    // Test rows are in a seeded shuffled order: the first `test` are a random sample.
    let n_test = args.test.min(imdb_test.len());
    let test_texts: Vec<&str> = imdb_test.texts[..n_test]
        .iter()
        .map(String::as_str)
        .collect();
    let test: Vec<(Vec<u32>, u32)> = encode(test_texts.as_slice())
        .into_iter()
        .zip(test_labels[..n_test].iter().copied())
        .collect();

    let (mut with_pre, mut scratch) = (Vec::new(), Vec::new());
    for seed in 0..args.seeds {
        let spec = SubsetSpec::PerClass((args.labels / 2).max(1));
        let idx = stratified_subset(train_labels, spec, seed).expect("valid subset");
        let texts: Vec<&str> = idx.iter().map(|&i| imdb_train.texts[i].as_str()).collect();
        let subset: Vec<(Vec<u32>, u32)> = encode(texts.as_slice())
            .into_iter()
            .zip(idx.iter().map(|&i| train_labels[i]))
            .collect();
        let t = Instant::now();
        let a = finetune(
            pre.encoder.clone(),
            &subset,
            &test,
            &args,
            special.pad,
            seed,
            &device,
        );
        device.seed(5000 + seed);
        let fresh = encoder_config(&args, vocab)
            .with_causal(args.objective == "causal")
            .init(&device);
        let b = finetune(fresh, &subset, &test, &args, special.pad, seed, &device);
        eprintln!(
            "seed {seed}: {} labelled reviews, test {n_test}: pretrained {:.2} %, scratch {:.2} % ({:.0} s)",
            subset.len(),
            100.0 * a,
            100.0 * b,
            t.elapsed().as_secs_f64()
        );
        with_pre.push(100.0 * a);
        scratch.push(100.0 * b);
    }
    println!(
        "{{\"objective\": {:?}, \"pretrain_steps\": {}, \"batch\": {}, \"max_len\": {}, \"vocab\": {vocab}, \
         \"pretrain_seconds\": {:.0}, \"pretrain_tokens_per_second\": {:.0}, \"heldout_accuracy\": {:.4}, \
         \"heldout_perplexity\": {:.3}, \"heldout_tokens\": {}, \"finetune_steps\": {}, \"labels\": {}, \
         \"test\": {n_test}, \"pretrained\": {with_pre:?}, \"scratch\": {scratch:?}, \
         \"pretrained_mean\": {:.2}, \"scratch_mean\": {:.2}, \"tokenizer\": {:?}}}",
        args.objective,
        args.pretrain_steps,
        args.batch,
        args.max_len,
        pre.seconds,
        pre.tokens_per_second,
        pre.heldout.accuracy,
        pre.heldout.perplexity,
        pre.heldout.tokens,
        args.finetune_steps,
        args.labels,
        mean(&with_pre),
        mean(&scratch),
        args.tokenizer.as_ref().unwrap_or(&tokenizer_path).display(),
    );
}
