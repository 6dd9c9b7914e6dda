//! 2-D convolution on NCHW `f32` slices: per-sample im2col + one gemm, samples in parallel.
//!
//! burn-flex routes conv2d through its conv3d code (an NHWC copy of the whole input, tiles of
//! 512 pixels) and the backward through conv_transpose3d and a conv with batch and channels
//! swapped. For ResNet's shapes (3×3 or 1×1 kernels, stride 1 or 2, few channels) one gemm per
//! sample on an im2col buffer reused across the samples of a rayon job does less copying, and
//! the three passes share the same im2col/col2im.

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
}

/// `col[K, P] = im2col(x)` for one sample `x[C, H, W]`, rows `row_stride` apart (≥ P); padding
/// reads as 0.
fn im2col(g: &ConvGeometry, x: &[f32], col: &mut [f32], row_stride: usize) {
    let (oh_n, ow_n, p) = (g.out_h(), g.out_w(), row_stride);
    let mut row = 0;
    for c in 0..g.channels_in {
        let plane = &x[c * g.in_pixels()..(c + 1) * g.in_pixels()];
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let dst = &mut col[row * p..row * p + g.out_pixels()];
                let (lo, hi) = g.valid_cols(kj);
                for oh in 0..oh_n {
                    let out_row = &mut dst[oh * ow_n..(oh + 1) * ow_n];
                    let ih = (oh * g.stride + ki) as isize - g.padding as isize;
                    if ih < 0 || ih as usize >= g.height {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &plane[ih as usize * g.width..(ih as usize + 1) * g.width];
                    out_row[..lo].fill(0.0);
                    out_row[hi..].fill(0.0);
                    if lo == hi {
                        continue;
                    }
                    let iw0 = lo * g.stride + kj - g.padding;
                    if g.stride == 1 {
                        out_row[lo..hi].copy_from_slice(&src[iw0..iw0 + hi - lo]);
                    } else {
                        for (o, v) in out_row[lo..hi].iter_mut().enumerate() {
                            *v = src[iw0 + o * g.stride];
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// `dx += col2im(col)` for one sample, `col`'s rows `row_stride` apart: the adjoint of [`im2col`].
fn col2im_add(g: &ConvGeometry, col: &[f32], row_stride: usize, dx: &mut [f32]) {
    let (oh_n, ow_n, p) = (g.out_h(), g.out_w(), row_stride);
    let mut row = 0;
    for c in 0..g.channels_in {
        let plane = &mut dx[c * g.in_pixels()..(c + 1) * g.in_pixels()];
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let src = &col[row * p..row * p + g.out_pixels()];
                let (lo, hi) = g.valid_cols(kj);
                for oh in 0..oh_n {
                    let ih = (oh * g.stride + ki) as isize - g.padding as isize;
                    if ih < 0 || ih as usize >= g.height || lo >= hi {
                        continue;
                    }
                    let dst = &mut plane[ih as usize * g.width..(ih as usize + 1) * g.width];
                    let src_row = &src[oh * ow_n + lo..oh * ow_n + hi];
                    let iw0 = lo * g.stride + kj - g.padding;
                    if g.stride == 1 {
                        for (d, s) in dst[iw0..iw0 + hi - lo].iter_mut().zip(src_row) {
                            *d += s;
                        }
                    } else {
                        for (o, s) in src_row.iter().enumerate() {
                            dst[iw0 + o * g.stride] += s;
                        }
                    }
                }
                row += 1;
            }
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

/// The row stride (≥ `p` floats) for per-sample `[rows, p]` operands that gemm reads down their
/// columns (the weight gradient's, both transposed for it). Rows a multiple of 1 KiB apart
/// (p = 1024 at 32×32, 256 at 16×16) fall into the same few L1 cache sets, so walking down a
/// column evicts the lines just read; 16 floats more breaks the pattern. Measured on the
/// width-16 ResNet's 16→16 conv at 32×32, batch 256: weight gradient 32 → 9 ms.
fn padded_stride(p: usize) -> usize {
    if p.is_multiple_of(256) { p + 16 } else { p }
}

/// `src[rows, p]` with its rows `stride` apart: `src` itself when `stride == p`, else a copy
/// into `buf` (whose padding columns are never read).
fn strided<'a>(src: &'a [f32], p: usize, stride: usize, buf: &'a mut [f32]) -> MatRef<'a> {
    if stride == p {
        return MatRef::rows(src, p);
    }
    for (d, s) in buf.chunks_mut(stride).zip(src.chunks(p)) {
        d[..p].copy_from_slice(s);
    }
    MatRef::rows(buf, stride)
}

/// Scratch space for one sample's `[rows, stride]` operand (none when `src` is used in place).
fn scratch(rows: usize, p: usize, stride: usize, in_place: bool) -> Vec<f32> {
    if in_place && stride == p {
        Vec::new()
    } else {
        vec![0.0f32; rows * stride]
    }
}

/// The im2col matrix `[K, P]` of one sample `x_b`, rows `stride` apart (built in `col`, or `x_b`
/// itself for a 1×1 stride-1 conv when no padding of the rows is needed).
fn im2col_of<'a>(
    g: &ConvGeometry,
    x_b: &'a [f32],
    stride: usize,
    col: &'a mut [f32],
) -> MatRef<'a> {
    if g.is_pointwise() {
        strided(x_b, g.out_pixels(), stride, col)
    } else {
        im2col(g, x_b, col, stride);
        MatRef::rows(col, stride)
    }
}

/// `y[B, Cout, OH, OW] = conv(x[B, C, H, W], w[Cout, C, KH, KW])`.
pub fn conv2d_forward(g: &ConvGeometry, batch: usize, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (k, p, cin_len) = (g.col_rows(), g.out_pixels(), g.channels_in * g.in_pixels());
    let out_len = g.channels_out * p;
    // Rows are read along their length here: no padding (measured: no gain).
    let stride = p;
    let mut y = vec![0.0f32; batch * out_len];
    let per_job = samples_per_job(batch);
    y.par_chunks_mut(out_len * per_job)
        .enumerate()
        .for_each(|(job, y_job)| {
            let mut col = scratch(k, p, stride, g.is_pointwise());
            for (i, y_b) in y_job.chunks_mut(out_len).enumerate() {
                let b = job * per_job + i;
                let rhs = im2col_of(g, &x[b * cin_len..(b + 1) * cin_len], stride, &mut col);
                let lhs = MatRef::rows(w, k);
                matmul(y_b, p, g.channels_out, p, k, lhs, rhs, false);
            }
        });
    y
}

/// `dx = ∂L/∂x` given `dy = ∂L/∂y`: `col2im(wᵀ · dy)` per sample.
pub fn conv2d_input_grad(g: &ConvGeometry, batch: usize, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, p, cin_len) = (g.col_rows(), g.out_pixels(), g.channels_in * g.in_pixels());
    let out_len = g.channels_out * p;
    // gemm walks `dy` and `col` along their rows here: no padding (measured: no gain).
    let stride = p;
    let mut dx = vec![0.0f32; batch * cin_len];
    let per_job = samples_per_job(batch);
    dx.par_chunks_mut(cin_len * per_job)
        .enumerate()
        .for_each(|(job, dx_job)| {
            let mut col = scratch(k, p, stride, g.is_pointwise());
            let mut dy_buf = scratch(g.channels_out, p, stride, true);
            for (i, dx_b) in dx_job.chunks_mut(cin_len).enumerate() {
                let b = job * per_job + i;
                let dy_b = strided(&dy[b * out_len..(b + 1) * out_len], p, stride, &mut dy_buf);
                let w_t = MatRef::transposed(w, k);
                if g.is_pointwise() {
                    matmul(dx_b, p, k, p, g.channels_out, w_t, dy_b, false);
                } else {
                    matmul(&mut col, stride, k, p, g.channels_out, w_t, dy_b, false);
                    col2im_add(g, &col, stride, dx_b);
                }
            }
        });
    dx
}

/// `dw = ∂L/∂w` given `dy`: `Σ_b dy_b · im2col(x_b)ᵀ`, one partial sum per rayon job.
pub fn conv2d_weight_grad(g: &ConvGeometry, batch: usize, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, p, cin_len) = (g.col_rows(), g.out_pixels(), g.channels_in * g.in_pixels());
    let out_len = g.channels_out * p;
    let stride = padded_stride(p);
    let per_job = samples_per_job(batch);
    let jobs = batch.div_ceil(per_job);
    (0..jobs)
        .into_par_iter()
        .map(|job| {
            let mut dw = vec![0.0f32; g.channels_out * k];
            let mut col = scratch(k, p, stride, g.is_pointwise());
            let mut dy_buf = scratch(g.channels_out, p, stride, true);
            for b in job * per_job..((job + 1) * per_job).min(batch) {
                let col_b = im2col_of(g, &x[b * cin_len..(b + 1) * cin_len], stride, &mut col);
                let dy_b = strided(&dy[b * out_len..(b + 1) * out_len], p, stride, &mut dy_buf);
                let col_t = MatRef::transposed(col_b.data, col_b.row_stride);
                matmul(&mut dw, k, g.channels_out, k, p, dy_b, col_t, true);
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
mod tests {
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

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
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

    fn geometries() -> Vec<ConvGeometry> {
        let g = |channels_in, height, width, channels_out, kernel, stride, padding| ConvGeometry {
            channels_in,
            height,
            width,
            channels_out,
            kernel_h: kernel,
            kernel_w: kernel,
            stride,
            padding,
        };
        vec![
            g(3, 7, 6, 4, 3, 1, 1),
            g(4, 8, 8, 5, 3, 2, 1),
            g(5, 7, 7, 3, 3, 2, 1),
            g(4, 6, 6, 6, 1, 1, 0),
            g(4, 7, 7, 6, 1, 2, 0),
            g(2, 9, 9, 3, 7, 2, 3),
            // 16×16 outputs: 256-pixel rows, which the passes lay out with padded strides.
            g(3, 16, 16, 4, 3, 1, 1),
            g(4, 16, 16, 5, 1, 1, 0),
            g(2, 32, 32, 3, 3, 2, 1),
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
}
