//! Log-mel spectrograms, matching `librosa.feature.melspectrogram` (see [`LogMelConfig`]),
//! per-bin normalisation and SpecAugment masking.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use selfsup_data::SampleRng;

use crate::error::{AudioError, Result};

/// Mel scale of the filterbank's band edges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above (librosa's default).
    Slaney,
    /// `2595 · log10(1 + f/700)` (HTK; torchaudio's default).
    Htk,
}

/// Log-mel parameters. The computation is librosa's `melspectrogram(y, sr, n_fft, hop_length,
/// win_length, window='hann', center=True, pad_mode='constant', power=2.0, n_mels, fmin, fmax,
/// htk, norm='slaney' or None)` followed by `ln(S + log_offset)`: the signal is zero-padded by
/// `n_fft/2` on both sides, frame `t` starts at `t · hop_length` (so a clip of N samples has
/// `1 + N / hop_length` frames), a periodic Hann window of `win_length` sits centred in `n_fft`,
/// and the power spectrum goes through triangular mel filters (area-normalised with
/// `slaney_norm`). Checked against librosa 0.11 in `fixtures/logmel.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMelConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub win_length: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    pub f_min: f64,
    /// Upper band edge; `None` is `sample_rate / 2`.
    pub f_max: Option<f64>,
    pub mel_scale: MelScale,
    pub slaney_norm: bool,
    pub log_offset: f64,
}

impl LogMelConfig {
    /// 8 kHz speech: 25 ms windows (200) in 32 ms FFTs (256), 10 ms hop (80), 40 Slaney mels
    /// over 0–4 kHz, `ln(S + 1e-6)`.
    pub fn speech_8k() -> Self {
        Self {
            sample_rate: 8000,
            n_fft: 256,
            win_length: 200,
            hop_length: 80,
            n_mels: 40,
            f_min: 0.0,
            f_max: None,
            mel_scale: MelScale::Slaney,
            slaney_norm: true,
            log_offset: 1e-6,
        }
    }

    pub fn f_max(&self) -> f64 {
        self.f_max.unwrap_or(self.sample_rate as f64 / 2.0)
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |field, reason: String| Err(AudioError::Config { field, reason });
        if self.sample_rate == 0 {
            return fail("sample_rate", "must be > 0".into());
        }
        if self.n_fft < 2 || self.n_fft % 2 != 0 {
            return fail(
                "n_fft",
                format!("must be even and >= 2, got {}", self.n_fft),
            );
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return fail(
                "win_length",
                format!(
                    "must be in 1..=n_fft ({}), got {}",
                    self.n_fft, self.win_length
                ),
            );
        }
        if self.hop_length == 0 {
            return fail("hop_length", "must be > 0".into());
        }
        if self.n_mels == 0 {
            return fail("n_mels", "must be > 0".into());
        }
        let nyquist = self.sample_rate as f64 / 2.0;
        if !(self.f_min >= 0.0 && self.f_min < self.f_max() && self.f_max() <= nyquist) {
            return fail(
                "f_min/f_max",
                format!(
                    "need 0 <= f_min < f_max <= sample_rate/2 ({nyquist}), got {} and {}",
                    self.f_min,
                    self.f_max()
                ),
            );
        }
        if !(self.log_offset > 0.0 && self.log_offset.is_finite()) {
            return fail(
                "log_offset",
                format!("must be > 0, got {}", self.log_offset),
            );
        }
        Ok(())
    }

    /// Validates and precomputes window, filterbank and FFT plan.
    pub fn init(&self) -> Result<LogMel> {
        self.validate()?;
        let n_fft = self.n_fft;
        // Periodic Hann of win_length, centred in n_fft (librosa's `pad_center`).
        let mut window = vec![0.0f32; n_fft];
        let offset = (n_fft - self.win_length) / 2;
        for i in 0..self.win_length {
            let phase = 2.0 * std::f64::consts::PI * i as f64 / self.win_length as f64;
            window[offset + i] = (0.5 - 0.5 * phase.cos()) as f32;
        }
        let filters = mel_filterbank(self);
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
        Ok(LogMel {
            config: self.clone(),
            window,
            filters,
            fft,
        })
    }
}

