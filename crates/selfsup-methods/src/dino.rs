//! DINO (Caron et al. 2021) with a ResNet backbone: a student matches a momentum teacher's
//! centred, sharpened distribution over prototypes; the teacher sees the two global views, the
//! student those and any local crops (multi-crop).

use burn::module::{Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use selfsup_models::{Backbone, MlpHead, MlpHeadConfig};
use serde::{Deserialize, Serialize};

use crate::MethodError;
use crate::loss::{dino_center_update, dino_loss, l2_normalize, teacher_temperature};
use crate::method::{
    ImageContext, ImageMethodConfig, ImageViewKind, Progress, SslMethod, StepOutput,
};
use crate::momentum::{cosine_momentum, ema_update, teacher_copy};
use crate::registry::{MethodSettings, check_momentum, check_positive, check_widths};

/// DINO's `[method]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DinoConfig {
    /// Head widths after the backbone: hidden…, bottleneck, prototypes. The MLP up to the
    /// bottleneck is Linear-BN-ReLU blocks (lightly's DINOProjectionHead with batch_norm=True
    /// uses GELU), the bottleneck is L2-normalised and compared with unit-length prototypes
    /// (the weight-normalised last layer, gain fixed at 1).
    #[serde(rename = "projection_dims")]
    pub head_dims: Vec<usize>,
    /// The student's softmax temperature.
    #[serde(rename = "temperature")]
    pub student_temperature: f64,
    /// Teacher temperature: warm-up start, final value.
    pub teacher_temperature: [f64; 2],
    /// Epochs of the linear teacher-temperature warm-up.
    pub teacher_temperature_warmup_epochs: f64,
    /// Momentum of the center (running mean of the teacher's outputs).
    pub center_momentum: f64,
    /// EMA momentum of the teacher: cosine schedule from start to end (DINO: 0.996 → 1).
    #[serde(rename = "ema_momentum")]
    pub momentum: [f64; 2],
}

impl Default for DinoConfig {
    fn default() -> Self {
        Self {
            head_dims: vec![512, 128],
            student_temperature: 0.5,
            teacher_temperature: [0.04, 0.07],
            teacher_temperature_warmup_epochs: 1.0,
            center_momentum: 0.9,
            momentum: [0.99, 1.0],
        }
    }
}

impl MethodSettings for DinoConfig {
    const NAME: &'static str = "dino";

