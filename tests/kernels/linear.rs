use ddim_wgpu::gpu::Gpu;
use ddim_wgpu::gpu::KernelChoice;
use ddim_wgpu::ops::linear::{LinearConfig, TokenLayout, linear};
use ddim_wgpu::reference::nn;

use crate::common::{assert_normalised, conv_families, gpu_families, random, run};
use crate::gpu_or_skip;

/// f32 dot products of length K <= 512 over values in [-1, 1): rounding error ~ sqrt(K) * 2^-24 relative to
/// the partial sums; measured on lavapipe at most 6.6e-7 of max|ref|. 1e-5 leaves a 15x margin; a wrong stride, row or
/// feature gives errors of order 1.
const BOUND: f64 = 1e-5;

#[test]
fn linear_row_major_awkward_with_silu_input() {
    let gpu = gpu_or_skip!();
    // 3 tokens of 7 features -> 5 features: nothing is a multiple of 4.
    let (x, xv) = random(gpu, "x", &[3, 7], 40);
    let (w, wv) = random(gpu, "weight", &[5, 7], 41);
    let (b, bv) = random(gpu, "bias", &[5], 42);
    let y = gpu.zeros("y", &[3, 5]).unwrap();
    let cfg = LinearConfig { silu_input: true, ..LinearConfig::default() };
    let d = linear(gpu, "linear 3x7 -> 5 silu", &x, &w, &b, None, &y, &cfg).unwrap();
    let got = run(gpu, &[&d], &y);
    let want = nn::linear(&xv, 7, &wv, &bv, true, None, 1.0);
    assert_normalised("linear 3x7 -> 5 silu", &got, &want, BOUND);
}

#[test]
fn linear_batched_row_major() {
    let gpu = gpu_or_skip!();
    // [2, 9, 6] tokens -> 33 features, a residual and a scale.
    let (x, xv) = random(gpu, "x", &[2, 9, 6], 43);
    let (w, wv) = random(gpu, "weight", &[33, 6], 44);
    let (b, bv) = random(gpu, "bias", &[33], 45);
    let (r, rv) = random(gpu, "residual", &[2, 9, 33], 46);
    let y = gpu.zeros("y", &[2, 9, 33]).unwrap();
    let cfg = LinearConfig { out_scale: 0.25, ..LinearConfig::default() };
    let d = linear(gpu, "linear batched", &x, &w, &b, Some(&r), &y, &cfg).unwrap();
    let got = run(gpu, &[&d], &y);
    let want = nn::linear(&xv, 6, &wv, &bv, false, Some(&rv), 0.25);
    assert_normalised("linear batched", &got, &want, BOUND);
}

#[test]
fn linear_row_major_in_every_family() {
    gpu_or_skip!();
    // (x shape, outputs, SiLU input, residual, reduce): the time embedding at batch 8 (8 x 512 -> 256); 13 rows of
    // 70 features (k not a multiple of 64, a partial block of 8 rows) -> 3 with a residual; 4 x 300 tokens of 24
    // features -> 64: 4,800 invocations of `linear`, over the GPU family's threshold for `linear_reduce`.
    let cases: [(&[usize], usize, bool, bool, bool); 3] = [
        (&[8, 512], 256, true, false, true),
        (&[13, 70], 3, false, true, true),
        (&[4, 300, 24], 64, false, false, false),
    ];
    for gpu in gpu_families() {
        for (i, &(shape, n, silu, residual, reduce)) in cases.iter().enumerate() {
            let k = shape[shape.len() - 1];
            let mut y_shape = shape.to_vec();
            *y_shape.last_mut().unwrap() = n;
            let (x, xv) = random(gpu, "x", shape, 70 + i as u64);
            let (w, wv) = random(gpu, "weight", &[n, k], 80 + i as u64);
            let (b, bv) = random(gpu, "bias", &[n], 90 + i as u64);
            let (r, rv) = random(gpu, "residual", &y_shape, 100 + i as u64);
            let y = gpu.zeros("y", &y_shape).unwrap();
            let cfg = LinearConfig { silu_input: silu, out_scale: 0.5, ..LinearConfig::default() };
            let name = format!("linear {shape:?} -> {n}");
            let d = linear(gpu, &name, &x, &w, &b, residual.then_some(&r), &y, &cfg).unwrap();
            let got = run(gpu, &[&d], &y);
            let want = nn::linear(&xv, k, &wv, &bv, silu, residual.then_some(&rv[..]), 0.5);
            let kernel = d.kernel().name;
            assert_normalised(&format!("{name} ({kernel})"), &got, &want, BOUND);
            let expect = if reduce && gpu.kernel_family() == KernelChoice::Gpu {
                "linear_reduce"
            } else {
                "linear"
            };
            assert_eq!(kernel, expect, "{name}: kernel chosen");
        }
    }
}

