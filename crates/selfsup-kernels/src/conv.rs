//! 2-D convolution on NCHW `f32` slices: im2col + gemm per sample (per group of samples when the
//! output is small), samples in parallel.
//!
//! burn-flex routes conv2d through its conv3d code (an NHWC copy of the whole input, tiles of
//! 512 pixels) and the backward through conv_transpose3d and a conv with batch and channels
//! swapped. For ResNet's shapes (3×3 or 1×1 kernels, stride 1 or 2, few channels) one gemm per
//! sample on an im2col buffer reused across the samples of a rayon job does less copying, and
//! the three passes share the same im2col/col2im. im2col rows are built as contiguous runs:
//! a shifted copy of the input plane for stride-1 "same" convs, runs of one column phase of the
//! de-interleaved plane for strided ones (`bench/NOTES.md`, session 11, has what each step bought).

use rayon::prelude::*;

/// Geometry of one convolution: groups = 1, dilation = 1, same padding on all sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub channels_in: usize,
    pub height: usize,
    pub width: usize,
    pub channels_out: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel_h) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel_w) / self.stride + 1
    }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub fn col_rows(&self) -> usize {
        self.channels_in * self.kernel_h * self.kernel_w
    }
    /// Output pixels per sample (columns of the im2col matrix).
    pub fn out_pixels(&self) -> usize {
        self.out_h() * self.out_w()
    }
    fn in_pixels(&self) -> usize {
        self.height * self.width
    }
    /// A 1×1 stride-1 unpadded conv reads the input as its own im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel_h == 1 && self.kernel_w == 1 && self.stride == 1 && self.padding == 0
    }
    /// Output columns `[lo, hi)` whose input column `ow·stride + kj − padding` lies inside the image.
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        let lo = p.saturating_sub(kj).div_ceil(s);
        let hi = (self.width + p)
            .saturating_sub(kj)
            .div_ceil(s)
            .min(self.out_w());
        (lo.min(hi), hi)
    }
    /// Kernel column `kj` reads input column `ow·stride + kj − padding = (ow + offset)·stride + r`:
    /// `(r, offset)`, the column phase and the shift within it (see [`split_phases`]).
    fn phase_of(&self, kj: usize) -> (usize, isize) {
        let d = kj as isize - self.padding as isize;
        let s = self.stride as isize;
        (d.rem_euclid(s) as usize, d.div_euclid(s))
    }
    /// Width of one column phase of an input row.
    fn phase_width(&self) -> usize {
        self.width.div_ceil(self.stride)
    }
    /// For a stride-1 conv whose output is as large as its input (kernel = 2·padding + 1: every
    /// "same" 3×3 and 1×1 conv), the im2col row of kernel tap (ki, kj), see [`ShiftedPlane`].
    fn shifted_plane(&self, ki: usize, kj: usize) -> Option<ShiftedPlane> {
        let (h, w, pad) = (self.height, self.width, self.padding);
        if self.stride != 1 || self.out_h() != h || self.out_w() != w {
            return None;
        }
        let shift = (ki as isize - pad as isize) * w as isize + kj as isize - pad as isize;
        // Output rows whose input row oh + ki − pad lies inside the image.
        let rows = (
            pad.saturating_sub(ki).min(h),
            (h + pad).saturating_sub(ki).min(h),
        );
        let lo = (rows.0 * w).max((-shift).max(0) as usize);
        let hi = (rows.1 * w).min(((h * w) as isize - shift).max(0) as usize);
        Some(ShiftedPlane {
            shift,
            run: if lo < hi { (lo, hi) } else { (0, 0) },
            rows,
            cols: self.valid_cols(kj),
        })
    }
    /// Every kernel tap in im2col row order, worked out once per call instead of per channel.
    fn taps(&self) -> Vec<Tap> {
        (0..self.kernel_h)
            .flat_map(|ki| (0..self.kernel_w).map(move |kj| (ki, kj)))
            .map(|(ki, kj)| Tap {
                ki,
                shifted: self.shifted_plane(ki, kj),
                cols: self.valid_cols(kj),
                phase: self.phase_of(kj),
            })
            .collect()
    }
    /// Scratch for one input plane's column phases (none at stride 1, which reads the plane).
    fn phase_scratch(&self) -> Vec<f32> {
        let len = if self.stride > 1 {
            self.stride * self.height * self.phase_width()
        } else {
            0
        };
        vec![0.0f32; len]
    }
}

