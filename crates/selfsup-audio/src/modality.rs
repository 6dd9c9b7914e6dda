//! Audio as a selfsup modality ([`Audio`]): clip datasets (FSDD-style CSV manifest or
//! `ROOT/{train,test}/<label>/`) as normalised log-mel spectrograms, pretraining batches for
//! the one loop (masked_frames, cpc, audio_simclr), kNN on mean-pooled utterance embeddings,
//! the few-label task, and the report's spectrogram pictures.

use std::path::Path;

use burn::prelude::*;
use selfsup_core::config::{RunConfig, Schema};
use selfsup_core::downstream;
use selfsup_core::modality::{DownstreamTask, Init, Modality, Picture, TaskSource, fresh_encoder};
use selfsup_core::pretrain::{Figures, Run, TrainData, knn_figures};
use selfsup_core::recipe::RecipeDefaults;
use selfsup_core::{Context, Error, PretrainSummary, Result, bail};
use selfsup_data::{SampleRng, Split as DataSplit, shuffled_batches};
use selfsup_models::load_named_tensors;
use serde::{Deserialize, Serialize};

use crate::dataset::{AudioDataset, Split};
use crate::encoder::{AudioEncoder, AudioEncoderConfig, FrameBatch};
use crate::features::{FeatureStats, LogMelConfig, SpecAugmentConfig, Spectrogram, random_crop};
use crate::methods::{AudioMethod, AudioMethodConfig, AudioMethodVisitor};
use crate::models::{MaskedClips, MaskedFrameModel};

/// Speech: `[audio]` and `[audio_encoder]`, the methods of [`AudioMethod`].
pub struct Audio;

/// A run config of an audio method.
pub type AudioRunConfig = RunConfig<Audio>;

/// `[audio]` and `[audio_encoder]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AudioSettings {
    pub audio: AudioConfig,
    pub audio_encoder: AudioEncoderSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Clips are decoded to mono at this rate (Hz), resampled when they differ.
    pub sample_rate: u32,
    pub n_fft: usize,
    /// Window and hop of the STFT, in samples.
    pub win_length: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    /// Random crop (frames) of every training clip, pretraining and fine-tuning.
    pub crop_frames: usize,
    /// Non-empty: that speaker's clips (both splits) are the test set and training never sees
    /// them; empty: the manifest's `split` column (FSDD: takes 0–4 are test).
    pub heldout_speaker: String,
}

