//! 2-D convolution: NCHW, any kernel size and stride, padding per side, bias, and a fused epilogue
//! `(conv + bias + residual) * out_scale`.
//!
//! Several kernels, one result. `conv2d.wgsl` does every geometry (4 channels x 4 columns per invocation,
//! weights read from storage): the baseline. For CPU adapters, the Winograd convolution F(4x4, 3x3)
//! ([`winograd`]) does most 3x3 stride-1 convolutions, most of a UNet's arithmetic, in a quarter of the
//! multiply-adds; `conv2d_3x3.wgsl` does the others (few channels, or Winograd off), with 8 channels x 8 columns
//! per invocation and the weights read from 64 KiB uniform windows at addresses uniform across each workgroup,
//! and `conv2d_packed.wgsl` the same for any geometry; `conv2d_1x1.wgsl` reads x from uniform windows too, for
//! the 1x1 convolutions, and `conv2d_1x1_wide.wgsl` binds four weight windows per launch where there are that
//! many (a quarter of the launches, which lavapipe pays for one by one); `conv2d_pack.wgsl` lays the weights
//! out for them once, when the dispatch is prepared. Strided convolutions run as a 1x1 convolution over the
//! input's columns (`conv2d_im2col.wgsl`, [`Im2col`]) where the geometry allows.
//! For GPUs, `conv2d_tiled.wgsl` is an implicit GEMM over 64 x 64 shared-memory tiles, with K split over
//! several workgroups on small maps ([`SplitK`], `conv2d_split_reduce.wgsl`). [`kernel_for`] chooses by the
//! device's kernel family ([`KernelChoice`]).

use bytemuck::{Pod, Zeroable};

use super::winograd;
use super::{
    Access, Cost, Dispatch, Kernel, KernelChoice, LaunchSpec, UNIFORM_WINDOW, WINDOW_FLOATS,
    check_bindings, dim, dims, expect_shape, has_uniform_windows, nonzero, pack_into_windows,
    split_reduction, split_scratch_floats, window_at, window_binding, window_starts, windows_fit,
    windows_then, workgroups_for,
};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

const OP: &str = "conv2d";

/// `ConvShape`, shared by every convolution kernel.
pub const SHAPE: &str = include_str!("../../kernels/conv2d_shape.inc.wgsl");

/// The convolution loop shared with the DDIM-epilogue convolution (`ops::ddim::CONV_KERNEL`).
pub const ACCUMULATE: &str = include_str!("../../kernels/conv2d_accumulate.inc.wgsl");

/// The kernel.
pub const KERNEL: Kernel = Kernel {
    name: "conv2d",
    source: include_str!("../../kernels/conv2d.wgsl"),
    includes: &[SHAPE, ACCUMULATE],
    bindings: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::Read,
    ],
    workgroup_size: 64,
    params_size: std::mem::size_of::<Params>(),
};

/// The Params of [`KERNEL_TILED`] and [`KERNEL_SPLIT_REDUCE`] ([`TiledParams`]).
pub const TILED_PARAMS: &str = include_str!("../../kernels/conv2d_tiled_params.inc.wgsl");

/// The implicit GEMM over shared-memory tiles, for GPUs, whole or split along K ([`SplitK`]).
pub const KERNEL_TILED: Kernel = Kernel {
    name: "conv2d_tiled",
    source: include_str!("../../kernels/conv2d_tiled.wgsl"),
    includes: &[SHAPE, TILED_PARAMS],
    bindings: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::Read,
        Access::ReadWrite,
    ],
    workgroup_size: 256,
    params_size: std::mem::size_of::<TiledParams>(),
};

/// Adds the K slices of a split [`KERNEL_TILED`] convolution and applies the epilogue.
pub const KERNEL_SPLIT_REDUCE: Kernel = Kernel {
    name: "conv2d_split_reduce",
    source: include_str!("../../kernels/conv2d_split_reduce.wgsl"),
    includes: &[SHAPE, TILED_PARAMS],
    bindings: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
    workgroup_size: 256,
    params_size: std::mem::size_of::<TiledParams>(),
};

/// Output channels and pixels of one [`KERNEL_TILED`] workgroup's tile.
const TILE: usize = 64;

/// K per step of [`KERNEL_TILED`] (its `TK`): K slices are multiples of it.
const TILE_K: usize = 16;

/// Workgroups (tiles x K slices) [`SplitK`] aims for per image: about the multiprocessors of a large GPU (an
/// H200 has 132), so that a batch of two or more fills it whatever the map size.
pub const SPLIT_TARGET: usize = 128;

/// The least K one slice covers: at 128 (8 steps), writing and reading a slice's partial sums (8 bytes per
/// output) is 1/32 of its arithmetic (256 FLOP per output), well above any GPU's ridge point.
pub const SPLIT_MIN_K: usize = 128;

/// How a [`KERNEL_TILED`] convolution splits its K = cin x kh x kw: `splits` slices of `k_split` (a multiple of
/// 16; the last may be shorter), each image's tiles run once per slice, and [`KERNEL_SPLIT_REDUCE`] adds the
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
    /// The split of `shape` whose partial sums take at most `max_floats` per launch: as many slices as bring an
    /// image to [`SPLIT_TARGET`] workgroups, with at least [`SPLIT_MIN_K`] each, balanced; one slice (the whole
    /// sum in one launch) where that is one, or where one tile of partial sums would not fit.
    pub fn new(shape: &ConvShape, max_floats: usize) -> Self {
        let [n, cout, ho, wo] = shape.output_shape();
        let k = (shape.cin * shape.kh * shape.kw) as usize;
        let plane = ho * wo;
        let whole = SplitK {
            splits: 1,
            k_split: k.div_ceil(TILE_K) * TILE_K,
            pixels: n * plane,
        };
        let tiles = cout.div_ceil(TILE) * plane.div_ceil(TILE);
        let (splits, k_split) = split_reduction(k, tiles, SPLIT_TARGET, SPLIT_MIN_K, TILE_K);
        let pixels = max_floats / (splits * cout) / TILE * TILE;
        if splits == 1 || pixels == 0 {
            return whole;
        }
        SplitK {
            splits,
            k_split,
            pixels: pixels.min(n * plane),
        }
    }

    /// The split on this device: partial sums within [`super::SPLIT_SCRATCH_BYTES`] and its binding limits; one
    /// slice where the device was opened with split reductions off ([`crate::gpu::DeviceOptions::split_k`]).
    pub fn on(gpu: &Gpu, shape: &ConvShape) -> Self {
        Self::new(shape, split_scratch_floats(gpu))
    }
}

