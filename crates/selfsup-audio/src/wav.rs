//! WAV decoding (hound) with channel mix-down, and resampling (rubato).

use std::path::Path;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::error::{AudioError, Result};

/// A mono clip: samples in [-1, 1] at `sample_rate` Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Reads a WAV file (PCM 8/16/24/32-bit or 32-bit float, any channel count) and averages its
/// channels into one. Integer samples are scaled by `2^(bits-1)` (int16 / 32768, as soundfile
/// and torchaudio do). Errors name the file: unreadable, truncated, unsupported or empty.
pub fn read_wav(path: &Path) -> Result<Clip> {
    let mut reader = hound::WavReader::open(path).map_err(|e| classify(path, e))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        return Err(AudioError::Unsupported {
            path: path.into(),
            reason: "0 channels".into(),
        });
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => {
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(AudioError::Unsupported {
                    path: path.into(),
                    reason: format!("{}-bit integer PCM", spec.bits_per_sample),
                });
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (v as f64 * scale) as f32))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| truncated(path, e))?
        }
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| truncated(path, e))?,
    };
    if interleaved.is_empty() {
        return Err(AudioError::Empty { path: path.into() });
    }
    if interleaved.len() % channels != 0 {
        return Err(AudioError::Truncated {
            path: path.into(),
            reason: format!(
                "{} samples do not fill whole frames of {channels} channels",
                interleaved.len()
            ),
        });
    }
    let samples = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    Ok(Clip {
        samples,
        sample_rate: spec.sample_rate,
    })
}

/// An I/O error while reading samples after a valid header: the data chunk is cut short.
fn truncated(path: &Path, e: hound::Error) -> AudioError {
    match e {
        hound::Error::IoError(io) => AudioError::Truncated {
            path: path.into(),
            reason: io.to_string(),
        },
        other => classify(path, other),
    }
}

/// An error while opening the file and parsing its header.
fn classify(path: &Path, e: hound::Error) -> AudioError {
    match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::NotFound => AudioError::Io {
            path: path.into(),
            source: io,
        },
        hound::Error::Unsupported => AudioError::Unsupported {
            path: path.into(),
            reason: "hound cannot decode this encoding (e.g. compressed or A-law/µ-law)".into(),
        },
        other => AudioError::Unreadable {
            path: path.into(),
            reason: other.to_string(),
        },
    }
}

/// Resamples mono `samples` from `from` Hz to `to` Hz with rubato's synchronous FFT resampler
/// (anti-aliased, delay trimmed): the output has `ceil(len · to / from)` samples.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    let err = |reason: String| AudioError::Resample { from, to, reason };
    if from == 0 || to == 0 {
        return Err(err("sample rates must be > 0".into()));
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| err(e.to_string()))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| err(e.to_string()))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| err(e.to_string()))?;
    Ok(out.take_data())
}

