//! Linear layers (`kernels/linear.wgsl`): `y = act(x) W^T + b (+ residual) * out_scale` over batches of token
//! matrices, reading and writing either row-major `[N, M, K]` or NCHW feature maps viewed as tokens.
//!
//! On feature maps without input SiLU (the attention projections) a linear layer is a 1x1 convolution: where
//! [`conv2d::kernel_for`](crate::ops::conv2d::kernel_for) would run it with weights in uniform windows (`conv2d_1x1`, `conv2d_1x1_wide`,
//! `conv2d_packed`, CPU family) or shared-memory tiles (`conv2d_tiled`, GPU family), that is what runs,
//! since those read each weight once per workgroup and `linear.wgsl` cannot. The baseline kernels keep `linear.wgsl`. Layers with
//! few tokens (the time embedding) run `linear_reduce.wgsl` in the GPU family, a workgroup per output
//! splitting the dot products ([`kernel_for`]).

//!
//! One file per kernel: [`tokens`], [`reduce`]; what they share in [`layout`]; the choice in [`strategy`].

pub mod layout;
pub mod reduce;
pub mod strategy;
pub mod tokens;

pub use layout::{LinearConfig, Params, TokenLayout};
pub use reduce::REDUCE_KERNEL;
pub use strategy::{kernel_for, linear};
pub use tokens::KERNEL;