fn hz_to_mel(f: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + f / 700.0).log10(),
        MelScale::Slaney => {
            let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
            let min_log_mel = min_log_hz / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if f >= min_log_hz {
                min_log_mel + (f / min_log_hz).ln() / logstep
            } else {
                f / f_sp
            }
        }
    }
}

fn mel_to_hz(m: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(m / 2595.0) - 1.0),
        MelScale::Slaney => {
            let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
            let min_log_mel = min_log_hz / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if m >= min_log_mel {
                min_log_hz * (logstep * (m - min_log_mel)).exp()
            } else {
                f_sp * m
            }
        }
    }
}

/// `[n_mels][n_fft/2 + 1]` triangular filters on mel-spaced edges, as `librosa.filters.mel`.
fn mel_filterbank(c: &LogMelConfig) -> Vec<Vec<f32>> {
    let n_bins = c.n_fft / 2 + 1;
    let (lo, hi) = (
        hz_to_mel(c.f_min, c.mel_scale),
        hz_to_mel(c.f_max(), c.mel_scale),
    );
    let edges: Vec<f64> = (0..c.n_mels + 2)
        .map(|i| {
            mel_to_hz(
                lo + (hi - lo) * i as f64 / (c.n_mels + 1) as f64,
                c.mel_scale,
            )
        })
        .collect();
    let bin_hz = |k: usize| k as f64 * c.sample_rate as f64 / c.n_fft as f64;
    (0..c.n_mels)
        .map(|m| {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = if c.slaney_norm {
                2.0 / (right - left)
            } else {
                1.0
            };
            (0..n_bins)
                .map(|k| {
                    let f = bin_hz(k);
                    let rising = (f - left) / (centre - left);
                    let falling = (right - f) / (right - centre);
                    (rising.min(falling).max(0.0) * norm) as f32
                })
                .collect()
        })
        .collect()
}

/// A `[frames, n_mels]` row-major feature matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    pub frames: usize,
    pub n_mels: usize,
    pub data: Vec<f32>,
}

impl Spectrogram {
    pub fn frame(&self, t: usize) -> &[f32] {
        &self.data[t * self.n_mels..(t + 1) * self.n_mels]
    }

    /// Frames `start..start + len` (clamped to the clip).
    pub fn crop(&self, start: usize, len: usize) -> Spectrogram {
        let start = start.min(self.frames);
        let end = (start + len).min(self.frames);
        Spectrogram {
            frames: end - start,
            n_mels: self.n_mels,
            data: self.data[start * self.n_mels..end * self.n_mels].to_vec(),
        }
    }
}

/// A planned log-mel transform; see [`LogMelConfig`].
#[derive(Clone)]
pub struct LogMel {
    config: LogMelConfig,
    window: Vec<f32>,
    filters: Vec<Vec<f32>>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("config", &self.config)
            .finish()
    }
}

impl LogMel {
    pub fn config(&self) -> &LogMelConfig {
        &self.config
    }

    /// The log-mel spectrogram of a mono clip at `config.sample_rate`. Fails on an empty clip.
    pub fn compute(&self, samples: &[f32]) -> Result<Spectrogram> {
        let c = &self.config;
        if samples.is_empty() {
            return Err(AudioError::Config {
                field: "samples",
                reason: "cannot compute a spectrogram of a zero-length clip".into(),
            });
        }
        let half = c.n_fft / 2;
        let mut padded = vec![0.0f32; samples.len() + 2 * half];
        padded[half..half + samples.len()].copy_from_slice(samples);
        let frames = 1 + (padded.len() - c.n_fft) / c.hop_length;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut power = vec![0.0f32; spectrum.len()];
        let mut data = Vec::with_capacity(frames * c.n_mels);
        for t in 0..frames {
            let chunk = &padded[t * c.hop_length..t * c.hop_length + c.n_fft];
            for ((x, &s), &w) in input.iter_mut().zip(chunk).zip(&self.window) {
                *x = s * w;
            }
            self.fft
                .process(&mut input, &mut spectrum)
                .expect("buffers come from the plan");
            for (p, z) in power.iter_mut().zip(&spectrum) {
                *p = z.norm_sqr();
            }
            for filter in &self.filters {
                let energy: f64 = filter
                    .iter()
                    .zip(&power)
                    .map(|(&w, &p)| w as f64 * p as f64)
                    .sum();
                data.push((energy + c.log_offset).ln() as f32);
            }
        }
        Ok(Spectrogram {
            frames,
            n_mels: c.n_mels,
            data,
        })
    }
}

