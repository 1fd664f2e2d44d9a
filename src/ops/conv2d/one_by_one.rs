//! `conv2d_1x1.wgsl` (variants `conv2d_1x1` and `conv2d_1x1_wide`): the CPU family's 1x1 convolutions, weights and x both read
//! through 64 KiB uniform windows; the wide kernel binds four weight windows per launch.

use super::packed::{PackGeometry, pack_weights};
use super::shape::{BLOCK, ConvShape, OP, Operands};
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{check_bindings, dim};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::windows::{
    has_uniform_windows, window_at, window_binding, window_starts, windows_fit,
};
use crate::gpu::{Dispatch, Gpu, Kernel, LaunchSpec, Tensor, WINDOW_FLOATS, windows_then};

/// What the two 1x1 kernels share: Params and the vec4 epilogue.
const ONE_BY_ONE: &str = include_str!("../../../kernels/conv2d_1x1.inc.wgsl");

/// The 1x1 convolution with x and the packed weights both in uniform windows (conv2d_1x1.wgsl).
pub const KERNEL_1X1: Kernel = kernel!("conv2d_1x1" from "conv2d_1x1" where [("WEIGHT_WINDOWS", "1")],
    includes: [BLOCK, ONE_BY_ONE], workgroup: 8, params: OneByOneParams,
    bindings: &windows_then::<9>(5, &[Read, Read, ReadWrite, Read]));

/// [`KERNEL_1X1`] with four weight windows per launch (a variant of conv2d_1x1.wgsl), where a chunk's weights
/// take that many windows or more ([`OneByOne::weights_per_launch`]).
pub const KERNEL_1X1_WIDE: Kernel = kernel!("conv2d_1x1_wide"
    from "conv2d_1x1" where [("WEIGHT_WINDOWS", "4")], includes: [BLOCK, ONE_BY_ONE], workgroup: 8,
    params: OneByOneParams, bindings: &windows_then::<12>(8, &[Read, Read, ReadWrite, Read]));

/// Weight windows one launch of [`KERNEL_1X1_WIDE`] binds (`w0` .. `w3`).
const WIDE_WEIGHTS: usize = 4;

params! {
    /// Mirrors `Params` in conv2d_1x1.wgsl.
    pub struct OneByOneParams {
        pub cin: u32,
        pub cout: u32,
        pub hw: u32,
        pub ci_count: u32,
        pub rows: u32,
        pub chunk: u32,
        pub block0: u32,
        pub blocks: u32,
        pub n0: u32,
        pub images: u32,
        pub first: u32,
        pub last: u32,
        pub has_residual: u32,
        pub out_scale: f32,
        pub has_channel: u32,
        /// Blocks of 8 output channels per weight window ([`KERNEL_1X1_WIDE`]'s).
        pub per_window: u32,
    }
}

/// Input channels one launch of [`KERNEL_1X1`] must sum (or the whole cin) for it to run: with fewer, each
/// chunk's read-modify-write of out (a per-lane storage access, which lavapipe makes lane by lane) weighs
/// against the few channels it sums. 64 channels are one window of a 16 x 16 map, four of a 32 x 32 map.
const ONE_BY_ONE_MIN_CHUNK: usize = 64;

/// x windows one launch of [`KERNEL_1X1`] binds (`xw0` .. `xw3`).
const X_WINDOWS: usize = 4;

/// How [`KERNEL_1X1`] cuts a 1x1 convolution into uniform windows. x is rows of `hw` floats (one channel of one
/// image), `rows` to a window. Where a window holds whole images, a launch takes `images` of them from one
/// window; else a launch takes one image's channels in chunks of `weights.chunk` (the chunks the weights are
/// packed in, at most four x windows each), in `weights.chunks` launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneByOne {
    pub hw: usize,
    pub rows: usize,
    pub images: usize,
    pub weights: PackGeometry,
}

