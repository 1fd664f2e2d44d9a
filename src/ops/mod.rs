//! The operations: one folder or file per operation family. Each mirrors its kernels' `Params` structs
//! (`#[repr(C)]`, bytemuck), validates shapes, chooses among its kernels for the device (a family's
//! `strategy.rs`), and builds a [`Dispatch`](crate::gpu::Dispatch): pipeline, uniform buffer and bind group made once, recorded many
//! times.

pub mod attention;
pub mod concat;
pub mod conv2d;
pub mod ddim;
pub mod elementwise;
pub mod finite;
pub mod group_norm;
pub mod linear;
pub mod randn;
pub mod timestep_embedding;
pub mod upsample;

use crate::gpu::{Gpu, Kernel, roofline};

/// Every kernel in `kernels/`, for the validation tests and for warming the pipeline cache.
pub const KERNELS: &[&Kernel] = &[
    &attention::KERNEL,
    &attention::PACK_KERNEL,
    &attention::WINDOWED_KERNEL,
    &attention::TILED_KERNEL,
    &attention::FLASH_KERNEL,
    &attention::FLASH_SUBGROUPS_KERNEL,
    &attention::COMBINE_KERNEL,
    &attention::SCORES_KERNEL,
    &attention::SOFTMAX_KERNEL,
    &attention::VALUES_KERNEL,
    &concat::KERNEL,
    &conv2d::KERNEL,
    &conv2d::KERNEL_1X1,
    &conv2d::KERNEL_1X1_WIDE,
    &conv2d::KERNEL_IM2COL,
    &conv2d::KERNEL_3X3,
    &conv2d::KERNEL_PACKED,
    &conv2d::KERNEL_TILED,
    &conv2d::KERNEL_TILED_8X8,
    &conv2d::KERNEL_TILED_GN,
    &conv2d::KERNEL_TILED_8X8_GN,
    &conv2d::KERNEL_SPLIT_REDUCE,
    &conv2d::PACK_KERNEL,
    &ddim::CONV_KERNEL,
    &ddim::CONV_3X3_KERNEL,
    &ddim::CONV_TILED_KERNEL,
    &ddim::CONV_TILED_8X8_KERNEL,
    &ddim::SPLIT_REDUCE_KERNEL,
    &ddim::STEP_KERNEL,
    &ddim::THRESHOLD_KERNEL,
    &elementwise::KERNEL,
    &finite::KERNEL,
    &group_norm::KERNEL,
    &group_norm::VEC4_KERNEL,
    &group_norm::SUBGROUP_KERNEL,
    &group_norm::STATS_KERNEL,
    &group_norm::STATS_VEC4_KERNEL,
    &group_norm::STATS_SUBGROUP_KERNEL,
    &group_norm::SERIAL_KERNEL,
    &linear::KERNEL,
    &linear::REDUCE_KERNEL,
    &randn::KERNEL,
    &roofline::COPY_KERNEL,
    &roofline::FMA_KERNEL,
    &timestep_embedding::KERNEL,
    &upsample::KERNEL,
    &conv2d::winograd::GEMM_KERNEL,
    &conv2d::winograd::GEMM_WINDOWED_KERNEL,
    &conv2d::winograd::GEMM_WIDE_KERNEL,
    &conv2d::winograd::GEMM_WINDOWED_WIDE_KERNEL,
    &conv2d::winograd::INPUT_KERNEL,
    &conv2d::winograd::OUTPUT_KERNEL,
    &conv2d::winograd::PACK_KERNEL,
];

/// The most bytes of partial results one launch of a split reduction writes (`conv2d::SplitK`,
/// `attention::KeySplit`): the work runs in launches that fit, and within the device's binding limit.
pub const SPLIT_SCRATCH_BYTES: u64 = 32 << 20;

/// Splits a reduction of `len` terms (a convolution's K, an attention's keys) for a kernel that makes `blocks`
/// workgroups per image: as many slices as bring an image to `target` workgroups, each of at least `min` terms,
/// balanced, in multiples of `step` (the last slice may be shorter). Returns `(slices, terms per slice)`:
/// `(1, len rounded up to step)` where that is one slice. Depends on one image's geometry only, never the batch.
pub(crate) fn split_reduction(
    len: usize,
    blocks: usize,
    target: usize,
    min: usize,
    step: usize,
) -> (usize, usize) {
    let want = target.div_ceil(blocks.max(1)).min(len.div_ceil(min)).max(1);
    let chunk = len.div_ceil(want).div_ceil(step) * step;
    (len.div_ceil(chunk), chunk)
}

/// Floats of partial results one launch of a split reduction may write on this device: [`SPLIT_SCRATCH_BYTES`]
/// within the binding and buffer limits, or none where the device was opened with split reductions off
/// ([`crate::gpu::DeviceOptions::split_k`]), which makes every reduction one slice.
pub(crate) fn split_scratch_floats(gpu: &Gpu) -> usize {
    if !gpu.split_k() {
        return 0;
    }
    let limits = gpu.limits();
    let bytes =
        SPLIT_SCRATCH_BYTES.min(limits.max_storage_buffer_binding_size).min(limits.max_buffer_size);
    (bytes / 4) as usize
}