/// Per-mel-bin mean and standard deviation over all frames of a set of spectrograms.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl FeatureStats {
    /// Fitted on `specs` (all with the same `n_mels`; at least one frame in all).
    pub fn fit(specs: &[Spectrogram]) -> Self {
        let n_mels = specs[0].n_mels;
        let mut sum = vec![0.0f64; n_mels];
        let mut sq = vec![0.0f64; n_mels];
        let mut count = 0usize;
        for s in specs {
            assert_eq!(s.n_mels, n_mels, "spectrograms with different n_mels");
            for t in 0..s.frames {
                for (m, &v) in s.frame(t).iter().enumerate() {
                    sum[m] += v as f64;
                    sq[m] += v as f64 * v as f64;
                }
            }
            count += s.frames;
        }
        assert!(count > 0, "no frames to fit statistics on");
        let n = count as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n - m * m).max(0.0).sqrt().max(1e-5)) as f32)
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// `(x - mean) / std` per bin, in place.
    pub fn normalize(&self, spec: &mut Spectrogram) {
        for frame in spec.data.chunks_exact_mut(spec.n_mels) {
            for ((v, m), s) in frame.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }
}

/// SpecAugment masking (Park et al. 2019, without time warping): `freq_masks` bands of
/// `0..=max_freq_width` mel bins and `time_masks` spans of `0..=max_time_width` frames (at most
/// `max_time_fraction` of the clip each), positions uniform, filled with `fill`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecAugmentConfig {
    pub freq_masks: usize,
    pub max_freq_width: usize,
    pub time_masks: usize,
    pub max_time_width: usize,
    pub max_time_fraction: f64,
}

impl SpecAugmentConfig {
    /// Two bands of up to 8 mels and two spans of up to 10 frames (≤ 20 % of the clip).
    pub fn speech() -> Self {
        Self {
            freq_masks: 2,
            max_freq_width: 8,
            time_masks: 2,
            max_time_width: 10,
            max_time_fraction: 0.2,
        }
    }