/// Mirrors `Params` in conv2d_tiled.wgsl and conv2d_split_reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct TiledParams {
    pub shape: ConvShape,
    pub has_residual: u32,
    pub out_scale: f32,
    pub has_channel: u32,
    pub splits: u32,
    pub k_split: u32,
    pub p_begin: u32,
    pub p_count: u32,
    pub _pad: u32,
}

/// The 8 x 8 accumulator block and its update, shared by the packed-weight kernels and the Winograd products.
pub const BLOCK: &str = include_str!("../../kernels/conv2d_block.inc.wgsl");

/// The epilogue of the convolutions whose input channels may come in chunks (conv2d_packed.inc.wgsl,
/// conv2d_1x1.wgsl).
pub const EPILOGUE: &str = include_str!("../../kernels/conv2d_epilogue.inc.wgsl");

/// What the packed-weight kernels share: Params, bindings, the store of the 8 x 8 block.
pub const PACKED_COMMON: &str = include_str!("../../kernels/conv2d_packed.inc.wgsl");

/// x, the packed weight window, bias, residual, out, channel offset (conv2d_packed.inc.wgsl).
const PACKED_BINDINGS: &[Access] = &[
    Access::Read,
    Access::UniformWindow,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::Read,
];

/// The 3x3 stride-1 kernel over packed weights.
pub const KERNEL_3X3: Kernel = Kernel {
    name: "conv2d_3x3",
    source: include_str!("../../kernels/conv2d_3x3.wgsl"),
    includes: &[SHAPE, BLOCK, EPILOGUE, PACKED_COMMON],
    bindings: PACKED_BINDINGS,
    workgroup_size: 32,
    params_size: std::mem::size_of::<PackedParams>(),
};

/// Any kernel size and stride over packed weights (1x1 shortcuts, stride-2 downsamplers).
pub const KERNEL_PACKED: Kernel = Kernel {
    name: "conv2d_packed",
    source: include_str!("../../kernels/conv2d_packed.wgsl"),
    includes: &[SHAPE, BLOCK, EPILOGUE, PACKED_COMMON],
    bindings: PACKED_BINDINGS,
    workgroup_size: 32,
    params_size: std::mem::size_of::<PackedParams>(),
};

/// What the two 1x1 kernels share: Params and the vec4 epilogue.
const ONE_BY_ONE: &str = include_str!("../../kernels/conv2d_1x1.inc.wgsl");

/// The 1x1 convolution with x and the packed weights both in uniform windows (conv2d_1x1.wgsl).
pub const KERNEL_1X1: Kernel = Kernel {
    name: "conv2d_1x1",
    source: include_str!("../../kernels/conv2d_1x1.wgsl"),
    includes: &[BLOCK, ONE_BY_ONE],
    bindings: &windows_then::<9>(
        5,
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Read],
    ),
    workgroup_size: 8,
    params_size: std::mem::size_of::<OneByOneParams>(),
};

/// [`KERNEL_1X1`] with four weight windows per launch (conv2d_1x1_wide.wgsl), where a chunk's weights take
/// that many windows or more ([`OneByOne::weights_per_launch`]).
pub const KERNEL_1X1_WIDE: Kernel = Kernel {
    name: "conv2d_1x1_wide",
    source: include_str!("../../kernels/conv2d_1x1_wide.wgsl"),
    includes: &[BLOCK, ONE_BY_ONE],
    bindings: &windows_then::<12>(
        8,
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Read],
    ),
    workgroup_size: 8,
    params_size: std::mem::size_of::<OneByOneParams>(),
};

/// Weight windows one launch of [`KERNEL_1X1_WIDE`] binds (`w0` .. `w3`).
const WIDE_WEIGHTS: usize = 4;

/// Lays a strided convolution's input out as matrix columns (conv2d_im2col.wgsl), which [`KERNEL_1X1`] or
/// [`KERNEL_1X1_WIDE`] then multiply by the weights ([`Im2col`]); the dispatch runs under this kernel's name,
/// the product included.
pub const KERNEL_IM2COL: Kernel = Kernel {
    name: "conv2d_im2col",
    source: include_str!("../../kernels/conv2d_im2col.wgsl"),
    includes: &[SHAPE],
    bindings: &[Access::Read, Access::ReadWrite],
    workgroup_size: 64,
    params_size: std::mem::size_of::<Im2colParams>(),
};

/// Mirrors `Params` in conv2d_im2col.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Im2colParams {
    pub shape: ConvShape,
    pub n0: u32,
    pub images: u32,
    pub _pad: [u32; 2],
}

/// The most bytes of columns [`Im2col`] writes at once (the device's scratch `conv2d columns`, with a window
/// of slack): the images run in groups that fit.
pub const IM2COL_SCRATCH_BYTES: u64 = 32 << 20;

/// Lays weights out in uniform windows for [`KERNEL_3X3`] and [`KERNEL_PACKED`].
pub const PACK_KERNEL: Kernel = Kernel {
    name: "conv2d_pack",
    source: include_str!("../../kernels/conv2d_pack.wgsl"),
    includes: &[],
    bindings: &[Access::Read, Access::ReadWrite],
    workgroup_size: 256,
    params_size: std::mem::size_of::<PackParams>(),
};

