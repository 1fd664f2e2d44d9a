//! The update as the epilogue of the UNet's final convolution: the model output is never stored. The kernel is
//! the DDIM variant of the one the device's family runs for that convolution: the CPU family's
//! `conv2d_3x3_ddim` (`conv2d_3x3.wgsl` over packed weights) where the convolution runs `conv2d_3x3` and its
//! input channels take one weight chunk, the GPU family's `conv2d_tiled_ddim` (with `conv2d_split_reduce_ddim`
//! where K is split) where it runs `conv2d_tiled`, and `conv2d.wgsl`'s `conv2d_ddim` everywhere else.

use super::spec::{DdimStepParams, Noise, StepSpec, step_params, validate};
use crate::error::{Error, Result};
use crate::gpu::Access;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::dim;
use crate::gpu::check::expect_shape;
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor, workgroups_for};
use crate::ops::conv2d::packed::{PACKED_COMMON, PackGeometry, pack_weights, window_launches};
use crate::ops::conv2d::tiled::{
    KERNEL_TILED, KERNEL_TILED_8X8, SplitK, TILE_4X4, TILE_8X8, TILED_PARAMS, tiled_launches,
};
use crate::ops::conv2d::{BLOCK, Conv2dConfig, ConvShape, KERNEL_3X3, SHAPE, kernel_for};

/// The final convolution with the update in its epilogue, any geometry.
pub const CONV_KERNEL: Kernel = kernel!("conv2d_ddim" from "conv2d" where [("DDIM", "1")],
    includes: [SHAPE, crate::ops::conv2d::ACCUMULATE], workgroup: 64,
    params: ConvStepParams, bindings: &[Read, Read, Read, Read, ReadWrite]);

/// The CPU family's 3x3 stride-1 convolution over packed weights with the update in its epilogue.
pub const CONV_3X3_KERNEL: Kernel = kernel!("conv2d_3x3_ddim" from "conv2d_3x3" where [("DDIM", "1")],
    includes: [SHAPE, BLOCK, PACKED_COMMON], workgroup: 32, params: PackedStepParams,
    bindings: &[Access::Read, Access::UniformWindow, Access::Read, Access::Read, Access::ReadWrite]);

/// The GPU family's implicit GEMM with the update in its epilogue (unsplit, or the slices of a split K).
pub const CONV_TILED_KERNEL: Kernel = kernel!("conv2d_tiled_ddim" from "conv2d_tiled" where [
        TILE_4X4[0], TILE_4X4[1], TILE_4X4[2], TILE_4X4[3], TILE_4X4[4], TILE_4X4[5], TILE_4X4[6],
        ("DDIM", "1")],
    includes: [SHAPE, TILED_PARAMS], workgroup: 256, params: TiledStepParams,
    bindings: &[Read, Read, Read, Read, ReadWrite, ReadWrite]);

/// [`CONV_TILED_KERNEL`] over 128 x 128 tiles, 8 x 8 outputs per invocation (`conv2d_tiled_8x8`'s update).
pub const CONV_TILED_8X8_KERNEL: Kernel = kernel!("conv2d_tiled_8x8_ddim" from "conv2d_tiled" where [
        TILE_8X8[0], TILE_8X8[1], TILE_8X8[2], TILE_8X8[3], TILE_8X8[4], TILE_8X8[5], TILE_8X8[6],
        ("DDIM", "1")],
    includes: [SHAPE, TILED_PARAMS], workgroup: 256, params: TiledStepParams,
    bindings: &[Read, Read, Read, Read, ReadWrite, ReadWrite]);

/// Adds the slices of a split [`CONV_TILED_KERNEL`] and applies the update.
pub const SPLIT_REDUCE_KERNEL: Kernel = kernel!("conv2d_split_reduce_ddim" from "conv2d_split_reduce"
    where [("DDIM", "1")], includes: [SHAPE, TILED_PARAMS], workgroup: 256, params: TiledStepParams,
    bindings: &[Read, Read, Read, ReadWrite]);

params! {
    /// Mirrors `Params` in conv2d_tiled_params.inc.wgsl's DDIM variant.
    pub struct TiledStepParams {
        pub shape: ConvShape, pub splits: u32, pub k_split: u32, pub p_begin: u32, pub p_count: u32,
        pub d: DdimStepParams,
    }
}

params! {
    /// Mirrors `Params` in conv2d.wgsl's `conv2d_ddim` variant.
    pub struct ConvStepParams { pub shape: ConvShape, pub d: DdimStepParams }
}

params! {
    /// Mirrors `Params` in conv2d_packed.inc.wgsl's DDIM variant (`conv2d_3x3_ddim`).
    pub struct PackedStepParams {
        pub shape: ConvShape, pub ci0: u32, pub ci_count: u32, pub block0: u32, pub blocks: u32,
        pub chunk: u32, pub _pad: [u32; 3], pub d: DdimStepParams,
    }
}

/// The kernel [`conv_ddim_update`] runs for this final convolution on this device: [`CONV_3X3_KERNEL`] where
/// the device's family runs the convolution as `conv2d_3x3` and its input channels fit one weight chunk (so
/// every sum is whole when the update reads it), [`CONV_TILED_KERNEL`] where it runs `conv2d_tiled`,
/// [`CONV_TILED_8X8_KERNEL`] where it runs `conv2d_tiled_8x8`, [`CONV_KERNEL`] otherwise.
pub fn epilogue_kernel_for(gpu: &Gpu, shape: &ConvShape) -> &'static Kernel {
    let conv = kernel_for(gpu, shape).name;
    if packed_geometry(gpu, shape).is_some() {
        &CONV_3X3_KERNEL
    } else if conv == KERNEL_TILED.name {
        &CONV_TILED_KERNEL
    } else if conv == KERNEL_TILED_8X8.name {
        &CONV_TILED_8X8_KERNEL
    } else {
        &CONV_KERNEL
    }
}