/// Kernel tap (ki, ·): the shifted plane it is for a stride-1 "same" conv, else its valid
/// output columns and column phase (see [`ConvGeometry::valid_cols`], [`ConvGeometry::phase_of`]).
struct Tap {
    ki: usize,
    shifted: Option<ShiftedPlane>,
    cols: (usize, usize),
    phase: (usize, isize),
}

/// One im2col row of a stride-1 "same" conv is the input plane shifted by `shift` elements:
/// `col[i] = x[i + shift]` for `i` in `run`, 0 outside it (rows that read the padding), and 0
/// in the columns outside `cols` of the output rows `rows`, which the shift wraps onto the
/// neighbouring image row. So the row is one contiguous copy plus a few stores per image row,
/// instead of a copy and two fills per image row.
struct ShiftedPlane {
    shift: isize,
    run: (usize, usize),
    rows: (usize, usize),
    cols: (usize, usize),
}

impl ShiftedPlane {
    /// Zeroes the wrapped columns of `row` (one im2col row, `width` columns per image row).
    fn zero_wrapped(&self, row: &mut [f32], width: usize) {
        let (lo, hi) = self.cols;
        if lo == 0 && hi == width {
            return;
        }
        for r in row[self.rows.0 * width..self.rows.1 * width].chunks_mut(width) {
            r[..lo].fill(0.0);
            r[hi..].fill(0.0);
        }
    }
    /// The input elements the run reads.
    fn source(&self) -> std::ops::Range<usize> {
        let (a, b) = self.run;
        if a == b {
            return 0..0;
        }
        (a as isize + self.shift) as usize..(b as isize + self.shift) as usize
    }
}

/// `col[K, P] = im2col(x)` for one sample `x[C, H, W]`, rows `row_stride` apart (≥ P); padding
/// reads as 0.
fn im2col(g: &ConvGeometry, x: &[f32], col: &mut [f32], row_stride: usize) {
    let (oh_n, ow_n, p) = (g.out_h(), g.out_w(), row_stride);
    let (h, pw) = (g.height, g.phase_width());
    let taps = g.taps();
    let mut phases = g.phase_scratch();
    let mut rows = col.chunks_mut(p);
    for c in 0..g.channels_in {
        let plane = &x[c * g.in_pixels()..(c + 1) * g.in_pixels()];
        if g.stride > 1 {
            split_phases(plane, h, g.width, g.stride, &mut phases);
        }
        let src_plane = if g.stride > 1 { &phases[..] } else { plane };
        for tap in &taps {
            let dst = &mut rows.next().expect("col has K rows")[..g.out_pixels()];
            if let Some(sp) = &tap.shifted {
                let (a, b) = sp.run;
                dst[..a].fill(0.0);
                dst[a..b].copy_from_slice(&plane[sp.source()]);
                dst[b..].fill(0.0);
                sp.zero_wrapped(dst, ow_n);
                continue;
            }
            // Strided or not "same": row by row, each a contiguous run of one phase.
            let ((lo, hi), (r, off)) = (tap.cols, tap.phase);
            for oh in 0..oh_n {
                let out_row = &mut dst[oh * ow_n..(oh + 1) * ow_n];
                let ih = (oh * g.stride + tap.ki) as isize - g.padding as isize;
                if ih < 0 || ih as usize >= h || lo == hi {
                    out_row.fill(0.0);
                    continue;
                }
                let src = &src_plane[(r * h + ih as usize) * pw..][..pw];
                out_row[..lo].fill(0.0);
                out_row[hi..].fill(0.0);
                let j0 = (lo as isize + off) as usize;
                out_row[lo..hi].copy_from_slice(&src[j0..j0 + hi - lo]);
            }
        }
    }
}

