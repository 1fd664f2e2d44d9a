//! Group normalisation with affine parameters and an optional fused SiLU.
//!
//! Two kernels, one result. `group_norm.wgsl` gives each (image, group) a workgroup and reduces in workgroup
//! memory: what GPUs want. `group_norm_serial.wgsl` has no barriers: one invocation per (image, channel) reads
//! the channel once for its mean and squared deviations (Chan's update), then a second launch merges each
//! group's channels and normalises, with every statistic and affine parameter at a workgroup-uniform address;
//! on lavapipe a workgroup barrier costs more than the sums around it. [`kernel_for`] chooses.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{check_bindings, dim, expect_shape, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, KernelChoice, LaunchSpec, Tensor};

const OP: &str = "group_norm";

/// The kernel.
pub const KERNEL: Kernel = kernel!("group_norm", includes: [], workgroup: 256, params: Params,
    bindings: &[Read, Read, Read, ReadWrite]);

/// The barrier-free kernel for CPU adapters (two launches: statistics, then normalisation).
pub const SERIAL_KERNEL: Kernel = kernel!("group_norm_serial", includes: [], workgroup: 8,
    params: SerialParams, bindings: &[Read, Read, Read, ReadWrite, ReadWrite]);

/// Mirrors `Params` in group_norm_serial.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SerialParams {
    pub batch: u32,
    pub c: u32,
    pub hw: u32,
    pub groups: u32,
    pub eps: f32,
    pub silu: u32,
    pub phase: u32,
    pub groups_per_wg: u32,
    pub channels_per_invocation: u32,
    pub _pad: [u32; 3],
}

/// Vec4s a workgroup of `group_norm_serial` at least covers in either launch (whole channels for the
/// statistics, whole groups for the normalisation, so each group's statistics are merged once): enough to
/// amortise a workgroup's start on lavapipe, which small feature maps (4x4: 4 vec4s a channel) would not.
const SERIAL_VEC4S_PER_WORKGROUP: usize = 1024;

/// The kernel [`group_norm`] runs on this device for `hw` values per channel: `group_norm_serial` for the CPU
/// family ([`KernelChoice::Cpu`], what `Auto` means on CPU adapters) when `hw` is a multiple of 4,
/// `group_norm` otherwise. GPUs keep the workgroup reduction: an invocation per channel would leave most of a
/// GPU idle.
pub fn kernel_for(gpu: &Gpu, hw: usize) -> &'static Kernel {
    match gpu.kernel_family() {
        KernelChoice::Cpu if hw.is_multiple_of(4) => &SERIAL_KERNEL,
        _ => &KERNEL,
    }
}

/// Mirrors `Params` in group_norm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Params {
    pub batch: u32,
    pub c: u32,
    pub hw: u32,
    pub groups: u32,
    pub eps: f32,
    pub silu: u32,
    pub _pad: [u32; 2],
}

/// Prepares `out = silu?(group_norm(x) * gamma + beta)`.
///
/// Shapes: x and out `[N, C, ...]` (any trailing spatial dimensions), gamma and beta `[C]`; `groups` divides C.
#[allow(clippy::too_many_arguments)] // the operands and the three settings of one normalisation
pub fn group_norm(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    out: &Tensor,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Result<Dispatch> {
    let shape = x.shape();
    if shape.len() < 2 {
        return Err(Error::shape(
            OP,
            format!("tensor `{}` has shape {shape:?}, expected [N, C, ...]", x.label()),
        ));
    }
    let (n, c) = (shape[0], shape[1]);
    let hw: usize = shape[2..].iter().product();
    for (what, v) in [("batch", n), ("channels", c), ("spatial size", hw), ("groups", groups)] {
        nonzero(OP, what, v)?;
    }
    if c % groups != 0 {
        return Err(Error::param(
            OP,
            format!("{groups} groups do not divide the {c} channels of `{}`", x.label()),
        ));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::param(OP, format!("eps must be positive and finite, got {eps}")));
    }
    expect_shape(OP, gamma, &[c])?;
    expect_shape(OP, beta, &[c])?;
    expect_shape(OP, out, shape)?;
    let cost = Cost::new(10 * x.len() as u64, 2 * x.len() as u64 + 2 * c as u64);
    let (batch, channels) = (dim(OP, "batch", n)?, dim(OP, "channels", c)?);
    let (spatial, group_count) = (dim(OP, "spatial size", hw)?, dim(OP, "groups", groups)?);
    if kernel_for(gpu, hw).name == SERIAL_KERNEL.name {
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
            batch,
            c: channels,
            hw: spatial,
            groups: group_count,
            eps,
            silu: silu as u32,
            phase,
            groups_per_wg,
            channels_per_invocation,
            _pad: [0; 3],
        };
        let (stats_params, apply_params) = (phase(0), phase(1));
        let resources = || {
            vec![
                x.binding(),
                gamma.binding(),
                beta.binding(),
                stats.as_entire_binding(),
                out.binding(),
            ]
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
        return Ok(d.owning(stats).with_cost(cost));
    }
    let params = Params {
        batch,
        c: channels,
        hw: spatial,
        groups: group_count,
        eps,
        silu: silu as u32,
        _pad: [0; 2],
    };
    // One workgroup per (image, group).
    Dispatch::new(gpu, &KERNEL, OP, label, &params, &[x, gamma, beta, out], (n * groups) as u64)
        .map(|d| d.with_cost(cost))
}