/// Mirrors `Params` in conv2d_packed.inc.wgsl (conv2d_3x3.wgsl and conv2d_packed.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PackedParams {
    pub shape: ConvShape,
    pub ci0: u32,
    pub ci_count: u32,
    pub block0: u32,
    pub blocks: u32,
    pub chunk: u32,
    pub first: u32,
    pub last: u32,
    pub has_residual: u32,
    pub out_scale: f32,
    pub has_channel: u32,
    pub _pad: [u32; 2],
}

/// Mirrors `Params` in conv2d_1x1.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
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

/// Mirrors `Params` in conv2d_pack.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PackParams {
    pub cout: u32,
    pub cin: u32,
    pub chunk: u32,
    pub chunks: u32,
    pub blocks_per_window: u32,
    pub window: u32,
    pub taps: u32,
    pub _pad: u32,
}

/// How weights `[cout, cin, kh, kw]` are cut into uniform windows: blocks of 8 output channels, input channels
/// in `chunks` chunks of `chunk` (the last may be shorter), `blocks_per_window` blocks per window. Window `w`
/// holds block group `w / chunks` and chunk `w % chunks`; one input channel of one block is `taps * 8` floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackGeometry {
    pub taps: usize,
    pub blocks: usize,
    pub chunk: usize,
    pub chunks: usize,
    pub blocks_per_window: usize,
    pub windows: usize,
}

impl PackGeometry {
    /// The cut for `cout` output and `cin` input channels and `taps` = kh * kw: the fewest chunks whose
    /// blocks fit a window, then as many blocks per window as fit. `None` when one input channel of one block
    /// does not fit a window (more than 2048 taps).
    pub fn new(cout: usize, cin: usize, taps: usize) -> Option<Self> {
        Self::with_max_chunk(cout, cin, taps, usize::MAX)
    }

    /// [`PackGeometry::new`] with chunks of at most `max_chunk` input channels.
    pub fn with_max_chunk(cout: usize, cin: usize, taps: usize, max_chunk: usize) -> Option<Self> {
        let per_channel = 8 * taps;
        let max_chunk = (WINDOW_FLOATS / per_channel).min(max_chunk);
        if max_chunk == 0 || cout == 0 || cin == 0 {
            return None;
        }
        let blocks = cout.div_ceil(8);
        let chunks = cin.div_ceil(max_chunk);
        let chunk = cin.div_ceil(chunks);
        let blocks_per_window = (WINDOW_FLOATS / (per_channel * chunk)).min(blocks);
        let windows = blocks.div_ceil(blocks_per_window) * chunks;
        Some(PackGeometry {
            taps,
            blocks,
            chunk,
            chunks,
            blocks_per_window,
            windows,
        })
    }

    /// Bytes of the packed weights.
    pub fn bytes(&self) -> u64 {
        self.windows as u64 * UNIFORM_WINDOW
    }
}

/// Mirrors `Params` in conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Params {
    pub shape: ConvShape,
    pub has_residual: u32,
    pub out_scale: f32,
    pub has_channel: u32,
    pub _pad: u32,
}

/// Padding per side, in pixels. diffusers' Downsample2D with `padding=0` pads only bottom and right by 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides.
    pub fn uniform(p: usize) -> Self {
        Padding {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }
}

/// Geometry of a convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: Padding,
    /// Multiplies the result after bias and residual (diffusers' `1 / output_scale_factor`).
    pub out_scale: f32,
    /// Read the input upsampled 2x by nearest neighbour (diffusers' Upsample2D: interpolate, then this
    /// convolution), without storing the upsampled tensor: the geometry is that of the upsampled input.
    pub upsample: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: 1,
            padding: Padding::default(),
            out_scale: 1.0,
            upsample: false,
        }
    }
}

/// The output spatial size of a convolution, or an error if the window does not fit.
pub fn output_size(
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    cfg: &Conv2dConfig,
) -> Result<(usize, usize)> {
    if cfg.stride == 0 {
        return Err(Error::param(OP, "stride is 0"));
    }
    let ph = h + cfg.padding.top + cfg.padding.bottom;
    let pw = w + cfg.padding.left + cfg.padding.right;
    if ph < kh || pw < kw {
        return Err(Error::shape(
            OP,
            format!("a {kh}x{kw} kernel does not fit a padded {ph}x{pw} input"),
        ));
    }
    Ok(((ph - kh) / cfg.stride + 1, (pw - kw) / cfg.stride + 1))
}

/// The shape part of a convolution's Params, mirrored from `ConvShape` in conv2d_accumulate.inc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ConvShape {
    pub batch: u32,
    pub cin: u32,
    pub h: u32,
    pub w: u32,
    pub cout: u32,
    pub ho: u32,
    pub wo: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    /// 1 when the input is read upsampled 2x (h and w are then the upsampled size).
    pub up: u32,
    pub _pad: [u32; 3],
}

