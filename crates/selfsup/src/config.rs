//! Run configuration: a TOML file, `--set key=value` overrides, validation before any work.
//!
//! Unknown keys are refused with the closest valid key, so a typo never silently falls back
//! to a default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The values `method.name` accepts (the audio methods are configured in `audio_config`, the
/// text methods in `text_config`).
pub const METHODS: [&str; 15] = [
    "simclr",
    "moco",
    "byol",
    "simsiam",
    "barlowtwins",
    "vicreg",
    "dino",
    "rotation",
    "mae",
    "colorization",
    "masked_frames",
    "cpc",
    "audio_simclr",
    "mlm",
    "causal_lm",
];

/// Methods that predict something about one view (no pair of views to compare): their data
/// pipeline is one random-resized crop + flip per image, without colour augmentation.
pub const ONE_VIEW_METHODS: [&str; 3] = ["rotation", "mae", "colorization"];

pub use crate::audio_config::{AudioConfig, AudioEncoderSettings, is_audio_method};
pub use crate::text_config::{TextConfig, TextEncoderSettings, is_text_method};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    pub augment: AugmentConfig,
    pub model: ModelConfig,
    pub method: MethodConfig,
    pub optim: OptimConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub audio: AudioConfig,
    pub audio_encoder: AudioEncoderSettings,
    pub text: TextConfig,
    pub text_encoder: TextEncoderSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Image-folder tree, CIFAR-10 binary batches or IDX files; relative paths are resolved
    /// against the current directory.
    pub path: String,
    /// Side of the square crops fed to the model.
    pub input_size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Loader threads building augmented batches while the model trains.
    pub workers: usize,
    /// Skip (and count) unreadable images instead of stopping at the first.
    pub skip_corrupt: bool,
    /// Where decoded images are cached; empty = `<out>/../.cache` beside the run directories.
    pub cache_dir: String,
    /// Use only the first N training images (0 = all): quick experiments and tests.
    pub limit: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    pub crop_scale: [f64; 2],
    pub hflip_prob: f64,
    /// Brightness, contrast, saturation, hue.
    pub color_jitter: [f64; 4],
    pub color_jitter_prob: f64,
    pub grayscale_prob: f64,
    pub blur_prob: f64,
    pub solarize_prob: f64,
    /// Multi-crop (DINO): this many small crops per image besides the two global views…
    pub local_crops: usize,
    /// …of this side (pixels)…
    pub local_crop_size: usize,
    /// …covering this fraction of the image (the global views use `crop_scale`).
    pub local_crop_scale: [f64; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// resnet18, resnet34, resnet50 or vit.
    pub backbone: String,
    /// ResNet: channels of the first stage (torchvision: 64).
    pub width: usize,
    /// ResNet: `cifar` (3×3 conv, no max-pool) or `imagenet`.
    pub stem: String,
    /// ViT (the image side is `data.input_size`): side of the square patches.
    pub vit_patch_size: usize,
    /// ViT token width (ViT-Tiny: 192).
    pub vit_dim: usize,
    /// ViT Transformer blocks (ViT-Tiny: 12).
    pub vit_depth: usize,
    /// ViT attention heads (ViT-Tiny: 3); must divide `vit_dim`.
    pub vit_heads: usize,
    /// ViT MLP hidden width as a multiple of `vit_dim`.
    pub vit_mlp_ratio: f64,
    /// ViT feature: `cls` ([CLS] token) or `mean` (mean of the patch tokens).
    pub vit_pooling: String,
    /// ViT positions: `sincos` (fixed 2-D table) or `learned`.
    pub vit_positions: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MethodConfig {
    /// simclr, moco, byol, simsiam, barlowtwins, vicreg or dino.
    pub name: String,
    /// SimCLR's objective: `nt_xent` or `triplet`.
    pub loss: String,
    /// NT-Xent (SimCLR) / InfoNCE (MoCo) temperature; DINO's student temperature.
    pub temperature: f64,
    /// Projection head widths after the backbone: hidden…, output. DINO: hidden…, bottleneck,
    /// prototypes.
    pub projection_dims: Vec<usize>,
    pub triplet_margin: f64,
    /// `hardest` or `random` negative.
    pub triplet_mining: String,
    /// BYOL / SimSiam prediction head widths after the projection: hidden…, output (= the
    /// projection's output width).
    pub prediction_dims: Vec<usize>,
    /// Momentum (EMA) teacher of MoCo, BYOL and DINO: start and end of a cosine schedule over
    /// the run (equal values keep it fixed, as MoCo does).
    pub ema_momentum: [f64; 2],
    /// MoCo: keys in the queue of negatives.
    pub queue_size: usize,
    /// Barlow Twins: weight of the off-diagonal term.
    pub barlow_lambda: f64,
    /// VICReg: weights of the invariance, variance and covariance terms.
    pub vicreg_weights: [f64; 3],
    /// DINO: teacher temperature at the start of the warm-up and after it.
    pub teacher_temperature: [f64; 2],
    /// DINO: epochs of the linear teacher-temperature warm-up.
    pub teacher_temperature_warmup_epochs: f64,
    /// DINO: momentum of the center (running mean of the teacher's outputs).
    pub center_momentum: f64,
    /// MAE: fraction of each image's patches hidden from the encoder.
    pub mask_ratio: f64,
    /// MAE: reconstruct per-patch normalised pixels instead of raw ones.
    pub norm_pix_loss: bool,
    /// MAE: decoder token width, blocks and heads.
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
    /// Colorization: `regression` (MSE on a*b* at every pixel) or `classification` (Zhang et
    /// al.'s cross-entropy over quantised a*b* bins with soft, rebalanced targets).
    pub colorization_target: String,
    /// Colorization classification: λ of the class rebalancing, mixing the colour prior with a
    /// uniform distribution (1 = no rebalancing; Zhang et al. use 0.5).
    pub colorization_rebalance: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// `sgd`, `lars` or `adamw`.
    pub name: String,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub final_lr: f64,
    /// No weight decay (and no LARS adaptation) on BatchNorm and bias parameters.
    pub exclude_bias_and_norm: bool,
    /// LARS only: solo-learn's `clip_lr`, each layer's rate is `min(trust ratio, lr)` instead of
    /// `lr · trust ratio`.
    pub lars_clip_lr: bool,
    pub betas: [f64; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Write a checkpoint every N epochs (the last epoch always gets one).
    pub checkpoint_every: usize,
    /// kNN accuracy on the test split every N epochs; 0 = off (it costs a pass over both splits).
    pub knn_every: usize,
    /// `cpu` (burn flex), `vulkan` (build with `--features gpu`), `libtorch` (`--features tch`).
    pub device: String,
    /// Bitwise-reproducible training on the CPU: compute runs on one thread, so no float sum
    /// depends on how work was split between threads (see docs/reliability.md for the cost).
    pub deterministic: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    pub knn_k: usize,
    pub knn_temperature: f64,
    pub batch_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: DataConfig::default(),
            augment: AugmentConfig::default(),
            model: ModelConfig::default(),
            method: MethodConfig::default(),
            optim: OptimConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
            audio: AudioConfig::default(),
            audio_encoder: AudioEncoderSettings::default(),
            text: TextConfig::default(),
            text_encoder: TextEncoderSettings::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            input_size: 32,
            mean: [0.4914, 0.4822, 0.4465],
            std: [0.2470, 0.2435, 0.2616],
            workers: 2,
            skip_corrupt: false,
            cache_dir: String::new(),
            limit: 0,
        }
    }
}

