//! The kernels at f16 precision (`Precision::F16`: f16 tensors, f32 arithmetic inside each kernel) against the
//! CPU reference fed the same f16 values. Each kernel loads f16, computes in f32 and rounds once as it stores, so
//! every output is within half an f16 ulp of the f32 result: `|got - want| <= 2^-11 |want|` plus the f32 bound of
//! the same kernel at f32 precision (its accumulation error), and nothing looser. The exceptions, the 4 x 4 tiled
//! convolutions' and `attention_flash`'s f16 products, add their worst case on random data
//! (`products_allowance`, `attention_products_allowance`), and are held to one rounding on dyadic data, whose
//! products and chunk sums f16 holds exactly (`dyadic`). A wrong conversion, an f16 intermediate or a binding read
//! at the wrong width errs by far more.

use ddim_wgpu::diffusion::philox::{self, NoiseKey, Stream};
use ddim_wgpu::diffusion::step::{Prediction, StepCoefficients};
use ddim_wgpu::gpu::{DType, DeviceOptions, Gpu, KernelChoice, Precision, Tensor};
use ddim_wgpu::ops::attention::{BLOCKINGS, attention, attention_blocked, blocking_for};
use ddim_wgpu::ops::concat::concat_channels;
use ddim_wgpu::ops::conv2d::{
    ChannelSlice, Conv2dConfig, InputNorm, Padding, conv2d, conv2d_normed, conv2d_with_channel,
};
use ddim_wgpu::ops::ddim::{
    DdimScratch, Noise, StepSpec, UpdateMode, conv_ddim_update, ddim_update,
};
use ddim_wgpu::ops::elementwise::{Binary, binary};
use ddim_wgpu::ops::group_norm::{KERNEL, SUBGROUP_KERNEL, VEC4_KERNEL, group_norm_with};
use ddim_wgpu::ops::linear::{LinearConfig, linear};
use ddim_wgpu::ops::timestep_embedding::TimestepEmbedding;
use ddim_wgpu::ops::upsample::upsample_nearest2x;
use ddim_wgpu::reference::ddim::{StepSettings, ddim_step};
use ddim_wgpu::reference::nn;
use pollster::FutureExt as _;
use std::sync::OnceLock;

use crate::common::{data, gpu_families, run};
use crate::gpu_or_skip;
use crate::support::gpu_f16;

/// Half an f16 ulp, relative: the rounding of one f16 store.
const HALF_ULP: f64 = 1.0 / 2048.0;

/// The f32 accumulation error of a reduction over up to a few thousand products of values of order 1,
/// relative to the output's largest magnitude: the same bound as the f32 convolution tests (`conv2d.rs`,
/// `BOUND`).
const F32_SUM: f64 = 1e-5;

/// Two devices at f16 precision on the test adapter, with the GPU family's 4 x 4 and 8 x 8 convolution tiles;
/// `None` where the adapter lacks `shader-f16` (GL, SwiftShader; lavapipe and Vulkan GPUs offer it).
fn devices() -> Option<&'static [Gpu; 2]> {
    static DEVICES: OnceLock<Option<[Gpu; 2]>> = OnceLock::new();
    DEVICES.get_or_init(|| Some([gpu_f16(false)?, gpu_f16(true)?])).as_ref()
}

/// `n` values in [lo, hi), rounded to f16 (what an f16 tensor of them holds).
fn halves(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    data(seed, n, lo, hi).into_iter().map(round).collect()
}

/// `n` multiples of 1 / `denom` in [-max, max] (max a multiple of it): f16 holds them, their products and short
/// sums of those exactly, so a kernel that multiplies and sums in f16 must match the f32 result before its one
/// rounding on store.
fn dyadic(seed: u64, n: usize, max: f32, denom: f32) -> Vec<f32> {
    let top = max * denom;
    data(seed, n, -top - 0.5, top + 0.5)
        .into_iter()
        .map(|v| v.round().clamp(-top, top) / denom)
        .collect()
}

fn round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

fn upload(gpu: &Gpu, label: &str, shape: &[usize], v: &[f32]) -> Tensor {
    gpu.upload_as(label, shape, v, DType::F16).unwrap()
}