impl Default for AudioConfig {
    /// 8 kHz speech (FSDD): 25 ms windows, 10 ms hop, 40 mels; 1 s crops.
    fn default() -> Self {
        let m = LogMelConfig::speech_8k();
        Self {
            sample_rate: m.sample_rate,
            n_fft: m.n_fft,
            win_length: m.win_length,
            hop_length: m.hop_length,
            n_mels: m.n_mels,
            crop_frames: 100,
            heldout_speaker: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AudioEncoderSettings {
    /// Width of the conv front end and the Transformer.
    pub d_model: usize,
    pub conv_layers: usize,
    /// Frames each convolution sees (odd).
    pub conv_kernel: usize,
    /// Transformer layers, heads and feed-forward width.
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub dropout: f64,
}

impl Default for AudioEncoderSettings {
    fn default() -> Self {
        let e = AudioEncoderConfig::new(40);
        Self {
            d_model: e.d_model,
            conv_layers: e.conv_layers,
            conv_kernel: e.conv_kernel,
            n_layers: e.n_layers,
            n_heads: e.n_heads,
            d_ff: e.d_ff,
            dropout: e.dropout,
        }
    }
}

impl AudioConfig {
    pub fn logmel(&self) -> LogMelConfig {
        LogMelConfig {
            sample_rate: self.sample_rate,
            n_fft: self.n_fft,
            win_length: self.win_length,
            hop_length: self.hop_length,
            n_mels: self.n_mels,
            ..LogMelConfig::speech_8k()
        }
    }
}

impl AudioEncoderSettings {
    /// The encoder for `n_mels` input bins; errors name the `audio_encoder` key.
    pub fn encoder_config(&self, n_mels: usize) -> Result<AudioEncoderConfig> {
        let c = AudioEncoderConfig::new(n_mels)
            .with_d_model(self.d_model)
            .with_conv_layers(self.conv_layers)
            .with_conv_kernel(self.conv_kernel)
            .with_n_layers(self.n_layers)
            .with_n_heads(self.n_heads)
            .with_d_ff(self.d_ff)
            .with_dropout(self.dropout);
        c.validate()
            .map_err(|e| Error::msg(format!("config `audio_encoder`: {e}")))?;
        Ok(c)
    }
}

struct Causal;

impl AudioMethodVisitor for Causal {
    type Output = bool;
    fn visit<C: AudioMethodConfig>(self, _: &C) -> bool {
        C::CAUSAL
    }
}

/// The encoder architecture of an audio config (causal for CPC, whose context must not see
/// the frames it predicts).
pub fn encoder_config(config: &AudioRunConfig) -> Result<AudioEncoderConfig> {
    Ok(config
        .modality
        .audio_encoder
        .encoder_config(config.modality.audio.n_mels)?
        .with_causal(config.method.visit(Causal)))
}

/// Key moves of this version: the masking and CPC settings belong to their methods now.
const MOVED: &[(&str, &str, &[&str])] = &[
    ("audio.mask_ratio", "method.mask_ratio", &["masked_frames"]),
    ("audio.mask_span", "method.mask_span", &["masked_frames"]),
    (
        "audio.reconstruction",
        "method.reconstruction",
        &["masked_frames"],
    ),
    ("audio.cpc_steps", "method.cpc_steps", &["cpc"]),
];

struct Check(usize);

impl AudioMethodVisitor for Check {
    type Output = Result<()>;
    fn visit<C: AudioMethodConfig>(self, c: &C) -> Result<()> {
        Ok(c.check(self.0)?)
    }
}

impl Schema for Audio {
    const NAME: &'static str = "audio";
    type Settings = AudioSettings;
    type Method = AudioMethod;
    const MOVED_KEYS: &'static [(&'static str, &'static str, &'static [&'static str])] = MOVED;

    fn validate(config: &AudioRunConfig) -> Result<()> {
        let a = &config.modality.audio;
        a.logmel()
            .validate()
            .map_err(|e| Error::msg(format!("config `audio` log-mel settings: {e}")))?;
        if a.crop_frames < 2 {
            bail!(
                "config `audio.crop_frames` must be at least 2, got {}",
                a.crop_frames
            );
        }
        config.method.visit(Check(a.crop_frames))?;
        encoder_config(config)?;
        Ok(())
    }
}

impl Modality for Audio {
    type Task = AudioTask;
    const RECIPE: RecipeDefaults = RecipeDefaults::AUDIO;

    fn pretrain(run: Run<Self>) -> Result<PretrainSummary> {
        pretrain(run)
    }

    fn open_task(source: &TaskSource<Self>) -> Result<AudioTask> {
        AudioTask::open(source)
    }

    fn report_pictures(
        source: &TaskSource<Self>,
        task: &AudioTask,
        out_dir: &Path,
    ) -> Result<Vec<Picture>> {
        let file = "spectrograms.png";
        let caption = spectrogram_picture(source, task, &out_dir.join(file))?;
        Ok(vec![Picture {
            file: file.into(),
            title: "Spectrograms".into(),
            caption: format!(
                "{caption} Checkpoint {} (epoch {}).",
                source.checkpoint.path.display(),
                source.checkpoint.state.epoch
            ),
        }])
    }
}

/// Normalised log-mels of both splits (statistics fitted on the training clips).
pub struct AudioSplits {
    pub train: Vec<Spectrogram>,
    pub train_labels: Vec<u32>,
    pub train_paths: Vec<String>,
    pub test: Vec<Spectrogram>,
    pub test_labels: Vec<u32>,
    pub test_paths: Vec<String>,
    pub class_names: Vec<String>,
}

/// The clip list at `path`: a CSV manifest (`path,label[,speaker][,split]`), a folder holding
/// `labels.csv` (FSDD), or a folder with `train/<label>/*.wav` and `test/<label>/*.wav`.
fn open_clips(path: &Path) -> Result<(AudioDataset, AudioDataset)> {
    let manifest = if path.is_file() {
        Some(path.to_path_buf())
    } else if path.join("labels.csv").is_file() {
        Some(path.join("labels.csv"))
    } else {
        None
    };
    if let Some(m) = manifest {
        let all = AudioDataset::from_manifest(&m).map_err(Error::other)?;
        return Ok((all.split(Split::Train), all.split(Split::Test)));
    }
    if path.join("train").is_dir() && path.join("test").is_dir() {
        let train = AudioDataset::from_folder(&path.join("train")).map_err(Error::other)?;
        let test = AudioDataset::from_folder(&path.join("test")).map_err(Error::other)?;
        if train.classes != test.classes {
            bail!(
                "{}: train classes {:?} differ from test classes {:?}",
                path.display(),
                train.classes,
                test.classes
            );
        }
        return Ok((train, test));
    }
    bail!(
        "audio data `{}`: expected a CSV manifest (path,label[,speaker][,split]), a folder with labels.csv, or a folder with train/<label>/*.wav and test/<label>/*.wav",
        path.display()
    )
}

/// Both splits as normalised log-mels. With `audio.heldout_speaker`, that speaker's clips of
/// both splits are the test set and the others' clips the training set.
pub fn load_splits(config: &AudioRunConfig, path: &Path) -> Result<AudioSplits> {
    let a = &config.modality.audio;
    let (mut train, mut test) = open_clips(path)?;
    let speaker = &a.heldout_speaker;
    if !speaker.is_empty() {
        let mut all = train.clone();
        all.clips.extend(test.clips.iter().cloned());
        if !all.speakers().contains(speaker) {
            bail!(
                "config `audio.heldout_speaker`: no clip of speaker `{speaker}` in {}; speakers: {:?}",
                path.display(),
                all.speakers()
            );
        }
        train = all.filter(|c| c.speaker.as_ref() != Some(speaker));
        test = all.filter(|c| c.speaker.as_ref() == Some(speaker));
    }
    for (what, ds) in [("train", &train), ("test", &test)] {
        if ds.is_empty() {
            bail!(
                "audio data {}: no {what} clips (a manifest needs a `split` column with train and test rows)",
                path.display()
            );
        }
    }
    let logmel = a
        .logmel()
        .init()
        .map_err(|e| Error::msg(format!("config `audio`: {e}")))?;
    let features = |ds: &AudioDataset| -> Result<Vec<Spectrogram>> {
        ds.load(a.sample_rate)
            .map_err(Error::other)?
            .iter()
            .zip(&ds.clips)
            .map(|(samples, c)| {
                logmel
                    .compute(samples)
                    .map_err(|e| Error::msg(format!("{}: {e}", c.path.display())))
            })
            .collect()
    };
    let (mut train_specs, mut test_specs) = (features(&train)?, features(&test)?);
    let stats = FeatureStats::fit(&train_specs);
    train_specs
        .iter_mut()
        .chain(&mut test_specs)
        .for_each(|s| stats.normalize(s));
    let paths = |ds: &AudioDataset| {
        ds.clips
            .iter()
            .map(|c| c.path.display().to_string())
            .collect()
    };
    Ok(AudioSplits {
        train_labels: train.labels(),
        test_labels: test.labels(),
        train_paths: paths(&train),
        test_paths: paths(&test),
        class_names: train.classes.clone(),
        train: train_specs,
        test: test_specs,
    })
}

/// Pretraining batches: shuffled clips (the first `data.limit` when set), random crops of
/// `audio.crop_frames`; kNN on whole clips.
struct AudioData {
    config: AudioRunConfig,
    splits: std::sync::Arc<AudioSplits>,
    clips: usize,
}

impl<M: selfsup_methods::method::SslMethod<Input = Vec<Spectrogram>, Backbone = AudioEncoder>>
    TrainData<M> for AudioData
{
    fn samples(&self) -> usize {
        self.clips
    }

    fn steps_per_epoch(&self) -> usize {
        self.clips / self.config.train.batch_size
    }

    fn epoch<'a>(
        &'a self,
        epoch: usize,
        _: &'a Device,
    ) -> Box<dyn Iterator<Item = (Vec<Spectrogram>, usize)> + 'a> {
        let seed = self.config.train.seed;
        let crop = self.config.modality.audio.crop_frames;
        let batches =
            shuffled_batches(self.clips, self.config.train.batch_size, seed, epoch as u64);
        Box::new(batches.into_iter().map(move |idx| {
            let clips: Vec<Spectrogram> = idx
                .iter()
                .map(|&i| {
                    let mut rng = SampleRng::for_sample(seed, epoch as u64, i as u64, 1);
                    random_crop(&self.splits.train[i], crop, &mut rng)
                })
                .collect();
            let n = clips.len();
            (clips, n)
        }))
    }

    fn evaluate(&self, model: &M) -> Result<Figures> {
        let c = &self.config;
        let task = AudioTask {
            config: c.clone(),
            architecture: encoder_config(c)?,
            splits: self.splits.clone(),
            pretrained: model.backbone().clone(),
            device: selfsup_core::device::select(&c.train.device)?,
        };
        Ok(knn_figures(downstream::epoch_knn(
            task,
            &c.eval,
            c.train.seed,
        )?))
    }
}

/// Builds the configured method and runs the loop on it.
struct Train<'a> {
    run: Run<Audio>,
    data: &'a AudioData,
    encoder: AudioEncoderConfig,
}

impl AudioMethodVisitor for Train<'_> {
    type Output = Result<PretrainSummary>;
    fn visit<C: AudioMethodConfig>(self, c: &C) -> Result<PretrainSummary> {
        let model = c.init(&self.encoder, &self.run.device);
        self.run.train(model, self.data)
    }
}

