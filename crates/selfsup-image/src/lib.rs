//! Images for selfsup: the [`Image`] modality. Image-folder trees, CIFAR-10 batches and IDX
//! files as training data with two-view or multi-crop augmentation, ResNet and ViT encoders,
//! every image method of `selfsup-methods`, the few-label task, the report's pictures (MAE and
//! colorization) and the torchvision export.

pub mod data;
pub mod export;
pub mod pictures;
pub mod settings;
pub mod task;
mod train;

use selfsup_core::finetune::RecipeDefaults;
use selfsup_core::{Modality, PretrainSummary, Result, Run, RunConfig, TaskSource};
use selfsup_data::EncoderInput;
use selfsup_methods::ImageMethod;
use selfsup_methods::method::{ImageContext, ImageMethodConfig, ImageMethodVisitor, ImageViewKind};
use selfsup_models::BackboneConfig;

pub use settings::ImageSettings;
pub use task::ImageTask;

/// Images: `[augment]` and `[model]`, the methods of [`ImageMethod`].
pub struct Image;

/// A run config of an image method.
pub type ImageConfig = RunConfig<Image>;

impl Modality for Image {
    const NAME: &'static str = "image";
    type Settings = ImageSettings;
    type Method = ImageMethod;
    type Task = ImageTask;
    const RECIPE: RecipeDefaults = RecipeDefaults::IMAGE;

    fn validate(config: &ImageConfig) -> Result<()> {
        config.modality.validate(&config.data)?;
        let traits = method_traits(&config.method);
        let a = &config.modality.augment;
        if a.local_crops > 0 && traits.views != ImageViewKind::MultiCrop {
            selfsup_core::bail!(
                "config `augment.local_crops` = {}: only dino uses local crops (multi-crop); set it to 0 for {}",
                a.local_crops,
                config.method_name()
            );
        }
        let backbone = backbone_config(config)?;
        config
            .method
            .visit(Check(&context(config, &backbone, None)))?;
        Ok(())
    }

    fn pretrain(run: Run<Self>) -> Result<PretrainSummary> {
        train::pretrain(run)
    }

    fn open_task(source: &TaskSource<Self>) -> Result<ImageTask> {
        ImageTask::open(source)
    }

    fn report_pictures(
        source: &TaskSource<Self>,
        task: &ImageTask,
        out_dir: &std::path::Path,
    ) -> Result<Vec<selfsup_core::Picture>> {
        pictures::write(source, task, out_dir)
    }

    fn export(
        source: &TaskSource<Self>,
        format: &str,
        out: &std::path::Path,
    ) -> Result<serde_json::Value> {
        export::export(source, format, out)
    }
}

/// The encoder's architecture of `config` (`[model]` at `data.input_size`).
pub fn backbone_config(config: &ImageConfig) -> Result<BackboneConfig> {
    config
        .modality
        .model
        .backbone_config(config.data.input_size)
}

/// What the run's method is built from besides its settings; `images`: the training images
/// (the first N) it may take statistics from.
pub fn context<'a>(
    config: &ImageConfig,
    backbone: &'a BackboneConfig,
    images: Option<(&'a selfsup_data::ImageDataset, usize)>,
) -> ImageContext<'a> {
    ImageContext {
        backbone,
        batch_size: config.train.batch_size,
        mean: config.data.mean,
        std: config.data.std,
        images,
    }
}

/// What an image method takes of each image.
#[derive(Debug, Clone, Copy)]
pub struct MethodTraits {
    pub views: ImageViewKind,
    pub input: EncoderInput,
}

struct Traits;

impl ImageMethodVisitor for Traits {
    type Output = MethodTraits;
    fn visit<C: ImageMethodConfig>(self, _: &C) -> MethodTraits {
        MethodTraits {
            views: C::VIEWS,
            input: C::ENCODER_INPUT,
        }
    }
}

/// The views and encoder input of `method`.
pub fn method_traits(method: &ImageMethod) -> MethodTraits {
    method.visit(Traits)
}

struct Check<'a>(&'a ImageContext<'a>);

impl ImageMethodVisitor for Check<'_> {
    type Output = Result<()>;
    fn visit<C: ImageMethodConfig>(self, c: &C) -> Result<()> {
        Ok(c.check(self.0)?)
    }
}