fn zeros(gpu: &Gpu, label: &str, shape: &[usize]) -> Tensor {
    gpu.zeros_as(label, shape, DType::F16).unwrap()
}

/// `|got - want| <= HALF_ULP |want| + atol` everywhere (and finite).
fn assert_rounded(what: &str, got: &[f32], want: &[f64], atol: f64) {
    assert_rounded_each(what, got, want, &vec![atol; want.len()]);
}

/// `|got - want| <= HALF_ULP |want| + atol[i]` for every element i (and finite); prints the worst error over its
/// bound with `DDIM_TEST_VERBOSE`.
fn assert_rounded_each(what: &str, got: &[f32], want: &[f64], atol: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f64;
    for (i, ((&g, &w), &a)) in got.iter().zip(want).zip(atol).enumerate() {
        let err = (g as f64 - w).abs();
        let bound = HALF_ULP * w.abs() + a;
        assert!(
            g.is_finite() && err <= bound,
            "{what}: element {i}: got {g}, want {w}, |error| {err:.3e} > {bound:.3e}"
        );
        worst = worst.max(err / bound);
    }
    if std::env::var_os("DDIM_TEST_VERBOSE").is_some() {
        eprintln!("{what}: worst error/bound {worst:.3}");
    }
}

/// What f16 products add to a convolution's error per output, given its `abs_sums` (sum over k of |w_k x_k|,
/// from the reference on the operands' magnitudes) and the kernel that ran. The 4 x 4 tiled kernels at f16
/// precision (`conv2d_tiled.wgsl`'s HALF) sum each K step of TK = 16 products in f16: at most TK + 1 roundings
/// (2^-11 relative each) of the step's magnitudes, and one more for the input's rounding into the f16 tile
/// where a prologue normalised it: (TK + 2) 2^-11 sum |w x|, a worst case the f32 steps do not widen (measured:
/// 1-11% of the whole bound, where the one-rounding bound alone is exceeded). The 8 x 8 kernels multiply in f32
/// and add nothing.
fn products_allowance(kernel: &str, abs_sums: &[f64]) -> Vec<f64> {
    let half_products = matches!(kernel, "conv2d_tiled" | "conv2d_tiled_gn" | "conv2d_tiled_ddim");
    let factor = if half_products { 18.0 * HALF_ULP } else { 0.0 };
    abs_sums.iter().map(|s| factor * s).collect()
}