fn pretrain(run: Run<Audio>) -> Result<PretrainSummary> {
    let config = run.config.clone();
    let data_path = config.data_path(run.base_dir());
    let splits = load_splits(&config, &data_path)?;
    let clips = match config.data.limit {
        0 => splits.train.len(),
        n => n.min(splits.train.len()),
    };
    if clips < config.train.batch_size {
        bail!(
            "the audio data {} has {clips} training clips, fewer than train.batch_size = {}",
            data_path.display(),
            config.train.batch_size
        );
    }
    let encoder = encoder_config(&config)?;
    let data = AudioData {
        config: config.clone(),
        splits: std::sync::Arc::new(splits),
        clips,
    };
    config.method.visit(Train {
        run,
        data: &data,
        encoder,
    })
}

/// The few-label task of an audio checkpoint: its encoder and the clips' log-mels.
pub struct AudioTask {
    config: AudioRunConfig,
    architecture: AudioEncoderConfig,
    splits: std::sync::Arc<AudioSplits>,
    pretrained: AudioEncoder,
    device: Device,
}

impl AudioTask {
    pub fn open(source: &TaskSource<Audio>) -> Result<Self> {
        let config = source.config.clone();
        let device = selfsup_core::device::select(&config.train.device)?;
        let architecture = encoder_config(&config)?;
        let c = &source.checkpoint;
        let pretrained =
            load_named_tensors(architecture.init(&device), &c.section("model"), "backbone.")
                .map_err(|e| {
                    Error::msg(format!(
                        "checkpoint {} does not fit its audio encoder: {e}",
                        c.path.display()
                    ))
                })?;
        let splits = load_splits(&config, &source.data_path)
            .with_context(|| format!("audio data of checkpoint {}", c.path.display()))?;
        Ok(Self {
            config,
            architecture,
            splits: std::sync::Arc::new(splits),
            pretrained,
            device,
        })
    }