/// The `stride` column phases of one input plane `[h, w]`: `phases[r][ih][j] = plane[ih][j·stride
/// + r]` (0 past the right edge), so every im2col row of a strided conv copies contiguous runs.
fn split_phases(plane: &[f32], h: usize, w: usize, stride: usize, phases: &mut [f32]) {
    let pw = w.div_ceil(stride);
    for (ih, row) in plane.chunks_exact(w).take(h).enumerate() {
        if stride == 2 {
            // The common case, written so that it vectorises (a de-interleave).
            let (even, odd) = phases.split_at_mut(h * pw);
            let (even, odd) = (&mut even[ih * pw..][..pw], &mut odd[ih * pw..][..pw]);
            for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
            if w % 2 == 1 {
                even[pw - 1] = row[w - 1];
                odd[pw - 1] = 0.0;
            }
            continue;
        }
        for r in 0..stride {
            for (j, v) in phases[(r * h + ih) * pw..][..pw].iter_mut().enumerate() {
                *v = row.get(j * stride + r).copied().unwrap_or(0.0);
            }
        }
    }
}

/// The adjoint of [`split_phases`]: `plane[ih][j·stride + r] += phases[r][ih][j]`.
fn merge_phases_add(phases: &[f32], h: usize, w: usize, stride: usize, plane: &mut [f32]) {
    let pw = w.div_ceil(stride);
    for (ih, row) in plane.chunks_exact_mut(w).take(h).enumerate() {
        if stride == 2 {
            let (even, odd) = phases.split_at(h * pw);
            let (even, odd) = (&even[ih * pw..][..pw], &odd[ih * pw..][..pw]);
            for ((e, o), pair) in even.iter().zip(odd).zip(row.chunks_exact_mut(2)) {
                pair[0] += e;
                pair[1] += o;
            }
            if w % 2 == 1 {
                row[w - 1] += even[pw - 1];
            }
            continue;
        }
        for r in 0..stride {
            for (j, v) in phases[(r * h + ih) * pw..][..pw].iter().enumerate() {
                if let Some(d) = row.get_mut(j * stride + r) {
                    *d += v;
                }
            }
        }
    }
}

/// `dx += col2im(col)` for one sample, `col`'s rows `row_stride` apart: the adjoint of [`im2col`].
/// `col` is scratch: entries that do not reach `dx` may be overwritten.
fn col2im_add(g: &ConvGeometry, col: &mut [f32], row_stride: usize, dx: &mut [f32]) {
    let (oh_n, ow_n, p) = (g.out_h(), g.out_w(), row_stride);
    let (h, pw) = (g.height, g.phase_width());
    let taps = g.taps();
    let mut phases = g.phase_scratch();
    let mut rows = col.chunks_mut(p);
    for c in 0..g.channels_in {
        let plane = &mut dx[c * g.in_pixels()..(c + 1) * g.in_pixels()];
        phases.fill(0.0);
        for tap in &taps {
            let src = &mut rows.next().expect("col has K rows")[..g.out_pixels()];
            if let Some(sp) = &tap.shifted {
                // Zeroing the wrapped columns first lets one contiguous run add everything.
                sp.zero_wrapped(src, ow_n);
                let (a, b) = sp.run;
                for (d, s) in plane[sp.source()].iter_mut().zip(&src[a..b]) {
                    *d += s;
                }
                continue;
            }
            // Strided: into the column phases, merged into the plane below.
            let dst_plane = if g.stride > 1 {
                &mut phases[..]
            } else {
                &mut *plane
            };
            let ((lo, hi), (r, off)) = (tap.cols, tap.phase);
            for oh in 0..oh_n {
                let ih = (oh * g.stride + tap.ki) as isize - g.padding as isize;
                if ih < 0 || ih as usize >= h || lo >= hi {
                    continue;
                }
                let dst = &mut dst_plane[(r * h + ih as usize) * pw..][..pw];
                let j0 = (lo as isize + off) as usize;
                for (d, s) in dst[j0..j0 + hi - lo]
                    .iter_mut()
                    .zip(&src[oh * ow_n + lo..oh * ow_n + hi])
                {
                    *d += s;
                }
            }
        }
        if g.stride > 1 {
            merge_phases_add(&phases, h, g.width, g.stride, plane);
        }
    }
}

