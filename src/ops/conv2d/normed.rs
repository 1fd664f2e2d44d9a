//! Group norm (and SiLU) as the prologue of the GPU family's tiled convolution: a statistics launch
//! (`group_norm_stats*`: per image and channel, what normalises it), then `conv2d_tiled_gn` or
//! `conv2d_tiled_8x8_gn`, which normalise every value of x as they gather it. The normalised tensor, which a
//! group norm followed by a convolution writes and reads back in full, is never stored. The UNet's commonest
//! pair (each ResNet block's norm1 -> conv1 and norm2 -> conv2) runs so where the plan finds it
//! (`graph::prologue`).

use super::shape::{ChannelSlice, Conv2dConfig, OP, SHAPE};
use super::strategy::{gpu_kernel_for, operands};
use super::tiled::{
    KERNEL_TILED, KERNEL_TILED_8X8, Prologue, TILE_4X4, TILE_8X8, TILED_PARAMS, TiledParams, tiled,
};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::kernel::kernel;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelChoice, Tensor};
use crate::ops::group_norm::group_norm_stats;

/// [`KERNEL_TILED`] normalising x as it loads it.
pub const KERNEL_TILED_GN: Kernel = kernel!("conv2d_tiled_gn" from "conv2d_tiled" where [
        TILE_4X4[0], TILE_4X4[1], TILE_4X4[2], TILE_4X4[3], TILE_4X4[4], TILE_4X4[5], TILE_4X4[6],
        ("PROLOGUE", "1")],
    includes: [SHAPE, TILED_PARAMS], workgroup: 256, params: TiledParams,
    bindings: &[Read, Read, Read, Read, ReadWrite, Read, ReadWrite, Read]);

/// [`KERNEL_TILED_8X8`] normalising x as it loads it.
pub const KERNEL_TILED_8X8_GN: Kernel = kernel!("conv2d_tiled_8x8_gn" from "conv2d_tiled" where [
        TILE_8X8[0], TILE_8X8[1], TILE_8X8[2], TILE_8X8[3], TILE_8X8[4], TILE_8X8[5], TILE_8X8[6],
        ("PROLOGUE", "1")],
    includes: [SHAPE, TILED_PARAMS], workgroup: 256, params: TiledParams,
    bindings: &[Read, Read, Read, Read, ReadWrite, Read, ReadWrite, Read]);

/// The group norm a normed convolution applies to its input x `[N, C, H, W]`: `gamma` and `beta` `[C]`,
/// `groups` dividing C, `eps`, and SiLU after it or not.
#[derive(Clone, Copy)]
pub struct InputNorm<'a> {
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub groups: usize,
    pub eps: f32,
    pub silu: bool,
}

/// The kernel [`conv2d_normed`] runs on this device: the `_gn` variant of the GPU family's tiled convolution;
/// `None` where the device's family does not run that convolution, or where it binds fewer than the 8 storage
/// buffers the variant needs.
pub fn normed_kernel_for(gpu: &Gpu) -> Option<&'static Kernel> {
    if gpu.kernel_family() != KernelChoice::Gpu {
        return None;
    }
    let kernel = match gpu_kernel_for(gpu).name {
        name if name == KERNEL_TILED.name => &KERNEL_TILED_GN,
        name if name == KERNEL_TILED_8X8.name => &KERNEL_TILED_8X8_GN,
        _ => return None,
    };
    let storage = kernel.bindings.len() as u32;
    (gpu.limits().max_storage_buffers_per_shader_stage >= storage).then_some(kernel)
}

/// Prepares `out = (conv(norm(x), weight) + bias + channel + residual) * out_scale` with `norm` the group norm
/// (and SiLU) of `input_norm`, computing what `group_norm` followed by
/// [`conv2d_with_channel`](super::conv2d_with_channel) computes without storing the normalised map. Shapes as
/// those two take them. An error where [`normed_kernel_for`] has no kernel for this device. The statistics
/// live in a buffer of the dispatch's own (16 bytes per image and channel).
#[allow(clippy::too_many_arguments)] // the operands of a group norm and a convolution
pub fn conv2d_normed(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    input_norm: &InputNorm<'_>,
    weight: &Tensor,
    bias: &Tensor,
    channel: Option<ChannelSlice<'_>>,
    residual: Option<&Tensor>,
    out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    let kernel = normed_kernel_for(gpu).ok_or_else(|| {
        Error::param(
            OP,
            format!(
                "`{label}`: a group norm in the convolution's prologue runs only on the GPU family's tiled \
                 convolution with 8 storage bindings"
            ),
        )
    })?;
    let (o, conv_cost) = operands(x, weight, bias, channel, residual, out, cfg)?;
    let [n, c] = [o.shape.batch as usize, o.shape.cin as usize];
    let affine = gpu.zeros(&format!("{label} statistics"), &[n, c, 4])?;
    let InputNorm { gamma, beta, groups, eps, silu } = *input_norm;
    let stats = group_norm_stats(gpu, label, x, gamma, beta, &affine, groups, eps)?;
    let conv = tiled(gpu, kernel, label, &o, Some(Prologue { affine: &affine, silu }))?;
    // The statistics launch's work joins the convolution's.
    Ok(conv.with_cost(conv_cost).after(stats).owning(affine.buffer().clone()))
}
