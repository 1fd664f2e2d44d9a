//! Group normalisation with affine parameters and an optional fused SiLU.
//!
//! Two kernels, one result. `group_norm.wgsl` gives each (image, group) a workgroup and reduces across it
//! (in workgroup memory, or subgroup by subgroup where the device has subgroups): what GPUs want.
//! `group_norm_serial.wgsl` has no barriers: one invocation per (image, channel) reads the channel once for
//! its mean and squared deviations (Chan's update), then a second launch merges each group's channels and
//! normalises, with every statistic and affine parameter at a workgroup-uniform address; on lavapipe a
//! workgroup barrier costs more than the sums around it. [`kernel_for`] chooses. [`group_norm_stats`] runs
//! the workgroup kernel's statistics alone, for a convolution that normalises its input as it loads it
//! (`ops::conv2d::normed`).
//!
//! One file per algorithm: [`workgroup`], [`serial`]; what they share in [`shape`]; the choice in [`strategy`].

pub mod serial;
pub mod shape;
pub mod strategy;
pub mod workgroup;

pub use serial::{SERIAL_KERNEL, SerialParams};
pub use shape::NormParams;
pub use strategy::{group_norm, group_norm_stats, group_norm_with, kernel_for};
pub use workgroup::{
    KERNEL, Params, STATS_KERNEL, STATS_SUBGROUP_KERNEL, STATS_VEC4_KERNEL, SUBGROUP_KERNEL,
    VEC4_KERNEL,
};