impl ConvShape {
    /// Validates x `[N, Cin, H, W]`, weight `[Cout, Cin, KH, KW]` and bias `[Cout]` against `cfg`; `op` names
    /// the caller in errors. The output shape is `[N, Cout, ho, wo]`.
    pub(crate) fn new(
        op: &'static str,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        cfg: &Conv2dConfig,
    ) -> Result<Self> {
        let [n, cin, h, w] = dims::<4>(op, x)?;
        let [cout, wcin, kh, kw] = dims::<4>(op, weight)?;
        for (what, v) in [
            ("batch", n),
            ("input channels", cin),
            ("height", h),
            ("width", w),
        ] {
            nonzero(op, what, v)?;
        }
        for (what, v) in [
            ("output channels", cout),
            ("kernel height", kh),
            ("kernel width", kw),
        ] {
            nonzero(op, what, v)?;
        }
        if wcin != cin {
            return Err(Error::shape(
                op,
                format!(
                    "weight `{}` {:?} expects {wcin} input channels but `{}` has {cin}",
                    weight.label(),
                    weight.shape(),
                    x.label()
                ),
            ));
        }
        expect_shape(op, bias, &[cout])?;
        let up = cfg.upsample as usize;
        let (h, w) = (h << up, w << up);
        let (ho, wo) = output_size(h, w, kh, kw, cfg)?;
        Ok(ConvShape {
            batch: dim(op, "batch", n)?,
            cin: dim(op, "cin", cin)?,
            h: dim(op, "h", h)?,
            w: dim(op, "w", w)?,
            cout: dim(op, "cout", cout)?,
            ho: dim(op, "ho", ho)?,
            wo: dim(op, "wo", wo)?,
            kh: dim(op, "kh", kh)?,
            kw: dim(op, "kw", kw)?,
            stride: dim(op, "stride", cfg.stride)?,
            pad_top: dim(op, "pad_top", cfg.padding.top)?,
            pad_left: dim(op, "pad_left", cfg.padding.left)?,
            up: up as u32,
            _pad: [0; 3],
        })
    }

    /// `[N, Cout, Ho, Wo]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.cout, self.ho, self.wo].map(|v| v as usize)
    }

    /// Workgroups for one invocation per 4 x 4 block.
    pub(crate) fn workgroups(&self) -> u64 {
        let [n, cout, ho, wo] = self.output_shape();
        workgroups_for(
            (n * cout.div_ceil(4) * ho * wo.div_ceil(4)) as u64,
            KERNEL.workgroup_size,
        )
    }

    /// Multiply-adds x 2.
    pub(crate) fn flops(&self) -> u64 {
        let [n, cout, ho, wo] = self.output_shape();
        2 * (n * cout * ho * wo) as u64 * (self.cin * self.kh * self.kw) as u64
    }
}

/// The kernel [`conv2d`] runs for this geometry on this device (for the Winograd convolution, the kernel of its
/// products, [`winograd::products_kernel`]). The GPU family: `conv2d_tiled`. The CPU family, where 64 KiB uniform
/// and storage bindings exist: the Winograd convolution for 3x3 stride-1 convolutions with at least 16 input
/// and output channels; `conv2d_1x1` for 1x1 stride-1 unpadded convolutions whose input windows hold at least
/// 64 channels ([`OneByOne`]; `conv2d_1x1_wide` where a chunk's weights take four windows or more; an x
/// without room for its windows runs what follows instead); `conv2d_im2col` for strided convolutions whose
/// columns that product can take ([`Im2col`]); else, where the
/// packed weights fit the buffer limit and each output image has at least 8 blocks of 8 columns, `conv2d_3x3`
/// for 3x3 stride 1 and `conv2d_packed` for the others; `conv2d` everywhere else, and in the baseline. The
/// choice never depends on the batch size, so an image is computed by the same kernels (and rounded the same
/// way) however a batch is split; the one exception, the Winograd products' four kernels (V from storage or from
/// uniform windows, one or several weight windows per launch, by tile group size), make the same sums in the
/// same order, bit for bit.
pub fn kernel_for(gpu: &Gpu, shape: &ConvShape) -> &'static Kernel {
    match gpu.kernel_family() {
        KernelChoice::Cpu => cpu_kernel_for(gpu, shape),
        KernelChoice::Gpu => gpu_kernel_for(gpu),
        _ => &KERNEL,
    }
}

/// Workgroup memory [`KERNEL_TILED`] declares, in bytes (528 vectors of 4 floats).
const TILED_WORKGROUP_BYTES: u32 = 528 * 16;

/// The GPU family: `conv2d_tiled` for every geometry wherever the device allows its 256-invocation workgroups
/// with 8.25 KiB of workgroup memory (wgpu's default limits do), `conv2d` otherwise. Shape-independent, so every
/// test shape proves the kernel that runs. On an H200 (BENCHMARKS.md, "On a real GPU") it runs the CIFAR-10
/// UNet's 3x3 convolutions at batch 8 4.06x faster than `conv2d` and 130x faster than the CPU family's Winograd
/// convolution (28.5% of its FMA roof).
fn gpu_kernel_for(gpu: &Gpu) -> &'static Kernel {
    let limits = gpu.limits();
    let fits = limits.max_compute_invocations_per_workgroup >= KERNEL_TILED.workgroup_size
        && limits.max_compute_workgroup_size_x >= KERNEL_TILED.workgroup_size
        && limits.max_compute_workgroup_storage_size >= TILED_WORKGROUP_BYTES;
    if fits { &KERNEL_TILED } else { &KERNEL }
}

/// The CPU family: the 1x1 convolution over uniform windows where it applies ([`OneByOne`]), else
/// [`storage_kernel_for`].
fn cpu_kernel_for(gpu: &Gpu, shape: &ConvShape) -> &'static Kernel {
    if Im2col::on(gpu, shape).is_some() {
        &KERNEL_IM2COL
    } else if let Some(geo) = OneByOne::on(gpu, shape) {
        if geo.weights_per_launch(gpu) > 1 {
            &KERNEL_1X1_WIDE
        } else {
            &KERNEL_1X1
        }
    } else {
        storage_kernel_for(gpu, shape)
    }
}

