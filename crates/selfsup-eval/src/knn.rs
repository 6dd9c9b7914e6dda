//! Weighted kNN classifier (Wu et al. 2018 "InstDisc"; LightlySSL
//! `lightly.utils.benchmarking.knn_predict`).
//!
//! Train and test features are L2-normalised, similarities are cosine
//! similarities, the `k` most similar train samples vote for their class with
//! weight `exp(sim / T)`, and the class with the largest summed weight wins.
//!
//! The test set is processed in chunks: a `chunk × n_train` similarity block is
//! computed with a matrix multiply ([`MatmulBackend`]), then each row's top-k is
//! selected with a size-k min-heap (one pass, no sort of the full row).

use burn::prelude::*;
use rayon::prelude::*;

use crate::{EvalError, Features, Result, metrics};

/// How the similarity blocks are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatmulBackend {
    /// Packed, cache-blocked f32 kernel parallelised with rayon (AVX2/FMA at
    /// runtime when available). Measured faster here; the default.
    #[default]
    Blocked,
    /// `burn` flex backend (`gemm` crate) matmul.
    Burn,
}

/// kNN settings. Defaults: `k = 200`, `temperature = 0.1`, chunks of 256 test rows.
#[derive(Clone, Debug)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f32,
    /// Number of classes; `None` = `max(label) + 1` over train and test labels.
    pub num_classes: Option<usize>,
    /// Test rows per similarity block (memory: `chunk_size × n_train × 4` bytes).
    pub chunk_size: usize,
    pub backend: MatmulBackend,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 200,
            temperature: 0.1,
            num_classes: None,
            chunk_size: 256,
            backend: MatmulBackend::default(),
        }
    }
}

/// Output of [`knn_classify`].
#[derive(Clone, Debug)]
pub struct KnnResult {
    /// Top-1 accuracy in `[0, 1]`.
    pub top1: f64,
    /// Top-5 accuracy, only when there are more than 5 classes.
    pub top5: Option<f64>,
    /// Predicted class per test sample.
    pub predictions: Vec<u32>,
    /// The `k` actually used (clamped to `n_train`).
    pub k: usize,
    pub num_classes: usize,
    /// Human-readable notes, e.g. when `k` was clamped.
    pub notes: Vec<String>,
}

fn validate(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    cfg: &KnnConfig,
) -> Result<()> {
    Features::validate_pair(train, train_labels, test)?;
    if cfg.k == 0 {
        return Err(EvalError::InvalidArgument("k must be > 0".into()));
    }
    if cfg.temperature.is_nan() || cfg.temperature <= 0.0 || !cfg.temperature.is_finite() {
        return Err(EvalError::InvalidArgument(format!(
            "temperature must be > 0, got {}",
            cfg.temperature
        )));
    }
    if cfg.chunk_size == 0 {
        return Err(EvalError::InvalidArgument("chunk_size must be > 0".into()));
    }
    Ok(())
}