/// The reference 3x3 convolution with padding 1 of `x` `[n, cin, h, w]` by `weight` `[cout, cin, 3, 3]`.
fn conv3x3(x: &[f32], [n, cin, h, w]: [usize; 4], weight: &[f32], bias: &[f32]) -> Vec<f64> {
    let cout = bias.len();
    nn::conv2d(x, [n, cin, h, w], weight, [cout, cin, 3, 3], bias, None, 1, (1, 1, 1, 1), 1.0).0
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// The f32 accumulation allowance for a reduction whose outputs reach `max|want|`.
fn sum_atol(want: &[f64]) -> f64 {
    F32_SUM * want.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

#[test]
fn convolutions_round_once() {
    gpu_or_skip!();
    let Some(devices) = devices() else { return };
    // (n, cin, h, w, cout, k, stride, padding, residual, out_scale): an awkward 3x3 with residual and scale,
    // a small map with many channels (split K), a strided one with asymmetric padding, a 1x1.
    let cases = [
        (2, 3, 7, 33, 5, 3, 1, Padding::uniform(1), true, 0.5),
        (1, 96, 4, 4, 72, 3, 1, Padding::uniform(1), false, 1.0),
        (2, 6, 9, 10, 7, 3, 2, Padding { top: 0, bottom: 1, left: 0, right: 1 }, false, 1.0),
        (2, 40, 5, 6, 24, 1, 1, Padding::uniform(0), true, 1.0),
    ];
    // Random f16 values, and dyadic ones (x in eighths, weights in sixteenths up to 1/4: a K step's 16 products
    // and their sums are exact in f16, so every kernel must round once, the 4 x 4 ones' f16 products included).
    for (gpu, exact) in devices.iter().flat_map(|g| [(g, false), (g, true)]) {
        for (i, &(n, cin, h, w, cout, k, stride, padding, residual, out_scale)) in
            cases.iter().enumerate()
        {
            let seed = 10 * i as u64 + exact as u64;
            let r = (1.0 / (cin * k * k) as f32).sqrt();
            let (xv, wv, bv) = if exact {
                let xv = dyadic(seed, n * cin * h * w, 1.0, 8.0);
                (
                    xv,
                    dyadic(seed + 1, cout * cin * k * k, 0.25, 16.0),
                    dyadic(seed + 2, cout, 0.5, 8.0),
                )
            } else {
                let xv = halves(seed, n * cin * h * w, -1.0, 1.0);
                (xv, halves(seed + 1, cout * cin * k * k, -r, r), halves(seed + 2, cout, -0.5, 0.5))
            };
            let cfg = Conv2dConfig { stride, padding, out_scale, upsample: false };
            let (ho, wo) = ddim_wgpu::ops::conv2d::output_size(h, w, k, k, &cfg).unwrap();
            let rv = dyadic(seed + 3, n * cout * ho * wo, 1.0, 8.0);
            let x = upload(gpu, "x", &[n, cin, h, w], &xv);
            let wt = upload(gpu, "weight", &[cout, cin, k, k], &wv);
            let b = upload(gpu, "bias", &[cout], &bv);
            let res = upload(gpu, "residual", &[n, cout, ho, wo], &rv);
            let out = zeros(gpu, "out", &[n, cout, ho, wo]);
            let data = if exact { "dyadic" } else { "random" };
            let name =
                format!("f16 conv {n}x{cin}x{h}x{w} -> {cout}, k {k}, stride {stride}, {data}");
            let d = conv2d(gpu, &name, &x, &wt, &b, residual.then_some(&res), &out, &cfg).unwrap();
            assert!(d.kernel().name.starts_with("conv2d_tiled"), "{name}: {}", d.kernel().name);
            let got = run(gpu, &[&d], &out);
            let p = padding;
            let (want, _) = nn::conv2d(
                &xv,
                [n, cin, h, w],
                &wv,
                [cout, cin, k, k],
                &bv,
                residual.then_some(rv.as_slice()),
                stride,
                (p.top, p.bottom, p.left, p.right),
                out_scale as f64,
            );
            let (abs_sums, _) = nn::conv2d(
                &abs(&xv),
                [n, cin, h, w],
                &abs(&wv),
                [cout, cin, k, k],
                &vec![0.0; cout],
                None,
                stride,
                (p.top, p.bottom, p.left, p.right),
                out_scale as f64,
            );
            let kernel = d.kernel().name;
            let products =
                if exact { vec![0.0; want.len()] } else { products_allowance(kernel, &abs_sums) };
            let atol: Vec<f64> = products.into_iter().map(|a| a + sum_atol(&want)).collect();
            assert_rounded_each(&format!("{name} ({kernel})"), &got, &want, &atol);
        }
    }
}

#[test]
fn normed_convolution_and_channel_slices_round_once() {
    gpu_or_skip!();
    let Some(devices) = devices() else { return };
    let (n, cin, h, w, cout, groups, stride) = (2, 12, 6, 7, 10, 4, 16);
    let xv = halves(50, n * cin * h * w, -2.0, 3.0);
    let gv = halves(51, cin, 0.5, 1.5);
    let bev = halves(52, cin, -0.5, 0.5);
    let r = (1.0 / (9 * cin) as f32).sqrt();
    let wv = halves(53, cout * cin * 9, -r, r);
    let bv = halves(54, cout, -0.5, 0.5);
    // The channel vectors: [n, 16], this convolution's slice at offset 3.
    let cv = halves(55, n * stride, -1.0, 1.0);
    let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
    let normed = nn::group_norm(&xv, n, cin, h * w, groups, &gv, &bev, 1e-5, true);
    let normed32: Vec<f32> = normed.iter().map(|&v| v as f32).collect();
    let conv = conv3x3(&normed32, [n, cin, h, w], &wv, &bv);
    // Output i of image i / (cout h w), channel (i / (h w)) % cout adds its channel vector's element at 3 + channel.
    let with_slice = |conv: Vec<f64>| -> Vec<f64> {
        let slice = |i: usize| cv[(i / (cout * h * w)) * stride + 3 + (i / (h * w)) % cout] as f64;
        conv.iter().enumerate().map(|(i, &v)| v + slice(i)).collect()
    };
    let want = with_slice(conv);
    let abs_sums = conv3x3(&abs(&normed32), [n, cin, h, w], &abs(&wv), &vec![0.0; cout]);
    for gpu in devices {
        let x = upload(gpu, "x", &[n, cin, h, w], &xv);
        let gamma = upload(gpu, "gamma", &[cin], &gv);
        let beta = upload(gpu, "beta", &[cin], &bev);
        let wt = upload(gpu, "weight", &[cout, cin, 3, 3], &wv);
        let b = upload(gpu, "bias", &[cout], &bv);
        let chan = upload(gpu, "channel vectors", &[n, stride], &cv);
        let slice = || Some(ChannelSlice { vectors: &chan, offset: 3 });
        let norm = InputNorm { gamma: &gamma, beta: &beta, groups, eps: 1e-5, silu: true };
        let out = zeros(gpu, "out", &[n, cout, h, w]);
        let d =
            conv2d_normed(gpu, "f16 norm + conv", &x, &norm, &wt, &b, slice(), None, &out, &cfg)
                .unwrap();
        // The profiler's traffic: the statistics launch's and the convolution's, each counted once at f16's 2
        // bytes a value, half what the same dispatch declares on the GPU family's f32 device.
        let f32_gpu = gpu_families()[1];
        let up = |label: &str, shape: &[usize]| f32_gpu.zeros(label, shape).unwrap();
        let (gamma32, beta32) = (up("gamma", &[cin]), up("beta", &[cin]));
        let norm32 = InputNorm { gamma: &gamma32, beta: &beta32, ..norm };
        let chan32 = up("channel vectors", &[n, stride]);
        let slice32 = Some(ChannelSlice { vectors: &chan32, offset: 3 });
        let (x32, out32) = (up("x", &[n, cin, h, w]), up("out", &[n, cout, h, w]));
        let (w32, b32) = (up("weight", &[cout, cin, 3, 3]), up("bias", &[cout]));
        let d32 = conv2d_normed(
            f32_gpu,
            "norm + conv",
            &x32,
            &norm32,
            &w32,
            &b32,
            slice32,
            None,
            &out32,
            &cfg,
        )
        .unwrap();
        assert_eq!(2 * d.cost().bytes, d32.cost().bytes);
        let got = run(gpu, &[&d], &out);
        // The statistics are f32 sums over 3 x 42 values; the normalised inputs reach about 2.
        let kernel = d.kernel().name;
        let atol: Vec<f64> = products_allowance(kernel, &abs_sums)
            .into_iter()
            .map(|a| a + sum_atol(&want))
            .collect();
        assert_rounded_each(&format!("f16 norm + conv ({kernel})"), &got, &want, &atol);

        // The same convolution over the stored normalised map (f16: rounded once more, so compared with the
        // reference over that rounding).
        let stored: Vec<f32> = normed32.iter().map(|&v| round(v)).collect();
        let conv = conv3x3(&stored, [n, cin, h, w], &wv, &bv);
        let want_stored = with_slice(conv);
        let xn = upload(gpu, "normalised x", &[n, cin, h, w], &stored);
        let d =
            conv2d_with_channel(gpu, "f16 conv + slice", &xn, &wt, &b, slice(), None, &out, &cfg)
                .unwrap();
        let got = run(gpu, &[&d], &out);
        let kernel = d.kernel().name;
        let atol: Vec<f64> = products_allowance(kernel, &abs_sums)
            .into_iter()
            .map(|a| a + sum_atol(&want_stored))
            .collect();
        assert_rounded_each(
            &format!("f16 conv + channel slice ({kernel})"),
            &got,
            &want_stored,
            &atol,
        );
    }
}

#[test]
fn group_norms_round_once() {
    gpu_or_skip!();
    let Some(devices) = devices() else { return };
    let gpu = &devices[0];
    // hw = 36 (vec4 variants) and 35 (the scalar one), a group at 1000 +- 1 (its statistics on shifted data).
    for (hw, offset) in [(36, 0.0), (35, 0.0), (36, 1000.0)] {
        let (n, c, groups) = (2, 12, 3);
        let xv: Vec<f32> =
            data(60, n * c * hw, -1.0, 1.0).into_iter().map(|v| round(v + offset)).collect();
        let gv = halves(61, c, 0.5, 1.5);
        let bv = halves(62, c, -0.5, 0.5);
        let want = nn::group_norm(&xv, n, c, hw, groups, &gv, &bv, 1e-5, true);
        let x = upload(gpu, "x", &[n, c, hw], &xv);
        let gamma = upload(gpu, "gamma", &[c], &gv);
        let beta = upload(gpu, "beta", &[c], &bv);
        let out = zeros(gpu, "out", &[n, c, hw]);
        let mut kernels = vec![&KERNEL];
        if hw % 4 == 0 {
            kernels.push(&VEC4_KERNEL);
            if gpu.subgroups() {
                kernels.push(&SUBGROUP_KERNEL);
            }
        }
        for kernel in kernels {
            let name = format!("f16 {} hw {hw} at {offset}", kernel.name);
            let d =
                group_norm_with(gpu, kernel, &name, &x, &gamma, &beta, &out, groups, 1e-5, true)
                    .unwrap();
            let got = run(gpu, &[&d], &out);
            assert_rounded(&name, &got, &want, sum_atol(&want));
        }
    }
}

#[test]
fn attention_rounds_once() {
    gpu_or_skip!();
    let Some(devices) = devices() else { return };
    let gpu = &devices[0];
    // Two heads of 40 over 9 tokens; one head of 64 over 16 x 16 tokens (the keys split over workgroups); random
    // f16 values, and two heads of 64 over 3 x 5 tokens with dyadic q and k (quarters: with the scale 1/8 a
    // score's 16-dim chunks are exact in f16, so only attention_flash's weighted sum adds to one rounding).
    let cases =
        [([2usize, 80, 3, 3], 40, false), ([2, 64, 16, 16], 64, false), ([2, 128, 3, 5], 64, true)];
    for (shape, head_dim, exact) in cases {
        let len = shape.iter().product();
        let (qv, kv) = if exact {
            (dyadic(73, len, 1.0, 4.0), dyadic(74, len, 1.0, 4.0))
        } else {
            (halves(70, len, -2.0, 2.0), halves(71, len, -2.0, 2.0))
        };
        let vv = halves(72, len, -1.0, 1.0);
        let (q, k, v) = (
            upload(gpu, "q", &shape, &qv),
            upload(gpu, "k", &shape, &kv),
            upload(gpu, "v", &shape, &vv),
        );
        let out = zeros(gpu, "out", &shape);
        let want = nn::attention(&qv, &kv, &vv, shape[0], shape[1], shape[2] * shape[3], head_dim);
        let flash_allowance = attention_products_allowance(&qv, &kv, &vv, shape, head_dim, exact);
        for b in BLOCKINGS.into_iter().filter(|b| b.fits(gpu)) {
            let data = if exact { "dyadic" } else { "random" };
            let name = format!("f16 {} {shape:?}, head_dim {head_dim}, {data}", b.kernel.name);
            let d = attention_blocked(gpu, b, &name, [&q, &k, &v, &out], head_dim).unwrap();
            let got = run(gpu, &[&d], &out);
            // attention_tiled computes in f32; attention_flash sums its products in f16 chunks.
            let products = if b.kernel.name.starts_with("attention_flash") {
                &flash_allowance[..]
            } else {
                &[]
            };
            let atol: Vec<f64> = (0..want.len())
                .map(|i| sum_atol(&want) + products.get(i).copied().unwrap_or(0.0))
                .collect();
            assert_rounded_each(&name, &got, &want, &atol);
        }
        let d = attention(gpu, "f16 attention", &q, &k, &v, &out, head_dim).unwrap();
        assert_eq!(Some(d.kernel().name), blocking_for(gpu).map(|b| b.kernel.name));
    }
}

/// What `attention_flash`'s f16 products add at f16 precision, per output. Its scores sum chunks of DC = 16
/// products of the pre-scaled, f16-rounded queries in f16: |error of s_j| <= (DC + 2) 2^-11 scale sum_d |q_d
/// k_jd| =: E_j (zero where q and k are `exact`: dyadic values whose chunks f16 holds exactly). A softmax
/// weight then moves by at most about 2 max_j E_j relative (first order in E, a worst case that random data
/// stays far inside), one more 2^-11 as it is stored in f16, and the weighted sum adds chunks of KC = 16
/// products in f16, (KC + 1) 2^-11 of sum_j p_j |v_j|. With sum_j p_j = 1 and |v| <= max|v|:
/// max|v| (2 max_j E_j + (KC + 2) 2^-11) for every output of a query.
fn attention_products_allowance(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    [n, c, h, w]: [usize; 4],
    head_dim: usize,
    exact: bool,
) -> Vec<f64> {
    let t = h * w;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let max_v = v.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64));
    let mut out = vec![0.0; n * c * t];
    for img in 0..n {
        for head in 0..c / head_dim {
            let at = |x: &[f32], d: usize, tok: usize| {
                x[((img * c) + head * head_dim + d) * t + tok] as f64
            };
            for i in 0..t {
                let e_max = if exact { 0.0 } else { 1.0 }
                    * (0..t)
                        .map(|j| {
                            (0..head_dim).map(|d| (at(q, d, i) * at(k, d, j)).abs()).sum::<f64>()
                        })
                        .fold(0.0f64, f64::max)
                    * 18.0
                    * HALF_ULP
                    * scale;
                let a = max_v * (2.0 * e_max + 18.0 * HALF_ULP);
                for d in 0..head_dim {
                    out[((img * c) + head * head_dim + d) * t + i] = a;
                }
            }
        }
    }
    out
}