/// The CPU family's kernels that read x from storage: the packed kernels where they have enough work,
/// `conv2d` elsewhere. Also what a convolution picked for [`KERNEL_1X1`] runs when its x has no room for
/// windows (a tensor sized exactly rather than an activation in an arena).
fn storage_kernel_for(gpu: &Gpu, shape: &ConvShape) -> &'static Kernel {
    let limits = gpu.limits();
    let taps = (shape.kh * shape.kw) as usize;
    let fits = PackGeometry::new(shape.cout as usize, shape.cin as usize, taps)
        .is_some_and(|g| g.bytes() <= limits.max_buffer_size);
    // Below 8 blocks of 8 output columns per image, a launch (one per weight window) has too little work and
    // the launches run one after another: on lavapipe the general kernel is faster there (measured with
    // examples/conv_study.rs at batch 8: 0.86x at 4x4, 4 blocks per image; 3.5x at 8x8, 8 blocks per image).
    // Per image, not per batch: a batch-dependent choice would change an image's rounding with the batch.
    let [_, _, ho, wo] = shape.output_shape();
    let busy = ho * wo.div_ceil(8) >= 8;
    let windows = has_uniform_windows(gpu);
    if let Some(tiling) = winograd_tiling(gpu, shape).filter(|_| windows) {
        winograd::products_kernel(gpu, shape, &tiling)
    } else if !(fits && busy && windows) {
        &KERNEL
    } else if shape.kh == 3 && shape.kw == 3 && shape.stride == 1 {
        &KERNEL_3X3
    } else {
        &KERNEL_PACKED
    }
}

/// Input and output channels from which the CPU family takes the Winograd convolution over `conv2d_3x3`. Below,
/// the transforms outweigh the products: measured with examples/conv_study.rs (BENCHMARKS.md), a UNet's first
/// convolution (1 or 3 input channels) runs 3-10x slower as Winograd; from 32 channels it gains 1.6-2.4x at
/// batch 64 (the MNIST model's shapes), 1.6-3.0x at batch 8 (the CIFAR-10 model's, 4x4 to 32x32 maps) and
/// 1.1-1.7x for the MNIST model's at batch 8, where each launch's fixed cost weighs most.
const WINOGRAD_MIN_CHANNELS: u32 = 16;

/// The tiling of this 3x3 stride-1 convolution where the Winograd convolution takes it: enough input and
/// output channels, the input channels of a unit in one weight window, one image's transformed tiles within
/// the scratch limit and the transformed weights within the buffer limit. Per image, never per batch.
fn winograd_tiling(gpu: &Gpu, shape: &ConvShape) -> Option<winograd::Tiling> {
    let fits = gpu.winograd()
        && shape.cin.min(shape.cout) >= WINOGRAD_MIN_CHANNELS
        && winograd::packed_bytes(shape.cout as usize, shape.cin as usize)
            .is_some_and(|bytes| bytes <= gpu.limits().max_buffer_size);
    fits.then(|| winograd::Tiling::on(gpu, shape)).flatten()
}

/// Prepares `out = (conv(x, weight) + bias + residual) * out_scale`, with the kernel [`kernel_for`] picks.
///
/// Shapes: x `[N, Cin, H, W]`, weight `[Cout, Cin, KH, KW]`, bias `[Cout]`, residual and out `[N, Cout, Ho, Wo]`.
/// The packed kernels pack the weights now, on the GPU: writing `weight` afterwards does not change what this
/// dispatch computes (prepare it again).
#[allow(clippy::too_many_arguments)] // the operands of one convolution; grouping them would only rename them
pub fn conv2d(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    conv2d_with_channel(gpu, label, x, weight, bias, None, residual, out, cfg)
}

/// [`conv2d`] with a per-image channel offset `channel` `[N, Cout]` added with the bias:
/// `out = (conv(x, weight) + bias + channel + residual) * out_scale` (a ResNet block's conv1 and its time
/// embedding, in one dispatch).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_with_channel(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    channel: Option<&Tensor>,
    residual: Option<&Tensor>,
    out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    let shape = ConvShape::new(OP, x, weight, bias, cfg)?;
    expect_shape(OP, out, &shape.output_shape())?;
    if let Some(r) = residual {
        expect_shape(OP, r, out.shape())?;
    }
    if let Some(c) = channel {
        expect_shape(OP, c, &[shape.batch as usize, shape.cout as usize])?;
    }
    let floats = x.len()
        + weight.len()
        + bias.len()
        + channel.map_or(0, |c| c.len())
        + out.len() * (1 + residual.is_some() as usize);
    let cost = Cost::new(shape.flops(), floats as u64);
    let kernel = kernel_for(gpu, &shape);
    let products = [
        &winograd::GEMM_KERNEL,
        &winograd::GEMM_WINDOWED_KERNEL,
        &winograd::GEMM_WIDE_KERNEL,
        &winograd::GEMM_WINDOWED_WIDE_KERNEL,
    ];
    if products.iter().any(|k| k.name == kernel.name) {
        let tiling = winograd::Tiling::on(gpu, &shape)
            .ok_or_else(|| Error::shape(OP, format!("`{label}`: no Winograd tiling")))?;
        let dispatch = winograd::conv2d(
            gpu,
            label,
            &shape,
            &tiling,
            x,
            weight,
            bias,
            channel,
            residual,
            out,
            cfg.out_scale,
        )?;
        return Ok(dispatch.with_cost(Cost::new(winograd::flops(&shape, &tiling), floats as u64)));
    }
    let mut kernel = kernel;
    if let Some(cut) = Im2col::on(gpu, &shape).filter(|_| kernel.name == KERNEL_IM2COL.name) {
        let e = Epilogue {
            bias,
            channel,
            residual,
            out,
            cfg,
        };
        match im2col(gpu, label, &shape, &cut, x, weight, &e)? {
            Some(d) => return Ok(d.with_cost(cost)),
            None => kernel = storage_kernel_for(gpu, &shape),
        }
    }
    let one_by_one_kernels = [KERNEL_1X1.name, KERNEL_1X1_WIDE.name];
    if let Some(geo) =
        OneByOne::on(gpu, &shape).filter(|_| one_by_one_kernels.contains(&kernel.name))
    {
        let dispatch = one_by_one(
            gpu, label, &shape, &geo, x, weight, bias, channel, residual, out, cfg,
        )?;
        match dispatch {
            Some(d) => return Ok(d.with_cost(cost)),
            None => kernel = storage_kernel_for(gpu, &shape),
        }
    }
    let dispatch = if kernel.name == KERNEL_3X3.name || kernel.name == KERNEL_PACKED.name {
        packed(
            gpu, kernel, label, &shape, x, weight, bias, channel, residual, out, cfg,
        )?
    } else if kernel.name == KERNEL_TILED.name {
        tiled(
            gpu, label, &shape, x, weight, bias, channel, residual, out, cfg,
        )?
    } else {
        let params = Params {
            shape,
            has_residual: residual.is_some() as u32,
            out_scale: cfg.out_scale,
            has_channel: channel.is_some() as u32,
            _pad: 0,
        };
        Dispatch::new(
            gpu,
            kernel,
            OP,
            label,
            &params,
            &[
                x,
                weight,
                bias,
                residual.unwrap_or(x),
                out,
                channel.unwrap_or(bias),
            ],
            shape.workgroups(),
        )?
    };
    Ok(dispatch.with_cost(cost))
}

