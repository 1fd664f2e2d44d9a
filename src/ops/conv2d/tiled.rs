//! `conv2d_tiled.wgsl`: the GPU family's convolution, an implicit GEMM over shared-memory tiles (64 x 64 with
//! 4 x 4 outputs per invocation, or 128 x 128 with 8 x 8: [`TileShape`]), with K split over several workgroups
//! on small maps ([`SplitK`], `conv2d_split_reduce.wgsl`).

use super::shape::{ConvShape, OP, Operands, SHAPE};
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::dim;
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Dispatch, Gpu, Kernel, Tensor};
use crate::ops::{split_reduction, split_scratch_floats};

/// The Params of [`KERNEL_TILED`] and [`KERNEL_SPLIT_REDUCE`] ([`TiledParams`]).
pub const TILED_PARAMS: &str = include_str!("../../../kernels/conv2d_tiled_params.inc.wgsl");

/// The defines of the 4 x 4 variant ([`TileShape::SMALL`]): outputs per invocation, K step, workgroup memory.
pub const TILE_4X4: [(&str, &str); 7] = [
    ("RM", "4"),
    ("RN", "4"),
    ("RM4", "1"),
    ("RN4", "1"),
    ("TK", "16"),
    ("WS4", "272"),
    ("XS4", "256"),
];

/// The defines of the 8 x 8 variant ([`TileShape::LARGE`]).
pub const TILE_8X8: [(&str, &str); 7] = [
    ("RM", "8"),
    ("RN", "8"),
    ("RM4", "2"),
    ("RN4", "2"),
    ("TK", "8"),
    ("WS4", "264"),
    ("XS4", "256"),
];

/// The implicit GEMM over 64 x 64 shared-memory tiles, 4 x 4 outputs per invocation, for GPUs, whole or split
/// along K ([`SplitK`]).
pub const KERNEL_TILED: Kernel = kernel!("conv2d_tiled" from "conv2d_tiled" where [
        TILE_4X4[0], TILE_4X4[1], TILE_4X4[2], TILE_4X4[3], TILE_4X4[4], TILE_4X4[5], TILE_4X4[6]],
    includes: [SHAPE, TILED_PARAMS], workgroup: 256, params: TiledParams,
    bindings: &[Read, Read, Read, Read, ReadWrite, Read, ReadWrite]);

/// [`KERNEL_TILED`] over 128 x 128 tiles, 8 x 8 outputs per invocation (the device option
/// [`conv_tile_8x8`](crate::gpu::DeviceOptions::conv_tile_8x8)).
pub const KERNEL_TILED_8X8: Kernel = kernel!("conv2d_tiled_8x8" from "conv2d_tiled" where [
        TILE_8X8[0], TILE_8X8[1], TILE_8X8[2], TILE_8X8[3], TILE_8X8[4], TILE_8X8[5], TILE_8X8[6]],
    includes: [SHAPE, TILED_PARAMS], workgroup: 256, params: TiledParams,
    bindings: &[Read, Read, Read, Read, ReadWrite, Read, ReadWrite]);

/// Adds the K slices of a split [`KERNEL_TILED`] convolution and applies the epilogue.
pub const KERNEL_SPLIT_REDUCE: Kernel = kernel!("conv2d_split_reduce",
    includes: [SHAPE, TILED_PARAMS], workgroup: 256, params: TiledParams,
    bindings: &[Read, Read, Read, Read, ReadWrite]);

/// A tiled variant's output tile: `m` output channels x `n` pixels per workgroup, K in steps of `k` (K slices
/// are multiples of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl TileShape {
    /// [`KERNEL_TILED`]'s: 64 x 64, K steps of 16.
    pub const SMALL: TileShape = TileShape { m: 64, n: 64, k: 16 };
    /// [`KERNEL_TILED_8X8`]'s: 128 x 128, K steps of 8.
    pub const LARGE: TileShape = TileShape { m: 128, n: 128, k: 8 };

    /// The workgroup memory the variant declares: k rows of m weights (padded by one vector) and of n input
    /// columns (`ws4` and `xs4` in conv2d_tiled.wgsl): 8.25 KiB for [`TileShape::SMALL`], 8.1 KiB for
    /// [`TileShape::LARGE`].
    pub const fn workgroup_bytes(&self) -> u32 {
        (16 * self.k * (self.m / 4 + 1 + self.n / 4)) as u32
    }

    /// The tile the GPU family's convolutions use on this device
    /// ([`DeviceOptions::conv_tile_8x8`](crate::gpu::DeviceOptions::conv_tile_8x8)).
    pub fn on(gpu: &Gpu) -> TileShape {
        if gpu.conv_tile_8x8() { TileShape::LARGE } else { TileShape::SMALL }
    }
}