/// [`read_wav`] then [`resample`] to `sample_rate`.
pub fn load_mono(path: &Path, sample_rate: u32) -> Result<Vec<f32>> {
    let clip = read_wav(path)?;
    resample(&clip.samples, clip.sample_rate, sample_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, spec: hound::WavSpec, frames: &[Vec<f64>]) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for frame in frames {
            for &v in frame {
                match spec.sample_format {
                    hound::SampleFormat::Float => w.write_sample(v as f32).unwrap(),
                    hound::SampleFormat::Int => {
                        let full = (1i64 << (spec.bits_per_sample - 1)) as f64;
                        let q = (v * full).round().clamp(-full, full - 1.0) as i32;
                        if spec.bits_per_sample == 8 {
                            w.write_sample(q as i8).unwrap()
                        } else if spec.bits_per_sample == 16 {
                            w.write_sample(q as i16).unwrap()
                        } else {
                            w.write_sample(q).unwrap()
                        }
                    }
                }
            }
        }
        w.finalize().unwrap();
    }

    fn spec(channels: u16, bits: u16, float: bool) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: 8000,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    #[test]
    fn every_sample_format_decodes_to_the_written_values() {
        let dir = tempfile::tempdir().unwrap();
        let values = [0.0, 0.5, -0.5, 0.25, -1.0];
        for (bits, float) in [
            (8, false),
            (16, false),
            (24, false),
            (32, false),
            (32, true),
        ] {
            let path = dir.path().join(format!("b{bits}{float}.wav"));
            let frames: Vec<Vec<f64>> = values.iter().map(|&v| vec![v]).collect();
            write(&path, spec(1, bits, float), &frames);
            let clip = read_wav(&path).unwrap();
            assert_eq!(clip.sample_rate, 8000);
            // One quantisation step of the format.
            let tol = if float {
                0.0
            } else {
                1.0 / (1u64 << (bits - 1)) as f32
            };
            for (g, w) in clip.samples.iter().zip(values) {
                assert!(
                    (g - w as f32).abs() <= tol,
                    "{bits}-bit float={float}: {g} vs {w}"
                );
            }
            assert_eq!(clip.samples.len(), values.len());
        }
    }

    #[test]
    fn channels_are_averaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stereo.wav");
        write(
            &path,
            spec(3, 16, false),
            &[vec![0.5, -0.5, 0.25], vec![0.75, 0.0, 0.0]],
        );
        let clip = read_wav(&path).unwrap();
        assert_eq!(clip.samples.len(), 2);
        assert!((clip.samples[0] - 0.25 / 3.0).abs() < 1e-4);
        assert!((clip.samples[1] - 0.25).abs() < 1e-4);
    }

    #[test]
    fn bad_files_are_named_and_classified() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.wav");
        write(&empty, spec(1, 16, false), &[]);
        let e = read_wav(&empty).unwrap_err();
        assert!(matches!(e, AudioError::Empty { .. }), "{e}");
        assert!(e.to_string().contains("empty.wav"), "{e}");

        let full = dir.path().join("full.wav");
        write(&full, spec(1, 16, false), &vec![vec![0.1]; 1000]);
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.path().join("cut.wav");
        std::fs::write(&cut, &bytes[..bytes.len() - 501]).unwrap();
        let e = read_wav(&cut).unwrap_err();
        assert!(matches!(e, AudioError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("cut.wav"), "{e}");

        let text = dir.path().join("notes.wav");
        std::fs::write(&text, b"this is not a wav file at all").unwrap();
        let e = read_wav(&text).unwrap_err();
        assert!(matches!(e, AudioError::Unreadable { .. }), "{e}");
        assert!(e.to_string().contains("notes.wav"), "{e}");

        // A-law (format tag 6): a valid RIFF file in an encoding we do not decode.
        let mut alaw = bytes.clone();
        alaw[20] = 6;
        let alaw_path = dir.path().join("alaw.wav");
        std::fs::write(&alaw_path, &alaw).unwrap();
        let e = read_wav(&alaw_path).unwrap_err();
        assert!(matches!(e, AudioError::Unsupported { .. }), "{e}");

        let e = read_wav(&dir.path().join("missing.wav")).unwrap_err();
        assert!(matches!(e, AudioError::Io { .. }), "{e}");
    }

    #[test]
    fn resampling_keeps_a_sine() {
        // 300 Hz at 22.05 kHz -> 8 kHz: same tone, ceil(len · 8000/22050) samples.
        let (from, to, f) = (22050u32, 8000u32, 300.0f64);
        let n = 22050;
        let x: Vec<f32> = (0..n)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / from as f64).sin()) as f32)
            .collect();
        let y = resample(&x, from, to).unwrap();
        assert_eq!(y.len(), 8000);
        // Away from the edges the output is the analytic sine at the new rate, up to a
        // sub-sample delay: same amplitude, and near-perfect correlation.
        let (mut dot, mut yy, mut ww) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &v) in y.iter().enumerate().take(7800).skip(200) {
            let want = 0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / to as f64).sin();
            dot += v as f64 * want;
            yy += v as f64 * v as f64;
            ww += want * want;
        }
        let correlation = dot / (yy * ww).sqrt();
        let amplitude_ratio = (yy / ww).sqrt();
        assert!(correlation > 0.999, "correlation {correlation}");
        assert!(
            (amplitude_ratio - 1.0).abs() < 0.01,
            "amplitude ratio {amplitude_ratio}"
        );
        // A tone above the new Nyquist (5 kHz -> 8 kHz rate) is filtered out, not aliased.
        let high: Vec<f32> = (0..n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * 5000.0 * i as f64 / from as f64).sin()) as f32
            })
            .collect();
        let z = resample(&high, from, to).unwrap();
        let rms = (z[200..7800].iter().map(|v| (v * v) as f64).sum::<f64>() / 7600.0).sqrt();
        assert!(rms < 0.01, "5 kHz leaked through at rms {rms}");
        assert_eq!(resample(&x, from, from).unwrap(), x);
        assert!(resample(&x, 0, 8000).is_err());
    }
}