    fn clips(&self, split: DataSplit) -> &[Spectrogram] {
        match split {
            DataSplit::Train => &self.splits.train,
            DataSplit::Test => &self.splits.test,
        }
    }
}

impl DownstreamTask for AudioTask {
    type Encoder = AudioEncoder;
    type Batch = FrameBatch;

    fn len(&self, split: DataSplit) -> usize {
        self.clips(split).len()
    }

    fn labels(&self, split: DataSplit) -> Vec<Option<u32>> {
        let l = match split {
            DataSplit::Train => &self.splits.train_labels,
            DataSplit::Test => &self.splits.test_labels,
        };
        l.iter().map(|&l| Some(l)).collect()
    }

    fn class_names(&self) -> Vec<String> {
        self.splits.class_names.clone()
    }

    fn sample_names(&self, split: DataSplit, rows: &[usize]) -> Vec<String> {
        let p = match split {
            DataSplit::Train => &self.splits.train_paths,
            DataSplit::Test => &self.splits.test_paths,
        };
        rows.iter().map(|&r| p[r].clone()).collect()
    }

    fn augmentation(&self) -> String {
        format!(
            "random {}-frame crop + SpecAugment (2 × ≤8 mels, 2 × ≤10 frames); AdamW, 10 % warm-up",
            self.config.modality.audio.crop_frames
        )
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn embed_dim(&self) -> usize {
        self.architecture.d_model
    }

    fn encoder(&self, init: Init, device: &Device) -> Result<AudioEncoder> {
        fresh_encoder(init, device, &self.pretrained, |d| {
            self.architecture.init(d)
        })
    }

    fn batches<'a>(
        &'a self,
        split: DataSplit,
        rows: &'a [usize],
        batch_size: usize,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = FrameBatch> + 'a>> {
        let clips = self.clips(split);
        Ok(Box::new(rows.chunks(batch_size.max(1)).map(move |chunk| {
            let specs: Vec<Spectrogram> = chunk.iter().map(|&i| clips[i].clone()).collect();
            FrameBatch::collate(&specs, device)
        })))
    }