    fn validate(&self) -> Result<(), MethodError> {
        check_widths("projection_dims", &self.head_dims)?;
        if self.head_dims.len() < 2 {
            return Err(MethodError::setting(
                "projection_dims",
                format!(
                    "for dino is hidden…, bottleneck, prototypes (at least 2 widths), got {:?}",
                    self.head_dims
                ),
            ));
        }
        check_positive("temperature", self.student_temperature)?;
        if self
            .teacher_temperature
            .iter()
            .any(|t| !(t.is_finite() && *t > 0.0))
        {
            return Err(MethodError::setting(
                "teacher_temperature",
                format!("must be positive, got {:?}", self.teacher_temperature),
            ));
        }
        if !(self.teacher_temperature_warmup_epochs >= 0.0) {
            return Err(MethodError::setting(
                "teacher_temperature_warmup_epochs",
                format!(
                    "must be ≥ 0, got {}",
                    self.teacher_temperature_warmup_epochs
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.center_momentum) {
            return Err(MethodError::setting(
                "center_momentum",
                format!("must be within [0, 1], got {}", self.center_momentum),
            ));
        }
        check_momentum("ema_momentum", self.momentum)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DinoParams {
    pub student_temperature: f64,
    pub teacher_temperature: [f64; 2],
    pub teacher_temperature_warmup_epochs: f64,
    pub center_momentum: f64,
    pub momentum: [f64; 2],
}

#[derive(Module, Debug)]
pub struct DinoHead {
    pub mlp: MlpHead,
    pub prototypes: Linear,
}

impl DinoHead {
    /// Prototype logits: cosine similarities between the L2-normalised bottleneck and each
    /// prototype, the prototypes being the columns of the last layer's weight normalised to unit
    /// length (DINO's weight-normalised last layer with its gain fixed at 1, lightly's
    /// `norm_last_layer=True`), so logits stay within [-1, 1] before the temperatures.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let w = self.prototypes.weight.val(); // [bottleneck, prototypes]
        let w = w.clone() / w.square().sum_dim(0).sqrt().clamp_min(1e-12);
        l2_normalize(self.mlp.forward(x)).matmul(w)
    }
}

#[derive(Module, Debug)]
pub struct Dino {
    pub backbone: Backbone,
    pub head: DinoHead,
    pub teacher_backbone: Backbone,
    pub teacher_head: DinoHead,
    /// `[1, prototypes]`: running mean of the teacher's outputs, subtracted before sharpening.
    pub center: Param<Tensor<2>>,
    #[module(skip)]
    pub params: DinoParams,
}

impl DinoConfig {
    fn init_head(&self, in_dim: usize, device: &Device) -> DinoHead {
        let n = self.head_dims.len();
        assert!(
            n >= 2,
            "DINO head needs at least a bottleneck and prototypes"
        );
        let mut mlp = vec![in_dim];
        mlp.extend(&self.head_dims[..n - 1]);
        DinoHead {
            mlp: MlpHeadConfig::new(mlp).init(device),
            prototypes: LinearConfig::new(self.head_dims[n - 2], self.head_dims[n - 1])
                .with_bias(false)
                .init(device),
        }
    }
}

impl ImageMethodConfig for DinoConfig {
    type Model = Dino;

    const VIEWS: ImageViewKind = ImageViewKind::MultiCrop;

    fn init(&self, ctx: &ImageContext, device: &Device) -> Dino {
        let backbone = ctx.backbone.init(device);
        let head = self.init_head(backbone.out_dim(), device);
        let prototypes = *self.head_dims.last().expect("head dims");
        Dino {
            teacher_backbone: teacher_copy(&backbone, ctx.backbone.init(device)),
            teacher_head: teacher_copy(&head, self.init_head(backbone.out_dim(), device)),
            backbone,
            head,
            center: Param::initialized(ParamId::new(), Tensor::zeros([1, prototypes], device)),
            params: DinoParams {
                student_temperature: self.student_temperature,
                teacher_temperature: self.teacher_temperature,
                teacher_temperature_warmup_epochs: self.teacher_temperature_warmup_epochs,
                center_momentum: self.center_momentum,
                momentum: self.momentum,
            },
        }
    }
}

/// Splits a `[V·N, D]` batch into V views of N.
fn split(x: Tensor<2>, n: usize) -> Vec<Tensor<2>> {
    let v = x.dims()[0] / n;
    (0..v).map(|i| x.clone().narrow(0, i * n, n)).collect()
}

impl SslMethod for Dino {
    type Input = crate::method::ImageViews;
    type Backbone = Backbone;
    /// The teacher's outputs for the global views, for the center.
    type Update = Vec<Tensor<2>>;

    fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    fn train_step(&self, views: Vec<Tensor<4>>, progress: &Progress) -> StepOutput<Vec<Tensor<2>>> {
        assert!(
            views.len() >= 2,
            "DINO takes 2 global views and any number of local crops, got {} views",
            views.len()
        );
        let n = views[0].dims()[0];
        let mut views = views.into_iter();
        let globals = Tensor::cat(vec![views.next().unwrap(), views.next().unwrap()], 0);
        let locals: Vec<Tensor<4>> = views.collect();

        let teacher = split(
            self.teacher_head
                .forward(self.teacher_backbone.forward(globals.clone()))
                .detach(),
            n,
        );
        let mut student = split(self.head.forward(self.backbone.forward(globals)), n);
        if !locals.is_empty() {
            // Local crops share a size, so they go through the student as one batch.
            let locals = Tensor::cat(locals, 0);
            student.extend(split(self.head.forward(self.backbone.forward(locals)), n));
        }
        let p = &self.params;
        let [warm, final_temp] = p.teacher_temperature;
        let t_temp = teacher_temperature(
            progress.epoch(),
            warm,
            final_temp,
            p.teacher_temperature_warmup_epochs,
        );
        let loss = dino_loss(
            &teacher,
            &student,
            self.center.val(),
            t_temp,
            p.student_temperature,
        );
        let (z_a, z_b) = (student[0].clone(), student[1].clone());
        StepOutput::two_views(loss, z_a, z_b, teacher)
    }

    fn update(mut self, teacher: Vec<Tensor<2>>, progress: &Progress) -> Self {
        let [start, end] = self.params.momentum;
        let m = cosine_momentum(progress.step + 1, progress.total_steps, start, end);
        self.teacher_backbone = ema_update(self.teacher_backbone, &self.backbone, m);
        self.teacher_head = ema_update(self.teacher_head, &self.head, m);
        let cm = self.params.center_momentum;
        // The center is the mean of the teacher's outputs over the global batch.
        let teacher: Vec<Tensor<2>> = teacher
            .into_iter()
            .map(crate::method::global_batch)
            .collect();
        let (id, center, mapper) = self.center.consume();
        self.center =
            Param::from_mapped_value(id, dino_center_update(center, &teacher, cm), mapper);
        self
    }
}