/// Runs a feature-map linear layer with each kernel family, checking what ran: for the CPU family `expect`
/// (`linear`, or `conv2d_packed` where the layer goes as a 1x1 convolution), for the GPU family
/// `conv2d_tiled` (always a 1x1 convolution there; `conv2d_tiled_8x8` with 8 x 8 tiles), for the baseline
/// `linear`.
fn check_channels(name: &str, shape: [usize; 4], c_out: usize, residual: bool, expect: &str) {
    gpu_or_skip!();
    for gpu in conv_families() {
        let kernel = run_channels(gpu, name, shape, c_out, residual);
        let expect = match gpu.kernel_family() {
            KernelChoice::Cpu => expect,
            KernelChoice::Gpu if gpu.conv_tile_8x8() => "conv2d_tiled_8x8",
            KernelChoice::Gpu => "conv2d_tiled",
            _ => "linear",
        };
        assert_eq!(kernel, expect, "{name}: kernel chosen");
    }
}

fn run_channels(
    gpu: &Gpu,
    name: &str,
    [n, c, h, w]: [usize; 4],
    c_out: usize,
    residual: bool,
) -> &'static str {
    let hw = h * w;
    let (x, xv) = random(gpu, "x", &[n, c, h, w], 47);
    let (wt, wv) = random(gpu, "weight", &[c_out, c], 48);
    let (b, bv) = random(gpu, "bias", &[c_out], 49);
    let (r, rv) = random(gpu, "residual", &[n, c_out, h, w], 50);
    let y = gpu.zeros("y", &[n, c_out, h, w]).unwrap();
    let cfg = LinearConfig { layout: TokenLayout::Channels, ..LinearConfig::default() };
    let d = linear(gpu, name, &x, &wt, &b, residual.then_some(&r), &y, &cfg).unwrap();
    let got = run(gpu, &[&d], &y);
    // Reference: transpose the map to token rows, apply the layer, transpose back.
    let tokens = nn::to_tokens(&xv, n, c, hw);
    let res_tokens = nn::to_tokens(&rv, n, c_out, hw);
    let out_tokens =
        nn::linear(&tokens, c, &wv, &bv, false, residual.then_some(res_tokens.as_slice()), 1.0);
    let want = nn::from_tokens(&out_tokens, n, c_out, hw);
    let kernel = d.kernel().name;
    assert_normalised(&format!("{name} ({kernel})"), &got, &want, BOUND);
    kernel
}

#[test]
fn linear_over_feature_map_tokens_awkward() {
    check_channels("linear NCHW 2x6x3x11 -> 5 + residual", [2, 6, 3, 11], 5, true, "linear");
    check_channels("linear NCHW 1x3x1x1 -> 7", [1, 3, 1, 1], 7, false, "linear");
    // 4 x 16 rows of 17 columns: 192 blocks of 8, so a 1x1 convolution over packed weights.
    check_channels(
        "linear NCHW 4x9x16x17 -> 13 + residual",
        [4, 9, 16, 17],
        13,
        true,
        "conv2d_packed",
    );
}

#[test]
fn linear_unet_shapes() {
    let gpu = gpu_or_skip!();
    // The attention block's q projection at 16x16 with 256 channels, batch 2: a 1x1 convolution over windows
    // of x (its 8 windows tile x exactly, so they fit its buffer), the weights' 4 windows in one launch.
    check_channels(
        "linear NCHW 2x256x16x16 -> 256",
        [2, 256, 16, 16],
        256,
        false,
        "conv2d_1x1_wide",
    );
    // The time embedding's second layer: SiLU, 512 -> 512, batch 2.
    let (x, xv) = random(gpu, "temb", &[2, 512], 51);
    let (w, wv) = random(gpu, "weight", &[512, 512], 52);
    let (b, bv) = random(gpu, "bias", &[512], 53);
    let y = gpu.zeros("y", &[2, 512]).unwrap();
    let cfg = LinearConfig { silu_input: true, ..LinearConfig::default() };
    let d = linear(gpu, "time embedding linear_2", &x, &w, &b, None, &y, &cfg).unwrap();
    let got = run(gpu, &[&d], &y);
    let want = nn::linear(&xv, 512, &wv, &bv, true, None, 1.0);
    assert_normalised("time embedding linear_2", &got, &want, BOUND);
}
