//! Audio for selfsup: WAV decoding and resampling, clip datasets (folder tree, CSV manifest,
//! FSDD), log-mel features matching librosa, SpecAugment, span masks, a conv + Transformer
//! encoder, and the speech pretext losses (masked-frame reconstruction, CPC InfoNCE).

pub mod dataset;
pub mod encoder;
pub mod error;
pub mod features;
pub mod finetune;
pub mod loss;
pub mod masking;
pub mod methods;
pub mod models;
pub mod wav;

pub use dataset::{AudioDataset, ClipInfo, Split};
pub use encoder::{AudioEncoder, AudioEncoderConfig, EncoderOutput, FrameBatch, mean_pool};
pub use error::{AudioError, Result};
pub use features::{FeatureStats, LogMel, LogMelConfig, MelScale, SpecAugmentConfig, Spectrogram};
pub use finetune::{FinetuneConfig, FinetuneResult, embed_all, finetune};
pub use loss::{Reconstruction, cpc_info_nce_loss, masked_frame_loss};
pub use masking::SpanMaskConfig;
pub use models::{
    AudioClassifier, AudioViewConfig, ContrastiveAudioModel, CpcModel, MaskedClips,
    MaskedFrameModel,
};
pub use wav::{Clip, load_mono, read_wav, resample};