/// Row-major matrix view for [`matmul`]: element (i, j) at `ptr[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
struct MatRef<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// The transpose of a row-major `[rows, cols]` matrix stored in `data`.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, `dst`'s rows `dst_stride` apart, single-threaded
/// (callers parallelise over samples).
#[allow(clippy::too_many_arguments)]
fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    m: usize,
    n: usize,
    k: usize,
    lhs: MatRef,
    rhs: MatRef,
    acc: bool,
) {
    assert!(dst_stride >= n && dst.len() >= (m - 1) * dst_stride + n);
    assert!(lhs.data.len() >= (m - 1) * lhs.row_stride + (k - 1) * lhs.col_stride + 1);
    assert!(rhs.data.len() >= (k - 1) * rhs.row_stride + (n - 1) * rhs.col_stride + 1);
    // SAFETY: the asserts bound every index gemm reads or writes; dst does not alias lhs/rhs
    // (it is a distinct &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            acc,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Samples per rayon job: enough jobs to balance the pool, few enough to reuse scratch buffers.
fn samples_per_job(batch: usize) -> usize {
    batch.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// Columns a gemm should get at least: layers with small outputs (the 4×4 of a CIFAR ResNet's
/// last stage, 16 columns per sample) put several samples side by side in one product, so gemm
/// packs the weights (up to 9 MiB at width 64) once per group rather than once per sample.
/// Measured (`selfsup-bench convs`, width 64): the 512→512 conv at 4×4 forward 88 → 47 ms,
/// input gradient 92–102 → 49 ms per batch of 256 with 128; 256 and more were slower again
/// (the input gradient's im2col buffer outgrows L2), 64 was as good as 128.
const GEMM_COLUMNS: usize = 128;

/// Samples per gemm for `p` output pixels, at most `per_job`.
fn samples_per_gemm(p: usize, per_job: usize) -> usize {
    (GEMM_COLUMNS / p).clamp(1, per_job)
}

/// The row stride (≥ `cols` floats) for operands that gemm reads down their columns (the weight
/// gradient's, both transposed for it). Rows a multiple of 1 KiB apart (1,024 columns at 32×32,
/// 256 at 16×16) fall into the same few L1 cache sets, so walking down a column evicts the lines
/// just read; 16 floats more breaks the pattern. Measured on the width-16 ResNet's 16→16 conv at
/// 32×32, batch 256: weight gradient 32 → 9 ms.
fn padded_stride(cols: usize) -> usize {
    if cols.is_multiple_of(256) {
        cols + 16
    } else {
        cols
    }
}

/// `n` consecutive `[rows, p]` matrices of `src` side by side as one `[rows, n·p]` matrix with
/// rows `stride` apart: `src` itself when that is its layout already (one matrix, no padding),
/// else a copy into `buf`.
fn side_by_side<'a>(
    src: &'a [f32],
    rows: usize,
    p: usize,
    n: usize,
    stride: usize,
    buf: &'a mut [f32],
) -> MatRef<'a> {
    if n == 1 && stride == p {
        return MatRef::rows(&src[..rows * p], p);
    }
    for (s, mat) in src.chunks(rows * p).take(n).enumerate() {
        for (r, row) in mat.chunks(p).enumerate() {
            buf[r * stride + s * p..][..p].copy_from_slice(row);
        }
    }
    MatRef::rows(buf, stride)
}

/// The inverse of [`side_by_side`]: `[rows, n·p]` (rows `stride` apart) back to `n` matrices.
fn split_side_by_side(src: &[f32], rows: usize, p: usize, stride: usize, dst: &mut [f32]) {
    for (s, mat) in dst.chunks_mut(rows * p).enumerate() {
        for (r, row) in mat.chunks_mut(p).enumerate() {
            row.copy_from_slice(&src[r * stride + s * p..][..p]);
        }
    }
}

/// The im2col matrices `[K, P]` of the `n` samples in `x` side by side, rows `stride` apart
/// (`x` itself for one sample of a 1×1 stride-1 conv when no padding of the rows is needed).
fn im2col_side_by_side<'a>(
    g: &ConvGeometry,
    x: &'a [f32],
    n: usize,
    stride: usize,
    col: &'a mut [f32],
) -> MatRef<'a> {
    let (p, cin_len) = (g.out_pixels(), g.channels_in * g.in_pixels());
    if g.is_pointwise() {
        return side_by_side(x, g.channels_in, p, n, stride, col);
    }
    for (s, x_s) in x.chunks(cin_len).take(n).enumerate() {
        im2col(g, x_s, &mut col[s * p..], stride);
    }
    MatRef::rows(col, stride)
}

/// Zeroed scratch of `len` floats, or none when the operand may be used in place.
fn scratch(len: usize, in_place: bool) -> Vec<f32> {
    if in_place {
        Vec::new()
    } else {
        vec![0.0f32; len]
    }
}