/// kNN class scores (`n_test × num_classes`, row-major): for each test row the
/// sum of `exp(sim / T)` over its `k` nearest train samples, per class.
/// Equal to LightlySSL's `pred_scores` (before its argsort). If `exp(1/T)`
/// overflows f32 (T < ~0.0113) all scores are instead scaled by `exp(-1/T)`
/// (same ranking; LightlySSL would produce inf/NaN there).
/// Returns `(scores, num_classes, k_used, notes)`.
pub fn knn_scores(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    cfg: &KnnConfig,
) -> Result<(Vec<f32>, usize, usize, Vec<String>)> {
    validate(train, train_labels, test, cfg)?;
    let max_label = train_labels.iter().copied().max().unwrap_or(0) as usize;
    let num_classes = match cfg.num_classes {
        Some(c) if c <= max_label => {
            return Err(EvalError::InvalidArgument(format!(
                "num_classes = {c} but a train label is {max_label}"
            )));
        }
        Some(c) => c,
        None => max_label + 1,
    };
    let mut notes = Vec::new();
    let k = if cfg.k > train.n {
        notes.push(format!(
            "k = {} > n_train = {}; clamped to {}",
            cfg.k, train.n, train.n
        ));
        train.n
    } else {
        cfg.k
    };

    let train_n = train.l2_normalized();
    let test_n = test.l2_normalized();
    let (n_train, dim) = (train.n, train.dim);
    let inv_t = 1.0 / cfg.temperature;
    let chunk = cfg.chunk_size.min(test.n);

    let mut scores = vec![0.0f32; test.n * num_classes];
    let mut sims = vec![0.0f32; chunk * n_train];

    enum Prepared {
        Blocked(Packed),
        Burn(Box<(Tensor<2>, Device)>),
    }
    let prepared = match cfg.backend {
        MatmulBackend::Blocked => Prepared::Blocked(Packed::new(&train_n.data, n_train, dim)),
        MatmulBackend::Burn => {
            let device = Device::flex();
            let bt = Tensor::<2>::from_data(
                TensorData::new(train_n.data.clone(), [n_train, dim]),
                &device,
            )
            .transpose();
            Prepared::Burn(Box::new((bt, device)))
        }
    };

    for (c_idx, score_chunk) in scores.chunks_mut(chunk * num_classes).enumerate() {
        let start = c_idx * chunk;
        let rows = score_chunk.len() / num_classes;
        let a = &test_n.data[start * dim..(start + rows) * dim];
        let sims = &mut sims[..rows * n_train];
        match &prepared {
            Prepared::Blocked(p) => p.sims(a, rows, sims),
            Prepared::Burn(bd) => {
                let (bt, device) = &**bd;
                let at = Tensor::<2>::from_data(TensorData::new(a.to_vec(), [rows, dim]), device);
                let out = at
                    .matmul(bt.clone())
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("f32 matmul output");
                sims.copy_from_slice(&out);
            }
        }
        sims.par_chunks(n_train)
            .zip(score_chunk.par_chunks_mut(num_classes))
            .for_each_init(
                || TopK::new(k),
                |heap, (srow, out)| {
                    heap.run(srow);
                    for (&s, &j) in heap.vals.iter().zip(heap.idx.iter()) {
                        out[train_labels[j as usize] as usize] += ((s - 1.0) * inv_t).exp();
                    }
                    // exp((s-1)/T) keeps values <= 1 for any T; rescale to exp(s/T).
                    let scale = inv_t.exp();
                    if scale.is_finite() {
                        for o in out.iter_mut() {
                            *o *= scale;
                        }
                    }
                },
            );
    }
    Ok((scores, num_classes, k, notes))
}

/// Weighted kNN classification of `test` against `train`; accuracy is measured
/// against `test_labels`.
pub fn knn_classify(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
    cfg: &KnnConfig,
) -> Result<KnnResult> {
    if test_labels.len() != test.n {
        return Err(EvalError::DimMismatch(format!(
            "{} test labels for {} test samples",
            test_labels.len(),
            test.n
        )));
    }
    let mut cfg = cfg.clone();
    if cfg.num_classes.is_none() {
        let m = train_labels
            .iter()
            .chain(test_labels)
            .copied()
            .max()
            .unwrap_or(0) as usize;
        cfg.num_classes = Some(m + 1);
    }
    let (scores, num_classes, k, notes) = knn_scores(train, train_labels, test, &cfg)?;
    if let Some(&bad) = test_labels.iter().find(|&&l| l as usize >= num_classes) {
        return Err(EvalError::InvalidArgument(format!(
            "test label {bad} >= num_classes {num_classes}"
        )));
    }
    let predictions = metrics::argmax_rows(&scores, num_classes);
    let top1 = metrics::accuracy(&predictions, test_labels)?;
    let top5 = if num_classes > 5 {
        Some(metrics::top_k_accuracy(
            &scores,
            num_classes,
            test_labels,
            5,
        )?)
    } else {
        None
    };
    Ok(KnnResult {
        top1,
        top5,
        predictions,
        k,
        num_classes,
        notes,
    })
}

