//! A run's configuration: a TOML file and `--set key=value` overrides, typed per modality and
//! per method, every value checked before any work.
//!
//! The sections every run has are here (`[data]`, `[optim]`, `[train]`, `[eval]`); `[method]`
//! is the chosen method's own typed settings (its modality's [`MethodSet`]); the modality adds
//! its sections (`[augment]` + `[model]` for images, `[audio]` + `[audio_encoder]`, `[text]` +
//! `[text_encoder]`). Unknown keys are refused with the closest valid key, and a method key of
//! another method names the method it belongs to, so a typo never silently falls back to a
//! default.

pub mod keys;

use std::path::{Path, PathBuf};

use selfsup_methods::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use selfsup_methods::registry::MethodSet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bail;
use crate::error::{Context, Error, Result};

/// What a modality's config sections must be: TOML tables with a default for every key.
pub trait Settings:
    Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static
{
}

impl<T> Settings for T where
    T: Serialize
        + DeserializeOwned
        + Default
        + Clone
        + std::fmt::Debug
        + PartialEq
        + Send
        + Sync
        + 'static
{
}

/// What a modality's configs hold and how they are checked: its name, its own sections, its
/// methods. (What the modality does with a config is [`crate::Modality`].)
pub trait Schema: Sized + Send + Sync + 'static {
    /// `image`, `audio` or `text`.
    const NAME: &'static str;
    /// The modality's own config sections, flattened into the run config.
    type Settings: Settings;
    /// Its methods, tagged by `method.name`.
    type Method: MethodSet;
    /// Config keys this version moved: (old key, new key, the methods it applies to). A
    /// stored config is migrated silently, a user's config with a note.
    const MOVED_KEYS: &'static [(&'static str, &'static str, &'static [&'static str])] = &[];

    /// The modality's checks of a whole config (its sections, and method settings that depend
    /// on them); each error names its key.
    fn validate(config: &RunConfig<Self>) -> Result<()>;
}

/// The method of a config that names none.
pub const DEFAULT_METHOD: &str = "simclr";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// The dataset (an image-folder tree, CIFAR-10 batches, IDX files; an audio manifest or
    /// folder; a text folder); relative paths are resolved against the current directory.
    pub path: String,
    /// Images: side of the square crops fed to the model.
    pub input_size: usize,
    /// Images: per-channel normalisation.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Images: loader threads building augmented batches while the model trains.
    pub workers: usize,
    /// Images: skip (and count) unreadable images instead of stopping at the first.
    pub skip_corrupt: bool,
    /// Images: where decoded images are cached; empty = `<out>/../.cache` beside the run
    /// directories.
    pub cache_dir: String,
    /// Use only the first N training samples (0 = all): quick experiments and tests.
    pub limit: usize,
    /// Images: the cache stores each image with its shorter side at most this many pixels
    /// (larger images are downscaled once, when the cache is built), so a folder of photos
    /// costs disk and memory per image, not per pixel. 0 = `ceil(input_size · 8/7)` (the
    /// "resize 256, crop 224" ratio; CIFAR-sized images are kept as they are); set a large
    /// value (e.g. 100000) to keep full resolution.
    pub max_side: usize,
    /// Images: `auto` keeps photos (JPEG files of at least 96×96 stored pixels) as JPEG in
    /// the cache, decoded on every read, so the cache takes about the source's disk; `pixels`
    /// stores decoded pixels for every image (no decoding per read, several times the disk).
    pub cache_format: selfsup_data::CacheFormat,
}

impl DataConfig {
    /// The bound on cached images' shorter side ([`max_side`](Self::max_side), or its default
    /// from `input_size`).
    pub fn max_short_side(&self) -> u32 {
        match self.max_side {
            0 => (self.input_size * 8).div_ceil(7) as u32,
            n => n.min(u32::MAX as usize) as u32,
        }
    }
}