#[test]
fn linear_layers_round_once() {
    gpu_or_skip!();
    let Some(devices) = devices() else { return };
    let gpu = &devices[0];
    // A time-embedding layer (linear_reduce) and a token-major layer over 2 x 1,000 tokens (linear).
    for (b, m, k, n_out, expect) in [(2, 1, 40, 24, "linear_reduce"), (2, 1000, 24, 40, "linear")] {
        let xv = halves(80, b * m * k, -1.0, 1.0);
        let wv = halves(81, n_out * k, -0.3, 0.3);
        let bv = halves(82, n_out, -0.5, 0.5);
        let rv = halves(83, b * m * n_out, -1.0, 1.0);
        let shape = |f: usize| if m == 1 { vec![b, f] } else { vec![b, m, f] };
        let x = upload(gpu, "x", &shape(k), &xv);
        let w = upload(gpu, "weight", &[n_out, k], &wv);
        let bias = upload(gpu, "bias", &[n_out], &bv);
        let r = upload(gpu, "residual", &shape(n_out), &rv);
        let y = zeros(gpu, "y", &shape(n_out));
        let cfg = LinearConfig { silu_input: true, out_scale: 0.5, ..LinearConfig::default() };
        let name = format!("f16 linear {b}x{m}x{k} -> {n_out}");
        let d = linear(gpu, &name, &x, &w, &bias, Some(&r), &y, &cfg).unwrap();
        assert_eq!(d.kernel().name, expect, "{name}");
        let got = run(gpu, &[&d], &y);
        let want = nn::linear(&xv, k, &wv, &bv, true, Some(&rv), 0.5);
        assert_rounded(&name, &got, &want, sum_atol(&want));
    }
}

