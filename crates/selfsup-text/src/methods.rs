//! The language model as an [`SslMethod`], so selfsup's one training loop runs MLM and causal
//! LM pretraining. The batch arrives masked (or shifted) by the data side, which knows the
//! corpus index and epoch of every sequence (masks are dynamic: new each epoch).

use selfsup_methods::MethodError;
use selfsup_methods::method::{Progress, SslMethod, StepOutput};
use selfsup_methods::method_set;
use selfsup_methods::registry::MethodSettings;
use serde::{Deserialize, Serialize};

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
    /// The text methods: masked (BERT) and causal (GPT) language modelling.
    pub enum TextMethod: TextMethodVisitor {
        Mlm(MlmConfig),
        CausalLm(CausalLmConfig),
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
        self.mask().validate().map_err(|e| {
            MethodError::setting(
                "mask_probability` / `method.mask_fraction` / `method.random_fraction",
                format!(": {e}"),
            )
        })
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