/// `optim.name`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    Sgd,
    Lars,
    Adamw,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub name: OptimizerName,
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
    /// Held-out evaluation (kNN accuracy; a language model's held-out accuracy) every N
    /// epochs; 0 = off (it costs a pass over the data).
    pub knn_every: usize,
    /// `cpu` (burn flex), `vulkan` (build with `--features gpu`), `libtorch` (`--features tch`).
    pub device: String,
    /// Bitwise-reproducible training on the CPU: compute runs on one thread, so no float sum
    /// depends on how work was split between threads (see docs/reliability.md for the cost).
    pub deterministic: bool,
    /// With several processes (`mpirun -np N selfsup pretrain ...`): which BatchNorm layers
    /// take their statistics over the global batch: `off` (each rank its own shard, PyTorch
    /// DDP's default), `head` (projection/prediction heads), `all`.
    pub sync_batch_norm: selfsup_models::SyncBatchNorm,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    pub knn_k: usize,
    pub knn_temperature: f64,
    pub batch_size: usize,
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
            max_side: 0,
            cache_format: selfsup_data::CacheFormat::Auto,
        }
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            name: OptimizerName::Sgd,
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
            sync_batch_norm: selfsup_models::SyncBatchNorm::Off,
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

/// A config before it is typed: the TOML of a file (or of nothing: all defaults) with
/// `--set` overrides applied, remembering where each came from for error messages.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    pub table: toml::Table,
    /// `config file PATH`, or `defaults`.
    pub source: String,
    /// Keys set by [`RawConfig::set`].
    pub overridden: Vec<String>,
}

impl RawConfig {
    /// The TOML file at `path`, or defaults for every key when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                Self::parse(&text, &p.display().to_string())
            }
            None => Ok(Self {
                source: "defaults".into(),
                ..Self::default()
            }),
        }
    }

    /// Config `text`, named `source` in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)
            .with_context(|| format!("config file {source} is not valid TOML"))?;
        Ok(Self {
            table,
            source: source.to_string(),
            overridden: Vec::new(),
        })
    }

    /// Applies `key=value` (a TOML literal, or a bare string).
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let (key, raw) = assignment.split_once('=').with_context(|| {
            format!("--set `{assignment}`: expected key=value, e.g. --set train.epochs=10")
        })?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            bail!("--set `{assignment}`: `{key}` is not a config key (e.g. train.epochs)");
        }
        if !keys::set(&mut self.table, key, keys::parse_value(raw.trim())) {
            bail!("--set `{key}`: its parent is not a table");
        }
        self.overridden.push(key.to_string());
        Ok(())
    }

    /// Applies every `key=value` of `assignments`.
    pub fn with_overrides(mut self, assignments: &[String]) -> Result<Self> {
        for a in assignments {
            self.set(a)?;
        }
        Ok(self)
    }

    /// `method.name`, [`DEFAULT_METHOD`] when unset.
    pub fn method_name(&self) -> Result<String> {
        match keys::get(&self.table, "method.name") {
            None => Ok(DEFAULT_METHOD.to_string()),
            Some(toml::Value::String(s)) => Ok(s.clone()),
            Some(other) => bail!(
                "config `method.name` must be a string (e.g. \"simclr\"), got {other} (in {})",
                self.source
            ),
        }
    }

    /// Where `key` came from, for errors.
    fn origin(&self, key: &str) -> String {
        if self.overridden.iter().any(|k| k == key) {
            "--set".to_string()
        } else {
            self.source.clone()
        }
    }
}

/// A run's full, validated configuration of modality `M`.
pub struct RunConfig<M: Schema> {
    pub data: DataConfig,
    pub method: M::Method,
    pub optim: OptimConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    /// The modality's own sections.
    pub modality: M::Settings,
}

impl<M: Schema> std::fmt::Debug for RunConfig<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("data", &self.data)
            .field("method", &self.method)
            .field("optim", &self.optim)
            .field("train", &self.train)
            .field("eval", &self.eval)
            .field("modality", &self.modality)
            .finish()
    }
}

impl<M: Schema> Clone for RunConfig<M> {
    fn clone(&self) -> Self {
        Self {
            data: self.data.clone(),
            method: self.method.clone(),
            optim: self.optim.clone(),
            train: self.train.clone(),
            eval: self.eval.clone(),
            modality: self.modality.clone(),
        }
    }
}

impl<M: Schema> PartialEq for RunConfig<M> {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
            && self.method == other.method
            && self.optim == other.optim
            && self.train == other.train
            && self.eval == other.eval
            && self.modality == other.modality
    }
}