impl Default for AugmentConfig {
    /// SimCLR's recipe (Chen et al. 2020), as LightlySSL's `SimCLRTransform`.
    fn default() -> Self {
        Self {
            crop_scale: [0.08, 1.0],
            hflip_prob: 0.5,
            color_jitter: [0.8, 0.8, 0.8, 0.2],
            color_jitter_prob: 0.8,
            grayscale_prob: 0.2,
            blur_prob: 0.0,
            solarize_prob: 0.0,
            local_crops: 0,
            local_crop_size: 16,
            local_crop_scale: [0.05, 0.4],
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: "resnet18".into(),
            width: 64,
            stem: "cifar".into(),
            vit_patch_size: 4,
            vit_dim: 192,
            vit_depth: 12,
            vit_heads: 3,
            vit_mlp_ratio: 4.0,
            vit_pooling: "cls".into(),
            vit_positions: "sincos".into(),
        }
    }
}

impl Default for MethodConfig {
    fn default() -> Self {
        Self {
            name: "simclr".into(),
            loss: "nt_xent".into(),
            temperature: 0.5,
            projection_dims: vec![512, 128],
            triplet_margin: 0.2,
            triplet_mining: "hardest".into(),
            prediction_dims: vec![512, 128],
            ema_momentum: [0.99, 1.0],
            queue_size: 4096,
            barlow_lambda: 5e-3,
            vicreg_weights: [25.0, 25.0, 1.0],
            teacher_temperature: [0.04, 0.07],
            teacher_temperature_warmup_epochs: 1.0,
            center_momentum: 0.9,
            mask_ratio: 0.75,
            norm_pix_loss: true,
            decoder_dim: 128,
            decoder_depth: 2,
            decoder_heads: 4,
            colorization_target: "regression".into(),
            colorization_rebalance: 0.5,
        }
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            name: "sgd".into(),
            lr: 0.06,
            momentum: 0.9,
            weight_decay: 5e-4,
            warmup_epochs: 0.0,
            final_lr: 0.0,
            exclude_bias_and_norm: true,
            lars_clip_lr: false,
            betas: [0.9, 0.999],
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch_size: 256,
            seed: 0,
            checkpoint_every: 1,
            knn_every: 0,
            device: "cpu".into(),
            deterministic: false,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            knn_k: 200,
            knn_temperature: 0.1,
            batch_size: 512,
        }
    }
}

