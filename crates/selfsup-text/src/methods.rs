//! The language model as an [`SslMethod`], so selfsup's one training loop runs MLM and causal
//! LM pretraining. The batch arrives masked (or shifted) by the data side, which knows the
//! corpus index and epoch of every sequence (masks are dynamic: new each epoch).

use selfsup_methods::MethodError;
use selfsup_methods::method::{Progress, SslMethod, StepOutput};
use selfsup_methods::method_set;
use selfsup_methods::registry::MethodSettings;
use serde::{Deserialize, Serialize};

use crate::electra::{ElectraModel, ElectraObjective};
use crate::encoder::{Pooling, TextEncoder, pool};
use crate::masking::MlmMaskConfig;
use crate::models::{LmBatch, LmModel, Objective};

/// A language-modelling method's settings: what it predicts.
pub trait TextMethodConfig: MethodSettings {
    fn objective(&self) -> Objective;
}

/// Receives the chosen text method's settings ([`TextMethod::visit`]).
pub trait TextMethodVisitor {
    type Output;
    fn visit<C: TextMethodConfig>(self, config: &C) -> Self::Output;
}

method_set! {
    /// The text methods: masked (BERT) and causal (GPT) language modelling, replaced-token
    /// detection (ELECTRA).
    pub enum TextMethod: TextMethodVisitor {
        Mlm(MlmConfig),
        CausalLm(CausalLmConfig),
        Electra(ElectraConfig),
    }
}

struct ObjectiveOf;

impl TextMethodVisitor for ObjectiveOf {
    type Output = Objective;
    fn visit<C: TextMethodConfig>(self, c: &C) -> Objective {
        c.objective()
    }
}

impl TextMethod {
    /// What the method predicts.
    pub fn objective(&self) -> Objective {
        self.visit(ObjectiveOf)
    }
}

/// The masking keys (shared by mlm and electra), named together in an error.
fn validate_mask(mask: &MlmMaskConfig) -> Result<(), MethodError> {
    mask.validate().map_err(|e| {
        MethodError::setting(
            "mask_probability` / `method.mask_fraction` / `method.random_fraction",
            format!(": {e}"),
        )
    })
}

/// Masked language modelling's `[method]` settings: BERT's dynamic masking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlmConfig {
    /// Share of (non-special) tokens selected…
    pub mask_probability: f64,
    /// …of which this share becomes [MASK]…
    pub mask_fraction: f64,
    /// …and this share a random token (the rest stay unchanged).
    pub random_fraction: f64,
}

impl Default for MlmConfig {
    /// BERT's recipe: 15 % of tokens; 80 % [MASK], 10 % random, 10 % unchanged.
    fn default() -> Self {
        let m = MlmMaskConfig::default();
        Self {
            mask_probability: m.probability,
            mask_fraction: m.mask_fraction,
            random_fraction: m.random_fraction,
        }
    }
}

impl MlmConfig {
    pub fn mask(&self) -> MlmMaskConfig {
        MlmMaskConfig {
            probability: self.mask_probability,
            mask_fraction: self.mask_fraction,
            random_fraction: self.random_fraction,
        }
    }
}

impl MethodSettings for MlmConfig {
    const NAME: &'static str = "mlm";

    fn validate(&self) -> Result<(), MethodError> {
        validate_mask(&self.mask())
    }
}

impl TextMethodConfig for MlmConfig {
    fn objective(&self) -> Objective {
        Objective::Masked(self.mask())
    }
}

/// Causal (next-token) language modelling's `[method]` settings: none besides the name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CausalLmConfig {}

impl MethodSettings for CausalLmConfig {
    const NAME: &'static str = "causal_lm";
}

impl TextMethodConfig for CausalLmConfig {
    fn objective(&self) -> Objective {
        Objective::NextToken
    }
}

/// ELECTRA's `[method]` settings: the generator's masking (ELECTRA: 15 %, 85 % of them
/// [MASK], the rest kept), its size, and the detection loss's weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElectraConfig {
    pub mask_probability: f64,
    pub mask_fraction: f64,
    pub random_fraction: f64,
    /// Generator width and feed-forward size as a share of the encoder's (depth kept).
    pub generator_width: f64,
    /// `loss = generator MLM + discriminator_weight × replaced-token detection`.
    pub discriminator_weight: f64,
}

impl Default for ElectraConfig {
    /// ELECTRA-Small's recipe: 15 % masked (85 % [MASK], 15 % kept), a generator a quarter
    /// the width, detection weighted 50.
    fn default() -> Self {
        Self {
            mask_probability: 0.15,
            mask_fraction: 0.85,
            random_fraction: 0.0,
            generator_width: 0.25,
            discriminator_weight: 50.0,
        }
    }
}

impl ElectraConfig {
    pub fn objective(&self) -> ElectraObjective {
        ElectraObjective {
            mask: MlmMaskConfig {
                probability: self.mask_probability,
                mask_fraction: self.mask_fraction,
                random_fraction: self.random_fraction,
            },
            generator_width: self.generator_width,
            discriminator_weight: self.discriminator_weight,
        }
    }
}

impl MethodSettings for ElectraConfig {
    const NAME: &'static str = "electra";

    fn validate(&self) -> Result<(), MethodError> {
        validate_mask(&self.objective().mask)?;
        if !(self.generator_width > 0.0 && self.generator_width <= 1.0) {
            return Err(MethodError::setting(
                "generator_width",
                format!(
                    "must be in (0, 1] (a share of the encoder's width), got {}",
                    self.generator_width
                ),
            ));
        }
        if !(self.discriminator_weight.is_finite() && self.discriminator_weight > 0.0) {
            return Err(MethodError::setting(
                "discriminator_weight",
                format!("must be > 0, got {}", self.discriminator_weight),
            ));
        }
        Ok(())
    }
}

impl TextMethodConfig for ElectraConfig {
    fn objective(&self) -> Objective {
        Objective::ReplacedToken(self.objective())
    }
}

impl SslMethod for LmModel {
    type Input = LmBatch;
    type Update = ();
    type Backbone = TextEncoder;
    const PAIRED_VIEWS: bool = false;

    fn backbone(&self) -> &TextEncoder {
        &self.backbone
    }

    /// The diagnostics' embedding is the mean of the encoder outputs over each sequence's
    /// tokens.
    fn train_step(&self, batch: LmBatch, _: &Progress) -> StepOutput<()> {
        let (hidden, loss) = self.forward(&batch);
        let z = pool(hidden, &batch.input, Pooling::Mean);
        StepOutput::one_view(loss.loss, z, ())
    }
}

impl SslMethod for ElectraModel {
    type Input = LmBatch;
    type Update = ();
    type Backbone = TextEncoder;
    const PAIRED_VIEWS: bool = false;

    /// The discriminator: the encoder fine-tuning loads.
    fn backbone(&self) -> &TextEncoder {
        &self.backbone
    }

    /// The diagnostics' embedding is the mean of the discriminator's outputs on the corrupted
    /// text.
    fn train_step(&self, batch: LmBatch, _: &Progress) -> StepOutput<()> {
        let (hidden, loss) = self.forward(&batch);
        let z = pool(hidden, &batch.input, Pooling::Mean);
        StepOutput::one_view(loss.loss, z, ())
    }
}
