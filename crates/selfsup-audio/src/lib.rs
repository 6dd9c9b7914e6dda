//! Audio for selfsup: WAV decoding and resampling, clip datasets (folder tree, CSV manifest,
//! FSDD), log-mel features matching librosa, SpecAugment, span masks, a conv + Transformer
//! encoder, and the speech pretext losses (masked-frame reconstruction, CPC InfoNCE).

pub mod dataset;
pub mod encoder;
pub mod error;
pub mod features;
pub mod loss;
pub mod masking;
pub mod methods;
pub mod modality;
pub mod models;
mod spectrogram_png;
pub mod wav;

pub use dataset::{AudioDataset, ClipInfo, Split};
pub use encoder::{AudioEncoder, AudioEncoderConfig, EncoderOutput, FrameBatch, mean_pool};
pub use error::{AudioError, Result};
pub use features::{
    FeatureStats, LogMel, LogMelConfig, MelScale, SpecAugmentConfig, Spectrogram, random_crop,
};
pub use loss::{Reconstruction, cpc_info_nce_loss, masked_frame_loss};
pub use masking::SpanMaskConfig;
pub use methods::{AudioMethod, AudioMethodConfig};
pub use modality::{Audio, AudioSettings, AudioTask};
pub use models::{AudioViewConfig, ContrastiveAudioModel, CpcModel, MaskedClips, MaskedFrameModel};
pub use wav::{Clip, load_mono, read_wav, resample};
