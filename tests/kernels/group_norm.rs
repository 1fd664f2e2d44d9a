use ddim_wgpu::gpu::Gpu;
use ddim_wgpu::gpu::KernelChoice;
use ddim_wgpu::ops::group_norm::group_norm;
use ddim_wgpu::reference::nn;

use crate::common::{assert_normalised, data, gpu_families, random, run};
use crate::gpu_or_skip;

/// Two-pass statistics in f32 over at most 8192 elements per group: the mean and variance carry relative
/// errors near 1e-6, and the output (x - mean) * rstd inherits them. Measured on lavapipe: at most 2.6e-7.
/// 1e-5 leaves a wide margin that a wrong group, channel or statistic exceeds by orders of magnitude.
const BOUND: f64 = 1e-5;

/// Runs the case with each kernel family: the CPU family runs `group_norm_serial` where `h * w` is a multiple
/// of 4 (checked); everywhere else, and in the GPU family and the baseline, `group_norm` runs.
fn check(name: &str, x: &[f32], shape: [usize; 4], groups: usize, eps: f32, silu: bool) {
    gpu_or_skip!();
    for gpu in gpu_families() {
        let kernel = run_case(gpu, name, x, shape, groups, eps, silu);
        let serial =
            gpu.kernel_family() == KernelChoice::Cpu && (shape[2] * shape[3]).is_multiple_of(4);
        let expect = if serial { "group_norm_serial" } else { "group_norm" };
        assert_eq!(kernel, expect, "{name}: kernel chosen");
    }
}

fn run_case(
    gpu: &Gpu,
    name: &str,
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    groups: usize,
    eps: f32,
    silu: bool,
) -> &'static str {
    let xt = gpu.upload("x", &[n, c, h, w], x).unwrap();
    let (gamma, gv) = random(gpu, "gamma", &[c], 11);
    let (beta, bv) = random(gpu, "beta", &[c], 12);
    let out = gpu.zeros("out", &[n, c, h, w]).unwrap();
    let d = group_norm(gpu, name, &xt, &gamma, &beta, &out, groups, eps, silu).unwrap();
    let got = run(gpu, &[&d], &out);
    let want = nn::group_norm(x, n, c, h * w, groups, &gv, &bv, eps as f64, silu);
    let kernel = d.kernel().name;
    assert_normalised(&format!("{name} ({kernel})"), &got, &want, BOUND);
    kernel
}

#[test]
fn group_norm_awkward_shapes() {
    let cases: &[([usize; 4], usize, bool)] = &[
        ([2, 6, 7, 33], 3, true),
        ([2, 6, 7, 33], 1, false),
        ([1, 5, 3, 1], 5, true),
        ([2, 9, 1, 1], 3, false),
        ([1, 12, 16, 16], 4, true),
        ([3, 6, 4, 3], 3, true),
        ([2, 10, 2, 2], 5, false),
    ];
    for (i, &(shape, groups, silu)) in cases.iter().enumerate() {
        let x = data(20 + i as u64, shape.iter().product(), -2.0, 3.0);
        check(
            &format!("group_norm {shape:?} groups {groups} silu {silu}"),
            &x,
            shape,
            groups,
            1e-6,
            silu,
        );
    }
}

#[test]
fn group_norm_unet_shape() {
    // The CIFAR-10 UNet's norm at the 16x16 level: 256 channels, 32 groups, eps 1e-6, batch 2.
    let shape = [2, 256, 16, 16];
    let x = data(30, shape.iter().product(), -1.0, 1.0);
    check("group_norm 2x256x16x16 groups 32", &x, shape, 32, 1e-6, true);
}

#[test]
fn group_norm_is_stable_for_large_offsets() {
    // Values 1000 +- 1: E[x^2] - E[x]^2 in f32 would lose the variance entirely (1e6 * 2^-24 = 0.06 of a
    // variance of 0.33). Without the shift in the kernel, the f32 mean itself (quantised to half an ulp of
    // 1000, 3e-5) gave 2.9e-5 here; with it, 1.3e-7. Same bound as above, in units of the normalised output.
    let shape = [2, 8, 32, 32];
    let x: Vec<f32> =
        data(31, shape.iter().product(), -1.0, 1.0).into_iter().map(|v| 1000.0 + v).collect();
    check("group_norm offset 1000", &x, shape, 2, 1e-6, false);
}

#[test]
fn group_norm_is_stable_when_the_shift_is_an_outlier() {
    // Each channel starts with 40 among values in [-1, 1]: the serial kernel shifts by that first element,
    // so every shifted value sits near -40. Its running mean and Chan's update keep the squared deviations
    // from the running mean (never E[x^2] - E[x]^2, which here would cancel 1,600 against a variance near
    // 1.9), so the same bound holds.
    let shape = [2, 8, 16, 16];
    let mut x = data(32, shape.iter().product(), -1.0, 1.0);
    for channel in x.chunks_mut(16 * 16) {
        channel[0] = 40.0;
    }
    check("group_norm outlier first", &x, shape, 4, 1e-6, true);
}