/// Every dotted key a config may hold, from the defaults' structure.
fn known_keys() -> Vec<String> {
    let v = toml::Value::try_from(Config::default()).expect("default config serialises");
    let mut keys = Vec::new();
    collect_keys(&v, "", &mut keys);
    keys
}

fn collect_keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = v {
        for (k, child) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if child.is_table() {
                collect_keys(child, &key, out);
            } else {
                out.push(key);
            }
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn closest<'a>(key: &str, candidates: &'a [String]) -> &'a str {
    candidates
        .iter()
        .min_by_key(|c| edit_distance(key, c))
        .map(String::as_str)
        .unwrap_or("")
}

/// Refuse keys the config does not know, naming the closest valid one.
fn check_unknown_keys(v: &toml::Value, source: &str) -> Result<()> {
    let known = known_keys();
    let mut present = Vec::new();
    collect_keys(v, "", &mut present);
    // A table the config does not know shows up as its leaves; report the first.
    for key in present {
        if !known.contains(&key) {
            bail!(
                "unknown config key `{key}` in {source}; did you mean `{}`?",
                closest(&key, &known)
            );
        }
    }
    Ok(())
}

/// Parse a `--set` value as a TOML literal (number, bool, array, quoted string), else take it
/// as a bare string, so `--set model.stem=imagenet` works without quotes.
fn parse_override_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn apply_override(root: &mut toml::Value, assignment: &str) -> Result<()> {
    let (key, raw) = assignment.split_once('=').with_context(|| {
        format!("--set `{assignment}`: expected key=value, e.g. --set train.epochs=10")
    })?;
    let key = key.trim();
    let known = known_keys();
    if !known.iter().any(|k| k == key) {
        bail!(
            "--set: unknown config key `{key}`; did you mean `{}`?",
            closest(key, &known)
        );
    }
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        let table = node.as_table_mut().expect("config root is a table");
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node
        .as_table_mut()
        .with_context(|| format!("--set `{key}`: parent is not a table"))?;
    table.insert(
        parts[parts.len() - 1].to_string(),
        parse_override_value(raw.trim()),
    );
    Ok(())
}

