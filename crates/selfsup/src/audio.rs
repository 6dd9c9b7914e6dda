//! Audio in the CLI: clip datasets (FSDD-style CSV manifest or `ROOT/{train,test}/<label>/`)
//! as normalised log-mel spectrograms, pretraining data for the one loop (masked_frames, cpc,
//! audio_simclr),
//! kNN on mean-pooled utterance embeddings, and the few-label task of `finetune` / `prove`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use selfsup_audio::finetune::random_crop;
use selfsup_audio::{
    AudioDataset, AudioEncoder, AudioEncoderConfig, AudioViewConfig, ContrastiveAudioModel,
    CpcModel, FeatureStats, FinetuneConfig, FrameBatch, MaskedClips, MaskedFrameModel,
    SpecAugmentConfig, Spectrogram, Split, embed_all,
};
use selfsup_data::SampleRng;
use selfsup_data::shuffled_batches;
use selfsup_eval::{Features, KnnConfig, SubsetSpec, knn_classify, stratified_subset};
use selfsup_methods::method::SslMethod;
use selfsup_models::{load_named_tensors, named_tensors};

use crate::checkpoint;
use crate::config::Config;
use crate::device;
use crate::downstream::{Downstream, FullResult, Init};
use crate::finetune::Recipe;
use crate::pretrain::{PretrainSummary, Session};
use crate::train_data::{Figures, TrainData, knn_figures};

/// Normalised log-mels of both splits (statistics fitted on the training clips).
pub struct AudioSplits {
    pub train: Vec<Spectrogram>,
    pub train_labels: Vec<u32>,
    pub test: Vec<Spectrogram>,
    pub test_labels: Vec<u32>,
    pub class_names: Vec<String>,
}

/// The clip list at `path`: a CSV manifest (`path,label[,speaker][,split]`), a folder holding
/// `labels.csv` (FSDD), or a folder with `train/<label>/*.wav` and `test/<label>/*.wav`.
fn open_clips(path: &Path) -> Result<(AudioDataset, AudioDataset)> {
    let bad = |e: selfsup_audio::AudioError| anyhow::anyhow!("{e}");
    let manifest = if path.is_file() {
        Some(path.to_path_buf())
    } else if path.join("labels.csv").is_file() {
        Some(path.join("labels.csv"))
    } else {
        None
    };
    if let Some(m) = manifest {
        let all = AudioDataset::from_manifest(&m).map_err(bad)?;
        return Ok((all.split(Split::Train), all.split(Split::Test)));
    }
    if path.join("train").is_dir() && path.join("test").is_dir() {
        let train = AudioDataset::from_folder(&path.join("train")).map_err(bad)?;
        let test = AudioDataset::from_folder(&path.join("test")).map_err(bad)?;
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
pub fn load_splits(config: &Config, path: &Path) -> Result<AudioSplits> {
    let (mut train, mut test) = open_clips(path)?;
    let speaker = &config.audio.heldout_speaker;
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
    let logmel = config
        .audio
        .logmel()
        .init()
        .map_err(|e| anyhow::anyhow!("config `audio`: {e}"))?;
    let features = |ds: &AudioDataset| -> Result<Vec<Spectrogram>> {
        ds.load(config.audio.sample_rate)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .iter()
            .zip(&ds.clips)
            .map(|(a, c)| {
                logmel
                    .compute(a)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", c.path.display()))
            })
            .collect()
    };
    let (mut train_specs, mut test_specs) = (features(&train)?, features(&test)?);
    let stats = FeatureStats::fit(&train_specs);
    train_specs
        .iter_mut()
        .chain(&mut test_specs)
        .for_each(|s| stats.normalize(s));
    Ok(AudioSplits {
        train_labels: train.labels(),
        test_labels: test.labels(),
        class_names: train.classes.clone(),
        train: train_specs,
        test: test_specs,
    })
}

fn knn(
    config: &Config,
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
) -> Result<f64> {
    let cfg = KnnConfig {
        k: config.eval.knn_k,
        temperature: config.eval.knn_temperature as f32,
        ..Default::default()
    };
    Ok(knn_classify(train, train_labels, test, test_labels, &cfg)?.top1)
}

/// Pretraining batches: shuffled clips (the first `data.limit` when set), random crops of
/// `audio.crop_frames`; kNN on whole clips.
struct AudioData {
    config: Config,
    splits: AudioSplits,
    clips: usize,
}

impl<M: SslMethod<Input = Vec<Spectrogram>, Backbone = AudioEncoder>> TrainData<M> for AudioData {
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
        let (seed, crop) = (self.config.train.seed, self.config.audio.crop_frames);
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
        let b = self.config.eval.batch_size;
        let s = &self.splits;
        let top1 = knn(
            &self.config,
            &embed_all(model.backbone(), &s.train, b),
            &s.train_labels,
            &embed_all(model.backbone(), &s.test, b),
            &s.test_labels,
        )?;
        Ok(knn_figures(top1))
    }
}

/// The encoder architecture of an audio config (causal for CPC, whose context must not see
/// the frames it predicts).
pub fn encoder_config(config: &Config) -> Result<AudioEncoderConfig> {
    Ok(config
        .audio_encoder
        .encoder_config(config.audio.n_mels)?
        .with_causal(config.method.name == "cpc"))
}

/// `selfsup pretrain` for `masked_frames`, `cpc` and `audio_simclr`: the session's loop on
/// audio batches.
pub(crate) fn pretrain(
    session: Session,
    base_dir: &Path,
    device: &Device,
) -> Result<PretrainSummary> {
    let config = session.config.clone();
    let data_path = config.data_path(base_dir);
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
        splits,
        clips,
    };
    match config.method.name.as_str() {
        "masked_frames" => session.train(
            MaskedFrameModel::new(
                &encoder,
                config.audio.span_mask()?,
                config.audio.reconstruction()?,
                device,
            ),
            &data,
            device,
        ),
        "cpc" => session.train(
            CpcModel::new(
                &encoder,
                config.audio.cpc_steps,
                config.method.temperature,
                device,
            ),
            &data,
            device,
        ),
        "audio_simclr" => session.train(
            ContrastiveAudioModel::new(
                &encoder,
                &config.method.projection_dims,
                config.method.temperature,
                AudioViewConfig::speech(),
                device,
            ),
            &data,
            device,
        ),
        other => bail!("config `method.name`: `{other}` is not an audio method"),
    }
}

