//! `group_norm.wgsl`: a workgroup per (image, group), reducing across the workgroup: what GPUs want. Three
//! variants of one source: scalar loads with a tree reduction in workgroup memory (any adapter, any map),
//! vec4 loads (maps whose `h * w` is a multiple of 4), and vec4 loads with each subgroup reducing first
//! (devices opened with subgroups, [`Gpu::subgroups`]).

use super::shape::{Norm, NormParams, OP};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Dispatch, Gpu, Kernel};

/// Scalar loads, a tree reduction in workgroup memory: any adapter, any map.
pub const KERNEL: Kernel = kernel!("group_norm" from "group_norm" where [("LANES", "1")],
    includes: [], workgroup: 256, params: Params, bindings: &[Read, Read, Read, ReadWrite]);

/// vec4 loads and stores, the tree reduction: maps whose `h * w` is a multiple of 4.
pub const VEC4_KERNEL: Kernel = kernel!("group_norm_vec4" from "group_norm" where [("LANES", "4")],
    includes: [], workgroup: 256, params: Params, bindings: &[Read, Read, Read, ReadWrite]);

/// vec4 loads and stores, each subgroup reducing with `subgroupAdd` before one barrier: maps whose `h * w` is
/// a multiple of 4, on devices opened with subgroups.
pub const SUBGROUP_KERNEL: Kernel = kernel!("group_norm_subgroups" from "group_norm"
    where [("LANES", "4"), ("SUBGROUPS", "1")],
    includes: [], workgroup: 256, params: Params, bindings: &[Read, Read, Read, ReadWrite]);

/// [`KERNEL`] writing each channel's statistics and affine parameters instead of the normalised tensor.
pub const STATS_KERNEL: Kernel = kernel!("group_norm_stats" from "group_norm"
    where [("LANES", "1"), ("STATS", "1")],
    includes: [], workgroup: 256, params: Params, bindings: &[Read, Read, Read, ReadWrite]);

/// [`VEC4_KERNEL`] writing the statistics ([`STATS_KERNEL`]).
pub const STATS_VEC4_KERNEL: Kernel = kernel!("group_norm_stats_vec4" from "group_norm"
    where [("LANES", "4"), ("STATS", "1")],
    includes: [], workgroup: 256, params: Params, bindings: &[Read, Read, Read, ReadWrite]);

/// [`SUBGROUP_KERNEL`] writing the statistics ([`STATS_KERNEL`]).
pub const STATS_SUBGROUP_KERNEL: Kernel = kernel!("group_norm_stats_subgroups" from "group_norm"
    where [("LANES", "4"), ("SUBGROUPS", "1"), ("STATS", "1")],
    includes: [], workgroup: 256, params: Params, bindings: &[Read, Read, Read, ReadWrite]);

/// The fastest of this file's variants for `hw` values per channel on this device, normalising or (`stats`)
/// writing the statistics: the subgroup variant where the device has subgroups and `hw` is a multiple of 4,
/// the vec4 one where only the latter, the scalar one otherwise.
pub(super) fn variant_for(gpu: &Gpu, hw: usize, stats: bool) -> &'static Kernel {
    match (hw.is_multiple_of(4), gpu.subgroups(), stats) {
        (true, true, false) => &SUBGROUP_KERNEL,
        (true, false, false) => &VEC4_KERNEL,
        (false, _, false) => &KERNEL,
        (true, true, true) => &STATS_SUBGROUP_KERNEL,
        (true, false, true) => &STATS_VEC4_KERNEL,
        (false, _, true) => &STATS_KERNEL,
    }
}

params! {
    /// Mirrors `Params` in group_norm.wgsl.
    pub struct Params { pub norm: NormParams, pub _pad: [u32; 2] }
}

/// One workgroup per (image, group), with `kernel`, one of this file's three: an error where it cannot run
/// this normalisation on `gpu` (the vec4 variants need `h * w` a multiple of 4, the subgroup one a device
/// opened with subgroups).
pub(super) fn launch(
    gpu: &Gpu,
    kernel: &'static Kernel,
    label: &str,
    g: &Norm<'_>,
) -> Result<Dispatch> {
    let why_not = if kernel.name == KERNEL.name || kernel.name == STATS_KERNEL.name {
        None
    } else if !g.hw.is_multiple_of(4) {
        Some(format!("{} values per channel, not a multiple of 4", g.hw))
    } else if [SUBGROUP_KERNEL.name, STATS_SUBGROUP_KERNEL.name].contains(&kernel.name)
        && !gpu.subgroups()
    {
        Some("the device was opened without subgroups".to_string())
    } else {
        None
    };
    if let Some(why) = why_not {
        return Err(Error::param(
            OP,
            format!("kernel `{}` cannot normalise `{label}`: {why}", kernel.name),
        ));
    }
    let params = Params { norm: g.params(), _pad: [0; 2] };
    let tensors = [g.x, g.gamma, g.beta, g.out];
    Dispatch::new(gpu, kernel, OP, label, &params, &tensors, (g.n * g.groups) as u64)
}