/// Size-k min-heap top-k selection over one similarity row.
struct TopK {
    k: usize,
    vals: Vec<f32>,
    idx: Vec<u32>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            vals: Vec::with_capacity(k),
            idx: Vec::with_capacity(k),
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.vals.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let m = if r < n && self.vals[r] < self.vals[l] {
                r
            } else {
                l
            };
            if self.vals[m] < self.vals[i] {
                self.vals.swap(m, i);
                self.idx.swap(m, i);
                i = m;
            } else {
                break;
            }
        }
    }

    fn run(&mut self, row: &[f32]) {
        let k = self.k.min(row.len());
        self.vals.clear();
        self.idx.clear();
        self.vals.extend_from_slice(&row[..k]);
        self.idx.extend(0..k as u32);
        for i in (0..k / 2).rev() {
            self.sift_down(i);
        }
        let mut min = self.vals[0];
        for (j, &v) in row.iter().enumerate().skip(k) {
            if v > min {
                self.vals[0] = v;
                self.idx[0] = j as u32;
                self.sift_down(0);
                min = self.vals[0];
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Blocked matmul: sims[i, j] = <a_i, b_j>, a: rows × dim, b: n × dim.

const NR: usize = 16; // train rows per packed panel
const MR: usize = 4; // test rows per micro-tile
const NC_PANELS: usize = 16; // panels per L2 block (256 train rows)
const MC: usize = 64; // test rows per rayon task

/// Train matrix packed into panels of `NR` rows stored k-major
/// (`panel[k * NR + jj] = b[(p*NR + jj) * dim + k]`), zero-padded.
struct Packed {
    data: Vec<f32>,
    n: usize,
    dim: usize,
    panels: usize,
}

impl Packed {
    fn new(b: &[f32], n: usize, dim: usize) -> Self {
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0f32; panels * NR * dim];
        data.par_chunks_mut(NR * dim)
            .enumerate()
            .for_each(|(p, panel)| {
                for jj in 0..NR {
                    let j = p * NR + jj;
                    if j >= n {
                        break;
                    }
                    let row = &b[j * dim..(j + 1) * dim];
                    for (kk, &v) in row.iter().enumerate() {
                        panel[kk * NR + jj] = v;
                    }
                }
            });
        Self {
            data,
            n,
            dim,
            panels,
        }
    }

    fn sims(&self, a: &[f32], rows: usize, out: &mut [f32]) {
        let (n, dim) = (self.n, self.dim);
        out.par_chunks_mut(MC * n)
            .enumerate()
            .for_each(|(t, out_blk)| {
                let r0 = t * MC;
                let mr_total = out_blk.len() / n;
                let a_blk = &a[r0 * dim..(r0 + mr_total) * dim];
                let mut tile = [[0.0f32; NR]; MR];
                for pb in (0..self.panels).step_by(NC_PANELS) {
                    let pe = (pb + NC_PANELS).min(self.panels);
                    for i0 in (0..mr_total).step_by(MR) {
                        let mr = MR.min(mr_total - i0);
                        let mut arows = [&a_blk[i0 * dim..(i0 + 1) * dim]; MR];
                        for (ii, ar) in arows.iter_mut().enumerate().take(mr).skip(1) {
                            *ar = &a_blk[(i0 + ii) * dim..(i0 + ii + 1) * dim];
                        }
                        for p in pb..pe {
                            let panel = &self.data[p * NR * dim..(p + 1) * NR * dim];
                            kernel(&arows, panel, dim, &mut tile);
                            let j0 = p * NR;
                            let nr = NR.min(n - j0);
                            for (ii, trow) in tile.iter().enumerate().take(mr) {
                                let o = (i0 + ii) * n + j0;
                                out_blk[o..o + nr].copy_from_slice(&trow[..nr]);
                            }
                        }
                    }
                }
            });
        debug_assert_eq!(out.len(), rows * n);
    }
}

#[inline(always)]
fn kernel_generic(a: &[&[f32]; MR], panel: &[f32], dim: usize, tile: &mut [[f32; NR]; MR]) {
    let mut acc = [[0.0f32; NR]; MR];
    for k in 0..dim {
        let b: &[f32; NR] = panel[k * NR..(k + 1) * NR].try_into().unwrap();
        for ii in 0..MR {
            let av = a[ii][k];
            for jj in 0..NR {
                acc[ii][jj] = av.mul_add(b[jj], acc[ii][jj]);
            }
        }
    }
    *tile = acc;
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(a: &[&[f32]; MR], panel: &[f32], dim: usize, tile: &mut [[f32; NR]; MR]) {
    kernel_generic(a, panel, dim, tile)
}

#[inline]
fn kernel(a: &[&[f32]; MR], panel: &[f32], dim: usize, tile: &mut [[f32; NR]; MR]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
        {
            // SAFETY: the CPU supports the enabled target features (checked above).
            unsafe { kernel_avx2(a, panel, dim, tile) };
            return;
        }
    }
    // Without hardware FMA, `mul_add` is a slow libm call: use plain mul+add.
    let mut acc = [[0.0f32; NR]; MR];
    for k in 0..dim {
        let b = &panel[k * NR..(k + 1) * NR];
        for ii in 0..MR {
            let av = a[ii][k];
            for jj in 0..NR {
                acc[ii][jj] += av * b[jj];
            }
        }
    }
    *tile = acc;
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfsup_data::SplitMix64;

    fn randn(n: usize, d: usize, seed: u64) -> Features {
        let mut r = SplitMix64::new(seed);
        let data = (0..n * d)
            .map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        Features::new(data, n, d).unwrap()
    }

    #[test]
    fn blocked_matmul_matches_naive() {
        for &(m, n, d) in &[(1, 1, 1), (5, 17, 3), (70, 33, 130), (129, 300, 16)] {
            let a = randn(m, d, 1);
            let b = randn(n, d, 2);
            let p = Packed::new(&b.data, n, d);
            let mut out = vec![0.0; m * n];
            p.sims(&a.data, m, &mut out);
            for i in 0..m {
                for j in 0..n {
                    let e: f32 = a.row(i).iter().zip(b.row(j)).map(|(x, y)| x * y).sum();
                    assert!((out[i * n + j] - e).abs() < 1e-4, "({m},{n},{d}) [{i},{j}]");
                }
            }
        }
    }

    #[test]
    fn topk_selects_largest() {
        let mut r = SplitMix64::new(3);
        let row: Vec<f32> = (0..1000).map(|_| r.next_u64() as f32).collect();
        let mut h = TopK::new(10);
        h.run(&row);
        let mut got: Vec<f32> = h.vals.clone();
        got.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let mut all = row.clone();
        all.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert_eq!(got, all[..10].to_vec());
        for (&v, &i) in h.vals.iter().zip(&h.idx) {
            assert_eq!(row[i as usize], v);
        }
    }

    /// Hand-checked: 2-D features, k = 2, T = 1.
    #[test]
    fn tiny_hand_checked() {
        // train: class 0 along +x, class 1 along +y, one class-1 point at -x.
        let train = Features::new(
            vec![1.0, 0.0, 2.0, 0.1, 0.0, 1.0, 0.0, 3.0, -1.0, 0.0],
            5,
            2,
        )
        .unwrap();
        let tl = [0, 0, 1, 1, 1];
        // test: (1, 0.2) -> nearest two are train 0,1 (class 0)
        //       (0.1, 1) -> nearest two are train 2,3 (class 1)
        let test = Features::new(vec![1.0, 0.2, 0.1, 1.0], 2, 2).unwrap();
        let cfg = KnnConfig {
            k: 2,
            temperature: 1.0,
            ..Default::default()
        };
        let (scores, c, k, notes) = knn_scores(&train, &tl, &test, &cfg).unwrap();
        assert_eq!((c, k), (2, 2));
        assert!(notes.is_empty());
        // cos((1,.2),(1,0)) = 1/sqrt(1.04); cos((1,.2),(2,.1)) = (2+.02)/(sqrt(1.04)*sqrt(4.01))
        let s0 = (1.0f64 / 1.04f64.sqrt()).exp() + (2.02 / (1.04f64.sqrt() * 4.01f64.sqrt())).exp();
        assert!(
            (scores[0] as f64 - s0).abs() < 1e-5,
            "{} vs {}",
            scores[0],
            s0
        );
        assert_eq!(scores[1], 0.0);
        let cos = 1.0 / 1.01f64.sqrt();
        assert!((scores[3] as f64 - 2.0 * cos.exp()).abs() < 1e-5);
        let r = knn_classify(&train, &tl, &test, &[0, 1], &cfg).unwrap();
        assert_eq!(r.predictions, vec![0, 1]);
        assert_eq!(r.top1, 1.0);
        assert!(r.top5.is_none());
        // k larger than train: clamped with a note, all 5 vote.
        let cfg = KnnConfig {
            k: 50,
            temperature: 1.0,
            ..Default::default()
        };
        let r = knn_classify(&train, &tl, &test, &[0, 1], &cfg).unwrap();
        assert_eq!(r.k, 5);
        assert_eq!(r.notes.len(), 1);
    }

    #[test]
    fn validation_errors() {
        let tr = randn(10, 4, 1);
        let te = randn(3, 4, 2);
        let tl = vec![0u32; 10];
        let cfg = KnnConfig::default();
        let e = Features {
            data: vec![],
            n: 0,
            dim: 4,
        };
        assert!(matches!(
            knn_classify(&e, &[], &te, &[0; 3], &cfg),
            Err(EvalError::Empty(_))
        ));
        assert!(matches!(
            knn_classify(&tr, &tl, &e, &[], &cfg),
            Err(EvalError::Empty(_))
        ));
        let te5 = randn(3, 5, 2);
        assert!(matches!(
            knn_classify(&tr, &tl, &te5, &[0; 3], &cfg),
            Err(EvalError::DimMismatch(_))
        ));
        assert!(matches!(
            knn_classify(&tr, &tl[..9], &te, &[0; 3], &cfg),
            Err(EvalError::DimMismatch(_))
        ));
        assert!(matches!(
            knn_classify(&tr, &tl, &te, &[0; 2], &cfg),
            Err(EvalError::DimMismatch(_))
        ));
        let bad = KnnConfig {
            k: 0,
            ..Default::default()
        };
        assert!(knn_classify(&tr, &tl, &te, &[0; 3], &bad).is_err());
    }

    #[test]
    fn backends_agree() {
        let tr = randn(500, 24, 5);
        let te = randn(77, 24, 6);
        let tl: Vec<u32> = (0..500).map(|i| (i % 7) as u32).collect();
        let tel: Vec<u32> = (0..77).map(|i| (i % 7) as u32).collect();
        let mut cfg = KnnConfig {
            k: 20,
            chunk_size: 30,
            ..Default::default()
        };
        let (a, ..) = knn_scores(&tr, &tl, &te, &cfg).unwrap();
        cfg.backend = MatmulBackend::Burn;
        let (b, ..) = knn_scores(&tr, &tl, &te, &cfg).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-3 * x.abs().max(1.0), "{x} vs {y}");
        }
        let r = knn_classify(&tr, &tl, &te, &tel, &cfg).unwrap();
        assert!(r.top5.is_some());
    }
}