/// Copies (concatenation, upsampling) move f16 values unchanged; the channel add and the timestep embedding
/// round once.
#[test]
fn copies_adds_and_embeddings() {
    gpu_or_skip!();
    let Some(devices) = devices() else { return };
    let gpu = &devices[0];
    let (n, ca, cb, h, w) = (2, 3, 5, 3, 5);
    let av = halves(90, n * ca * h * w, -3.0, 3.0);
    let bv = halves(91, n * cb * h * w, -3.0, 3.0);
    let (a, b) = (upload(gpu, "a", &[n, ca, h, w], &av), upload(gpu, "b", &[n, cb, h, w], &bv));
    let out = zeros(gpu, "cat", &[n, ca + cb, h, w]);
    let d = concat_channels(gpu, "f16 concat", &a, &b, &out).unwrap();
    // The profiler's compulsory traffic counts f16 values at 2 bytes: each output element read once and written
    // once.
    assert_eq!(d.cost().bytes, 2 * 2 * out.len() as u64);
    assert_rounded(
        "f16 concat",
        &run(gpu, &[&d], &out),
        &nn::concat_channels(&av, &bv, n, ca, cb, h * w),
        0.0,
    );

    let up = zeros(gpu, "up", &[n, ca, 2 * h, 2 * w]);
    let d = upsample_nearest2x(gpu, "f16 upsample", &a, &up).unwrap();
    assert_rounded(
        "f16 upsample",
        &run(gpu, &[&d], &up),
        &nn::upsample_nearest2x(&av, n * ca, h, w),
        0.0,
    );

    let cv = halves(92, n * ca, -1.0, 1.0);
    let chan = upload(gpu, "channel", &[n, ca], &cv);
    let sum = zeros(gpu, "sum", &[n, ca, h, w]);
    let d = binary(gpu, "f16 add channel", Binary::AddChannel, &a, &chan, &sum).unwrap();
    let want: Vec<f64> =
        av.iter().enumerate().map(|(i, &v)| v as f64 + cv[i / (h * w)] as f64).collect();
    assert_rounded("f16 add channel", &run(gpu, &[&d], &sum), &want, 0.0);

    // Timesteps stay f32 (they may be fractional); the embedding is stored as f16.
    let ts = [0.0f32, 1.0, 17.5, 999.0];
    let t = gpu.upload("timesteps", &[4], &ts).unwrap();
    let emb = TimestepEmbedding::new(gpu, 33, true, 1.0).unwrap();
    let e = zeros(gpu, "embedding", &[4, 33]);
    let d = emb.dispatch(gpu, "f16 embedding", &t, &e).unwrap();
    // The f32 embedding is within 2e-5 of the reference (timestep_embedding.rs); then one rounding.
    assert_rounded(
        "f16 embedding",
        &run(gpu, &[&d], &e),
        &nn::timestep_embedding(&ts, 33, true, 1.0),
        2e-5,
    );
}

