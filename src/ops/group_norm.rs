//! Group normalisation (`kernels/group_norm.wgsl`) with affine parameters and an optional fused SiLU.

use bytemuck::{Pod, Zeroable};

use super::{Access, Cost, Dispatch, Kernel, dim, expect_shape, nonzero};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

const OP: &str = "group_norm";

/// The kernel.
pub const KERNEL: Kernel = Kernel {
    name: "group_norm",
    source: include_str!("../../kernels/group_norm.wgsl"),
    includes: &[],
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    workgroup_size: 256,
    params_size: std::mem::size_of::<Params>(),
};

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
            format!(
                "tensor `{}` has shape {shape:?}, expected [N, C, ...]",
                x.label()
            ),
        ));
    }
    let (n, c) = (shape[0], shape[1]);
    let hw: usize = shape[2..].iter().product();
    for (what, v) in [
        ("batch", n),
        ("channels", c),
        ("spatial size", hw),
        ("groups", groups),
    ] {
        nonzero(OP, what, v)?;
    }
    if c % groups != 0 {
        return Err(Error::param(
            OP,
            format!(
                "{groups} groups do not divide the {c} channels of `{}`",
                x.label()
            ),
        ));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::param(
            OP,
            format!("eps must be positive and finite, got {eps}"),
        ));
    }
    expect_shape(OP, gamma, &[c])?;
    expect_shape(OP, beta, &[c])?;
    expect_shape(OP, out, shape)?;
    let params = Params {
        batch: dim(OP, "batch", n)?,
        c: dim(OP, "channels", c)?,
        hw: dim(OP, "spatial size", hw)?,
        groups: dim(OP, "groups", groups)?,
        eps,
        silu: silu as u32,
        _pad: [0; 2],
    };
    // One workgroup per (image, group).
    Dispatch::new(
        gpu,
        &KERNEL,
        OP,
        label,
        &params,
        &[x, gamma, beta, out],
        (n * groups) as u64,
    )
    .map(|d| {
        d.with_cost(Cost::new(
            10 * x.len() as u64,
            2 * x.len() as u64 + 2 * c as u64,
        ))
    })
}