/// Workgroups (tiles x K slices) [`SplitK`] aims for per image: about the multiprocessors of a large GPU (an
/// H200 has 132), so that a batch of two or more fills it whatever the map size.
pub const SPLIT_TARGET: usize = 128;

/// The least K one slice covers: at 128 (8 steps), writing and reading a slice's partial sums (8 bytes per
/// output) is 1/32 of its arithmetic (256 FLOP per output), well above any GPU's ridge point.
pub const SPLIT_MIN_K: usize = 128;

/// How a tiled convolution splits its K = cin x kh x kw: `splits` slices of `k_split` (a multiple of the tile's
/// K step; the last may be shorter), each image's tiles run once per slice, and [`KERNEL_SPLIT_REDUCE`] adds the
/// slices in order. The pixels run in launches of `pixels` (whole tiles), so the partial sums fit the scratch
/// limit. Chosen from one image's geometry, never the batch: an image's sums are the same however a batch is
/// split or grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitK {
    pub splits: usize,
    pub k_split: usize,
    pub pixels: usize,
}

impl SplitK {
    /// The split of `shape` over `tile`s whose partial sums take at most `max_floats` per launch: as many
    /// slices as bring an image to [`SPLIT_TARGET`] workgroups, with at least [`SPLIT_MIN_K`] each, balanced;
    /// one slice (the whole sum in one launch) where that is one, or where one tile of partial sums would not
    /// fit.
    pub fn new(shape: &ConvShape, tile: TileShape, max_floats: usize) -> Self {
        let [n, cout, ho, wo] = shape.output_shape();
        let k = (shape.cin * shape.kh * shape.kw) as usize;
        let plane = ho * wo;
        let whole = SplitK { splits: 1, k_split: k.div_ceil(tile.k) * tile.k, pixels: n * plane };
        let tiles = cout.div_ceil(tile.m) * plane.div_ceil(tile.n);
        let (splits, k_split) = split_reduction(k, tiles, SPLIT_TARGET, SPLIT_MIN_K, tile.k);
        let pixels = max_floats / (splits * cout) / tile.n * tile.n;
        if splits == 1 || pixels == 0 {
            return whole;
        }
        SplitK { splits, k_split, pixels: pixels.min(n * plane) }
    }

    /// The split on this device, over its tiles ([`TileShape::on`]): partial sums within
    /// [`SPLIT_SCRATCH_BYTES`](crate::ops::SPLIT_SCRATCH_BYTES) and its binding limits; one slice where the
    /// device was opened with split reductions off ([`crate::gpu::DeviceOptions::split_k`]).
    pub fn on(gpu: &Gpu, shape: &ConvShape) -> Self {
        Self::new(shape, TileShape::on(gpu), split_scratch_floats(gpu))
    }
}

params! {
    /// Mirrors `Params` in conv2d_tiled.wgsl and conv2d_split_reduce.wgsl.
    pub struct TiledParams {
        pub shape: ConvShape, pub has_residual: u32, pub out_scale: f32, pub has_channel: u32,
        pub splits: u32, pub k_split: u32, pub p_begin: u32, pub p_count: u32,
        /// SiLU after the prologue's normalisation (the `_gn` variants).
        pub silu: u32,
    }
}

/// A group norm applied to x as the tiled kernel loads it (the `_gn` variants): the per-(image, channel)
/// statistics `group_norm_stats` wrote, and whether SiLU follows.
#[derive(Clone, Copy)]
pub(crate) struct Prologue<'a> {
    pub(crate) affine: &'a Tensor,
    pub(crate) silu: bool,
}