#[test]
fn ddim_updates_round_once() {
    gpu_or_skip!();
    let Some(devices) = devices() else { return };
    const KEY: NoiseKey = NoiseKey { seed: 42, step: 7, stream: Stream::StepNoise };
    let shape = [2usize, 3, 5, 7];
    let per = 3 * 5 * 7;
    let xv = halves(100, 2 * per, -2.5, 2.5);
    let mv = halves(101, 2 * per, -2.0, 2.0);
    let settings = |eta: f64, clip: Option<f64>| StepSettings {
        a_t: 0.3,
        a_p: 0.6,
        eta,
        prediction: Prediction::Epsilon,
        clip,
        threshold: None,
        clipped_eps: false,
        sigma_hat: None,
    };
    for gpu in devices {
        for (eta, clip) in [(0.0, None), (0.7, Some(1.0))] {
            let x = upload(gpu, "x", &shape, &xv);
            let m = upload(gpu, "model out", &shape, &mv);
            let scratch = DdimScratch::new(gpu, &shape, UpdateMode::Fused).unwrap();
            let spec = StepSpec {
                coefficients: StepCoefficients::ddim(0.3, 0.6, eta).unwrap(),
                prediction: Prediction::Epsilon,
                clip: clip.map(|c| c as f32),
                threshold: None,
                clipped_eps: false,
                noise: if eta > 0.0 {
                    Noise::Philox { key: KEY, first_image: 0 }
                } else {
                    Noise::None
                },
            };
            let ds =
                ddim_update(gpu, "f16 ddim", &x, &m, &spec, UpdateMode::Fused, &scratch).unwrap();
            let got = run(gpu, &ds.iter().collect::<Vec<_>>(), &x);
            let z = (eta > 0.0).then(|| philox::normals(KEY, 0, 2, per));
            let want = ddim_step(&xv, &mv, per, &settings(eta, clip), z.as_deref());
            // The f32 update's bound (ddim.rs: 5e-6 absolute, 2e-6 relative), then one rounding.
            assert_rounded(&format!("f16 fused update, eta {eta}"), &got, &want, 5e-6 + 2e-6 * 3.0);
        }
        // The final convolution's epilogue: conv_out computed in f32 from f16 operands, the update, one
        // rounding of x_prev.
        let (cin, cout) = (40, 3);
        let hv = halves(102, 2 * cin * 5 * 7, -1.0, 1.0);
        let r = (1.0 / (9 * cin) as f32).sqrt();
        let wv = halves(103, cout * cin * 9, -r, r);
        let bv = halves(104, cout, -0.1, 0.1);
        let input = upload(gpu, "h", &[2, cin, 5, 7], &hv);
        let weight = upload(gpu, "conv_out.weight", &[cout, cin, 3, 3], &wv);
        let bias = upload(gpu, "conv_out.bias", &[cout], &bv);
        let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
        let eps = conv3x3(&hv, [2, cin, 5, 7], &wv, &bv);
        let eps32: Vec<f32> = eps.iter().map(|&v| v as f32).collect();
        let x = upload(gpu, "x", &shape, &xv);
        let spec = StepSpec {
            coefficients: StepCoefficients::ddim(0.3, 0.6, 0.7).unwrap(),
            prediction: Prediction::Epsilon,
            clip: Some(1.0),
            threshold: None,
            clipped_eps: false,
            noise: Noise::Philox { key: KEY, first_image: 0 },
        };
        let d =
            conv_ddim_update(gpu, "f16 conv_out + ddim", &input, &weight, &bias, &cfg, &x, &spec)
                .unwrap();
        assert!(d.kernel().name.starts_with("conv2d_tiled"), "{}", d.kernel().name);
        let got = run(gpu, &[&d], &x);
        let z = philox::normals(KEY, 0, 2, per);
        let want = ddim_step(&xv, &eps32, per, &settings(0.7, Some(1.0)), Some(&z));
        // The f32 epilogue's bound (ddim.rs), then one rounding; plus what f16 products add to eps, times the
        // update's sensitivity to eps: sqrt(a_p) sqrt(1 - a_t) / sqrt(a_t) + sqrt(1 - a_p - sigma^2) = 1.81 at
        // most here (clipping x0 only lowers it), taken as 2.
        let abs_sums = conv3x3(&abs(&hv), [2, cin, 5, 7], &abs(&wv), &[0.0; 3]);
        let kernel = d.kernel().name;
        let atol: Vec<f64> = products_allowance(kernel, &abs_sums)
            .into_iter()
            .map(|a| 2.0 * a + 5e-6 + 2e-6 * 3.0)
            .collect();
        assert_rounded_each(&format!("f16 epilogue ({kernel})"), &got, &want, &atol);
    }
}