/// `y[B, Cout, OH, OW] = conv(x[B, C, H, W], w[Cout, C, KH, KW])`.
pub fn conv2d_forward(g: &ConvGeometry, batch: usize, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (k, p, cin_len) = (g.col_rows(), g.out_pixels(), g.channels_in * g.in_pixels());
    let out_len = g.channels_out * p;
    let per_job = samples_per_job(batch);
    let group = samples_per_gemm(p, per_job);
    // gemm reads the im2col matrix along its rows here: no padding (measured: no gain).
    let stride = group * p;
    let mut y = vec![0.0f32; batch * out_len];
    y.par_chunks_mut(out_len * per_job)
        .enumerate()
        .for_each(|(job, y_job)| {
            let mut col = scratch(k * stride, group == 1 && g.is_pointwise());
            let mut y_group = scratch(g.channels_out * stride, group == 1);
            for (i, y_dst) in y_job.chunks_mut(out_len * group).enumerate() {
                let (first, n) = (job * per_job + i * group, y_dst.len() / out_len);
                let x_in = &x[first * cin_len..(first + n) * cin_len];
                let rhs = im2col_side_by_side(g, x_in, n, stride, &mut col);
                let lhs = MatRef::rows(w, k);
                if group == 1 {
                    matmul(y_dst, p, g.channels_out, p, k, lhs, rhs, false);
                } else {
                    matmul(
                        &mut y_group,
                        stride,
                        g.channels_out,
                        n * p,
                        k,
                        lhs,
                        rhs,
                        false,
                    );
                    split_side_by_side(&y_group, g.channels_out, p, stride, y_dst);
                }
            }
        });
    y
}

/// `dx = ∂L/∂x` given `dy = ∂L/∂y`: `col2im(wᵀ · dy)` per sample (per group of samples).
pub fn conv2d_input_grad(g: &ConvGeometry, batch: usize, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, p, cin_len) = (g.col_rows(), g.out_pixels(), g.channels_in * g.in_pixels());
    let out_len = g.channels_out * p;
    let per_job = samples_per_job(batch);
    let group = samples_per_gemm(p, per_job);
    // gemm walks `dy` and `col` along their rows here: no padding (measured: no gain).
    let stride = group * p;
    let mut dx = vec![0.0f32; batch * cin_len];
    dx.par_chunks_mut(cin_len * per_job)
        .enumerate()
        .for_each(|(job, dx_job)| {
            let mut col = scratch(k * stride, group == 1 && g.is_pointwise());
            let mut dy_group = scratch(g.channels_out * stride, group == 1);
            for (i, dx_dst) in dx_job.chunks_mut(cin_len * group).enumerate() {
                let (first, n) = (job * per_job + i * group, dx_dst.len() / cin_len);
                let dy_in = &dy[first * out_len..(first + n) * out_len];
                let dy_cols = side_by_side(dy_in, g.channels_out, p, n, stride, &mut dy_group);
                let w_t = MatRef::transposed(w, k);
                if group == 1 && g.is_pointwise() {
                    matmul(dx_dst, p, k, p, g.channels_out, w_t, dy_cols, false);
                    continue;
                }
                matmul(
                    &mut col,
                    stride,
                    k,
                    n * p,
                    g.channels_out,
                    w_t,
                    dy_cols,
                    false,
                );
                for (s, dx_b) in dx_dst.chunks_mut(cin_len).enumerate() {
                    col2im_add(g, &mut col[s * p..], stride, dx_b);
                }
            }
        });
    dx
}