impl OneByOne {
    /// The cut for `shape`, or `None` when [`KERNEL_1X1`] does not apply: not a 1x1 stride-1 unpadded
    /// convolution of a stored input, `hw` not a multiple of 8, launches of fewer than
    /// 64 channels, or windows that would not start at multiples of `align` (the
    /// device's uniform offset alignment) from x's start.
    pub fn new(shape: &ConvShape, align: u64) -> Option<Self> {
        let s = shape;
        let one = (s.kh, s.kw, s.stride, s.pad_top, s.pad_left, s.up) == (1, 1, 1, 0, 0, 0)
            && (s.ho, s.wo) == (s.h, s.w);
        let (cin, cout, hw) = (s.cin as usize, s.cout as usize, (s.h * s.w) as usize);
        if !one || hw == 0 || hw % 8 != 0 || cin == 0 {
            return None;
        }
        let rows = WINDOW_FLOATS / hw;
        let per_launch = if cin <= rows { cin } else { X_WINDOWS * rows };
        if per_launch < ONE_BY_ONE_MIN_CHUNK.min(cin) {
            return None;
        }
        let weights = PackGeometry::with_max_chunk(cout, cin, 1, per_launch)?;
        let images = if cin <= rows { rows / cin } else { 1 };
        let row_bytes = hw as u64 * 4;
        let steps = [
            images as u64 * cin as u64 * row_bytes,
            weights.chunk as u64 * row_bytes,
            rows as u64 * row_bytes,
        ];
        if align == 0 || steps.iter().any(|step| step % align != 0) {
            return None;
        }
        Some(OneByOne { hw, rows, images, weights })
    }

    /// Weight windows per launch on `gpu`: four ([`KERNEL_1X1_WIDE`]) where a chunk's weights take that many
    /// windows or more and the device binds the 8 windows, else 1 ([`KERNEL_1X1`]). With fewer the
    /// wide kernel's loops cost more than the launches they save (as for the Winograd products: 15% slower
    /// at one window).
    pub fn weights_per_launch(&self, gpu: &Gpu) -> usize {
        let w = &self.weights;
        let binds =
            gpu.limits().max_uniform_buffers_per_shader_stage as usize > X_WINDOWS + WIDE_WEIGHTS;
        if binds && w.blocks.div_ceil(w.blocks_per_window) >= WIDE_WEIGHTS {
            WIDE_WEIGHTS
        } else {
            1
        }
    }

    /// The cut the CPU family runs `shape` with on `gpu`: [`OneByOne::new`] where the device reads activations
    /// through uniform windows ([`crate::gpu::DeviceOptions::input_windows`], 64 KiB uniform bindings) and the
    /// packed weights fit its buffer limit.
    pub fn on(gpu: &Gpu, shape: &ConvShape) -> Option<Self> {
        let limits = gpu.limits();
        if !(gpu.input_windows() && has_uniform_windows(gpu)) {
            return None;
        }
        OneByOne::new(shape, limits.min_uniform_buffer_offset_alignment as u64)
            .filter(|g| g.weights.bytes() <= limits.max_buffer_size)
    }
}

/// The 1x1 path ([`KERNEL_1X1`]): packs the weights in chunks that match x's windows, then one launch per
/// (weight window, x window), an image's chunks in order. `None` when x's windows do not lie within its
/// buffer at aligned offsets (a tensor sized exactly, not an arena activation): the caller runs
/// [`storage_kernel_for`]'s kernel then.
pub(super) fn one_by_one(
    gpu: &Gpu,
    label: &str,
    geo: &OneByOne,
    o: &Operands<'_>,
) -> Result<Option<Dispatch>> {
    let shape = &o.shape;
    let (x, weight, bias, out) = (o.x, o.weight, o.bias, o.out);
    if !one_by_one_fits(gpu, shape, geo, x, out, 0..shape.batch as usize) {
        return Ok(None);
    }
    check_bindings(gpu, OP, &[weight, bias, out])?;
    let packed = pack_weights(gpu, label, weight, &geo.weights)?;
    let images = 0..shape.batch as usize;
    let d = one_by_one_launches(gpu, label, shape, geo, &packed, x, images, o)?;
    Ok(Some(d.owning(packed)))
}

/// Where [`one_by_one_launches`] binds x's windows for `images` (x holding image `images.start` at its
/// first row): one start per x window of each launch (the unused ones repeat the first), with the launch's
/// first image, its images and its chunk.
pub(super) fn one_by_one_windows(
    shape: &ConvShape,
    geo: &OneByOne,
    x: &Tensor,
    images: std::ops::Range<usize>,
) -> Vec<(usize, usize, usize, [u64; X_WINDOWS])> {
    let cin = shape.cin as usize;
    let w = &geo.weights;
    let row_bytes = geo.hw as u64 * 4;
    let mut windows = Vec::new();
    for n0 in images.clone().step_by(geo.images) {
        for q in 0..w.chunks {
            let ci0 = q * w.chunk;
            let first = ((n0 - images.start) * cin + ci0) as u64;
            let rows = window_starts::<X_WINDOWS>(first, w.chunk.min(cin - ci0), geo.rows);
            let starts = rows.map(|row| x.offset() + row * row_bytes);
            windows.push((n0, geo.images.min(images.end - n0), q, starts));
        }
    }
    windows
}