/// The shared-memory path: [`KERNEL_TILED`] over the whole K, or over [`SplitK`] slices into the device's
/// scratch buffer followed by [`KERNEL_SPLIT_REDUCE`], one pair of launches per group of pixels.
#[allow(clippy::too_many_arguments)]
fn tiled(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    channel: Option<&Tensor>,
    residual: Option<&Tensor>,
    out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    let split = SplitK::on(gpu, shape);
    let [n, cout, ho, wo] = shape.output_shape();
    let total = n * ho * wo;
    // Unsplit, the kernel writes no partial sums: any scratch tensor fills the binding.
    let part = gpu.scratch(
        "conv2d split sums",
        &[if split.splits > 1 {
            split.splits * cout * split.pixels
        } else {
            1
        }],
    )?;
    let launch = |p_begin: usize| -> Result<Dispatch> {
        let p_count = split.pixels.min(total - p_begin);
        let params = TiledParams {
            shape: *shape,
            has_residual: residual.is_some() as u32,
            out_scale: cfg.out_scale,
            has_channel: channel.is_some() as u32,
            splits: dim(OP, "K slices", split.splits)?,
            k_split: dim(OP, "K per slice", split.k_split)?,
            p_begin: dim(OP, "first pixel", p_begin)?,
            p_count: dim(OP, "pixels", p_count)?,
            _pad: 0,
        };
        let tiles = cout.div_ceil(TILE) * p_count.div_ceil(TILE);
        let mut part_dispatch = Dispatch::new(
            gpu,
            &KERNEL_TILED,
            OP,
            label,
            &params,
            &[
                x,
                weight,
                bias,
                residual.unwrap_or(x),
                out,
                channel.unwrap_or(bias),
                &part,
            ],
            (split.splits * tiles) as u64,
        )?;
        if split.splits > 1 {
            part_dispatch = part_dispatch.then(Dispatch::new(
                gpu,
                &KERNEL_SPLIT_REDUCE,
                OP,
                label,
                &params,
                &[
                    &part,
                    bias,
                    channel.unwrap_or(bias),
                    residual.unwrap_or(bias),
                    out,
                ],
                workgroups_for((cout * p_count) as u64, KERNEL_SPLIT_REDUCE.workgroup_size),
            )?);
        }
        Ok(part_dispatch)
    };
    Dispatch::sequence(OP, label, (0..total).step_by(split.pixels).map(launch))
}

/// The packed-weight path: packs the weights, then one launch per window, chunks of a block group in order.
#[allow(clippy::too_many_arguments)]
fn packed(
    gpu: &Gpu,
    kernel: &'static Kernel,
    label: &str,
    shape: &ConvShape,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    channel: Option<&Tensor>,
    residual: Option<&Tensor>,
    out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    let (cout, cin) = (shape.cout as usize, shape.cin as usize);
    let taps = (shape.kh * shape.kw) as usize;
    let geo = PackGeometry::new(cout, cin, taps).ok_or_else(|| {
        Error::shape(
            OP,
            format!("`{label}`: {taps} taps do not fit a weight window"),
        )
    })?;
    check_bindings(gpu, OP, &[x, weight, bias, out])?;
    let packed = pack_weights(gpu, label, weight, &geo)?;

    let [n, _, ho, wo] = shape.output_shape();
    let tiles = workgroups_for((n * ho * wo.div_ceil(8)) as u64, kernel.workgroup_size);
    let mut params = Vec::with_capacity(geo.windows);
    for w in 0..geo.windows {
        let (group, q) = (w / geo.chunks, w % geo.chunks);
        let block0 = group * geo.blocks_per_window;
        let ci0 = q * geo.chunk;
        params.push(PackedParams {
            shape: *shape,
            ci0: ci0 as u32,
            ci_count: geo.chunk.min(cin - ci0) as u32,
            block0: block0 as u32,
            blocks: geo.blocks_per_window.min(geo.blocks - block0) as u32,
            chunk: geo.chunk as u32,
            first: (q == 0) as u32,
            last: (q + 1 == geo.chunks) as u32,
            has_residual: residual.is_some() as u32,
            out_scale: cfg.out_scale,
            has_channel: channel.is_some() as u32,
            _pad: [0; 2],
        });
    }
    let specs = params
        .iter()
        .enumerate()
        .map(|(w, p)| LaunchSpec {
            params: bytemuck::bytes_of(p),
            resources: vec![
                x.binding(),
                window_binding(&packed, w),
                bias.binding(),
                residual.unwrap_or(x).binding(),
                out.binding(),
                channel.unwrap_or(bias).binding(),
            ],
            workgroups: p.blocks as u64 * tiles,
        })
        .collect();
    Ok(Dispatch::launches(gpu, kernel, OP, label, specs)?.owning(packed))
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
        Some(OneByOne {
            hw,
            rows,
            images,
            weights,
        })
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

/// How the CPU family runs a strided convolution as a matrix product (im2col): [`KERNEL_IM2COL`] writes the
/// columns of `images` images at a time (`[images, cin * kh * kw, ho * wo]`, within
/// [`IM2COL_SCRATCH_BYTES`]) and the 1x1 path ([`OneByOne`]) multiplies them by the weights read as
/// `[cout, cin * kh * kw]`, both operands from uniform windows. `conv2d_packed` gathers 8 inputs per 64
/// multiply-adds from storage, lane by lane on lavapipe; the product reads its columns at 2 uniform-buffer
/// gathers per 64.
#[derive(Clone, Copy, Debug)]
pub struct Im2col {
    /// The 1x1 convolution over the columns.
    pub columns: ConvShape,
    /// Its cut into windows.
    pub product: OneByOne,
    /// Images per group.
    pub images: usize,
}

impl Im2col {
    /// The cut for `shape` on `gpu`, or `None` where it does not apply: stride 1 (the Winograd and 3x3 kernels
    /// take those), output rows not a multiple of 4 floats, one image's columns over the scratch limit (or the
    /// device's storage-binding limit), or a product [`OneByOne::on`] refuses. Per image, never per batch; a
    /// smaller binding limit makes smaller groups of images, and changes the choice only where one image's
    /// columns exceed it.
    pub fn on(gpu: &Gpu, shape: &ConvShape) -> Option<Self> {
        if shape.stride < 2 || !shape.wo.is_multiple_of(4) {
            return None;
        }
        let rows = shape.cin.checked_mul(shape.kh * shape.kw)?;
        let columns = ConvShape {
            cin: rows,
            h: shape.ho,
            w: shape.wo,
            kh: 1,
            kw: 1,
            stride: 1,
            pad_top: 0,
            pad_left: 0,
            up: 0,
            ..*shape
        };
        // The columns are bound as storage (the window of slack past them is not), and the buffer holds both.
        let limits = gpu.limits();
        let limit = IM2COL_SCRATCH_BYTES
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size.saturating_sub(UNIFORM_WINDOW));
        let per_image = rows as u64 * (shape.ho * shape.wo) as u64 * 4;
        let images = (limit / per_image.max(1)) as usize;
        if images == 0 {
            return None;
        }
        let product = OneByOne::on(gpu, &columns)?;
        Some(Im2col {
            columns,
            product,
            images,
        })
    }
}

