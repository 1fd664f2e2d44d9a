//! 2-D convolution: NCHW, any kernel size and stride, padding per side, bias, and a fused epilogue
//! `(conv + bias + residual) * out_scale`.
//!
//! Several kernels, one result. `conv2d.wgsl` does every geometry (4 channels x 4 columns per invocation,
//! weights read from storage): the baseline. For CPU adapters, the Winograd convolution F(4x4, 3x3)
//! ([`winograd`]) does most 3x3 stride-1 convolutions, most of a UNet's arithmetic, in a quarter of the
//! multiply-adds; `conv2d_3x3.wgsl` does the others (few channels, or Winograd off), with 8 channels x 8 columns
//! per invocation and the weights read from 64 KiB uniform windows at addresses uniform across each workgroup,
//! and `conv2d_packed.wgsl` the same for any geometry; `conv2d_1x1.wgsl` reads x from uniform windows too, for
//! the 1x1 convolutions, and its variant `conv2d_1x1_wide` binds four weight windows per launch where there are that
//! many (a quarter of the launches, which lavapipe pays for one by one); `conv2d_pack.wgsl` lays the weights
//! out for them once, when the dispatch is prepared. Strided convolutions run as a 1x1 convolution over the
//! input's columns (`conv2d_im2col.wgsl`, [`Im2col`]) where the geometry allows.
//! For GPUs, `conv2d_tiled.wgsl` is an implicit GEMM over shared-memory tiles (64 x 64, or 128 x 128 with
//! `--conv-tile 8x8`), with K split over several workgroups on small maps ([`SplitK`],
//! `conv2d_split_reduce.wgsl`), and, where a group norm feeds the convolution alone, that norm as its prologue
//! ([`normed`]). [`kernel_for`] chooses by the device's kernel family
//! ([`KernelChoice`](crate::gpu::KernelChoice)).
//!
//! One file per algorithm: [`direct`], [`packed`], [`one_by_one`], [`im2col`], [`tiled`], [`normed`],
//! [`winograd`]; what they share in [`shape`]; the choice between them in [`strategy`].

pub mod direct;
pub mod im2col;
pub mod normed;
pub mod one_by_one;
pub mod packed;
pub mod shape;
pub mod strategy;
pub mod tiled;
pub mod winograd;

pub use direct::{ACCUMULATE, KERNEL, Params};
pub use im2col::{IM2COL_SCRATCH_BYTES, Im2col, Im2colParams, KERNEL_IM2COL, lay_columns};
pub use normed::{
    InputNorm, KERNEL_TILED_8X8_GN, KERNEL_TILED_GN, conv2d_normed, normed_kernel_for,
};
pub use one_by_one::{KERNEL_1X1, KERNEL_1X1_WIDE, OneByOne, OneByOneParams};
pub use packed::{KERNEL_3X3, KERNEL_PACKED, PACK_KERNEL, PackGeometry, PackParams, PackedParams};
pub use shape::{
    BLOCK, ChannelSlice, Conv2dConfig, ConvShape, EPILOGUE, Padding, SHAPE, output_size,
};
pub use strategy::{conv2d, conv2d_with_channel, kernel_for};
pub use tiled::{
    KERNEL_SPLIT_REDUCE, KERNEL_TILED, KERNEL_TILED_8X8, SPLIT_MIN_K, SPLIT_TARGET, SplitK,
    TileShape, TiledParams,
};
