use ddim_wgpu::gpu::roofline::{MAX_REPEATS, copy, fma, measure, repeats_for, time_pass};
use ddim_wgpu::reference::nn;
use pollster::FutureExt as _;

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
    let roof = measure(gpu).block_on().unwrap();
    eprintln!("roofs: {:.1} GFLOP/s, {:.2} GB/s", roof.gflops, roof.gbps);
    assert!(roof.gflops.is_finite() && roof.gflops > 0.0);
    assert!(roof.gbps.is_finite() && roof.gbps > 0.0);
    // A kernel at the roof is at fraction 1; a copy at half the bandwidth at 0.5.
    assert!((roof.fraction(1_000_000_000, 1, 1e9 / (roof.gflops * 1e9)) - 1.0).abs() < 1e-9);
    assert!((roof.fraction(0, (roof.gbps * 1e9) as u64, 2.0) - 0.5).abs() < 1e-6);
}

#[test]
fn timed_passes_scale_to_their_floor() {
    let gpu = gpu_or_skip!();
    // A dispatch far shorter than a submit on any adapter: 4 floats.
    let src = gpu.zeros("src", &[4]).unwrap();
    let dst = gpu.zeros("dst", &[4]).unwrap();
    let d = copy(gpu, &src, &dst).unwrap();
    // No floor: one copy.
    assert_eq!(repeats_for(gpu, &d, 0.0).block_on().unwrap(), 1);
    // A floor no pass reaches (1,000 s): as many copies as the cap allows. How long a pass of the returned
    // copies takes is not asserted: tests run in parallel on lavapipe's threads, so a calibration pass slowed
    // by another test returns fewer copies than an idle machine would (seen in CI: one copy, then a 0.2 ms
    // pass against a 20 ms floor).
    assert_eq!(repeats_for(gpu, &d, 1000.0).block_on().unwrap(), MAX_REPEATS);
    let per_dispatch = time_pass(gpu, &d, 10).block_on().unwrap();
    assert!(per_dispatch.is_finite() && per_dispatch > 0.0, "{per_dispatch}");
}