    /// Masks `spec` in place; deterministic for a given `rng` state.
    pub fn apply(&self, spec: &mut Spectrogram, rng: &mut SampleRng, fill: f32) {
        let (frames, n_mels) = (spec.frames, spec.n_mels);
        for _ in 0..self.freq_masks {
            let width = rng.below(self.max_freq_width.min(n_mels) as u64 + 1) as usize;
            let start = rng.below((n_mels - width) as u64 + 1) as usize;
            for t in 0..frames {
                spec.data[t * n_mels + start..t * n_mels + start + width].fill(fill);
            }
        }
        let cap = ((self.max_time_fraction * frames as f64) as usize).min(self.max_time_width);
        for _ in 0..self.time_masks {
            let width = rng.below(cap as u64 + 1) as usize;
            let start = rng.below((frames - width) as u64 + 1) as usize;
            spec.data[start * n_mels..(start + width) * n_mels].fill(fill);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn config_from(v: &Value) -> LogMelConfig {
        let u = |k: &str| v[k].as_u64().unwrap() as usize;
        LogMelConfig {
            sample_rate: u("sample_rate") as u32,
            n_fft: u("n_fft"),
            win_length: u("win_length"),
            hop_length: u("hop_length"),
            n_mels: u("n_mels"),
            f_min: v["f_min"].as_f64().unwrap(),
            f_max: v["f_max"].as_f64(),
            mel_scale: if v["htk"].as_bool().unwrap() {
                MelScale::Htk
            } else {
                MelScale::Slaney
            },
            slaney_norm: v["slaney_norm"].as_bool().unwrap(),
            log_offset: v["log_offset"].as_f64().unwrap(),
        }
    }

    #[test]
    fn matches_librosa_fixture() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/logmel.json");
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let config = config_from(&case["config"]);
            let samples: Vec<f32> = match case["wav"].as_str() {
                Some(rel) => {
                    let clip = crate::wav::read_wav(&selfsup_data::data_root().join(rel)).unwrap();
                    assert_eq!(clip.sample_rate, config.sample_rate);
                    clip.samples
                }
                None => case["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect(),
            };
            let spec = config.init().unwrap().compute(&samples).unwrap();
            assert_eq!(
                spec.frames,
                case["frames"].as_u64().unwrap() as usize,
                "{name}"
            );
            assert_eq!(spec.frames, 1 + samples.len() / config.hop_length, "{name}");
            let want: Vec<f64> = case["logmel"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(spec.data.len(), want.len(), "{name}");
            let mut worst = 0.0f64;
            for (i, (&g, &w)) in spec.data.iter().zip(&want).enumerate() {
                let err = (g as f64 - w).abs();
                worst = worst.max(err);
                assert!(
                    err < 2e-3,
                    "{name}: frame {} mel {}: got {g}, librosa {w}",
                    i / spec.n_mels,
                    i % spec.n_mels
                );
            }
            eprintln!("{name}: max |Δ log-mel| = {worst:.2e}");
        }
    }

    #[test]
    fn bad_configs_are_named() {
        let mut c = LogMelConfig::speech_8k();
        c.n_fft = 255;
        assert!(c.init().unwrap_err().to_string().contains("n_fft"));
        let mut c = LogMelConfig::speech_8k();
        c.f_max = Some(5000.0);
        assert!(c.init().unwrap_err().to_string().contains("f_max"));
        let mut c = LogMelConfig::speech_8k();
        c.win_length = 300;
        assert!(c.init().unwrap_err().to_string().contains("win_length"));
        let lm = LogMelConfig::speech_8k().init().unwrap();
        assert!(
            lm.compute(&[])
                .unwrap_err()
                .to_string()
                .contains("zero-length")
        );
    }

    #[test]
    fn normalisation_gives_zero_mean_unit_std() {
        let specs: Vec<Spectrogram> = (0..3)
            .map(|k| Spectrogram {
                frames: 4,
                n_mels: 2,
                data: (0..8).map(|i| (i * (k + 1)) as f32).collect(),
            })
            .collect();
        let stats = FeatureStats::fit(&specs);
        let mut all = specs.clone();
        all.iter_mut().for_each(|s| stats.normalize(s));
        for m in 0..2 {
            let v: Vec<f32> = all
                .iter()
                .flat_map(|s| (0..4).map(move |t| s.frame(t)[m]))
                .collect();
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
                "{mean} {var}"
            );
        }
    }

    #[test]
    fn spec_augment_masks_bands_and_spans_within_limits() {
        let cfg = SpecAugmentConfig::speech();
        let mut any_masked = false;
        for seed in 0..200 {
            let mut spec = Spectrogram {
                frames: 60,
                n_mels: 40,
                data: vec![1.0; 2400],
            };
            let mut rng = SampleRng::for_sample(seed, 0, 0, 0);
            cfg.apply(&mut spec, &mut rng, 0.0);
            let mut again = Spectrogram {
                frames: 60,
                n_mels: 40,
                data: vec![1.0; 2400],
            };
            cfg.apply(&mut again, &mut SampleRng::for_sample(seed, 0, 0, 0), 0.0);
            assert_eq!(spec, again, "same seed, same masks");
            // Masked mel bins are those zero in every frame; masked frames are all-zero frames.
            let full_bins = (0..40)
                .filter(|&m| (0..60).all(|t| spec.frame(t)[m] == 0.0))
                .count();
            let full_frames = (0..60)
                .filter(|&t| spec.frame(t).iter().all(|&v| v == 0.0))
                .count();
            assert!(full_bins <= 2 * 8, "{full_bins} bins");
            assert!(full_frames <= 2 * 10, "{full_frames} frames");
            // Everything zero lies in a masked bin or a masked frame.
            for t in 0..60 {
                for m in 0..40 {
                    if spec.frame(t)[m] == 0.0 {
                        let bin = (0..60).all(|u| spec.frame(u)[m] == 0.0);
                        let frame = spec.frame(t).iter().all(|&v| v == 0.0);
                        assert!(bin || frame);
                    }
                }
            }
            any_masked |= full_bins > 0 && full_frames > 0;
        }
        assert!(any_masked);
    }
}

/// A random `len`-frame window of a clip longer than that (shorter clips are kept whole).
pub fn random_crop(
    spec: &Spectrogram,
    len: usize,
    rng: &mut selfsup_data::SampleRng,
) -> Spectrogram {
    if spec.frames <= len {
        return spec.clone();
    }
    spec.crop(rng.below((spec.frames - len + 1) as u64) as usize, len)
}
