//! Few-label fine-tuning, the same for every modality: a [`Recipe`], LP-FT's probed head, and
//! one classifier loop ([`selfsup_methods::finetune::train_classifier`]) over the task's augmented
//! batches, tested on the whole test split (or the held-out validation rows).

use std::time::Instant;

use burn::module::{Module, ModuleDisplay};
use burn::nn::{Linear, LinearConfig};
use selfsup_eval::top_k_accuracy;
use selfsup_methods::finetune::{EncoderWithHead, train_classifier};
use serde::Serialize;

use crate::bail;
use crate::downstream::{Eval, features_of};
use crate::error::{Context, Error, Result};
use crate::modality::{DownstreamTask, Init};
use crate::recipe::Recipe;

/// An encoder and a linear classification head.
#[derive(Module, Debug)]
pub struct Classifier<E: Module + ModuleDisplay> {
    pub encoder: E,
    pub head: Linear,
}

impl<E: Module + ModuleDisplay> EncoderWithHead for Classifier<E> {
    type Encoder = E;

    fn map_parts(self, f: impl FnOnce(E, Linear) -> (E, Linear)) -> Self {
        let (encoder, head) = f(self.encoder, self.head);
        Self { encoder, head }
    }
}

/// Figures of one fine-tuning run.
#[derive(Clone, Debug, Serialize)]
pub struct FinetuneResult {
    pub top1: f64,
    /// Only with more than 5 classes.
    pub top5: Option<f64>,
    pub steps: usize,
    /// Mean training loss over the last 10 % of the steps.
    pub final_loss: f64,
    pub train_seconds: f64,
    pub test_seconds: f64,
}

/// Top-1 and (with more than 5 classes) top-5 accuracy of `scores` (row-major, `classes`
/// per sample).
pub fn top1_top5(scores: &[f32], classes: usize, labels: &[u32]) -> Result<(f64, Option<f64>)> {
    let top1 = top_k_accuracy(scores, classes, labels, 1)?;
    let top5 = (classes > 5)
        .then(|| top_k_accuracy(scores, classes, labels, 5))
        .transpose()?;
    Ok((top1, top5))
}

/// The encoder (`init`) and a linear head trained end to end on the training rows `subset`
/// of `eval`, then tested on all of its test rows.
pub fn finetune<T: DownstreamTask>(
    eval: &Eval<T>,
    init: Init,
    subset: &[usize],
    recipe: &Recipe,
    quiet: bool,
) -> Result<FinetuneResult> {
    let task = &eval.task;
    let classes = eval.classes();
    if classes < 2 {
        bail!("fine-tuning needs at least 2 classes, the data has {classes}");
    }
    let train_labels = eval.train_labels()?;
    let rows = eval.train_rows(subset);
    let ad = task.device().clone().autodiff();
    let encoder = task.encoder(init, &ad)?;
    // LP-FT applies to both arms alike: a scratch encoder's head is probed on its random
    // features just as a pretrained one's. The features come before the seed below, so the
    // run's random stream (dropout) is the same with and without LP-FT.
    let frozen = if recipe.lp_ft {
        let frozen = task.encoder(init, task.device())?;
        Some(features_of(
            task,
            &frozen,
            selfsup_data::Split::Train,
            &rows,
            eval.batch_size,
        )?)
    } else {
        None
    };
    ad.seed(recipe.seed);
    let head = match frozen {
        Some(features) => {
            let labels: Vec<u32> = subset.iter().map(|&i| train_labels[i]).collect();
            selfsup_eval::probed_linear_head(
                &features,
                &labels,
                classes,
                &recipe.linear_probe_config(),
                &ad,
            )
            .context("LP-FT linear probe")?
        }
        None => LinearConfig::new(task.embed_dim(), classes).init(&ad),
    };
    let batch_size = recipe.batch_for(subset.len());
    let schedule = recipe.schedule(init, subset.len());
    let total = schedule.steps;
    let t0 = Instant::now();
    let batches = task.train_batches(&rows, batch_size, recipe.seed, &ad)?;
    let (model, trained) = train_classifier(
        Classifier { encoder, head },
        batches,
        &schedule,
        &ad,
        |m: &Classifier<T::Encoder>, (batch, labels)| {
            (m.head.forward(task.forward(&m.encoder, batch)), labels)
        },
        |step, loss, lr| {
            if !quiet && (step % 50 == 0 || step == total) {
                eprintln!(
                    "  step {step}/{total} loss {loss:.4} lr {lr:.4} ({:.0} s)",
                    t0.elapsed().as_secs_f64()
                );
            }
        },
    )
    .map_err(Error::from)?;

    let t1 = Instant::now();
    let model = model.valid();
    let model = model.to_device(task.device());
    let (split, test_rows) = eval.test_rows();
    let mut scores = Vec::with_capacity(test_rows.len() * classes);
    for batch in task.batches(split, &test_rows, eval.batch_size, task.device())? {
        let logits = model.head.forward(task.forward(&model.encoder, batch));
        scores.extend(
            logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 logits"),
        );
    }
    let (top1, top5) = top1_top5(&scores, classes, &eval.test_labels()?)?;
    Ok(FinetuneResult {
        top1,
        top5,
        steps: trained.steps,
        final_loss: trained.final_loss,
        train_seconds: trained.train_seconds,
        test_seconds: t1.elapsed().as_secs_f64(),
    })
}
