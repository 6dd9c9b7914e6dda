//! The audio pretext models as [`SslMethod`]s, so selfsup's one training loop runs them. A
//! batch is a list of (cropped, normalised) spectrograms; the models collate it themselves.

use selfsup_methods::method::{Progress, SslMethod, StepOutput};

use crate::encoder::{AudioEncoder, FrameBatch};
use crate::features::Spectrogram;
use crate::models::{ContrastiveAudioModel, CpcModel, MaskedFrameModel};

impl SslMethod for MaskedFrameModel {
    type Input = Vec<Spectrogram>;
    type Update = ();
    type Backbone = AudioEncoder;
    const PAIRED_VIEWS: bool = false;

    fn backbone(&self) -> &AudioEncoder {
        &self.backbone
    }

    /// Masks are drawn from the run's seed and the global step.
    fn train_step(&self, clips: Vec<Spectrogram>, progress: &Progress) -> StepOutput<()> {
        let device = self.head.weight.device();
        let (loss, z) =
            self.loss_and_embedding(&clips, (progress.seed, progress.step as u64), &device);
        StepOutput::one_view(loss, z, ())
    }
}

impl SslMethod for CpcModel {
    type Input = Vec<Spectrogram>;
    type Update = ();
    type Backbone = AudioEncoder;
    const PAIRED_VIEWS: bool = false;

    fn backbone(&self) -> &AudioEncoder {
        &self.backbone
    }

    fn train_step(&self, clips: Vec<Spectrogram>, _: &Progress) -> StepOutput<()> {
        let device = self.predictors[0].weight.device();
        let (loss, z) = self.loss_and_embedding(&FrameBatch::collate(&clips, &device));
        StepOutput::one_view(loss, z, ())
    }
}

impl SslMethod for ContrastiveAudioModel {
    type Input = Vec<Spectrogram>;
    type Update = ();
    type Backbone = AudioEncoder;
    const PAIRED_VIEWS: bool = true;

    fn backbone(&self) -> &AudioEncoder {
        &self.backbone
    }

    /// Views are drawn from the run's seed and the global step.
    fn train_step(&self, clips: Vec<Spectrogram>, progress: &Progress) -> StepOutput<()> {
        let device = self.projection.layers[0].linear.weight.device();
        let (loss, z_a, z_b) =
            self.loss_and_embeddings(&clips, (progress.seed, progress.step as u64), &device);
        StepOutput {
            loss,
            z_a: z_a.detach(),
            z_b: z_b.detach(),
            update: (),
        }
    }
}
