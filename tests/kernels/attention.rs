use ddim_wgpu::ops::attention::attention;
use ddim_wgpu::reference::nn;

use crate::common::{assert_normalised, data, random, run};
use crate::gpu_or_skip;

/// The kernel streams keys through an online softmax in f32; the reference materialises the full softmax in
/// f64. Score dot products of length head_dim <= 256 and sums over <= 1024 keys round at ~1e-7 relative;
/// exp of scores within a few units adds a few ulp. Measured on lavapipe: up to 1.9e-6 of max|ref| (one
/// 256-dim head over 256 tokens, and the peaked case); 1e-5 leaves 5x.
const BOUND: f64 = 1e-5;

fn check(name: &str, [n, c, h, w]: [usize; 4], head_dim: usize, scale_inputs: f32) {
    let gpu = gpu_or_skip!();
    let shape = [n, c, h, w];
    let len = shape.iter().product();
    // Larger q and k make the softmax peaked, which exercises the running-max rescaling.
    let qv = data(60, len, -scale_inputs, scale_inputs);
    let kv = data(61, len, -scale_inputs, scale_inputs);
    let (v, vv) = random(gpu, "v", &shape, 62);
    let q = gpu.upload("q", &shape, &qv).unwrap();
    let k = gpu.upload("k", &shape, &kv).unwrap();
    let out = gpu.zeros("out", &shape).unwrap();
    let d = attention(gpu, name, &q, &k, &v, &out, head_dim).unwrap();
    let got = run(gpu, &[&d], &out);
    let want = nn::attention(&qv, &kv, &vv, n, c, h * w, head_dim);
    assert_normalised(name, &got, &want, BOUND);
}

#[test]
fn attention_awkward_multi_head() {
    // 33 tokens: two full key blocks of 16 and a block of 1.
    check("attention 2x6x3x11 head_dim 2", [2, 6, 3, 11], 2, 1.0);
    check("attention 1x5x7x1 one head", [1, 5, 7, 1], 5, 1.0);
    check("attention 2x3x1x1 one token", [2, 3, 1, 1], 1, 1.0);
}

#[test]
fn attention_peaked_softmax() {
    // Scores up to about 8 * 8 * 9 / 3: the maximum moves between key blocks and early blocks are rescaled.
    check("attention peaked 1x9x5x7 head_dim 3", [1, 9, 5, 7], 3, 8.0);
}

#[test]
fn attention_many_tokens() {
    // 32x32 = 1024 tokens: 64 key blocks per query; memory stays O(C * T).
    check("attention 1x8x32x32 head_dim 4", [1, 8, 32, 32], 4, 2.0);
}

#[test]
fn attention_unet_shape() {
    // The CIFAR-10 UNet's attention at 16x16: 256 channels, one head of 256.
    check("attention 1x256x16x16 one head", [1, 256, 16, 16], 256, 1.0);
}