/// Prepares [`KERNEL_IM2COL`]: the columns of the convolution `shape` for `images` of its batch, x
/// `[N, Cin, H, W]` (H and W halved when `shape.up`) into cols `[images, cin * kh * kw, ho, wo]`. wo must be a
/// multiple of 4 and cols must start at a multiple of 16 bytes (it is written as vec4s).
pub fn lay_columns(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    x: &Tensor,
    cols: &Tensor,
    images: std::ops::Range<usize>,
) -> Result<Dispatch> {
    let s = shape;
    let stored = [s.batch, s.cin, s.h >> s.up, s.w >> s.up].map(|d| d as usize);
    expect_shape(OP, x, &stored)?;
    let rows = (s.cin * s.kh * s.kw) as usize;
    expect_shape(
        OP,
        cols,
        &[images.len(), rows, s.ho as usize, s.wo as usize],
    )?;
    if images.end > s.batch as usize || !s.wo.is_multiple_of(4) || !cols.offset().is_multiple_of(16)
    {
        return Err(Error::shape(
            OP,
            format!(
                "`{label}`: columns of images {images:?} of {} with {} output columns into `{}` at byte {}: \
                 need whole images, a multiple of 4 columns and a 16-byte-aligned tensor",
                s.batch,
                s.wo,
                cols.label(),
                cols.offset()
            ),
        ));
    }
    let params = Im2colParams {
        shape: *shape,
        n0: dim(OP, "image", images.start)?,
        images: dim(OP, "images", images.len())?,
        _pad: [0; 2],
    };
    let invocations = (images.len() * rows * s.ho as usize) as u64;
    Dispatch::new(
        gpu,
        &KERNEL_IM2COL,
        OP,
        label,
        &params,
        &[x, cols],
        workgroups_for(invocations, KERNEL_IM2COL.workgroup_size),
    )
}

/// The im2col path ([`Im2col`]): the weights packed once, then per group of images the columns and their
/// product. `None` where the columns' windows would not start at aligned offsets.
#[allow(clippy::too_many_arguments)]
fn im2col(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    cut: &Im2col,
    x: &Tensor,
    weight: &Tensor,
    e: &Epilogue<'_>,
) -> Result<Option<Dispatch>> {
    let c = &cut.columns;
    let (n, rows, hw) = (shape.batch as usize, c.cin as usize, (c.h * c.w) as usize);
    let group = cut.images.min(n);
    let floats = group * rows * hw;
    let scratch = gpu.scratch("conv2d columns", &[floats + WINDOW_FLOATS])?;
    let columns = |images: usize| {
        scratch.view(
            "conv2d columns",
            &[images, rows, c.h as usize, c.w as usize],
        )
    };
    let groups: Vec<std::ops::Range<usize>> = (0..n)
        .step_by(group)
        .map(|n0| n0..(n0 + group).min(n))
        .collect();
    for g in &groups {
        if !one_by_one_fits(gpu, c, &cut.product, &columns(g.len())?, e.out, g.clone()) {
            return Ok(None);
        }
    }
    // The columns are bound without the slack past them; the first group is the largest.
    check_bindings(gpu, OP, &[x, weight, e.bias, e.out, &columns(group)?])?;
    let w2 = weight.view(weight.label(), &[c.cout as usize, rows, 1, 1])?;
    let packed = pack_weights(gpu, label, &w2, &cut.product.weights)?;
    let part = |g: &std::ops::Range<usize>| -> Result<Dispatch> {
        let cols = columns(g.len())?;
        let lay = lay_columns(gpu, label, shape, x, &cols, g.clone())?;
        let product =
            one_by_one_launches(gpu, label, c, &cut.product, &packed, &cols, g.clone(), e)?;
        Ok(lay.then(product))
    };
    let d = Dispatch::sequence(OP, label, groups.iter().map(part))?;
    Ok(Some(d.owning(packed)))
}