/// The pretrained encoder of an audio checkpoint (`model.backbone.*`).
pub fn load_encoder(
    c: &checkpoint::Checkpoint,
    config: &Config,
    dev: &Device,
) -> Result<AudioEncoder> {
    load_named_tensors(
        encoder_config(config)?.init(dev),
        &c.section("model"),
        "backbone.",
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "checkpoint {} does not fit its audio encoder: {e}",
            c.path.display()
        )
    })
}

/// The few-label task of an audio checkpoint.
pub struct AudioTask {
    config: Config,
    splits: AudioSplits,
    pretrained: AudioEncoder,
    dev: Device,
}

impl AudioTask {
    pub fn new(c: &checkpoint::Checkpoint, config: Config, data_path: &Path) -> Result<Self> {
        let dev = device::select(&config.train.device)?;
        let pretrained = load_encoder(c, &config, &dev)?;
        let splits = load_splits(&config, data_path)
            .with_context(|| format!("audio data of checkpoint {}", c.path.display()))?;
        Ok(Self {
            config,
            splits,
            pretrained,
            dev,
        })
    }

    /// The pretrained encoder, or the same architecture at random initialisation, on `dev`.
    fn encoder(&self, init: Init, dev: &Device) -> Result<AudioEncoder> {
        let fresh = |seed: u64| -> Result<AudioEncoder> {
            dev.seed(seed);
            Ok(encoder_config(&self.config)?.init(dev))
        };
        match init {
            Init::Random { seed } => fresh(seed),
            Init::Pretrained => load_named_tensors(fresh(0)?, &named_tensors(&self.pretrained), "")
                .map_err(|e| anyhow::anyhow!("copying the encoder: {e}")),
        }
    }
}

impl Downstream for AudioTask {
    fn train_labels(&self) -> &[u32] {
        &self.splits.train_labels
    }

    fn test_labels(&self) -> &[u32] {
        &self.splits.test_labels
    }

    fn augmentation(&self) -> String {
        format!(
            "random {}-frame crop + SpecAugment (2 × ≤8 mels, 2 × ≤10 frames); AdamW, 10 % warm-up",
            self.config.audio.crop_frames
        )
    }

    fn features(&self, init: Init, train_rows: &[usize]) -> Result<(Features, Features)> {
        let encoder = self.encoder(init, &self.dev)?;
        let b = self.config.eval.batch_size;
        let train: Vec<Spectrogram> = train_rows
            .iter()
            .map(|&i| self.splits.train[i].clone())
            .collect();
        Ok((
            embed_all(&encoder, &train, b),
            embed_all(&encoder, &self.splits.test, b),
        ))
    }