/// Whether x's windows for `images` lie within its buffer at aligned offsets, and out may be read and written
/// as vec4s.
pub(super) fn one_by_one_fits(
    gpu: &Gpu,
    shape: &ConvShape,
    geo: &OneByOne,
    x: &Tensor,
    out: &Tensor,
    images: std::ops::Range<usize>,
) -> bool {
    let windows = one_by_one_windows(shape, geo, x, images);
    let starts = windows.iter().flat_map(|(_, _, _, starts)| starts.iter().copied());
    windows_fit(gpu, x.buffer(), starts) && out.offset().is_multiple_of(16)
}

/// The launches of the 1x1 path over `images` of the batch, x holding image `images.start` at its first row,
/// with weights packed by [`pack_weights`] (whose buffer the caller keeps alive with the dispatch).
#[allow(clippy::too_many_arguments)]
pub(super) fn one_by_one_launches(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    geo: &OneByOne,
    packed: &wgpu::Buffer,
    x: &Tensor,
    images: std::ops::Range<usize>,
    e: &Operands<'_>,
) -> Result<Dispatch> {
    let cin = shape.cin as usize;
    let w = &geo.weights;
    let windows = one_by_one_windows(shape, geo, x, images);
    // Block groups (a weight window's blocks each) per launch: several with the wide kernel.
    let wide = geo.weights_per_launch(gpu);
    let groups = w.blocks.div_ceil(w.blocks_per_window);
    let mut launches = Vec::with_capacity(groups.div_ceil(wide) * windows.len());
    for group in (0..groups).step_by(wide) {
        let block0 = group * w.blocks_per_window;
        for &(n0, images, q, starts) in &windows {
            let ci0 = q * w.chunk;
            let params = OneByOneParams {
                cin: shape.cin,
                cout: shape.cout,
                hw: dim(OP, "hw", geo.hw)?,
                ci_count: dim(OP, "channels", w.chunk.min(cin - ci0))?,
                rows: dim(OP, "rows", geo.rows)?,
                chunk: dim(OP, "chunk", w.chunk)?,
                block0: dim(OP, "block", block0)?,
                blocks: dim(OP, "blocks", (wide * w.blocks_per_window).min(w.blocks - block0))?,
                n0: dim(OP, "image", n0)?,
                images: dim(OP, "images", images)?,
                first: (q == 0) as u32,
                last: (q + 1 == w.chunks) as u32,
                has_residual: e.residual.is_some() as u32,
                out_scale: e.cfg.out_scale,
                has_channel: e.channel.is_some() as u32,
                per_window: dim(OP, "blocks per window", w.blocks_per_window)?,
            };
            let pixel_groups = (images * geo.hw / 8).div_ceil(8);
            // The launch's weight windows: its groups' windows of chunk q (past the last group, the first).
            let weights: Vec<usize> = (group..group + wide)
                .map(|g| if g < groups { g } else { group } * w.chunks + q)
                .collect();
            launches.push((params, weights, starts, pixel_groups));
        }
    }
    let specs = launches
        .iter()
        .map(|(p, weights, starts, pixel_groups)| {
            let mut resources: Vec<_> =
                starts.iter().map(|&start| window_at(x.buffer(), start)).collect();
            resources.extend(weights.iter().map(|&window| window_binding(packed, window)));
            resources.extend([
                e.bias.binding(),
                e.residual.unwrap_or(e.bias).binding(),
                e.out.binding(),
                e.channel.unwrap_or(e.bias).binding(),
            ]);
            LaunchSpec {
                params: bytemuck::bytes_of(p),
                resources,
                workgroups: p.blocks as u64 * *pixel_groups as u64,
            }
        })
        .collect();
    let kernel = if wide > 1 { &KERNEL_1X1_WIDE } else { &KERNEL_1X1 };
    Dispatch::launches(gpu, kernel, OP, label, specs)
}