impl<M: Schema> Default for RunConfig<M> {
    fn default() -> Self {
        Self {
            data: DataConfig::default(),
            method: M::Method::first(),
            optim: OptimConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
            modality: M::Settings::default(),
        }
    }
}

/// `value` as a table ("" when it does not serialise to one).
fn table_of<T: Serialize>(value: &T) -> toml::Table {
    match toml::Value::try_from(value) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// `table` as `T`; serde reports a wrong type without its key, so each leaf is tried alone on
/// top of the defaults to name it.
fn parse_probing<T: Settings>(table: &toml::Table, prefix: &str, source: &str) -> Result<T> {
    match toml::Value::Table(table.clone()).try_into::<T>() {
        Ok(v) => Ok(v),
        Err(e) => {
            let mut leaves = Vec::new();
            keys::leaves(table, "", &mut leaves);
            for key in leaves {
                let mut probe = table_of(&T::default());
                let value = keys::get(table, &key).expect("listed leaf").clone();
                keys::set(&mut probe, &key, value.clone());
                if let Err(e) = toml::Value::Table(probe).try_into::<T>() {
                    let full = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    bail!("config `{full}` = {value}: {} (in {source})", e.message());
                }
            }
            bail!("invalid config value: {} (in {source})", e.message())
        }
    }
}

impl<M: Schema> RunConfig<M> {
    /// The config of `raw`: unknown keys refused, every value checked.
    pub fn from_raw(raw: &RawConfig) -> Result<Self> {
        let mut raw = raw.clone();
        Self::move_keys(&mut raw.table, true);
        let config = Self::typed(&raw, false)?;
        config.validate()?;
        Ok(config)
    }

    /// A config file with `--set` overrides.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        Self::from_raw(&RawConfig::load(path)?.with_overrides(overrides)?)
    }

    /// The config a run stored (its config.toml, a checkpoint's metadata), written by this
    /// version or an earlier one: keys moved since are moved, keys this version no longer has
    /// (sections of other modalities, other methods' settings) are dropped.
    pub fn from_stored(text: &str, source: &str) -> Result<Self> {
        let mut raw = RawConfig::parse(text, source)?;
        Self::move_keys(&mut raw.table, false);
        let config = Self::typed(&raw, true)?;
        config.validate()?;
        Ok(config)
    }

    /// Keys the modality moved (e.g. `audio.cpc_steps` → `method.cpc_steps`), applied to the
    /// config of their method only.
    fn move_keys(table: &mut toml::Table, tell: bool) {
        let method = match keys::get(table, "method.name") {
            Some(toml::Value::String(s)) => s.clone(),
            _ => return,
        };
        for (from, to, methods) in M::MOVED_KEYS {
            if let Some(v) = keys::remove(table, from) {
                if methods.contains(&method.as_str()) {
                    if tell {
                        eprintln!("note: config key `{from}` is now `{to}`; using it as such");
                    }
                    keys::set(table, to, v);
                } else if tell {
                    // A user's key for another method: refused below like any unknown key.
                    keys::set(table, from, v);
                }
            }
        }
    }

    /// Every non-method key a config of this modality may hold.
    pub fn known_keys() -> Vec<String> {
        let mut out = Vec::new();
        let mut t = Self::default().to_table();
        t.remove("method");
        keys::leaves(&t, "", &mut out);
        out
    }

    fn typed(raw: &RawConfig, lenient: bool) -> Result<Self> {
        let method_name = raw.method_name()?;
        let names = M::Method::names();
        if !names.contains(&method_name.as_str()) {
            bail!(
                "config `method.name`: `{method_name}` is not a {} method; available: {} (in {})",
                M::NAME,
                names.join(", "),
                raw.origin("method.name")
            );
        }
        let method_keys = M::Method::keys(&method_name).unwrap_or_default();
        let mut known = Self::known_keys();
        known.push("method.name".into());
        known.extend(method_keys.iter().map(|k| format!("method.{k}")));

        let mut table = raw.table.clone();
        let mut present = Vec::new();
        keys::leaves(&table, "", &mut present);
        if lenient {
            // Only the keys this version knows, without the tables they leave empty.
            let mut kept = toml::Table::new();
            for key in present.iter().filter(|k| known.contains(k)) {
                let value = keys::get(&table, key).expect("listed leaf").clone();
                keys::set(&mut kept, key, value);
            }
            table = kept;
            present.clear();
        }
        for key in present {
            if known.contains(&key) {
                continue;
            }
            let origin = raw.origin(&key);
            if let Some((_, to, methods)) = M::MOVED_KEYS.iter().find(|(from, _, _)| *from == key) {
                bail!(
                    "config `{key}` is now `{to}`, a setting of {}, not of {method_name} (in {origin}); remove it",
                    methods.join(", ")
                );
            }
            if let Some(setting) = key.strip_prefix("method.") {
                let owners: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| M::Method::keys(n).is_some_and(|k| k.iter().any(|k| k == setting)))
                    .collect();
                if !owners.is_empty() {
                    bail!(
                        "config `{key}` is a setting of {}, not of {method_name} (in {origin}); remove it or set method.name",
                        owners.join(", ")
                    );
                }
            }
            bail!(
                "unknown config key `{key}` in {origin}; did you mean `{}`?",
                keys::closest(&key, &known)
            );
        }

        let section = |name: &str| -> toml::Table {
            match table.get(name) {
                Some(toml::Value::Table(t)) => t.clone(),
                _ => toml::Table::new(),
            }
        };
        let source = &raw.source;
        let mut method_table = section("method");
        method_table.remove("name");
        let method = M::Method::parse(&method_name, method_table)
            .map_err(|e| Error::msg(format!("{e} (in {source})")))?;
        let mut modality_table = table.clone();
        for core in ["data", "method", "optim", "train", "eval"] {
            modality_table.remove(core);
        }
        Ok(Self {
            data: parse_probing(&section("data"), "data", source)?,
            method,
            optim: parse_probing(&section("optim"), "optim", source)?,
            train: parse_probing(&section("train"), "train", source)?,
            eval: parse_probing(&section("eval"), "eval", source)?,
            modality: parse_probing(&modality_table, "", source)?,
        })
    }

    /// The whole config as one table: what `to_toml` writes and checkpoints store.
    pub fn to_table(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("data".into(), toml::Value::Table(table_of(&self.data)));
        t.insert("method".into(), toml::Value::Table(self.method.to_table()));
        t.insert("optim".into(), toml::Value::Table(table_of(&self.optim)));
        t.insert("train".into(), toml::Value::Table(table_of(&self.train)));
        t.insert("eval".into(), toml::Value::Table(table_of(&self.eval)));
        t.extend(table_of(&self.modality));
        t
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_table()).expect("config serialises")
    }

    /// The config as JSON (the `start` record of metrics.jsonl).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_table()).expect("config serialises")
    }

    pub fn method_name(&self) -> &'static str {
        self.method.name()
    }

    /// The dataset path, resolved against `base` when relative.
    pub fn data_path(&self, base: &Path) -> PathBuf {
        let p = PathBuf::from(&self.data.path);
        if p.is_absolute() { p } else { base.join(p) }
    }

    /// The pretraining optimizer of `[optim]`.
    pub fn optimizer(&self) -> Result<Optimizer> {
        let o = &self.optim;
        let kind = match o.name {
            OptimizerName::Sgd => OptimizerKind::Sgd {
                momentum: o.momentum,
                nesterov: false,
            },
            OptimizerName::Lars => OptimizerKind::Lars {
                momentum: o.momentum,
                eta: 0.02,
                clip: o.lars_clip_lr,
            },
            OptimizerName::Adamw => OptimizerKind::AdamW {
                beta1: o.betas[0],
                beta2: o.betas[1],
                eps: 1e-8,
            },
        };
        OptimizerConfig {
            kind,
            weight_decay: o.weight_decay,
            exclude_bias_and_norm: o.exclude_bias_and_norm,
        }
        .init()
        .map_err(|e| Error::msg(format!("config `optim`: {e}")))
    }

    /// Every value checked before any work starts; each error names its key.
    pub fn validate(&self) -> Result<()> {
        validate_common(&self.data, &self.optim, &self.train, &self.eval)?;
        self.method.validate()?;
        M::validate(self)
    }
}