    fn train_batches<'a>(
        &'a self,
        rows: &'a [usize],
        batch_size: usize,
        seed: u64,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = (FrameBatch, Vec<u32>)> + 'a>> {
        let crop = self.config.modality.audio.crop_frames;
        let augment = SpecAugmentConfig::speech();
        let batches = (0u64..)
            .flat_map(move |pass| shuffled_batches(rows.len(), batch_size, seed, pass))
            .enumerate();
        Ok(Box::new(batches.map(move |(step, idx)| {
            let mut rng = SampleRng::for_sample(seed, step as u64, 1, 2);
            let clips: Vec<Spectrogram> = idx
                .iter()
                .map(|&i| {
                    let mut s = random_crop(&self.splits.train[rows[i]], crop, &mut rng);
                    augment.apply(&mut s, &mut rng, 0.0);
                    s
                })
                .collect();
            let labels = idx
                .iter()
                .map(|&i| self.splits.train_labels[rows[i]])
                .collect();
            (FrameBatch::collate(&clips, device), labels)
        })))
    }

    fn forward(&self, encoder: &AudioEncoder, batch: FrameBatch) -> Tensor<2> {
        encoder.embed(&batch)
    }
}

/// Report: the first test clip of each class (at most 10) as the model sees them, written to
/// `png`. masked_frames: input, masked input (masked spans blue), and the input with the masked
/// spans filled in by the checkpoint's reconstruction (underlined blue); other methods: the
/// input. Returns a caption.
fn spectrogram_picture(source: &TaskSource<Audio>, task: &AudioTask, png: &Path) -> Result<String> {
    let config = &source.config;
    let splits = &task.splits;
    let mut picked: Vec<usize> = Vec::new();
    for (i, l) in splits.test_labels.iter().enumerate() {
        if picked.len() < 10 && !picked.iter().any(|&p| splits.test_labels[p] == *l) {
            picked.push(i);
        }
    }
    let clips: Vec<Spectrogram> = picked.iter().map(|&i| splits.test[i].clone()).collect();
    let names: Vec<&str> = picked
        .iter()
        .map(|&i| splits.class_names[splits.test_labels[i] as usize].as_str())
        .collect();
    let n_mels = config.modality.audio.n_mels;
    let what = format!(
        "Test clips of classes {} (one each, left to right), normalised log-mels ({n_mels} mels, low frequencies at the bottom)",
        names.join(", "),
    );
    let AudioMethod::MaskedFrames(m) = &config.method else {
        let (w, h) = crate::spectrogram_png::write(png, &[clips], &[], &[], &[])?;
        return Ok(format!("{what}; {w} × {h} px."));
    };
    let dev = task.device.clone();
    let c = &source.checkpoint;
    let model: MaskedFrameModel =
        load_named_tensors(m.init(&task.architecture, &dev), &c.section("model"), "").map_err(
            |e| {
                Error::msg(format!(
                    "checkpoint {} does not fit its model: {e}",
                    c.path.display()
                ))
            },
        )?;
    let model = model.valid();
    let MaskedClips { inputs, masks } = model.mask_clips(&clips, (config.train.seed, 0));
    let batch = FrameBatch::collate(&inputs, &dev);
    let t = batch.features.dims()[1];
    let prediction = model
        .predict(&batch)
        .0
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 prediction");
    let filled: Vec<Spectrogram> = clips
        .iter()
        .zip(&masks)
        .enumerate()
        .map(|(i, (clip, mask))| {
            let mut out = clip.clone();
            for (frame, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
                let at = (i * t + frame) * n_mels;
                out.data[frame * n_mels..(frame + 1) * n_mels]
                    .copy_from_slice(&prediction[at..at + n_mels]);
            }
            out
        })
        .collect();
    let (w, h) = crate::spectrogram_png::write(png, &[clips, inputs, filled], &masks, &[1], &[2])?;
    Ok(format!(
        "{what}. Top: input; middle: the masked-frame pretext's input ({:.0} % of frames in spans of {}–{}, blue); bottom: the input with the masked spans replaced by the checkpoint's reconstruction (underlined blue). {w} × {h} px.",
        100.0 * m.mask_ratio,
        m.mask_span[0],
        m.mask_span[1]
    ))
}