/// The shared-memory path: `kernel` ([`KERNEL_TILED`] or [`KERNEL_TILED_8X8`], or with a `prologue` their
/// `_gn` variants) over the whole K, or over [`SplitK`] slices into the device's scratch buffer followed by
/// [`KERNEL_SPLIT_REDUCE`], one pair of launches per group of pixels.
pub(super) fn tiled(
    gpu: &Gpu,
    kernel: &'static Kernel,
    label: &str,
    o: &Operands<'_>,
    prologue: Option<Prologue<'_>>,
) -> Result<Dispatch> {
    let shape = &o.shape;
    let (x, weight, bias, out) = (o.x, o.weight, o.bias, o.out);
    let (channel, residual, cfg) = (o.channel, o.residual, o.cfg);
    let params = |split: &SplitK, p_begin: usize, p_count: usize| {
        Ok(TiledParams {
            shape: *shape,
            has_residual: residual.is_some() as u32,
            out_scale: cfg.out_scale,
            has_channel: channel.is_some() as u32,
            splits: dim(OP, "K slices", split.splits)?,
            k_split: dim(OP, "K per slice", split.k_split)?,
            p_begin: dim(OP, "first pixel", p_begin)?,
            p_count: dim(OP, "pixels", p_count)?,
            silu: prologue.is_some_and(|p| p.silu) as u32,
        })
    };
    let mut bindings = vec![
        Some(x),
        Some(weight),
        Some(bias),
        Some(residual.unwrap_or(x)),
        Some(out),
        Some(channel.unwrap_or(bias)),
        None,
    ];
    bindings.extend(prologue.map(|p| Some(p.affine)));
    tiled_launches(
        gpu,
        label,
        shape,
        (kernel, &KERNEL_SPLIT_REDUCE),
        params,
        &bindings,
        &[
            None,
            Some(bias),
            Some(channel.unwrap_or(bias)),
            Some(residual.unwrap_or(bias)),
            Some(out),
        ],
    )
}

/// The launches of a tiled convolution with any epilogue: `kernels` (the tiled kernel and its split reduction,
/// a variant pair over conv2d_tiled.wgsl and conv2d_split_reduce.wgsl, the tiled one of the device's
/// [`TileShape::on`]) over the whole K, or over [`SplitK`]
/// slices into the device's scratch buffer followed by the reduction, one pair of launches per group of
/// pixels. `params` makes a launch's Params from the split and its pixels; `bindings` and `reduce_bindings`
/// list what each kernel binds, `None` where the partial sums go.
pub fn tiled_launches<P: bytemuck::Pod>(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    kernels: (&'static Kernel, &'static Kernel),
    params: impl Fn(&SplitK, usize, usize) -> Result<P>,
    bindings: &[Option<&Tensor>],
    reduce_bindings: &[Option<&Tensor>],
) -> Result<Dispatch> {
    let tile = TileShape::on(gpu);
    let split = SplitK::on(gpu, shape);
    let [n, cout, ho, wo] = shape.output_shape();
    let total = n * ho * wo;
    // Unsplit, the kernel writes no partial sums: any scratch tensor fills the binding.
    let part = gpu.scratch(
        "conv2d split sums",
        &[if split.splits > 1 { split.splits * cout * split.pixels } else { 1 }],
    )?;
    let tiled_bind: Vec<&Tensor> = bindings.iter().map(|t| t.unwrap_or(&part)).collect();
    let reduce_bind: Vec<&Tensor> = reduce_bindings.iter().map(|t| t.unwrap_or(&part)).collect();
    let launch = |p_begin: usize| -> Result<Dispatch> {
        let p_count = split.pixels.min(total - p_begin);
        let params = params(&split, p_begin, p_count)?;
        let tiles = cout.div_ceil(tile.m) * p_count.div_ceil(tile.n);
        let mut part_dispatch = Dispatch::new(
            gpu,
            kernels.0,
            OP,
            label,
            &params,
            &tiled_bind,
            (split.splits * tiles) as u64,
        )?;
        if split.splits > 1 {
            part_dispatch = part_dispatch.then(Dispatch::for_invocations(
                gpu,
                kernels.1,
                OP,
                label,
                &params,
                &reduce_bind,
                (cout * p_count) as u64,
            )?);
        }
        Ok(part_dispatch)
    };
    Dispatch::sequence(OP, label, (0..total).step_by(split.pixels).map(launch))
}
