use ddim_wgpu::ops::elementwise::{Binary, Unary, binary, unary};
use ddim_wgpu::reference::nn::silu;

use crate::common::{assert_close, data, run};
use crate::gpu_or_skip;

/// One rounding of an f32 result: 2^-24 relative. SiLU adds WGSL's exp error (a few ulp), hence 1e-6
/// relative, plus 1e-7 absolute for results near 0 (measured worst: 13% of the bound, SiLU).
const ATOL: f64 = 1e-7;
const RTOL: f64 = 1e-6;

/// Lengths that are not multiples of 4 (the per-invocation block) nor of 64 (the workgroup).
const LENGTHS: [usize; 4] = [1, 3, 7, 33 * 5];

type UnaryCase = (Unary, fn(f64) -> f64);
type BinaryCase = (Binary, fn(f64, f64) -> f64);

#[test]
fn unary_ops() {
    let gpu = gpu_or_skip!();
    for (i, &len) in LENGTHS.iter().enumerate() {
        let av = data(70 + i as u64, len, -4.0, 4.0);
        let a = gpu.upload("a", &[len], &av).unwrap();
        let out = gpu.zeros("out", &[len]).unwrap();
        let cases: [UnaryCase; 3] = [
            (Unary::Scale(-0.75), |x| -0.75 * x),
            (Unary::Silu, silu),
            (Unary::Clamp(-1.5, 0.5), |x| x.clamp(-1.5, 0.5)),
        ];
        for (op, f) in cases {
            let d = unary(gpu, "unary", op, &a, &out).unwrap();
            let got = run(gpu, &[&d], &out);
            let want: Vec<f64> = av.iter().map(|&x| f(x as f64)).collect();
            assert_close(&format!("{op:?} len {len}"), &got, &want, ATOL, RTOL);
        }
    }
}

#[test]
fn binary_ops() {
    let gpu = gpu_or_skip!();
    for (i, &len) in LENGTHS.iter().enumerate() {
        let av = data(80 + i as u64, len, -4.0, 4.0);
        let bv = data(90 + i as u64, len, -4.0, 4.0);
        let a = gpu.upload("a", &[len], &av).unwrap();
        let b = gpu.upload("b", &[len], &bv).unwrap();
        let out = gpu.zeros("out", &[len]).unwrap();
        let cases: [BinaryCase; 2] =
            [(Binary::Add, |x, y| x + y), (Binary::Axpby(0.5, -2.0), |x, y| 0.5 * x - 2.0 * y)];
        for (op, f) in cases {
            let d = binary(gpu, "binary", op, &a, &b, &out).unwrap();
            let got = run(gpu, &[&d], &out);
            let want: Vec<f64> = av.iter().zip(&bv).map(|(&x, &y)| f(x as f64, y as f64)).collect();
            assert_close(&format!("{op:?} len {len}"), &got, &want, ATOL, RTOL);
        }
    }
}

#[test]
fn broadcast_add_per_channel() {
    let gpu = gpu_or_skip!();
    // The ResNet block's time-embedding add: [N, C] onto [N, C, H, W].
    let (n, c, h, w) = (2, 5, 3, 7);
    let av = data(100, n * c * h * w, -1.0, 1.0);
    let bv = data(101, n * c, -1.0, 1.0);
    let a = gpu.upload("a", &[n, c, h, w], &av).unwrap();
    let b = gpu.upload("temb", &[n, c], &bv).unwrap();
    let out = gpu.zeros("out", &[n, c, h, w]).unwrap();
    let d = binary(gpu, "add channel", Binary::AddChannel, &a, &b, &out).unwrap();
    let got = run(gpu, &[&d], &out);
    let want: Vec<f64> =
        av.iter().enumerate().map(|(i, &x)| x as f64 + bv[i / (h * w)] as f64).collect();
    assert_close("add channel", &got, &want, ATOL, RTOL);
}

#[test]
fn threshold_rescale_per_image() {
    let gpu = gpu_or_skip!();
    let (n, per) = (3, 11);
    let av = data(102, n * per, -3.0, 3.0);
    let sv = [1.0f32, 1.7, 2.5];
    let a = gpu.upload("x0", &[n, per], &av).unwrap();
    let s = gpu.upload("s", &[n], &sv).unwrap();
    let out = gpu.zeros("out", &[n, per]).unwrap();
    let d = binary(gpu, "threshold", Binary::Threshold, &a, &s, &out).unwrap();
    let got = run(gpu, &[&d], &out);
    let want: Vec<f64> = av
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let s = sv[i / per] as f64;
            (x as f64).clamp(-s, s) / s
        })
        .collect();
    assert_close("threshold rescale", &got, &want, ATOL, RTOL);
}
