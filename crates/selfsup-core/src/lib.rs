//! selfsup's library core: a run's typed configuration, the one pretraining loop with its
//! checkpoints and exact resume, the modality plug-in traits, and what a pretrained encoder is
//! evaluated with — kNN, linear probes, few-label fine-tuning, `prove`, embeddings, reports.
//!
//! A modality (images, audio, text) implements [`Modality`] in its own crate; [`plugin`]
//! turns any of them into an [`AnyModality`] that a program picks at run time.

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod downstream;
pub mod embeddings;
mod error;
pub mod finetune;
pub mod fs;
pub mod modality;
pub mod plugin;
pub mod pretrain;
pub mod prove;
pub mod recipe;
pub mod report;
pub mod runlog;

pub use config::{RawConfig, RunConfig, Schema};
pub use downstream::{Eval, Loaded};
pub use error::{Context, Error, Result};
pub use modality::{DownstreamTask, Init, Modality, Picture, TaskOptions, TaskSource};
pub use plugin::{AnyModality, Plugin, pretrain};
pub use pretrain::{PretrainSummary, Run, RunOptions, TrainData};
pub use recipe::{Recipe, RecipeDefaults};