/// The 1x1 path ([`KERNEL_1X1`]): packs the weights in chunks that match x's windows, then one launch per
/// (weight window, x window), an image's chunks in order. `None` when x's windows do not lie within its
/// buffer at aligned offsets (a tensor sized exactly, not an arena activation): the caller runs
/// [`storage_kernel_for`]'s kernel then.
#[allow(clippy::too_many_arguments)]
fn one_by_one(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    geo: &OneByOne,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    channel: Option<&Tensor>,
    residual: Option<&Tensor>,
    out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<Option<Dispatch>> {
    if !one_by_one_fits(gpu, shape, geo, x, out, 0..shape.batch as usize) {
        return Ok(None);
    }
    check_bindings(gpu, OP, &[weight, bias, out])?;
    let packed = pack_weights(gpu, label, weight, &geo.weights)?;
    let operands = Epilogue {
        bias,
        channel,
        residual,
        out,
        cfg,
    };
    let images = 0..shape.batch as usize;
    let d = one_by_one_launches(gpu, label, shape, geo, &packed, x, images, &operands)?;
    Ok(Some(d.owning(packed)))
}

/// The operands of a convolution's epilogue.
struct Epilogue<'a> {
    bias: &'a Tensor,
    channel: Option<&'a Tensor>,
    residual: Option<&'a Tensor>,
    out: &'a Tensor,
    cfg: &'a Conv2dConfig,
}

/// Where [`one_by_one_launches`] binds x's windows for `images` (x holding image `images.start` at its
/// first row): one start per x window of each launch (the unused ones repeat the first), with the launch's
/// first image, its images and its chunk.
fn one_by_one_windows(
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
fn one_by_one_fits(
    gpu: &Gpu,
    shape: &ConvShape,
    geo: &OneByOne,
    x: &Tensor,
    out: &Tensor,
    images: std::ops::Range<usize>,
) -> bool {
    let windows = one_by_one_windows(shape, geo, x, images);
    let starts = windows
        .iter()
        .flat_map(|(_, _, _, starts)| starts.iter().copied());
    windows_fit(gpu, x.buffer(), starts) && out.offset().is_multiple_of(16)
}

/// The launches of the 1x1 path over `images` of the batch, x holding image `images.start` at its first row,
/// with weights packed by [`pack_weights`] (whose buffer the caller keeps alive with the dispatch).
#[allow(clippy::too_many_arguments)]
fn one_by_one_launches(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    geo: &OneByOne,
    packed: &wgpu::Buffer,
    x: &Tensor,
    images: std::ops::Range<usize>,
    e: &Epilogue<'_>,
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
                blocks: dim(
                    OP,
                    "blocks",
                    (wide * w.blocks_per_window).min(w.blocks - block0),
                )?,
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
            let mut resources: Vec<_> = starts
                .iter()
                .map(|&start| window_at(x.buffer(), start))
                .collect();
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
    let kernel = if wide > 1 {
        &KERNEL_1X1_WIDE
    } else {
        &KERNEL_1X1
    };
    Dispatch::launches(gpu, kernel, OP, label, specs)
}

/// Packs `weight` `[cout, cin, kh, kw]` into `geo.windows` uniform windows (conv2d_pack.wgsl), and waits.
fn pack_weights(
    gpu: &Gpu,
    label: &str,
    weight: &Tensor,
    geo: &PackGeometry,
) -> Result<wgpu::Buffer> {
    let [cout, cin, _, _] = dims::<4>(OP, weight)?;
    let params = (0..geo.windows)
        .map(|w| {
            Ok(PackParams {
                cout: dim(OP, "cout", cout)?,
                cin: dim(OP, "cin", cin)?,
                chunk: dim(OP, "chunk", geo.chunk)?,
                chunks: dim(OP, "chunks", geo.chunks)?,
                blocks_per_window: dim(OP, "blocks per window", geo.blocks_per_window)?,
                window: dim(OP, "window", w)?,
                taps: dim(OP, "taps", geo.taps)?,
                _pad: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let what = format!("packing the weights of `{label}`");
    pack_into_windows(gpu, OP, &what, &PACK_KERNEL, weight, &params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_geometry_fills_windows_and_never_overflows_one() {
        let g = PackGeometry::new(256, 256, 9).unwrap();
        assert_eq!(
            (g.blocks, g.chunk, g.chunks, g.blocks_per_window, g.windows),
            (32, 128, 2, 1, 64)
        );
        let g = PackGeometry::new(100, 20, 9).unwrap();
        assert_eq!(
            (g.blocks, g.chunk, g.chunks, g.blocks_per_window, g.windows),
            (13, 20, 1, 11, 2)
        );
        let g = PackGeometry::new(256, 512, 1).unwrap();
        assert_eq!(
            (g.chunk, g.chunks, g.blocks_per_window, g.windows),
            (512, 1, 4, 8)
        );
        assert_eq!(PackGeometry::new(8, 1, 2049), None);
        for cin in 1..2000 {
            for (cout, taps) in [(1, 9), (7, 1), (8, 9), (9, 4), (128, 9), (1000, 25)] {
                let g = PackGeometry::new(cout, cin, taps).unwrap();
                assert!(g.blocks_per_window * g.chunk * taps * 8 <= WINDOW_FLOATS);
                assert!(g.chunk * g.chunks >= cin && g.chunk * (g.chunks - 1) < cin);
                assert!(g.blocks_per_window >= 1 && g.blocks_per_window <= g.blocks);
                assert_eq!(g.windows, g.blocks.div_ceil(g.blocks_per_window) * g.chunks);
            }
        }
    }
}
