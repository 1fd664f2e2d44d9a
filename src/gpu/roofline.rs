//! The roofline's two roofs, measured on the chosen adapter: the attainable f32 FMA rate
//! (`kernels/roofline_fma.wgsl`) and the shader copy bandwidth (`kernels/roofline_copy.wgsl`).

use serde::Serialize;
use web_time::Instant;

use super::Access::{Read, ReadWrite};
use super::check::{dim, expect_shape, nonzero};
use super::kernel::kernel;
use super::kernel::params;
use super::{Cost, Dispatch, Gpu, Kernel, Tensor, workgroups_for};
use crate::error::Result;

/// The FMA micro-kernel.
pub const FMA_KERNEL: Kernel = kernel!("roofline_fma", includes: [], workgroup: 64,
    params: FmaParams, bindings: &[ReadWrite]);

/// The copy micro-kernel.
pub const COPY_KERNEL: Kernel = kernel!("roofline_copy", includes: [], workgroup: 256,
    params: CopyParams, bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in roofline_fma.wgsl.
    pub struct FmaParams { pub invocations: u32, pub iterations: u32, pub _pad: [u32; 2] }
}

params! {
    /// Mirrors `Params` in roofline_copy.wgsl.
    pub struct CopyParams { pub len4: u32, pub _pad: [u32; 3] }
}

/// Prepares the FMA micro-kernel: `out.len()` invocations of `iterations` x 64 flops.
pub fn fma(gpu: &Gpu, out: &Tensor, iterations: u32) -> Result<Dispatch> {
    nonzero("roofline_fma", "invocations", out.len())?;
    let params = FmaParams {
        invocations: dim("roofline_fma", "invocations", out.len())?,
        iterations,
        _pad: [0; 2],
    };
    let flops = 64 * iterations as u64 * out.len() as u64;
    Dispatch::new(
        gpu,
        &FMA_KERNEL,
        "roofline_fma",
        "roofline fma",
        &params,
        &[out],
        workgroups_for(out.len() as u64, FMA_KERNEL.workgroup_size),
    )
    .map(|d| d.with_cost(Cost::new(flops, out.len() as u64)))
}

/// Prepares the copy micro-kernel `dst = src` (lengths a multiple of 4).
pub fn copy(gpu: &Gpu, src: &Tensor, dst: &Tensor) -> Result<Dispatch> {
    expect_shape("roofline_copy", dst, src.shape())?;
    let len4 = src.len() / 4;
    nonzero("roofline_copy", "vec4 count", len4)?;
    let params = CopyParams { len4: dim("roofline_copy", "length", len4)?, _pad: [0; 3] };
    Dispatch::new(
        gpu,
        &COPY_KERNEL,
        "roofline_copy",
        "roofline copy",
        &params,
        &[src, dst],
        workgroups_for(len4 as u64, COPY_KERNEL.workgroup_size),
    )
    .map(|d| d.with_cost(Cost::new(0, 8 * len4 as u64)))
}

/// The two roofs of the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Roof {
    /// Attainable f32 FMA rate, GFLOP/s.
    pub gflops: f64,
    /// Attainable shader copy bandwidth (bytes read + written), GB/s.
    pub gbps: f64,
}

impl Roof {
    /// The fraction of the roof a kernel reaches: achieved FLOP/s over min(peak FLOP/s, intensity x peak
    /// bandwidth) for kernels that compute; achieved bandwidth over the peak for those that only move data.
    pub fn fraction(&self, flops: u64, bytes: u64, seconds: f64) -> f64 {
        if seconds <= 0.0 {
            return 0.0;
        }
        if flops == 0 {
            return bytes as f64 / seconds / 1e9 / self.gbps;
        }
        let intensity = flops as f64 / bytes.max(1) as f64;
        let attainable = self.gflops.min(intensity * self.gbps);
        flops as f64 / seconds / 1e9 / attainable
    }
}

/// A pass length (seconds) past which a submit and wait (tens of microseconds) cost under 1%: the floor the
/// studies time their dispatches over.
pub const PASS_FLOOR: f64 = 0.005;

/// The most copies of a dispatch [`repeats_for`] puts in one pass.
pub const MAX_REPEATS: usize = 4096;

/// Seconds per dispatch of one pass (one submit) of `repeats` copies of `d`, wall clock around submit and
/// wait.
pub async fn time_pass(gpu: &Gpu, d: &Dispatch, repeats: usize) -> Result<f64> {
    let repeats = repeats.max(1);
    let list: Vec<&Dispatch> = std::iter::repeat_n(d, repeats).collect();
    let start = Instant::now();
    gpu.run("timed pass", &list).await?;
    Ok(start.elapsed().as_secs_f64() / repeats as f64)
}

/// How many copies of `d` one pass needs to last at least `floor` seconds (1 to [`MAX_REPEATS`]). Submitting
/// and waiting cost tens of microseconds, longer than many dispatches take on a real GPU, so one dispatch per
/// submit would time the submit there; on a software adapter, where a dispatch takes milliseconds, this is
/// usually 1. Runs `d` a few times (the first run is the warm-up: pipeline and first-touch costs); running
/// `d` twice must leave what running it once leaves (no accumulation into its own inputs).
pub async fn repeats_for(gpu: &Gpu, d: &Dispatch, floor: f64) -> Result<usize> {
    time_pass(gpu, d, 1).await?;
    let mut repeats = 1;
    // The first estimate includes one submit; a second pass corrects it where the dispatch is short.
    for _ in 0..2 {
        let pass = time_pass(gpu, d, repeats).await? * repeats as f64;
        if pass >= floor || repeats == MAX_REPEATS {
            break;
        }
        let scale = (floor / pass.max(1e-9)).ceil() as usize;
        repeats = repeats.saturating_mul(scale).clamp(1, MAX_REPEATS);
    }
    Ok(repeats)
}

/// The median over `trials` passes of seconds per dispatch, each pass long enough ([`repeats_for`] with a
/// 50 ms floor) that the submit vanishes.
async fn time(gpu: &Gpu, d: &Dispatch, trials: usize) -> Result<f64> {
    let repeats = repeats_for(gpu, d, 0.05).await?;
    let mut t = Vec::with_capacity(trials);
    for _ in 0..trials {
        t.push(time_pass(gpu, d, repeats).await?);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Measures both roofs (a few seconds on a software adapter, well under one on a GPU), with buffers within the
/// device's storage-binding limit.
pub async fn measure(gpu: &Gpu) -> Result<Roof> {
    // The most f32s one binding holds, in whole vec4s.
    let bound = (gpu.limits().max_storage_buffer_binding_size / 16 * 4).max(4) as usize;
    // 2^18 invocations fill any GPU (an H200 runs 132 x 2048 at once); [`time`] repeats the dispatch where
    // it is shorter than the pass floor.
    let out = gpu.zeros("roofline fma out", &[(1 << 18).min(bound)])?;
    let fma = fma(gpu, &out, 512)?;
    let gflops = fma.cost().flops as f64 / time(gpu, &fma, 5).await? / 1e9;
    // 64 MiB each way: past any cache (an H200's L2 is 60 MB).
    let n = (16 << 20).min(bound);
    let src = gpu.zeros("roofline copy src", &[n])?;
    let dst = gpu.zeros("roofline copy dst", &[n])?;
    let copy = copy(gpu, &src, &dst)?;
    let gbps = copy.cost().bytes as f64 / time(gpu, &copy, 5).await? / 1e9;
    Ok(Roof { gflops, gbps })
}
