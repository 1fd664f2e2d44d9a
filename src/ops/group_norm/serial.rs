//! `group_norm_serial.wgsl`: no barriers. One invocation per (image, channel) reads the channel once for its
//! mean and squared deviations (Chan's update), then a second launch merges each group's channels and
//! normalises, with every statistic and affine parameter at a workgroup-uniform address.

use super::shape::{Norm, NormParams, OP};
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{check_bindings, dim};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Dispatch, Gpu, Kernel, LaunchSpec};

/// The barrier-free kernel for CPU adapters (two launches: statistics, then normalisation).
pub const SERIAL_KERNEL: Kernel = kernel!("group_norm_serial", includes: [], workgroup: 8,
    params: SerialParams, bindings: &[Read, Read, Read, ReadWrite, ReadWrite]);

params! {
    /// Mirrors `Params` in group_norm_serial.wgsl.
    pub struct SerialParams {
        pub norm: NormParams, pub phase: u32, pub groups_per_wg: u32,
        pub channels_per_invocation: u32, pub _pad: [u32; 3],
    }
}

/// Vec4s a workgroup of `group_norm_serial` at least covers in either launch (whole channels for the
/// statistics, whole groups for the normalisation, so each group's statistics are merged once): enough to
/// amortise a workgroup's start on lavapipe, which small feature maps (4x4: 4 vec4s a channel) would not.
const SERIAL_VEC4S_PER_WORKGROUP: usize = 1024;

/// The two launches: statistics per (image, channel) into a buffer of the dispatch's own, then the
/// normalisation per group.
pub(super) fn launch(gpu: &Gpu, label: &str, g: &Norm<'_>) -> Result<Dispatch> {
    let Norm { x, gamma, beta, out, n, c, hw, groups, .. } = *g;
    check_bindings(gpu, OP, &[x, gamma, beta, out])?;
    let group_vec4s = c / groups * hw / 4;
    let groups_per_wg = dim(
        OP,
        "groups per workgroup",
        SERIAL_VEC4S_PER_WORKGROUP.div_ceil(group_vec4s).min(n * groups),
    )?;
    let wg = SERIAL_KERNEL.workgroup_size as usize;
    let channel_rows = (n * c).div_ceil(wg);
    let channels_per_invocation = dim(
        OP,
        "channels per invocation",
        SERIAL_VEC4S_PER_WORKGROUP.div_ceil(wg * hw / 4).min(channel_rows),
    )?;
    // (shift, shifted mean, squared deviations) per (image, channel), written by the first launch, read by
    // the second.
    let stats = gpu.scoped(&format!("statistics buffer of `{label}`"), || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: 16 * (n * c) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    })?;
    let phase = |phase: u32| SerialParams {
        norm: g.params(),
        phase,
        groups_per_wg,
        channels_per_invocation,
        _pad: [0; 3],
    };
    let (stats_params, apply_params) = (phase(0), phase(1));
    let resources = || {
        vec![x.binding(), gamma.binding(), beta.binding(), stats.as_entire_binding(), out.binding()]
    };
    let specs = vec![
        LaunchSpec {
            params: bytemuck::bytes_of(&stats_params),
            resources: resources(),
            workgroups: channel_rows.div_ceil(channels_per_invocation as usize) as u64,
        },
        LaunchSpec {
            params: bytemuck::bytes_of(&apply_params),
            resources: resources(),
            workgroups: (n * groups).div_ceil(groups_per_wg as usize) as u64,
        },
    ];
    let d = Dispatch::launches(gpu, &SERIAL_KERNEL, OP, label, specs)?;
    Ok(d.owning(stats))
}