fn leaf<'a>(root: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(root, |node, part| node.get(part))
}

/// Serde reports a wrong type without its key; find the key by trying each value alone
/// on top of the defaults.
fn name_bad_value(value: &toml::Value, err: &toml::de::Error) -> String {
    let mut keys = Vec::new();
    collect_keys(value, "", &mut keys);
    for key in keys {
        let mut probe =
            toml::Value::try_from(Config::default()).expect("default config serialises");
        let v = leaf(value, &key).expect("collected key").clone();
        let (parent, name) = key.rsplit_once('.').unwrap_or(("", &key));
        let table = if parent.is_empty() {
            Some(&mut probe)
        } else {
            parent.split('.').try_fold(&mut probe, |n, p| n.get_mut(p))
        };
        if let Some(toml::Value::Table(t)) = table {
            t.insert(name.to_string(), v.clone());
        }
        if let Err(e) = probe.try_into::<Config>() {
            return format!("config `{key}` = {v}: {}", e.message());
        }
    }
    format!("invalid config value: {}", err.message())
}

impl Config {
    /// Load a TOML file (or defaults when `path` is None), apply `--set` overrides, validate.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                Self::parse(&text, &p.display().to_string(), overrides)
            }
            None => Self::parse("", "defaults", overrides),
        }
    }

    /// Parse config `text` (named `source` in errors), apply `--set` overrides, validate.
    pub fn parse(text: &str, source: &str, overrides: &[String]) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)
            .with_context(|| format!("config file {source} is not valid TOML"))?;
        let mut value = toml::Value::Table(table);
        check_unknown_keys(&value, source)?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let config: Config = match value.clone().try_into() {
            Ok(c) => c,
            Err(e) => bail!("{} (in {source})", name_bad_value(&value, &e)),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Check every value before any work starts; each error names its key.
    pub fn validate(&self) -> Result<()> {
        fn positive(key: &str, v: f64) -> Result<()> {
            if !(v.is_finite() && v > 0.0) {
                bail!("config `{key}` must be a positive number, got {v}");
            }
            Ok(())
        }
        fn probability(key: &str, v: f64) -> Result<()> {
            if !(0.0..=1.0).contains(&v) {
                bail!("config `{key}` is a probability and must be within [0, 1], got {v}");
            }
            Ok(())
        }
        // Upper bounds keep a typo (an extra zero or three) from allocating the machine away.
        if !(8..=4096).contains(&self.data.input_size) {
            bail!(
                "config `data.input_size` must be within [8, 4096], got {}",
                self.data.input_size
            );
        }
        if self.data.workers > 256 {
            bail!(
                "config `data.workers` must be at most 256 loader threads, got {}",
                self.data.workers
            );
        }
        for (i, s) in self.data.std.iter().enumerate() {
            positive(&format!("data.std[{i}]"), *s as f64)?;
        }
        for (i, m) in self.data.mean.iter().enumerate() {
            if !m.is_finite() {
                bail!("config `data.mean[{i}]` must be a finite number, got {m}");
            }
        }
        let [lo, hi] = self.augment.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            bail!("config `augment.crop_scale` must satisfy 0 < min ≤ max ≤ 1, got [{lo}, {hi}]");
        }
        probability("augment.hflip_prob", self.augment.hflip_prob)?;
        probability("augment.color_jitter_prob", self.augment.color_jitter_prob)?;
        probability("augment.grayscale_prob", self.augment.grayscale_prob)?;
        probability("augment.blur_prob", self.augment.blur_prob)?;
        probability("augment.solarize_prob", self.augment.solarize_prob)?;
        let [b, c, s, h] = self.augment.color_jitter;
        if !(b >= 0.0 && c >= 0.0 && s >= 0.0 && b.is_finite() && c.is_finite() && s.is_finite())
            || !(0.0..=0.5).contains(&h)
        {
            bail!(
                "config `augment.color_jitter` needs brightness, contrast, saturation ≥ 0 and hue in [0, 0.5], got {:?}",
                self.augment.color_jitter
            );
        }
        self.backbone_config()?;
        self.validate_method()?;
        if self.is_audio() {
            self.audio.validate(&self.method.name)?;
            self.audio_encoder.encoder_config(self.audio.n_mels)?;
        }
        if self.is_text() {
            self.text.validate(&self.method.name)?;
            // The vocabulary's size is known once the tokenizer is; any valid size checks the rest.
            self.text_encoder
                .encoder_config(self.text.vocab_size, self.text.max_len)?;
        }
        match self.method.loss.as_str() {
            "nt_xent" | "triplet" => {}
            other => bail!("config `method.loss`: unknown loss `{other}`; use nt_xent or triplet"),
        }
        positive("method.temperature", self.method.temperature)?;
        if self.method.projection_dims.is_empty()
            || self
                .method
                .projection_dims
                .iter()
                .any(|&d| !(1..=65536).contains(&d))
        {
            bail!(
                "config `method.projection_dims` needs widths within [1, 65536] (hidden…, output), got {:?}",
                self.method.projection_dims
            );
        }
        if !(self.method.triplet_margin >= 0.0 && self.method.triplet_margin.is_finite()) {
            bail!(
                "config `method.triplet_margin` must be ≥ 0, got {}",
                self.method.triplet_margin
            );
        }
        match self.method.triplet_mining.as_str() {
            "hardest" | "random" => {}
            other => {
                bail!("config `method.triplet_mining`: `{other}` is not one of hardest, random")
            }
        }
        match self.optim.name.as_str() {
            "sgd" | "lars" | "adamw" => {}
            other => {
                bail!("config `optim.name`: unknown optimizer `{other}`; use sgd, lars or adamw")
            }
        }
        if self.optim.lars_clip_lr && self.optim.name != "lars" {
            bail!(
                "config `optim.lars_clip_lr` applies to optim.name = \"lars\" only (got `{}`)",
                self.optim.name
            );
        }
        positive("optim.lr", self.optim.lr)?;
        probability("optim.momentum", self.optim.momentum)?;
        for (i, beta) in self.optim.betas.iter().enumerate() {
            if !(0.0..1.0).contains(beta) {
                bail!("config `optim.betas[{i}]` must be within [0, 1), got {beta}");
            }
        }
        if !(self.optim.weight_decay >= 0.0 && self.optim.weight_decay.is_finite()) {
            bail!(
                "config `optim.weight_decay` must be ≥ 0, got {}",
                self.optim.weight_decay
            );
        }
        if !(self.optim.warmup_epochs >= 0.0) || self.optim.warmup_epochs > self.train.epochs as f64
        {
            bail!(
                "config `optim.warmup_epochs` must be within [0, train.epochs], got {}",
                self.optim.warmup_epochs
            );
        }
        if !(self.optim.final_lr >= 0.0 && self.optim.final_lr.is_finite()) {
            bail!(
                "config `optim.final_lr` must be ≥ 0, got {}",
                self.optim.final_lr
            );
        }
        if self.train.epochs == 0 {
            bail!("config `train.epochs` must be at least 1");
        }
        if self.train.batch_size < 2 {
            bail!(
                "config `train.batch_size` must be at least 2 (contrastive losses need negatives), got {}",
                self.train.batch_size
            );
        }
        if self.train.checkpoint_every == 0 {
            bail!("config `train.checkpoint_every` must be at least 1");
        }
        crate::device::select(&self.train.device)?;
        if self.eval.knn_k == 0 {
            bail!("config `eval.knn_k` must be at least 1");
        }
        positive("eval.knn_temperature", self.eval.knn_temperature)?;
        if self.eval.batch_size == 0 {
            bail!("config `eval.batch_size` must be at least 1");
        }
        Ok(())
    }

    /// The method's own hyper-parameters, each error naming its key.
    fn validate_method(&self) -> Result<()> {
        let m = &self.method;
        if !METHODS.contains(&m.name.as_str()) {
            bail!(
                "config `method.name`: unknown method `{}`; available: {}",
                m.name,
                METHODS.join(", ")
            );
        }
        let a = &self.augment;
        if a.local_crops > 0 && m.name != "dino" {
            bail!(
                "config `augment.local_crops` = {}: only dino uses local crops (multi-crop); set it to 0 for {}",
                a.local_crops,
                m.name
            );
        }
        if a.local_crop_size < 8 || a.local_crop_size > self.data.input_size {
            bail!(
                "config `augment.local_crop_size` must be within [8, data.input_size = {}], got {}",
                self.data.input_size,
                a.local_crop_size
            );
        }
        let [lo, hi] = a.local_crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            bail!(
                "config `augment.local_crop_scale` must satisfy 0 < min ≤ max ≤ 1, got [{lo}, {hi}]"
            );
        }
        let [start, end] = m.ema_momentum;
        if !((0.0..=1.0).contains(&start) && (0.0..=1.0).contains(&end)) {
            bail!(
                "config `method.ema_momentum` needs start and end within [0, 1], got {:?}",
                m.ema_momentum
            );
        }
        if matches!(m.name.as_str(), "byol" | "simsiam") {
            if m.prediction_dims.is_empty() || m.prediction_dims.contains(&0) {
                bail!(
                    "config `method.prediction_dims` needs positive widths (hidden…, output), got {:?}",
                    m.prediction_dims
                );
            }
            if m.prediction_dims.last() != m.projection_dims.last() {
                bail!(
                    "config `method.prediction_dims` must end with the projection's output width {:?} (the prediction regresses a projection), got {:?}",
                    m.projection_dims.last(),
                    m.prediction_dims
                );
            }
        }
        if m.name == "moco" && m.queue_size < self.train.batch_size * 2 {
            bail!(
                "config `method.queue_size` must hold at least the keys of one step (2 × train.batch_size = {}), got {}",
                2 * self.train.batch_size,
                m.queue_size
            );
        }
        if !(m.barlow_lambda.is_finite() && m.barlow_lambda >= 0.0) {
            bail!(
                "config `method.barlow_lambda` must be ≥ 0, got {}",
                m.barlow_lambda
            );
        }
        if m.vicreg_weights
            .iter()
            .any(|w| !(w.is_finite() && *w >= 0.0))
        {
            bail!(
                "config `method.vicreg_weights` must all be ≥ 0, got {:?}",
                m.vicreg_weights
            );
        }
        if m.teacher_temperature
            .iter()
            .any(|t| !(t.is_finite() && *t > 0.0))
        {
            bail!(
                "config `method.teacher_temperature` must be positive, got {:?}",
                m.teacher_temperature
            );
        }
        if !(m.teacher_temperature_warmup_epochs >= 0.0) {
            bail!(
                "config `method.teacher_temperature_warmup_epochs` must be ≥ 0, got {}",
                m.teacher_temperature_warmup_epochs
            );
        }
        if !(0.0..=1.0).contains(&m.center_momentum) {
            bail!(
                "config `method.center_momentum` must be within [0, 1], got {}",
                m.center_momentum
            );
        }
        if m.name == "mae" {
            if self.model.backbone != "vit" {
                bail!(
                    "config `model.backbone` = `{}`: mae needs a ViT encoder; set model.backbone = \"vit\"",
                    self.model.backbone
                );
            }
            if !(0.0..1.0).contains(&m.mask_ratio) {
                bail!(
                    "config `method.mask_ratio` must be within [0, 1), got {}",
                    m.mask_ratio
                );
            }
            if m.decoder_dim == 0 || m.decoder_depth == 0 || m.decoder_heads == 0 {
                bail!(
                    "config `method.decoder_dim`, `method.decoder_depth` and `method.decoder_heads` must be at least 1"
                );
            }
            if m.decoder_dim % m.decoder_heads != 0 || m.decoder_dim % 4 != 0 {
                bail!(
                    "config `method.decoder_dim` = {} must be a multiple of 4 and of `method.decoder_heads` = {}",
                    m.decoder_dim,
                    m.decoder_heads
                );
            }
        }
        if m.name == "colorization" && self.model.backbone == "vit" {
            bail!(
                "config `model.backbone` = `vit`: colorization decodes a ResNet's feature map; use resnet18, resnet34 or resnet50"
            );
        }
        if !["regression", "classification"].contains(&m.colorization_target.as_str()) {
            bail!(
                "config `method.colorization_target` must be `regression` or `classification`, got `{}`",
                m.colorization_target
            );
        }
        if !(m.colorization_rebalance > 0.0 && m.colorization_rebalance <= 1.0) {
            bail!(
                "config `method.colorization_rebalance` (λ) must be within (0, 1] (1 = no rebalancing), got {}",
                m.colorization_rebalance
            );
        }
        if m.name == "dino" && m.projection_dims.len() < 2 {
            bail!(
                "config `method.projection_dims` for dino is hidden…, bottleneck, prototypes (at least 2 widths), got {:?}",
                m.projection_dims
            );
        }
        Ok(())
    }

    /// The encoder's architecture from `model.*` (a ViT's image side is `data.input_size`).
    pub fn backbone_config(&self) -> Result<selfsup_models::BackboneConfig> {
        if self.model.backbone == "vit" {
            Ok(self.vit_config()?.into())
        } else {
            Ok(self.resnet_config()?.into())
        }
    }

    pub fn vit_config(&self) -> Result<selfsup_models::VitConfig> {
        use selfsup_models::{VitConfig, VitPooling, VitPositions};
        let m = &self.model;
        let pooling = match m.vit_pooling.as_str() {
            "cls" => VitPooling::Cls,
            "mean" => VitPooling::Mean,
            other => bail!("config `model.vit_pooling`: `{other}` is not one of cls, mean"),
        };
        let positions = match m.vit_positions.as_str() {
            "sincos" => VitPositions::Sincos,
            "learned" => VitPositions::Learned,
            other => bail!("config `model.vit_positions`: `{other}` is not one of sincos, learned"),
        };
        for (key, v, max) in [
            ("model.vit_patch_size", m.vit_patch_size, 4096),
            ("model.vit_dim", m.vit_dim, 65536),
            ("model.vit_depth", m.vit_depth, 256),
            ("model.vit_heads", m.vit_heads, 1024),
        ] {
            if !(1..=max).contains(&v) {
                bail!("config `{key}` must be within [1, {max}], got {v}");
            }
        }
        if self.data.input_size % m.vit_patch_size != 0 {
            bail!(
                "config `model.vit_patch_size` = {} must divide `data.input_size` = {}",
                m.vit_patch_size,
                self.data.input_size
            );
        }
        if m.vit_dim % m.vit_heads != 0 {
            bail!(
                "config `model.vit_dim` = {} must be a multiple of `model.vit_heads` = {}",
                m.vit_dim,
                m.vit_heads
            );
        }
        if positions == VitPositions::Sincos && m.vit_dim % 4 != 0 {
            bail!(
                "config `model.vit_dim` = {} must be a multiple of 4 for sin-cos positions",
                m.vit_dim
            );
        }
        if !(m.vit_mlp_ratio.is_finite() && m.vit_mlp_ratio > 0.0 && m.vit_mlp_ratio <= 64.0) {
            bail!(
                "config `model.vit_mlp_ratio` must be within (0, 64], got {}",
                m.vit_mlp_ratio
            );
        }
        Ok(VitConfig::new()
            .with_image_size(self.data.input_size)
            .with_patch_size(m.vit_patch_size)
            .with_dim(m.vit_dim)
            .with_depth(m.vit_depth)
            .with_heads(m.vit_heads)
            .with_mlp_ratio(m.vit_mlp_ratio)
            .with_pooling(pooling)
            .with_positions(positions))
    }

    /// The ResNet architecture; an error for a ViT run (callers that need a ResNet, such as
    /// the torchvision export, say so).
    pub fn resnet_config(&self) -> Result<selfsup_models::ResNetConfig> {
        let depth = match self.model.backbone.as_str() {
            "resnet18" => 18,
            "resnet34" => 34,
            "resnet50" => 50,
            other => bail!(
                "config `model.backbone`: unknown backbone `{other}`; available: resnet18, resnet34, resnet50, vit"
            ),
        };
        let stem = match self.model.stem.as_str() {
            "cifar" => selfsup_models::ResNetStem::Cifar,
            "imagenet" => selfsup_models::ResNetStem::Imagenet,
            other => bail!("config `model.stem`: `{other}` is not one of cifar, imagenet"),
        };
        if !(1..=4096).contains(&self.model.width) {
            bail!(
                "config `model.width` must be within [1, 4096], got {}",
                self.model.width
            );
        }
        Ok(selfsup_models::ResNetConfig::new()
            .with_depth(depth)
            .with_width(self.model.width)
            .with_stem(stem))
    }

    /// Whether `method.name` is an audio pretext task (its data and encoder are `[audio]` and
    /// `[audio_encoder]`).
    pub fn is_audio(&self) -> bool {
        is_audio_method(&self.method.name)
    }

    /// Whether `method.name` is a language-modelling task (its corpus, tokenizer and encoder are
    /// `[text]` and `[text_encoder]`).
    pub fn is_text(&self) -> bool {
        is_text_method(&self.method.name)
    }

    /// The dataset path, resolved against `base` when relative.
    pub fn data_path(&self, base: &Path) -> PathBuf {
        let p = PathBuf::from(&self.data.path);
        if p.is_absolute() { p } else { base.join(p) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, overrides: &[&str]) -> Result<Config> {
        let dir = std::env::temp_dir().join(format!("selfsup-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("c{}.toml", text.len() + overrides.len()));
        std::fs::write(&path, text).unwrap();
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Config::load(Some(&path), &o)
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
        assert_eq!(c.model.stem, "imagenet");
        assert_eq!(c.method.projection_dims, vec![64, 32]);
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
        assert!(err.contains("`optim.weight_decay`"), "{err}");
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
        ] {
            let err = format!("{:#}", load_str("", &[set]).unwrap_err());
            assert!(err.contains(key), "{set}: {err}");
        }
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
                vec!["method.ema_momentum=[0.9, 1.5]"],
                "method.ema_momentum",
            ),
            (
                vec!["method.vicreg_weights=[25, -1, 1]"],
                "method.vicreg_weights",
            ),
            (
                vec!["method.teacher_temperature=[0, 0.07]"],
                "method.teacher_temperature",
            ),
            (vec!["method.name=mae"], "model.backbone"),
            (
                vec!["method.name=colorization", "model.backbone=vit"],
                "model.backbone",
            ),
            (
                vec!["method.colorization_target=bins"],
                "method.colorization_target",
            ),
            (
                vec!["method.colorization_rebalance=0"],
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
            let err = format!("{:#}", load_str("", &sets).unwrap_err());
            assert!(err.contains(key), "{sets:?}: {err}");
        }
        let c = load_str("", &["method.name=dino", "augment.local_crops=4"]).unwrap();
        assert_eq!(c.augment.local_crops, 4);
    }

    #[test]
    fn shipped_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                Config::load(Some(&p), &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 1, "no configs found in {}", dir.display());
    }
}
