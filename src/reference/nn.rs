//! Reference network ops, NCHW, f64 accumulation.

/// 2-D convolution: x `[n, cin, h, w]`, weight `[cout, cin, kh, kw]`; padding `(top, bottom, left, right)`.
/// Returns `(out, [n, cout, ho, wo])` with `out = (conv + bias + residual) * out_scale`.
#[allow(clippy::too_many_arguments)] // mirrors the operands of the op
pub fn conv2d(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    weight: &[f32],
    [cout, _, kh, kw]: [usize; 4],
    bias: &[f32],
    residual: Option<&[f32]>,
    stride: usize,
    (top, bottom, left, right): (usize, usize, usize, usize),
    out_scale: f64,
) -> (Vec<f64>, [usize; 4]) {
    let ho = (h + top + bottom - kh) / stride + 1;
    let wo = (w + left + right - kw) / stride + 1;
    let mut out = vec![0.0; n * cout * ho * wo];
    for b in 0..n {
        for co in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias[co] as f64;
                    for ci in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride + ky) as isize - top as isize;
                                let ix = (ox * stride + kx) as isize - left as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * cin + ci) * h + iy as usize) * w + ix as usize];
                                let wv = weight[((co * cin + ci) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    let o = ((b * cout + co) * ho + oy) * wo + ox;
                    if let Some(r) = residual {
                        acc += r[o] as f64;
                    }
                    out[o] = acc * out_scale;
                }
            }
        }
    }
    (out, [n, cout, ho, wo])
}

/// The columns of a convolution's matrix product (im2col): x `[n, cin, h, w]` to `[n, cin * kh * kw, ho * wo]`,
/// row `(ci * kh + ky) * kw + kx` holding the input under tap (ky, kx) for every output pixel, zero outside the
/// image; padding `(top, left)`.
#[allow(clippy::too_many_arguments)] // the geometry of a convolution
pub fn im2col(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    (kh, kw): (usize, usize),
    stride: usize,
    (top, left): (usize, usize),
    (ho, wo): (usize, usize),
) -> Vec<f64> {
    let mut cols = Vec::with_capacity(n * cin * kh * kw * ho * wo);
    for b in 0..n {
        for ci in 0..cin {
            for ky in 0..kh {
                for kx in 0..kw {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let iy = (oy * stride + ky) as isize - top as isize;
                            let ix = (ox * stride + kx) as isize - left as isize;
                            let inside = iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize;
                            cols.push(if inside {
                                x[((b * cin + ci) * h + iy as usize) * w + ix as usize] as f64
                            } else {
                                0.0
                            });
                        }
                    }
                }
            }
        }
    }
    cols
}