/// `dw = ∂L/∂w` given `dy`: `Σ_b dy_b · im2col(x_b)ᵀ`, one partial sum per rayon job.
pub fn conv2d_weight_grad(g: &ConvGeometry, batch: usize, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, p, cin_len) = (g.col_rows(), g.out_pixels(), g.channels_in * g.in_pixels());
    let out_len = g.channels_out * p;
    let per_job = samples_per_job(batch);
    let group = samples_per_gemm(p, per_job);
    let stride = padded_stride(group * p);
    let in_place = group == 1 && stride == p;
    let jobs = batch.div_ceil(per_job);
    (0..jobs)
        .into_par_iter()
        .map(|job| {
            let mut dw = vec![0.0f32; g.channels_out * k];
            let mut col = scratch(k * stride, in_place && g.is_pointwise());
            let mut dy_group = scratch(g.channels_out * stride, in_place);
            let end = ((job + 1) * per_job).min(batch);
            for first in (job * per_job..end).step_by(group) {
                let n = group.min(end - first);
                let x_in = &x[first * cin_len..(first + n) * cin_len];
                let cols = im2col_side_by_side(g, x_in, n, stride, &mut col);
                let dy_in = &dy[first * out_len..(first + n) * out_len];
                let dy_cols = side_by_side(dy_in, g.channels_out, p, n, stride, &mut dy_group);
                let cols_t = MatRef::transposed(cols.data, cols.row_stride);
                matmul(&mut dw, k, g.channels_out, k, n * p, dy_cols, cols_t, true);
            }
            dw
        })
        .collect::<Vec<_>>()
        .into_iter()
        // Summed in job order, not in rayon's reduction tree, so results are bit-reproducible
        // (resumed runs must match uninterrupted ones).
        .reduce(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        })
        .unwrap_or_else(|| vec![0.0; g.channels_out * k])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Direct 7-loop convolution: the definition, to check the im2col/gemm path against.
    fn naive_forward(g: &ConvGeometry, batch: usize, x: &[f32], w: &[f32]) -> Vec<f32> {
        let (oh_n, ow_n) = (g.out_h(), g.out_w());
        let mut y = vec![0.0; batch * g.channels_out * oh_n * ow_n];
        for b in 0..batch {
            for co in 0..g.channels_out {
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        let mut s = 0.0;
                        for c in 0..g.channels_in {
                            for ki in 0..g.kernel_h {
                                for kj in 0..g.kernel_w {
                                    let ih = (oh * g.stride + ki) as isize - g.padding as isize;
                                    let iw = (ow * g.stride + kj) as isize - g.padding as isize;
                                    if ih < 0
                                        || iw < 0
                                        || ih as usize >= g.height
                                        || iw as usize >= g.width
                                    {
                                        continue;
                                    }
                                    let xi = ((b * g.channels_in + c) * g.height + ih as usize)
                                        * g.width
                                        + iw as usize;
                                    let wi = ((co * g.channels_in + c) * g.kernel_h + ki)
                                        * g.kernel_w
                                        + kj;
                                    s += x[xi] * w[wi];
                                }
                            }
                        }
                        y[((b * g.channels_out + co) * oh_n + oh) * ow_n + ow] = s;
                    }
                }
            }
        }
        y
    }

    /// `n` reproducible values in [−1, 1] (xorshift), for tests across the crate.
    pub(crate) fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn g(
        channels_in: usize,
        height: usize,
        width: usize,
        channels_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            channels_in,
            height,
            width,
            channels_out,
            kernel_h: kernel,
            kernel_w: kernel,
            stride,
            padding,
        }
    }

    fn geometries() -> Vec<ConvGeometry> {
        vec![
            g(3, 7, 6, 4, 3, 1, 1),
            g(4, 8, 8, 5, 3, 2, 1),
            g(5, 7, 7, 3, 3, 2, 1),
            g(4, 6, 6, 6, 1, 1, 0),
            g(4, 7, 7, 6, 1, 2, 0),
            g(2, 9, 9, 3, 7, 2, 3),
            // 16×16 outputs: 256-pixel rows, which the weight gradient lays out with padded strides.
            g(3, 16, 16, 4, 3, 1, 1),
            g(4, 16, 16, 5, 1, 1, 0),
            g(2, 32, 32, 3, 3, 2, 1),
            // Stride-1 "same" kernels wider than the image: shifted planes whose runs are short
            // or empty.
            g(2, 3, 4, 3, 5, 1, 2),
            g(2, 2, 2, 2, 7, 1, 3),
            // Stride 3 (the general column-phase path) with an odd width; stride 1 unpadded.
            g(2, 8, 7, 3, 3, 3, 1),
            g(2, 6, 5, 3, 3, 1, 0),
        ]
    }

    /// Forward equals the definition; each gradient entry equals the naive forward applied to a
    /// basis vector (conv is linear in x and in w).
    #[test]
    fn forward_and_gradients_match_the_definition() {
        for (i, g) in geometries().into_iter().enumerate() {
            let batch = 3;
            let x = pseudo_random(batch * g.channels_in * g.height * g.width, i as u32);
            let w = pseudo_random(g.channels_out * g.col_rows(), 100 + i as u32);
            let y = conv2d_forward(&g, batch, &x, &w);
            let y_ref = naive_forward(&g, batch, &x, &w);
            assert_eq!(y.len(), y_ref.len(), "{g:?}");
            for (a, b) in y.iter().zip(&y_ref) {
                assert!((a - b).abs() < 1e-4, "{g:?}: {a} vs {b}");
            }
            // For L = ⟨y, dy⟩, ∂L/∂x_j = ⟨conv(e_j, w), dy⟩ with e_j the j-th basis input.
            let dy = pseudo_random(y.len(), 200 + i as u32);
            let dx = conv2d_input_grad(&g, batch, &w, &dy);
            let dw = conv2d_weight_grad(&g, batch, &x, &dy);
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>();
            for j in (0..x.len()).step_by(7) {
                let mut e = vec![0.0; x.len()];
                e[j] = 1.0;
                let expect = dot(&naive_forward(&g, batch, &e, &w), &dy);
                assert!((dx[j] - expect).abs() < 1e-4, "{g:?} dx[{j}]");
            }
            for j in 0..w.len() {
                let mut e = vec![0.0; w.len()];
                e[j] = 1.0;
                let expect = dot(&naive_forward(&g, batch, &x, &e), &dy);
                assert!((dw[j] - expect).abs() < 1e-3, "{g:?} dw[{j}]");
            }
        }
    }

    /// Small outputs put several samples side by side in one gemm; that must give what one gemm
    /// per sample gives (the path checked against the definition above).
    #[test]
    fn samples_side_by_side_match_one_sample_at_a_time() {
        // One thread: a batch of 11 runs as rayon jobs of 3, 3, 3 and 2 samples.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let batch = 11;
        // Outputs of 16 pixels (groups of 3, the last job's one of 2) and of 64 and 49 (groups
        // of 2, then a group of 1 in each job of 3); 3×3 and 1×1 kernels, strides 1 and 2.
        for (i, g) in [
            g(3, 8, 8, 4, 3, 2, 1),
            g(6, 4, 4, 5, 1, 1, 0),
            g(4, 8, 8, 5, 3, 1, 1),
            g(2, 14, 14, 3, 1, 2, 0),
        ]
        .into_iter()
        .enumerate()
        {
            pool.install(|| {
                assert!(samples_per_gemm(g.out_pixels(), samples_per_job(batch)) > 1);
                let (x_len, y_len) = (
                    g.channels_in * g.height * g.width,
                    g.channels_out * g.out_pixels(),
                );
                let x = pseudo_random(batch * x_len, 300 + i as u32);
                let w = pseudo_random(g.channels_out * g.col_rows(), 400 + i as u32);
                let dy = pseudo_random(batch * y_len, 500 + i as u32);
                let y = conv2d_forward(&g, batch, &x, &w);
                let dx = conv2d_input_grad(&g, batch, &w, &dy);
                let dw = conv2d_weight_grad(&g, batch, &x, &dy);
                // Not bit for bit: gemm may block the sums over k differently for other widths.
                let close = |a: &[f32], b: &[f32], what: &str| {
                    assert_eq!(a.len(), b.len());
                    for (a, b) in a.iter().zip(b) {
                        assert!(
                            (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                            "{g:?} {what}: {a} vs {b}"
                        );
                    }
                };
                let mut dw_sum = vec![0.0f32; w.len()];
                for b in 0..batch {
                    let (x_b, dy_b) = (&x[b * x_len..][..x_len], &dy[b * y_len..][..y_len]);
                    close(
                        &y[b * y_len..][..y_len],
                        &conv2d_forward(&g, 1, x_b, &w),
                        "y",
                    );
                    close(
                        &dx[b * x_len..][..x_len],
                        &conv2d_input_grad(&g, 1, &w, dy_b),
                        "dx",
                    );
                    let dw_b = conv2d_weight_grad(&g, 1, x_b, dy_b);
                    dw_sum.iter_mut().zip(&dw_b).for_each(|(a, b)| *a += b);
                }
                close(&dw, &dw_sum, "dw");
            });
        }
    }
}
