//! What every self-supervised method provides to the training loop.
//!
//! A method is a burn `Module` (so its tensors are checkpointed by path and its parameters
//! reach the optimizer) that computes a loss from a batch of augmented views and, after the
//! optimizer step, updates its non-gradient state (momentum teacher, queue, center).
//!
//! Contract: the online encoder is the field `backbone` (checkpoints store it as
//! `model.backbone.*`, which evaluation loads); every tensor needed to continue training is a
//! field of the module, so a checkpoint resumes exactly.

use burn::module::Module;
use burn::prelude::*;
use selfsup_data::{EncoderInput, ImageDataset};
use selfsup_models::{Backbone, BackboneConfig};

use crate::MethodError;
use crate::registry::MethodSettings;

/// Where training stands when a step is taken (schedules inside methods depend on it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Global step being taken, from 0.
    pub step: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    /// The run's seed (methods with randomness derive per-step seeds from it).
    pub seed: u64,
}

impl Progress {
    /// Epochs done so far, fractional: 1.5 is half-way through the second epoch.
    pub fn epoch(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch.max(1) as f64
    }
}

/// What a training step computed.
pub struct StepOutput<U> {
    /// The loss to differentiate (1 element).
    pub loss: Tensor<1>,
    /// The online embeddings of the first two (global) views, detached: collapse diagnostics.
    pub z_a: Tensor<2>,
    pub z_b: Tensor<2>,
    /// Detached tensors the method needs after the optimizer step (keys for a queue, teacher
    /// outputs for a center); `()` for methods without non-gradient state.
    pub update: U,
}

/// A self-supervised method the training loop can run; see the module docs for the contract.
pub trait SslMethod: Module + Sized {
    /// One training batch. Image methods take [`ImageViews`]; other modalities their own
    /// batch type (audio: spectrograms).
    type Input;
    type Update;
    /// The online encoder's type ([`ResNet`] for image methods).
    type Backbone: Module;

    /// Whether `StepOutput::z_b` is a second view of the samples in `z_a` (alignment is
    /// measured); single-view methods (masked prediction) return `z_a` twice and set it false.
    const PAIRED_VIEWS: bool = true;

    /// The online encoder, evaluated during training.
    fn backbone(&self) -> &Self::Backbone;

    /// The loss of one batch.
    fn train_step(&self, input: Self::Input, progress: &Progress) -> StepOutput<Self::Update>;

    /// Non-gradient state after the optimizer has updated the parameters at `progress.step`
    /// (EMA teacher, queue, center); methods without such state keep the default.
    fn update(self, _update: Self::Update, _progress: &Progress) -> Self {
        self
    }
}

impl<U> StepOutput<U> {
    /// The output of a two-view method: the views' online embeddings, detached for diagnostics.
    pub fn two_views(loss: Tensor<1>, z_a: Tensor<2>, z_b: Tensor<2>, update: U) -> Self {
        StepOutput {
            loss,
            z_a: z_a.detach(),
            z_b: z_b.detach(),
            update,
        }
    }

    /// The output of a one-view method: its diagnostic embedding `z` (detached) stands for both
    /// views (the method sets `PAIRED_VIEWS = false`, so alignment is not measured).
    pub fn one_view(loss: Tensor<1>, z: Tensor<2>, update: U) -> Self {
        let z = z.detach();
        StepOutput {
            loss,
            z_a: z.clone(),
            z_b: z,
            update,
        }
    }
}

/// The single batch of a one-view method (panics unless there is exactly one).
pub fn one_view(method: &str, views: ImageViews) -> Tensor<4> {
    expect_views(method, &views, 1);
    views.into_iter().next().expect("one view")
}

/// Image methods' batch: `[N, C, H, W]` batches of the same N images, the two global views
/// first, then any local crops (multi-crop methods only).
pub type ImageViews = Vec<Tensor<4>>;

/// Panics unless `views` holds exactly `n` batches (methods without multi-crop take 2).
pub fn expect_views(method: &str, views: &[Tensor<4>], n: usize) {
    assert_eq!(
        views.len(),
        n,
        "{method} takes {n} views per image, got {} (local crops are for DINO only)",
        views.len()
    );
}

