use ddim_wgpu::gpu::{DeviceOptions, Gpu, Kernel, KernelChoice};
use ddim_wgpu::ops::group_norm::{
    KERNEL, SERIAL_KERNEL, SUBGROUP_KERNEL, VEC4_KERNEL, group_norm, group_norm_with, kernel_for,
};
use ddim_wgpu::reference::nn;
use pollster::FutureExt as _;

use crate::common::{assert_normalised, data, gpu_families, random, run};
use crate::gpu_or_skip;

/// Two-pass statistics in f32 over at most 8192 elements per group: the mean and variance carry relative
/// errors near 1e-6, and the output (x - mean) * rstd inherits them. Measured on lavapipe: at most 2.6e-7.
/// 1e-5 leaves a wide margin that a wrong group, channel or statistic exceeds by orders of magnitude.
const BOUND: f64 = 1e-5;

/// The kernel each family must choose for maps of `hw` values per channel on `gpu`.
fn expected(gpu: &Gpu, hw: usize) -> &'static str {
    match gpu.kernel_family() {
        KernelChoice::Cpu if hw.is_multiple_of(4) => "group_norm_serial",
        KernelChoice::Gpu if hw.is_multiple_of(4) && gpu.subgroups() => "group_norm_subgroups",
        KernelChoice::Gpu if hw.is_multiple_of(4) => "group_norm_vec4",
        _ => "group_norm",
    }
}

/// Runs the case with each kernel family and checks the kernel each chose; then, on the GPU family's device,
/// every variant that can run the map there (`group_norm_with`), so all of them meet the reference on every
/// shape whatever the families choose.
fn check(name: &str, x: &[f32], shape: [usize; 4], groups: usize, eps: f32, silu: bool) {
    gpu_or_skip!();
    let hw = shape[2] * shape[3];
    for gpu in gpu_families() {
        let kernel = run_case(gpu, kernel_for(gpu, hw), name, x, shape, groups, eps, silu);
        assert_eq!(kernel, expected(gpu, hw), "{name}: kernel chosen");
    }
    let gpu = gpu_families()[1];
    let mut variants = vec![&KERNEL];
    if hw.is_multiple_of(4) {
        variants.extend([&VEC4_KERNEL, &SERIAL_KERNEL]);
        if gpu.subgroups() {
            variants.push(&SUBGROUP_KERNEL);
        }
    }
    for kernel in variants {
        run_case(gpu, kernel, name, x, shape, groups, eps, silu);
    }
}

#[allow(clippy::too_many_arguments)] // the kernel and one normalisation's operands and settings
fn run_case(
    gpu: &Gpu,
    kernel: &'static Kernel,
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
    let d =
        group_norm_with(gpu, kernel, name, &xt, &gamma, &beta, &out, groups, eps, silu).unwrap();
    let got = run(gpu, &[&d], &out);
    let want = nn::group_norm(x, n, c, h * w, groups, &gv, &bv, eps as f64, silu);
    let kernel = d.kernel().name;
    assert_normalised(&format!("{name} ({kernel})"), &got, &want, BOUND);
    kernel
}

#[test]
fn group_norm_chooses_the_same_kernel_as_group_norm_with() {
    let gpu = gpu_or_skip!();
    let shape = [1, 4, 4, 4];
    let x = data(19, 64, -1.0, 1.0);
    let xt = gpu.upload("x", &shape, &x).unwrap();
    let (gamma, _) = random(gpu, "gamma", &[4], 11);
    let (beta, _) = random(gpu, "beta", &[4], 12);
    let out = gpu.zeros("out", &shape).unwrap();
    let d = group_norm(gpu, "norm", &xt, &gamma, &beta, &out, 2, 1e-6, true).unwrap();
    assert_eq!(d.kernel().name, kernel_for(gpu, 16).name);
}

#[test]
fn the_gpu_family_uses_subgroups_where_the_adapter_has_them() {
    gpu_or_skip!();
    let gpu = gpu_families()[1];
    let offered = gpu.adapter_features().contains(wgpu::Features::SUBGROUP);
    let wanted = DeviceOptions::from_env().unwrap().subgroups;
    assert_eq!(gpu.subgroups(), offered && wanted);
    // Opened without them (`--subgroups off`), the same family takes the vec4 kernel, and the subgroup one
    // is refused by name, not compiled into a validation error.
    let without = Gpu::new(&DeviceOptions {
        kernels: KernelChoice::Gpu,
        subgroups: false,
        ..DeviceOptions::from_env().unwrap()
    })
    .block_on()
    .unwrap();
    assert!(!without.subgroups());
    assert_eq!(kernel_for(&without, 16).name, "group_norm_vec4");
    let shape = [1, 4, 2, 2];
    let x = without.upload("x", &shape, &data(18, 16, -1.0, 1.0)).unwrap();
    let gamma = without.upload("gamma", &[4], &[1.0; 4]).unwrap();
    let beta = without.zeros("beta", &[4]).unwrap();
    let out = without.zeros("out", &shape).unwrap();
    let norm =
        |kernel| group_norm_with(&without, kernel, "n", &x, &gamma, &beta, &out, 2, 1e-6, false);
    let e = norm(&SUBGROUP_KERNEL).err().expect("refused").to_string();
    assert!(e.contains("group_norm_subgroups") && e.contains("without subgroups"), "{e}");
    norm(&VEC4_KERNEL).unwrap();
    // A vec4 kernel on a map of 3 values per channel is refused too.
    let x3 = without.upload("x3", &[1, 4, 3, 1], &data(17, 12, -1.0, 1.0)).unwrap();
    let out3 = without.zeros("out3", &[1, 4, 3, 1]).unwrap();
    for kernel in [&VEC4_KERNEL, &SERIAL_KERNEL] {
        let e = group_norm_with(&without, kernel, "n3", &x3, &gamma, &beta, &out3, 2, 1e-6, false)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(kernel.name) && e.contains("3 values per channel"), "{e}");
    }
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
        ([1, 3, 36, 20], 3, true),
        ([2, 4, 52, 20], 2, false),
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