    fn finetune(
        &self,
        init: Init,
        subset: &[usize],
        recipe: &Recipe,
        _quiet: bool,
    ) -> Result<FullResult> {
        let ad = self.dev.clone().autodiff();
        let encoder = self.encoder(init, &ad)?;
        let pair =
            |specs: &[Spectrogram], labels: &[u32], rows: &mut dyn Iterator<Item = usize>| {
                rows.map(|i| (specs[i].clone(), labels[i]))
                    .collect::<Vec<_>>()
            };
        let s = &self.splits;
        let train = pair(&s.train, &s.train_labels, &mut subset.iter().copied());
        let test = pair(&s.test, &s.test_labels, &mut (0..s.test.len()));
        let cfg = FinetuneConfig {
            steps: recipe.steps_for(subset.len()),
            batch_size: recipe.batch_for(subset.len()),
            lr: recipe.lr(),
            backbone_lr_mult: match init {
                Init::Pretrained => recipe.backbone_lr_mult(),
                Init::Random { .. } => 1.0,
            },
            weight_decay: recipe.weight_decay(),
            crop_frames: self.config.audio.crop_frames,
            augment: SpecAugmentConfig::speech(),
            seed: recipe.seed,
            classes: s.class_names.len(),
            // LP-FT applies to both arms: a scratch encoder's head is probed on its random
            // features just as a pretrained one's.
            probe_head: recipe.lp_ft.then(|| recipe.linear_probe_config()),
        };
        let r = selfsup_audio::finetune(encoder, &train, &test, &cfg, &ad)
            .map_err(anyhow::Error::msg)?;
        Ok(FullResult {
            top1: r.top1,
            top5: None,
            steps: r.steps,
            final_loss: r.final_loss,
            train_seconds: r.train_seconds,
            test_seconds: r.test_seconds,
        })
    }
}

/// Report: embeddings of up to `points` test clips (stratified by class), their labels, and
/// the class names.
pub fn test_embeddings(
    c: &checkpoint::Checkpoint,
    config: &Config,
    data_path: &Path,
    points: usize,
) -> Result<(Features, Vec<u32>, Vec<String>)> {
    let dev = device::select(&config.train.device)?;
    let encoder = load_encoder(c, config, &dev)?;
    let splits = load_splits(config, data_path)?;
    let n = splits.test.len();
    let subset = if points < n {
        let spec = SubsetSpec::Fraction(points as f64 / n as f64);
        stratified_subset(&splits.test_labels, spec, config.train.seed)?
    } else {
        (0..n).collect()
    };
    let specs: Vec<Spectrogram> = subset.iter().map(|&i| splits.test[i].clone()).collect();
    let labels = subset.iter().map(|&i| splits.test_labels[i]).collect();
    let feats = embed_all(&encoder, &specs, config.eval.batch_size);
    Ok((feats, labels, splits.class_names))
}

/// Report: the first test clip of each class (at most 10) as the model sees them, written to
/// `png`. masked_frames: input, masked input (masked spans blue), and the input with the masked
/// spans filled in by the checkpoint's reconstruction (underlined blue); cpc: the input.
/// Returns a caption.
pub fn spectrogram_picture(
    c: &checkpoint::Checkpoint,
    config: &Config,
    data_path: &Path,
    png: &Path,
) -> Result<String> {
    let splits = load_splits(config, data_path)?;
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
    let what = format!(
        "Test clips of classes {} (one each, left to right), normalised log-mels ({} mels, low frequencies at the bottom)",
        names.join(", "),
        config.audio.n_mels
    );
    if config.method.name != "masked_frames" {
        let (w, h) = crate::spectrogram_png::write(png, &[clips], &[], &[], &[])?;
        return Ok(format!("{what}; {w} × {h} px."));
    }
    let dev = device::select(&config.train.device)?;
    let model = MaskedFrameModel::new(
        &encoder_config(config)?,
        config.audio.span_mask()?,
        config.audio.reconstruction()?,
        &dev,
    );
    let model = load_named_tensors(model, &c.section("model"), "")
        .map_err(|e| {
            anyhow::anyhow!(
                "checkpoint {} does not fit its model: {e}",
                c.path.display()
            )
        })?
        .valid();
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
    let n_mels = config.audio.n_mels;
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
        100.0 * config.audio.mask_ratio,
        config.audio.mask_span[0],
        config.audio.mask_span[1]
    ))
}
