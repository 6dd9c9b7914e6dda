//! The language model as an [`SslMethod`], so selfsup's one training loop runs MLM and causal
//! LM pretraining. The batch arrives masked (or shifted) by the data side, which knows the
//! corpus index and epoch of every sequence (masks are dynamic: new each epoch).

use selfsup_methods::method::{Progress, SslMethod, StepOutput};

use crate::encoder::{Pooling, TextEncoder, pool};
use crate::models::{LmBatch, LmModel};

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
