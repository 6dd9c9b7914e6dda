//! Writes a PNG of FSDD log-mel spectrograms: one clip per digit (speaker george, take 0),
//! top row as computed, bottom row as the masked-frame pretext sees it (15 % of frames in spans
//! of 5–10 blanked).
//!
//! ```text
//! cargo run --release -p selfsup-audio --example spectrograms -- OUT.png
//! ```

use selfsup_audio::{AudioDataset, LogMelConfig, SpanMaskConfig, Spectrogram};
use selfsup_data::SampleRng;

const SCALE_X: u32 = 2;
const SCALE_Y: u32 = 3;
const GAP: u32 = 6;

/// Black → purple → orange → pale yellow, for `v` in [0, 1].
fn colour(v: f32) -> [u8; 3] {
    let stops = [
        (0.0, [0.0, 0.0, 4.0]),
        (0.35, [114.0, 31.0, 129.0]),
        (0.7, [241.0, 96.0, 93.0]),
        (1.0, [252.0, 253.0, 191.0]),
    ];
    let v = v.clamp(0.0, 1.0);
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            return [0, 1, 2].map(|i| (ca[i] + t * (cb[i] - ca[i])) as u8);
        }
    }
    [252, 253, 191]
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .expect("usage: spectrograms OUT.png");
    let ds = AudioDataset::fsdd(&selfsup_data::data_root().join("fsdd"))
        .unwrap_or_else(|e| panic!("{e}"));
    let ds = ds.filter(|c| {
        c.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("_george_0.wav")
    });
    let logmel = LogMelConfig::speech_8k().init().unwrap();
    let specs: Vec<Spectrogram> = ds
        .load(8000)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|a| logmel.compute(a).unwrap())
        .collect();
    let mask = SpanMaskConfig::new(0.15, 5, 10).unwrap();
    let hi = specs
        .iter()
        .flat_map(|s| s.data.iter().copied())
        .fold(f32::MIN, f32::max);
    let lo = hi - 12.0; // ln units: about 52 dB of range
    let n_mels = specs[0].n_mels as u32;
    let width: u32 = specs
        .iter()
        .map(|s| s.frames as u32 * SCALE_X + GAP)
        .sum::<u32>()
        - GAP;
    let height = 2 * n_mels * SCALE_Y + GAP;
    let mut img = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut x0 = 0;
    for (i, s) in specs.iter().enumerate() {
        let masked = mask.sample(s.frames, &mut SampleRng::for_sample(0, 0, i as u64, 0));
        for row in 0..2u32 {
            let y0 = row * (n_mels * SCALE_Y + GAP);
            for t in 0..s.frames {
                for m in 0..s.n_mels {
                    let blank = row == 1 && masked[t];
                    let v = if blank {
                        0.0
                    } else {
                        (s.frame(t)[m] - lo) / (hi - lo)
                    };
                    let rgb = if blank { [60, 160, 200] } else { colour(v) };
                    for dx in 0..SCALE_X {
                        for dy in 0..SCALE_Y {
                            // Low frequencies at the bottom.
                            let y = y0 + (n_mels - 1 - m as u32) * SCALE_Y + dy;
                            img.put_pixel(x0 + t as u32 * SCALE_X + dx, y, image::Rgb(rgb));
                        }
                    }
                }
            }
        }
        x0 += s.frames as u32 * SCALE_X + GAP;
    }
    img.save(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
    eprintln!(
        "{out}: digits 0-9 (george, take 0), {} x {} px",
        width, height
    );
}