/// `key` must be a finite number > 0.
pub fn positive(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("config `{key}` must be a positive number, got {v}");
    }
    Ok(())
}

/// `key` is a probability: within [0, 1].
pub fn probability(key: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        bail!("config `{key}` is a probability and must be within [0, 1], got {v}");
    }
    Ok(())
}

fn validate_common(
    data: &DataConfig,
    optim: &OptimConfig,
    train: &TrainConfig,
    eval: &EvalConfig,
) -> Result<()> {
    // Upper bounds keep a typo (an extra zero or three) from allocating the machine away.
    if data.max_side != 0 && data.max_side < data.input_size {
        bail!(
            "config `data.max_side` = {} is below `data.input_size` = {}: crops would be upscaled from smaller images; use 0 (automatic) or at least {}",
            data.max_side,
            data.input_size,
            data.input_size
        );
    }
    if !(8..=4096).contains(&data.input_size) {
        bail!(
            "config `data.input_size` must be within [8, 4096], got {}",
            data.input_size
        );
    }
    if data.workers > 256 {
        bail!(
            "config `data.workers` must be at most 256 loader threads, got {}",
            data.workers
        );
    }
    for (i, s) in data.std.iter().enumerate() {
        positive(&format!("data.std[{i}]"), *s as f64)?;
    }
    for (i, m) in data.mean.iter().enumerate() {
        if !m.is_finite() {
            bail!("config `data.mean[{i}]` must be a finite number, got {m}");
        }
    }
    if optim.lars_clip_lr && optim.name != OptimizerName::Lars {
        bail!(
            "config `optim.lars_clip_lr` applies to optim.name = \"lars\" only (got `{:?}`)",
            optim.name
        );
    }
    positive("optim.lr", optim.lr)?;
    probability("optim.momentum", optim.momentum)?;
    for (i, beta) in optim.betas.iter().enumerate() {
        if !(0.0..1.0).contains(beta) {
            bail!("config `optim.betas[{i}]` must be within [0, 1), got {beta}");
        }
    }
    if !(optim.weight_decay >= 0.0 && optim.weight_decay.is_finite()) {
        bail!(
            "config `optim.weight_decay` must be ≥ 0, got {}",
            optim.weight_decay
        );
    }
    if !(optim.warmup_epochs >= 0.0) || optim.warmup_epochs > train.epochs as f64 {
        bail!(
            "config `optim.warmup_epochs` must be within [0, train.epochs], got {}",
            optim.warmup_epochs
        );
    }
    if !(optim.final_lr >= 0.0 && optim.final_lr.is_finite()) {
        bail!(
            "config `optim.final_lr` must be ≥ 0, got {}",
            optim.final_lr
        );
    }
    if train.epochs == 0 {
        bail!("config `train.epochs` must be at least 1");
    }
    if train.batch_size < 2 {
        bail!(
            "config `train.batch_size` must be at least 2 (contrastive losses need negatives), got {}",
            train.batch_size
        );
    }
    let group = selfsup_dist::world();
    if group.world() > 1 {
        if train.batch_size % group.world() != 0 {
            bail!(
                "config `train.batch_size` = {} is the global batch and must split evenly over the {} processes; use a multiple of {}",
                train.batch_size,
                group.world(),
                group.world()
            );
        }
        let nccl = cfg!(feature = "nccl");
        if !matches!(train.device.as_str(), "cpu" | "flex") && !(nccl && train.device == "cuda") {
            bail!(
                "config `train.device` = {}: training across {} processes runs on `cpu` (MPI){}",
                train.device,
                group.world(),
                if nccl {
                    " or `cuda` (NCCL)"
                } else {
                    "; `cuda` needs a build with NCCL (scripts/build_tch.sh)"
                }
            );
        }
    }
    if train.checkpoint_every == 0 {
        bail!("config `train.checkpoint_every` must be at least 1");
    }
    crate::device::select(&train.device)?;
    if eval.knn_k == 0 {
        bail!("config `eval.knn_k` must be at least 1");
    }
    positive("eval.knn_temperature", eval.knn_temperature)?;
    if eval.batch_size == 0 {
        bail!("config `eval.batch_size` must be at least 1");
    }
    Ok(())
}
