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

use selfsup_core::recipe::RecipeDefaults;
use selfsup_core::{Modality, PretrainSummary, Result, Run, RunConfig, Schema, TaskSource};
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

impl Schema for Image {
    const NAME: &'static str = "image";
    type Settings = ImageSettings;
    type Method = ImageMethod;

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
}

impl Modality for Image {
    type Task = ImageTask;
    const RECIPE: RecipeDefaults = RecipeDefaults::IMAGE;

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

#[cfg(test)]
mod tests {
    use selfsup_core::RawConfig;

    use super::*;

    fn load_str(text: &str, overrides: &[&str]) -> Result<ImageConfig> {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        ImageConfig::from_raw(&RawConfig::parse(text, "test.toml")?.with_overrides(&o)?)
    }

    #[test]
    fn overrides_apply_with_and_without_quotes() {
        let c = load_str(
            "[train]\nepochs = 3\n",
            &[
                "train.batch_size=64",
                "model.stem=imagenet",
                "method.projection_dims=[64, 32]",
            ],
        )
        .unwrap();
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.train.batch_size, 64);
        assert_eq!(c.modality.model.stem, settings::StemName::Imagenet);
        let ImageMethod::SimClr(m) = &c.method else {
            panic!("simclr by default")
        };
        assert_eq!(m.projection_dims, vec![64, 32]);
        // What a checkpoint stores reads back to the same config.
        assert_eq!(ImageConfig::from_stored(&c.to_toml(), "stored").unwrap(), c);
    }

    #[test]
    fn unknown_key_names_closest() {
        let err = load_str("[train]\nbatchsize = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`train.batchsize`") && err.contains("`train.batch_size`"),
            "{err}"
        );
        let err = load_str("", &["optim.weight_decy=0.1"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`optim.weight_decay`") && err.contains("--set"),
            "{err}"
        );
    }

    #[test]
    fn nonsense_values_are_refused_naming_the_key() {
        for (set, key) in [
            ("train.batch_size=-3", "train.batch_size"),
            ("method.temperature=0", "method.temperature"),
            ("model.backbone=vgg", "model.backbone"),
            ("augment.grayscale_prob=1.5", "augment.grayscale_prob"),
            ("optim.name=rmsprop", "optim.name"),
            ("optim.lars_clip_lr=true", "optim.lars_clip_lr"),
            ("train.device=tpu", "train.device"),
            ("augment.crop_scale=[0.2, 1.5]", "augment.crop_scale"),
            (
                "augment.color_jitter=[nan, 0.4, 0.4, 0.1]",
                "augment.color_jitter",
            ),
            ("data.mean=[nan, 0.5, 0.5]", "data.mean[0]"),
            ("data.input_size=100000", "data.input_size"),
            ("data.workers=100000", "data.workers"),
            (
                "method.projection_dims=[4000000000]",
                "method.projection_dims",
            ),
            ("optim.betas=[0.9, 1.0]", "optim.betas[1]"),
            ("optim.lr=inf", "optim.lr"),
            ("train.deterministic=3", "train.deterministic"),
            ("method.loss=\"infonce\"", "method.loss"),
            ("method.triplet_mining=\"semi\"", "method.triplet_mining"),
        ] {
            let err = load_str("", &[set]).unwrap_err().to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
        // A bad choice lists the valid values.
        let err = load_str("", &["optim.name=rmsprop"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sgd") && err.contains("lars") && err.contains("adamw"),
            "{err}"
        );
    }

    #[test]
    fn method_settings_are_checked_against_the_method() {
        for (sets, key) in [
            (vec!["method.name=swav"], "method.name"),
            (vec!["augment.local_crops=2"], "augment.local_crops"),
            (
                vec![
                    "method.name=dino",
                    "augment.local_crops=2",
                    "augment.local_crop_size=64",
                ],
                "augment.local_crop_size",
            ),
            (
                vec!["method.name=byol", "method.prediction_dims=[64, 32]"],
                "method.prediction_dims",
            ),
            (
                vec!["method.name=moco", "method.queue_size=100"],
                "method.queue_size",
            ),
            (
                vec!["method.name=moco", "method.ema_momentum=[0.9, 1.5]"],
                "method.ema_momentum",
            ),
            (
                vec!["method.name=vicreg", "method.vicreg_weights=[25, -1, 1]"],
                "method.vicreg_weights",
            ),
            (
                vec!["method.name=dino", "method.teacher_temperature=[0, 0.07]"],
                "method.teacher_temperature",
            ),
            (vec!["method.name=mae"], "model.backbone"),
            (
                vec!["method.name=colorization", "model.backbone=vit"],
                "model.backbone",
            ),
            (
                vec![
                    "method.name=colorization",
                    "method.colorization_target=bins",
                ],
                "method.colorization_target",
            ),
            (
                vec![
                    "method.name=colorization",
                    "method.colorization_rebalance=0",
                ],
                "method.colorization_rebalance",
            ),
            (
                vec![
                    "method.name=mae",
                    "model.backbone=vit",
                    "method.mask_ratio=1.0",
                ],
                "method.mask_ratio",
            ),
            (
                vec![
                    "method.name=mae",
                    "model.backbone=vit",
                    "method.decoder_heads=3",
                ],
                "method.decoder_dim",
            ),
            (
                vec!["model.backbone=vit", "model.vit_patch_size=5"],
                "model.vit_patch_size",
            ),
            (
                vec!["model.backbone=vit", "model.vit_heads=5"],
                "model.vit_dim",
            ),
            (
                vec!["model.backbone=vit", "model.vit_pooling=max"],
                "model.vit_pooling",
            ),
            (
                vec!["model.backbone=vit", "model.vit_positions=rope"],
                "model.vit_positions",
            ),
        ] {
            let err = load_str("", &sets).unwrap_err().to_string();
            assert!(err.contains(key), "{sets:?}: {err}");
        }
        let c = load_str("", &["method.name=dino", "augment.local_crops=4"]).unwrap();
        assert_eq!(c.modality.augment.local_crops, 4);
    }

    /// `temperature` is a setting of several methods, `queue_size` of MoCo alone: a key of
    /// another method is refused naming the methods it belongs to.
    #[test]
    fn a_key_of_another_method_names_its_method() {
        let err = load_str("[method]\nname = \"byol\"\nqueue_size = 64\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`method.queue_size` is a setting of moco, not of byol"),
            "{err}"
        );
        let err = load_str("", &["method.name=rotation", "method.temperature=0.2"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a setting of simclr, moco, dino, not of rotation")
                && err.contains("--set"),
            "{err}"
        );
        // A stored config of the previous layout (every method's keys under [method]) loads.
        let stored =
            "[method]\nname = \"byol\"\nqueue_size = 64\ntemperature = 0.3\n[audio]\nn_mels = 40\n";
        let c = ImageConfig::from_stored(stored, "old checkpoint").unwrap();
        assert_eq!(c.method_name(), "byol");
    }
}