/// A tensor of the wrong element type is refused when the dispatch is prepared, naming it and the kernel; the
/// CPU family and the baseline are refused at f16, and so is the unfused update chain.
#[test]
fn mismatched_element_types_are_refused() {
    gpu_or_skip!();
    let Some(devices) = devices() else { return };
    let gpu = &devices[0];
    let x = gpu.upload("an f32 x", &[1, 2, 3, 3], &[0.5; 18]).unwrap();
    let w = upload(gpu, "weight", &[2, 2, 3, 3], &[0.1; 36]);
    let b = upload(gpu, "bias", &[2], &[0.0; 2]);
    let out = zeros(gpu, "out", &[1, 2, 3, 3]);
    let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
    let e = conv2d(gpu, "conv", &x, &w, &b, None, &out, &cfg).err().expect("refused").to_string();
    assert!(e.contains("`an f32 x` holds f32") && e.contains("takes f16"), "{e}");
    assert!(!e.contains('\n'), "{e}");

    for kernels in [KernelChoice::Cpu, KernelChoice::Baseline] {
        let options = DeviceOptions {
            kernels,
            precision: Precision::F16,
            ..DeviceOptions::from_env().unwrap()
        };
        let e = Gpu::new(&options).block_on().err().expect("refused").to_string();
        assert!(e.contains("f16 precision runs the GPU family"), "{kernels:?}: {e}");
    }
    let e = DdimScratch::new(gpu, &[1, 2, 3, 3], UpdateMode::Unfused).err().expect("refused");
    assert!(e.to_string().contains("unfused update runs at f32"), "{e}");
}
