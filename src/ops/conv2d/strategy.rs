//! Which convolution runs: [`kernel_for`] picks a kernel from the device's family and one image's geometry
//! (never the batch), and [`conv2d`] prepares it.

use super::direct::{self, KERNEL};
use super::im2col::{Im2col, KERNEL_IM2COL, im2col};
use super::one_by_one::{KERNEL_1X1, KERNEL_1X1_WIDE, OneByOne, one_by_one};
use super::packed::{KERNEL_3X3, KERNEL_PACKED, PackGeometry, packed};
use super::shape::{ChannelSlice, Conv2dConfig, ConvShape, OP, Operands};
use super::tiled::{KERNEL_TILED, KERNEL_TILED_8X8, TileShape, tiled};
use super::winograd;
use crate::error::{Error, Result};
use crate::gpu::check::expect_shape;
use crate::gpu::windows::has_uniform_windows;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, KernelChoice, Tensor};

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

/// The GPU family: `conv2d_tiled` (or, on a device opened with
/// [`conv_tile_8x8`](crate::gpu::DeviceOptions::conv_tile_8x8), `conv2d_tiled_8x8`) for every geometry
/// wherever the device allows its 256-invocation workgroups with its workgroup memory (8.25 KiB; wgpu's
/// default limits allow 16), `conv2d` otherwise. Shape-independent, so every test shape proves the kernel that
/// runs. On a real GPU `conv2d_tiled` beats both `conv2d` and the CPU family's kernels by a wide margin
/// (BENCHMARKS.md, "On a real GPU").
pub(super) fn gpu_kernel_for(gpu: &Gpu) -> &'static Kernel {
    let limits = gpu.limits();
    let tile = TileShape::on(gpu);
    let kernel = if tile == TileShape::LARGE { &KERNEL_TILED_8X8 } else { &KERNEL_TILED };
    let fits = limits.max_compute_invocations_per_workgroup >= kernel.workgroup_size
        && limits.max_compute_workgroup_size_x >= kernel.workgroup_size
        && limits.max_compute_workgroup_storage_size >= tile.workgroup_bytes();
    if fits { kernel } else { &KERNEL }
}

/// The CPU family: the 1x1 convolution over uniform windows where it applies ([`OneByOne`]), else
/// [`storage_kernel_for`]. `conv2d_1x1` (also the product of `conv2d_im2col`) reads a channel vector only as a
/// whole `[N, Cout]` tensor (its epilogue indexes `n * cout + co`; addressing a slice there slowed the whole
/// kernel on lavapipe), so a convolution adding a slice of longer vectors takes the storage kernels; a UNet's
/// 1x1 and strided convolutions add none.
fn cpu_kernel_for(gpu: &Gpu, shape: &ConvShape) -> &'static Kernel {
    let whole_channel = shape.chan_stride == shape.cout && shape.chan_offset == 0;
    if !whole_channel {
        storage_kernel_for(gpu, shape)
    } else if Im2col::on(gpu, shape).is_some() {
        &KERNEL_IM2COL
    } else if let Some(geo) = OneByOne::on(gpu, shape) {
        if geo.weights_per_launch(gpu) > 1 { &KERNEL_1X1_WIDE } else { &KERNEL_1X1 }
    } else {
        storage_kernel_for(gpu, shape)
    }
}

/// The CPU family's kernels that read x from storage: the packed kernels where they have enough work,
/// `conv2d` elsewhere. Also what a convolution picked for [`KERNEL_1X1`] runs when its x has no room for
/// windows (a tensor sized exactly rather than an activation in an arena).
pub(super) fn storage_kernel_for(gpu: &Gpu, shape: &ConvShape) -> &'static Kernel {
    let limits = gpu.limits();
    let taps = (shape.kh * shape.kw) as usize;
    let fits = PackGeometry::new(shape.cout as usize, shape.cin as usize, taps)
        .is_some_and(|g| g.bytes() <= limits.max_buffer_size);
    // Below 8 blocks of 8 output columns per image, a launch (one per weight window) has too little work and
    // the launches run one after another: on lavapipe the general kernel is faster there
    // (`cargo run --release --example conv_study` shows the crossover).
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
/// the transforms outweigh the products (a UNet's first convolution, 1 or 3 input channels, is much slower as
/// Winograd); from 32 channels the quarter of the multiply-adds wins on every map of the two models
/// (`cargo run --release --example conv_study -- cpu-direct cpu`).
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

/// Validates a convolution's tensors (as [`conv2d_with_channel`] takes them) and counts its work.
#[allow(clippy::too_many_arguments)] // the operands of one convolution
pub(super) fn operands<'a>(
    x: &'a Tensor,
    weight: &'a Tensor,
    bias: &'a Tensor,
    channel: Option<ChannelSlice<'a>>,
    residual: Option<&'a Tensor>,
    out: &'a Tensor,
    cfg: &'a Conv2dConfig,
) -> Result<(Operands<'a>, Cost)> {
    let mut shape = ConvShape::new(OP, x, weight, bias, cfg)?;
    expect_shape(OP, out, &shape.output_shape())?;
    if let Some(r) = residual {
        expect_shape(OP, r, out.shape())?;
    }
    if let Some(slice) = channel {
        (shape.chan_stride, shape.chan_offset) = slice.layout(&shape)?;
    }
    let floats = x.len()
        + weight.len()
        + bias.len()
        + channel.map_or(0, |_| (shape.batch * shape.cout) as usize)
        + out.len() * (1 + residual.is_some() as usize);
    let channel = channel.map(|slice| slice.vectors);
    let cost = Cost::new(shape.flops(), floats as u64);
    Ok((Operands { shape, x, weight, bias, channel, residual, out, cfg }, cost))
}

/// [`conv2d`] with a per-image channel offset added with the bias, `channel`'s slice of a `[N, len]`
/// tensor: `out = (conv(x, weight) + bias + channel + residual) * out_scale` (a ResNet block's conv1 and its
/// time embedding, in one dispatch).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_with_channel(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    channel: Option<ChannelSlice<'_>>,
    residual: Option<&Tensor>,
    out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    let (o, cost) = operands(x, weight, bias, channel, residual, out, cfg)?;
    let shape = o.shape;
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
        let dispatch = winograd::conv2d(gpu, label, &tiling, &o)?;
        return Ok(dispatch.with_cost(Cost { flops: winograd::flops(&shape, &tiling), ..cost }));
    }
    let mut kernel = kernel;
    if let Some(cut) = Im2col::on(gpu, &shape).filter(|_| kernel.name == KERNEL_IM2COL.name) {
        match im2col(gpu, label, &cut, &o)? {
            Some(d) => return Ok(d.with_cost(cost)),
            None => kernel = storage_kernel_for(gpu, &shape),
        }
    }
    let one_by_one_kernels = [KERNEL_1X1.name, KERNEL_1X1_WIDE.name];
    if let Some(geo) =
        OneByOne::on(gpu, &shape).filter(|_| one_by_one_kernels.contains(&kernel.name))
    {
        match one_by_one(gpu, label, &geo, &o)? {
            Some(d) => return Ok(d.with_cost(cost)),
            None => kernel = storage_kernel_for(gpu, &shape),
        }
    }
    let dispatch = if kernel.name == KERNEL_3X3.name || kernel.name == KERNEL_PACKED.name {
        packed(gpu, kernel, label, &o)?
    } else if kernel.name == KERNEL_TILED.name || kernel.name == KERNEL_TILED_8X8.name {
        tiled(gpu, kernel, label, &o, None)?
    } else {
        direct::launch(gpu, label, &o)?
    };
    Ok(dispatch.with_cost(cost))
}