#[cfg(test)]
mod tests {
    use selfsup_eval::{LinearProbeConfig, Normalization, linear_probe};

    use super::*;

    /// LP-FT's probed head, placed in the fine-tuning classifier on the audio encoder, reproduces the linear probe's own logits on
    /// the frozen embeddings (so the [classes, dim] → [dim, classes] layout is right).
    #[test]
    fn probed_head_carries_the_probe_weights() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let (n_mels, classes) = (8, 3);
        let cfg = crate::AudioEncoderConfig::new(n_mels)
            .with_d_model(16)
            .with_d_ff(32)
            .with_n_layers(1);
        let encoder = cfg.init(&device);
        // Class c: a sine over mel bins with a class-specific frequency.
        let train: Vec<(Spectrogram, u32)> = (0..12)
            .map(|i| {
                let (c, frames) = ((i % classes) as u32, 10 + i);
                let data = (0..frames * n_mels)
                    .map(|j| ((1.0 + c as f32) * 0.5 * (j % n_mels) as f32 + 0.1 * i as f32).sin())
                    .collect();
                let spec = Spectrogram {
                    frames,
                    n_mels,
                    data,
                };
                (spec, c)
            })
            .collect();
        let probe = LinearProbeConfig {
            epochs: 200,
            lr: 1e-2,
            ..Default::default()
        };
        let specs: Vec<Spectrogram> = train.iter().map(|c| c.0.clone()).collect();
        let labels: Vec<u32> = train.iter().map(|c| c.1).collect();
        let embed = |encoder: &AudioEncoder| {
            let z = encoder.valid().embed(&FrameBatch::collate(&specs, &device));
            let data = z.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            selfsup_eval::Features::new(data, specs.len(), 16).unwrap()
        };
        let head =
            selfsup_eval::probed_linear_head(&embed(&encoder), &labels, classes, &probe, &device)
                .unwrap();
        assert_eq!(head.weight.dims(), [16, classes]);

        // Independent route: the probe's weights applied by hand to the embeddings.
        let feats = embed(&encoder);
        let fit = linear_probe(
            &feats,
            &labels,
            &feats,
            &labels,
            &LinearProbeConfig {
                normalization: Normalization::None,
                num_classes: Some(classes),
                ..probe
            },
        )
        .unwrap();
        assert!(fit.train_top1 > 0.5, "the probe learns: {}", fit.train_top1);
        let model = selfsup_core::finetune::Classifier { encoder, head }.valid();
        let batch = FrameBatch::collate(&specs, &model.head.weight.device());
        let logits = model
            .head
            .forward(model.encoder.embed(&batch))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for i in 0..train.len() {
            let x = &feats.data[i * 16..(i + 1) * 16];
            for c in 0..classes {
                let w = &fit.weights[c * 16..(c + 1) * 16];
                let by_hand: f32 = fit.bias[c] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
                let got = logits[i * classes + c];
                assert!(
                    (got - by_hand).abs() < 1e-4,
                    "clip {i} class {c}: {got} vs {by_hand}"
                );
            }
        }
    }
}
