use ddim_wgpu::ops::roofline::{copy, fma, measure};
use ddim_wgpu::reference::nn;

use crate::common::{assert_close, random, run};
use crate::gpu_or_skip;

#[test]
fn fma_micro_kernel_computes_its_chains() {
    let gpu = gpu_or_skip!();
    // 200 invocations (not a multiple of 64), 300 iterations each.
    let out = gpu.zeros("out", &[200]).unwrap();
    let d = fma(gpu, &out, 300).unwrap();
    assert_eq!(d.cost().flops, 200 * 300 * 64);
    let got = run(gpu, &[&d], &out);
    let want: Vec<f64> = (0..200).map(|i| nn::roofline_fma(i, 300)).collect();
    // Both iterate in f32 with FMAs; only the final sum of 32 values (about 10) rounds differently: 1e-5.
    assert_close("roofline fma", &got, &want, 0.0, 1e-5);
}

#[test]
fn copy_micro_kernel_copies() {
    let gpu = gpu_or_skip!();
    let (src, sv) = random(gpu, "src", &[4 * 333], 300);
    let dst = gpu.zeros("dst", &[4 * 333]).unwrap();
    let d = copy(gpu, &src, &dst).unwrap();
    let got = run(gpu, &[&d], &dst);
    let want: Vec<f64> = sv.iter().map(|&v| v as f64).collect();
    assert_close("roofline copy", &got, &want, 0.0, 0.0);
}

#[test]
fn roofs_are_measured() {
    let gpu = gpu_or_skip!();
    let roof = measure(gpu).unwrap();
    eprintln!("roofs: {:.1} GFLOP/s, {:.2} GB/s", roof.gflops, roof.gbps);
    assert!(roof.gflops.is_finite() && roof.gflops > 0.0);
    assert!(roof.gbps.is_finite() && roof.gbps > 0.0);
    // A kernel at the roof is at fraction 1; a copy at half the bandwidth at 0.5.
    assert!((roof.fraction(1_000_000_000, 1, 1e9 / (roof.gflops * 1e9)) - 1.0).abs() < 1e-9);
    assert!((roof.fraction(0, (roof.gbps * 1e9) as u64, 2.0) - 0.5).abs() < 1e-6);
}
