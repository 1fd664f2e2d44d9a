//! The attention study: the attention of the CIFAR-10 UNet (google/ddpm-cifar10-32: one head over the 256
//! tokens x 256 channels of its 16x16 level) at batch 8, and of the default MNIST model (one head, 64 tokens x
//! 64 channels at 8x8) at batch 64, each against the FMA roof measured in the same run.
//!
//! `cargo run --release --example attention_study`. Each shape runs `ROUNDS` times after a warm-up; the roof
//! is measured before and after. Medians of wall time per run, each timed over a pass of enough copies to last
//! `roofline::PASS_FLOOR` (many on a real GPU, where one submit costs more than the dispatch). FLOPs are counted as the
//! operation's, 2 T^2 d for the scores and 2 T^2 d for the weighted sum per head, as `ddim profile` counts
//! them. With the GPU family (`DDIM_KERNELS=gpu`, or `auto` on a GPU) each of its kernels runs where the device
//! runs it (`attention_flash_subgroups` on a device opened with subgroups, `attention_flash`, `attention_tiled`); `DDIM_PRECISION=f16` runs them on f16
//! tensors.

use ddim_wgpu::gpu::roofline::{self, PASS_FLOOR};
use ddim_wgpu::gpu::{DeviceOptions, Gpu, KernelChoice, Tensor, describe};
use ddim_wgpu::ops::attention::{BLOCKINGS, attention, attention_blocked};
use pollster::FutureExt as _;

const ROUNDS: usize = 7;

/// A tensor placed as the graph's planner places activations: in an arena with a uniform window of room past
/// it, so that kernels may read it through windows (`attention_scores`/`attention_values` do).
fn filled(
    gpu: &Gpu,
    label: &str,
    shape: &[usize],
    seed: usize,
) -> Result<Tensor, ddim_wgpu::Error> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> =
        (0..n).map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5 - 1.0).collect();
    let arena = gpu.zeros(label, &[n + WINDOW_FLOATS])?;
    let t = arena.view_as(label, shape, 0, gpu.act())?;
    t.write(gpu, &v)?;
    Ok(t)
}

/// f32 values in one 64 KiB uniform window.
const WINDOW_FLOATS: usize = (ddim_wgpu::gpu::UNIFORM_WINDOW / 4) as usize;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), ddim_wgpu::Error> {
    let gpu = Gpu::new(&DeviceOptions::from_env()?).block_on()?;
    println!("adapter: {}", describe(&gpu.info()));
    let roof_before = roofline::measure(&gpu).block_on()?;
    // (model, batch, channels, side, head_dim)
    let shapes = [("cifar10", 8, 256, 16, 256), ("mnist", 64, 64, 8, 64)];
    let mut rows = Vec::new();
    for &(model, n, c, side, head_dim) in &shapes {
        let shape = [n, c, side, side];
        let q = filled(&gpu, "q", &shape, 1)?;
        let k = filled(&gpu, "k", &shape, 2)?;
        let v = filled(&gpu, "v", &shape, 3)?;
        let out = gpu.zeros_as("out", &shape, gpu.act())?;
        let dispatches = if gpu.kernel_family() == KernelChoice::Gpu {
            BLOCKINGS
                .into_iter()
                .filter(|b| b.fits(&gpu))
                .map(|b| attention_blocked(&gpu, b, "attention", [&q, &k, &v, &out], head_dim))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![attention(&gpu, "attention", &q, &k, &v, &out, head_dim)?]
        };
        for d in dispatches {
            let repeats = roofline::repeats_for(&gpu, &d, PASS_FLOOR).block_on()?;
            let mut t = Vec::new();
            for _ in 0..ROUNDS {
                t.push(roofline::time_pass(&gpu, &d, repeats).block_on()?);
            }
            rows.push((model, n, c, side, d.kernel().name, d.cost().flops as f64, median(t)));
        }
    }
    let roof_after = roofline::measure(&gpu).block_on()?;
    let roof = (roof_before.gflops + roof_after.gflops) / 2.0;
    println!(
        "{ROUNDS} rounds; FMA roof {:.1} GFLOP/s before, {:.1} after (fractions below use the mean {roof:.1})",
        roof_before.gflops, roof_after.gflops
    );
    for (model, n, c, side, kernel, flops, t) in rows {
        let rate = flops / t / 1e9;
        println!(
            "{model}: batch {n}, {} tokens x {c} channels, {kernel}: {:.2} ms, {rate:.2} GFLOP/s, {:.1}% of roof",
            side * side,
            t * 1e3,
            100.0 * rate / roof
        );
    }
    Ok(())
}