/// Runs `f` on both global views as one batch of 2N (BatchNorm statistics over both views, one
/// pass instead of two) and splits the result back into the two views' outputs.
pub fn both_views(
    a: Tensor<4>,
    b: Tensor<4>,
    f: impl FnOnce(Tensor<4>) -> Tensor<2>,
) -> (Tensor<2>, Tensor<2>) {
    let n = a.dims()[0];
    let z = f(Tensor::cat(vec![a, b], 0));
    (z.clone().narrow(0, 0, n), z.narrow(0, n, n))
}

/// The rows of `z` from every data-parallel rank, in rank order: the global batch that
/// NT-Xent's negatives, Barlow Twins' cross-correlation, VICReg's covariance and MoCo's queue
/// are taken over. Differentiable (each rank's rows get every rank's gradient); the identity
/// with one process.
pub fn global_batch(z: Tensor<2>) -> Tensor<2> {
    selfsup_dist::ops::all_gather_rows(z)
}

/// `projector(backbone(view))` of the two global views (one 2N batch), for two-view methods.
pub fn project_two_views(
    method: &str,
    backbone: &Backbone,
    projector: &selfsup_models::MlpHead,
    views: Vec<Tensor<4>>,
) -> (Tensor<2>, Tensor<2>) {
    expect_views(method, &views, 2);
    let [a, b]: [Tensor<4>; 2] = views.try_into().expect("two views");
    both_views(a, b, |x| projector.forward(backbone.forward(x)))
}

/// Applies `head` to two `[N, D]` batches as one batch of 2N and splits the result.
pub fn head_both(
    head: &selfsup_models::MlpHead,
    a: Tensor<2>,
    b: Tensor<2>,
) -> (Tensor<2>, Tensor<2>) {
    let n = a.dims()[0];
    let out = head.forward(Tensor::cat(vec![a, b], 0));
    (out.clone().narrow(0, 0, n), out.narrow(0, n, n))
}

/// What an image method's module is built from besides its own settings.
#[derive(Clone, Copy)]
pub struct ImageContext<'a> {
    /// The encoder's architecture (`[model]`).
    pub backbone: &'a BackboneConfig,
    /// Images per step (`train.batch_size`).
    pub batch_size: usize,
    /// The views' normalisation (colorization recovers sRGB from it).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The run's first N training images, for statistics a method takes from the data before
    /// training (colorization's colour prior); `None` when only the module's shape matters
    /// (loading a checkpoint).
    pub images: Option<(&'a ImageDataset, usize)>,
}

impl<'a> ImageContext<'a> {
    /// A context with the CIFAR-10 normalisation, batch 256 and no training images.
    pub fn new(backbone: &'a BackboneConfig) -> Self {
        Self {
            backbone,
            batch_size: 256,
            mean: [0.4914, 0.4822, 0.4465],
            std: [0.2470, 0.2435, 0.2616],
            images: None,
        }
    }
}

/// The views an image method takes of each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageViewKind {
    /// Two augmented views (crop, flip, colour jitter, grayscale, blur, solarisation).
    TwoViews,
    /// Two global views plus `augment.local_crops` small crops (DINO's multi-crop).
    MultiCrop,
    /// One random-resized crop + flip and no colour augmentation: methods that predict
    /// something about the image itself (rotation, MAE, colorization).
    OneView,
}

/// An image method's settings: how its module is built and which views it takes.
pub trait ImageMethodConfig: MethodSettings {
    type Model: SslMethod<Input = ImageViews, Backbone = Backbone>;

    const VIEWS: ImageViewKind = ImageViewKind::TwoViews;

    /// What the encoder is fed, in training and in every evaluation (colorization's encoder
    /// sees L* only, and so do its kNN, probes and from-scratch baseline).
    const ENCODER_INPUT: EncoderInput = EncoderInput::Rgb;

    /// Settings that depend on the rest of the run (the backbone, the batch size); errors
    /// name the key.
    fn check(&self, _ctx: &ImageContext) -> Result<(), MethodError> {
        Ok(())
    }

    fn init(&self, ctx: &ImageContext, device: &Device) -> Self::Model;
}

/// Receives the chosen image method's settings ([`crate::ImageMethod::visit`]).
pub trait ImageMethodVisitor {
    type Output;
    fn visit<C: ImageMethodConfig>(self, config: &C) -> Self::Output;
}
