//! Which attention runs: [`kernel_for`] picks from the device's family and the head size (never the batch);
//! [`attention`] validates and prepares it, taking the products where they apply.

use super::flash::{FLASH, FLASH_SUBGROUPS};
use super::portable::{KERNEL, OP, Params};
use super::products::{Products, products};
use super::tiled::{Blocking, TILED, blocked};
use super::windowed::{WINDOWED_KERNEL, WindowGeometry, windowed};
use crate::error::{Error, Result};
use crate::gpu::check::{dim, dims, expect_shape, nonzero};
use crate::gpu::windows::has_uniform_windows;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, KernelChoice, Tensor, UNIFORM_WINDOW};

/// The kernel [`attention`] runs on this device for heads of `head_dim`: `attention_windowed` for the CPU
/// family where a key block fits a window (head_dim up to 1,024) and the device has 64 KiB uniform bindings
/// (which [`attention`] replaces by the products, [`SCORES_KERNEL`](super::SCORES_KERNEL), where [`Products`] apply and the
/// operands have room for their windows), `attention_tiled` for the GPU family (any head_dim), `attention`
/// otherwise. Never depends on the batch.
pub fn kernel_for(gpu: &Gpu, head_dim: usize) -> &'static Kernel {
    let windows = has_uniform_windows(gpu) && gpu.limits().max_buffer_size >= UNIFORM_WINDOW;
    match gpu.kernel_family() {
        KernelChoice::Cpu if windows && WindowGeometry::new(1, head_dim, 1).is_some() => {
            &WINDOWED_KERNEL
        }
        KernelChoice::Gpu => blocking_for(gpu).map_or(&KERNEL, |b| b.kernel),
        _ => &KERNEL,
    }
}

/// The GPU family's query-blocked kernels, in the order [`blocking_for`] prefers them.
pub const BLOCKINGS: [&Blocking; 3] = [&FLASH_SUBGROUPS, &FLASH, &TILED];

/// The GPU family's query-blocked kernel on this device: `attention_flash_subgroups` where its workgroups fit
/// and the device has subgroups, `attention_flash` where they fit without, `attention_tiled` where that one's
/// do (WebGPU's minimum 16 KiB of workgroup memory), else none.
pub fn blocking_for(gpu: &Gpu) -> Option<&'static Blocking> {
    BLOCKINGS.into_iter().find(|b| b.fits(gpu))
}

/// Prepares `out = softmax(q k^T / sqrt(head_dim)) v` per head.
///
/// q, k, v and out are `[N, C, H, W]` maps (the H*W pixels are the tokens), C = heads * head_dim; head h owns
/// channels `h * head_dim .. (h + 1) * head_dim`.
pub fn attention(
    gpu: &Gpu,
    label: &str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    head_dim: usize,
) -> Result<Dispatch> {
    prepare(gpu, None, label, [q, k, v, out], head_dim)
}

/// [`attention`] with a query-blocked kernel of the GPU family chosen by the caller (one of [`BLOCKINGS`]),
/// whatever the device's family: for comparing and testing them. Refused where the device does not run it
/// ([`Blocking::fits`]).
pub fn attention_blocked(
    gpu: &Gpu,
    blocking: &Blocking,
    label: &str,
    [q, k, v, out]: [&Tensor; 4],
    head_dim: usize,
) -> Result<Dispatch> {
    if !blocking.fits(gpu) {
        return Err(Error::param(
            OP,
            format!(
                "`{}` needs {} bytes of workgroup memory and {} invocations a workgroup{}; this device \
                 allows {} and {}{}",
                blocking.kernel.name,
                blocking.workgroup_bytes,
                blocking.kernel.workgroup_size,
                if blocking.uses_subgroups() { ", and subgroups" } else { "" },
                gpu.limits().max_compute_workgroup_storage_size,
                gpu.limits().max_compute_invocations_per_workgroup,
                if gpu.subgroups() { "" } else { ", without subgroups" },
            ),
        ));
    }
    prepare(gpu, Some(blocking), label, [q, k, v, out], head_dim)
}

fn prepare(
    gpu: &Gpu,
    blocking: Option<&Blocking>,
    label: &str,
    [q, k, v, out]: [&Tensor; 4],
    head_dim: usize,
) -> Result<Dispatch> {
    let [n, c, h, w] = dims::<4>(OP, q)?;
    let tokens = h * w;
    for (what, value) in [("batch", n), ("channels", c), ("tokens", tokens), ("head_dim", head_dim)]
    {
        nonzero(OP, what, value)?;
    }
    if c % head_dim != 0 {
        return Err(Error::param(
            OP,
            format!("head_dim {head_dim} does not divide the {c} channels of `{}`", q.label()),
        ));
    }
    for t in [k, v, out] {
        expect_shape(OP, t, q.shape())?;
    }
    let heads = c / head_dim;
    let params = Params {
        batch: dim(OP, "batch", n)?,
        heads: dim(OP, "heads", heads)?,
        head_dim: dim(OP, "head_dim", head_dim)?,
        tokens: dim(OP, "tokens", tokens)?,
        scale: (1.0 / (head_dim as f64).sqrt()) as f32,
        _pad: [0; 3],
    };
    let cost = Cost::new(4 * (n * heads * tokens * tokens * head_dim) as u64, 4 * q.len() as u64);
    let kernel = blocking.map_or_else(|| kernel_for(gpu, head_dim), |b| b.kernel);
    if let Some(b) = BLOCKINGS.into_iter().find(|b| b.kernel.name == kernel.name) {
        let operands = [q, k, v, out];
        return blocked(gpu, b, label, operands, n * heads, heads, head_dim, tokens, params.scale)
            .map(|d| d.with_cost(cost));
    }
    if kernel.name == WINDOWED_KERNEL.name {
        if let Some(cut) = Products::on(gpu, n * heads, head_dim, tokens) {
            let operands = [q, k, v, out];
            let scale = params.scale;
            if let Some(d) =
                products(gpu, label, &cut, operands, n * heads, head_dim, tokens, scale)?
            {
                return Ok(d.with_cost(cost));
            }
        }
        return windowed(gpu, label, [q, k, v, out], n * heads, head_dim, tokens, params.scale)
            .map(|d| d.with_cost(cost));
    }
    // One invocation per 8 query tokens.
    let invocations = (n * heads * tokens.div_ceil(8)) as u64;
    Dispatch::for_invocations(gpu, &KERNEL, OP, label, &params, &[q, k, v, out], invocations)
        .map(|d| d.with_cost(cost))
}