/// Whether [`conv_ddim_update`] computes this final convolution with the kernel
/// [`conv2d`](crate::ops::conv2d::conv2d) runs for it on this device (`conv2d_3x3_ddim` where that is
/// `conv2d_3x3`, `conv2d_tiled_ddim` and `conv2d_tiled_8x8_ddim` where it is a tiled kernel, `conv2d_ddim` where
/// it is the portable `conv2d`). Then the epilogue is the convolution plus the update's arithmetic, and saves the
/// model output's store, its reload and a launch over the convolution followed by the fused update kernel. Where
/// the family runs another kernel (the CPU family's Winograd, 1x1, im2col or packed kernels), the epilogue would
/// compute the convolution with the slower portable one, and the fused update is the faster form.
pub fn epilogue_keeps_kernel(
    gpu: &Gpu,
    conv_input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<bool> {
    let shape = ConvShape::new("conv2d_ddim", conv_input, weight, bias, cfg)?;
    Ok(epilogue_kernel_for(gpu, &shape).name != CONV_KERNEL.name
        || kernel_for(gpu, &shape).name == crate::ops::conv2d::KERNEL.name)
}

fn packed_geometry(gpu: &Gpu, shape: &ConvShape) -> Option<PackGeometry> {
    if kernel_for(gpu, shape).name != KERNEL_3X3.name {
        return None;
    }
    PackGeometry::new(shape.cout as usize, shape.cin as usize, 9).filter(|g| g.chunks == 1)
}

/// The UNet's final convolution with the update fused into its epilogue (the kernel [`epilogue_kernel_for`]
/// picks): replaces x (x_t, the convolution's output shape) by x_prev without storing the model output. `conv_input`, `weight`,
/// `bias` and `cfg` are the final convolution's. Dynamic thresholding is refused (use [`ddim_update`](super::ddim_update)).
#[allow(clippy::too_many_arguments)] // the convolution's operands and the update's
pub fn conv_ddim_update(
    gpu: &Gpu,
    label: &str,
    conv_input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    cfg: &Conv2dConfig,
    x: &Tensor,
    spec: &StepSpec<'_>,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_ddim";
    let shape = ConvShape::new(OP, conv_input, weight, bias, cfg)?;
    expect_shape(OP, x, &shape.output_shape())?;
    validate(spec, x)?;
    if spec.threshold.is_some() {
        return Err(Error::param(
            OP,
            "dynamic thresholding needs the whole x0 of an image before any element is updated; it cannot be \
             fused into the convolution",
        ));
    }
    if cfg.out_scale != 1.0 {
        return Err(Error::param(OP, "the final convolution has an output scale"));
    }
    let d = step_params(spec);
    let noise = match spec.noise {
        Noise::Tensor(t) => t,
        _ => bias,
    };
    let floats =
        conv_input.len() + weight.len() + bias.len() + (2 + (d.noise_mode == 2) as usize) * x.len();
    let cost = Cost::new(shape.flops() + 12 * x.len() as u64, floats as u64);
    if let Some(geo) = packed_geometry(gpu, &shape) {
        let packed = pack_weights(gpu, label, weight, &geo)?;
        let [n, _, ho, wo] = shape.output_shape();
        let tiles =
            workgroups_for((n * ho * wo.div_ceil(8)) as u64, CONV_3X3_KERNEL.workgroup_size);
        let params: Vec<PackedStepParams> = (0..geo.windows)
            .map(|w| {
                let block0 = w * geo.blocks_per_window;
                PackedStepParams {
                    shape,
                    ci0: 0,
                    ci_count: shape.cin,
                    block0: block0 as u32,
                    blocks: geo.blocks_per_window.min(geo.blocks - block0) as u32,
                    chunk: geo.chunk as u32,
                    _pad: [0; 3],
                    d,
                }
            })
            .collect();
        let blocks: Vec<u32> = params.iter().map(|p| p.blocks).collect();
        let after = [bias, noise, x];
        return window_launches(
            gpu,
            &CONV_3X3_KERNEL,
            label,
            &params,
            &blocks,
            tiles,
            conv_input,
            &after,
            packed,
        )
        .map(|disp| disp.with_cost(cost));
    }
    let epilogue = epilogue_kernel_for(gpu, &shape);
    if [CONV_TILED_KERNEL.name, CONV_TILED_8X8_KERNEL.name].contains(&epilogue.name) {
        let params = |split: &SplitK, p_begin: usize, p_count: usize| {
            Ok(TiledStepParams {
                shape,
                splits: dim(OP, "K slices", split.splits)?,
                k_split: dim(OP, "K per slice", split.k_split)?,
                p_begin: dim(OP, "first pixel", p_begin)?,
                p_count: dim(OP, "pixels", p_count)?,
                d,
            })
        };
        return tiled_launches(
            gpu,
            label,
            &shape,
            (epilogue, &SPLIT_REDUCE_KERNEL),
            params,
            &[Some(conv_input), Some(weight), Some(bias), Some(noise), Some(x), None],
            &[None, Some(bias), Some(noise), Some(x)],
        )
        .map(|disp| disp.with_cost(cost));
    }
    Dispatch::new(
        gpu,
        &CONV_KERNEL,
        OP,
        label,
        &ConvStepParams { shape, d },
        &[conv_input, weight, bias, noise, x],
        workgroups_for(shape.blocks_4x4(), CONV_KERNEL.workgroup_size),
    )
    .map(|disp| disp.with_cost(cost))
}