/// `x * sigmoid(x)`.
pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// GroupNorm over x `[n, c, hw]` with biased variance, affine, optional SiLU.
#[allow(clippy::too_many_arguments)] // mirrors the operands of the op
pub fn group_norm(
    x: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    apply_silu: bool,
) -> Vec<f64> {
    let cpg = c / groups;
    let mut out = vec![0.0; x.len()];
    for b in 0..n {
        for g in 0..groups {
            let start = (b * c + g * cpg) * hw;
            let vals = &x[start..start + cpg * hw];
            let count = vals.len() as f64;
            let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / count;
            let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / count;
            let rstd = 1.0 / (var + eps).sqrt();
            for (i, &v) in vals.iter().enumerate() {
                let ch = g * cpg + i / hw;
                let y = (v as f64 - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64;
                out[start + i] = if apply_silu { silu(y) } else { y };
            }
        }
    }
    out
}

/// Linear over row-major tokens: x `[tokens, k]`, weight `[n_out, k]` -> `[tokens, n_out]`, with optional
/// SiLU on the input, residual `[tokens, n_out]` and output scale.
pub fn linear(
    x: &[f32],
    k: usize,
    weight: &[f32],
    bias: &[f32],
    silu_input: bool,
    residual: Option<&[f32]>,
    out_scale: f64,
) -> Vec<f64> {
    let n_out = bias.len();
    let tokens = x.len() / k;
    let mut out = vec![0.0; tokens * n_out];
    for t in 0..tokens {
        for j in 0..n_out {
            let mut acc = bias[j] as f64;
            for i in 0..k {
                let xv = x[t * k + i] as f64;
                let xv = if silu_input { silu(xv) } else { xv };
                acc += xv * weight[j * k + i] as f64;
            }
            if let Some(r) = residual {
                acc += r[t * n_out + j] as f64;
            }
            out[t * n_out + j] = acc * out_scale;
        }
    }
    out
}

/// `[n, c, hw]` -> `[n, hw, c]` (feature maps to token rows) for any element type.
pub fn to_tokens<T: Copy>(x: &[T], n: usize, c: usize, hw: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for b in 0..n {
        for t in 0..hw {
            for ch in 0..c {
                out.push(x[(b * c + ch) * hw + t]);
            }
        }
    }
    out
}

/// `[n, hw, c]` -> `[n, c, hw]`, the inverse of [`to_tokens`].
pub fn from_tokens<T: Copy>(x: &[T], n: usize, c: usize, hw: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for b in 0..n {
        for ch in 0..c {
            for t in 0..hw {
                out.push(x[(b * hw + t) * c + ch]);
            }
        }
    }
    out
}

/// Multi-head attention with a full (materialised) softmax: q, k, v `[n, c, t]`, head h owns channels
/// `h * head_dim ..`; returns `[n, c, t]`.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    c: usize,
    t: usize,
    head_dim: usize,
) -> Vec<f64> {
    let heads = c / head_dim;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let at = |buf: &[f32], b: usize, h: usize, d: usize, tok: usize| {
        buf[(b * c + h * head_dim + d) * t + tok] as f64
    };
    let mut out = vec![0.0; n * c * t];
    let mut scores = vec![0.0; t];
    for b in 0..n {
        for h in 0..heads {
            for i in 0..t {
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = (0..head_dim).map(|d| at(q, b, h, d, i) * at(k, b, h, d, j)).sum::<f64>()
                        * scale;
                }
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for d in 0..head_dim {
                    let acc: f64 =
                        weights.iter().enumerate().map(|(j, w)| w * at(v, b, h, d, j)).sum();
                    out[(b * c + h * head_dim + d) * t + i] = acc / total;
                }
            }
        }
    }
    out
}

/// Nearest 2x upsampling of `[planes, h, w]`.
pub fn upsample_nearest2x(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(planes * 4 * h * w);
    for p in 0..planes {
        for oy in 0..2 * h {
            for ox in 0..2 * w {
                out.push(x[(p * h + oy / 2) * w + ox / 2] as f64);
            }
        }
    }
    out
}

/// Channel concatenation of `[n, ca, hw]` and `[n, cb, hw]`.
pub fn concat_channels(
    a: &[f32],
    b: &[f32],
    n: usize,
    ca: usize,
    cb: usize,
    hw: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    for i in 0..n {
        out.extend(a[i * ca * hw..(i + 1) * ca * hw].iter().map(|&v| v as f64));
        out.extend(b[i * cb * hw..(i + 1) * cb * hw].iter().map(|&v| v as f64));
    }
    out
}

/// diffusers' `get_timestep_embedding` (max period 10000, scale 1), in f64: `[n, dim]`.
pub fn timestep_embedding(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Vec<f64> {
    let half = dim / 2;
    let mut out = vec![0.0; timesteps.len() * dim];
    for (row, &t) in timesteps.iter().enumerate() {
        for i in 0..half {
            let freq = (-(10000f64.ln()) * i as f64 / (half as f64 - freq_shift)).exp();
            let arg = t as f64 * freq;
            let (first, second) =
                if flip_sin_to_cos { (arg.cos(), arg.sin()) } else { (arg.sin(), arg.cos()) };
            out[row * dim + i] = first;
            out[row * dim + half + i] = second;
        }
    }
    out
}

/// The value roofline_fma.wgsl writes for invocation `i`: 8 chains x 4 lanes of `a = a * 0.999 + 0.001` from
/// `0.001 * (i % 97 + chain + lane)`, summed. Iterated in f32 with fused multiply-adds, like the kernel.
pub fn roofline_fma(i: u32, iterations: u32) -> f64 {
    let base = (i % 97) as f32;
    let mut sum = 0.0f64;
    for chain in 0..8 {
        for lane in 0..4 {
            let mut a = 0.001f32 * (base + chain as f32 + lane as f32);
            for _ in 0..iterations {
                a = a.mul_add(0.999, 0.001);
            }
            sum += a as f64;
        }
    }
    sum
}
