//! Channel concatenation `[a, b]` (`kernels/concat.wgsl`): the UNet's skip connections.

use bytemuck::{Pod, Zeroable};

use super::{Access, Cost, Dispatch, Kernel, dim, dims, expect_shape, nonzero, workgroups_for};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

const OP: &str = "concat";

/// The kernel.
pub const KERNEL: Kernel = Kernel {
    name: "concat",
    source: include_str!("../../kernels/concat.wgsl"),
    includes: &[],
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
    workgroup_size: 64,
    params_size: std::mem::size_of::<Params>(),
};

/// Mirrors `Params` in concat.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Params {
    pub batch: u32,
    pub ca: u32,
    pub cb: u32,
    pub hw: u32,
}

/// Prepares `out = cat([a, b], dim = 1)`: a `[N, Ca, H, W]`, b `[N, Cb, H, W]`, out `[N, Ca + Cb, H, W]`.
pub fn concat_channels(
    gpu: &Gpu,
    label: &str,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
) -> Result<Dispatch> {
    let [n, ca, h, w] = dims::<4>(OP, a)?;
    let [nb, cb, hb, wb] = dims::<4>(OP, b)?;
    if (nb, hb, wb) != (n, h, w) {
        return Err(Error::shape(
            OP,
            format!(
                "`{}` {:?} and `{}` {:?} differ outside the channel dimension",
                a.label(),
                a.shape(),
                b.label(),
                b.shape()
            ),
        ));
    }
    for (what, v) in [
        ("batch", n),
        ("channels of a", ca),
        ("channels of b", cb),
        ("spatial size", h * w),
    ] {
        nonzero(OP, what, v)?;
    }
    expect_shape(OP, out, &[n, ca + cb, h, w])?;
    let params = Params {
        batch: dim(OP, "batch", n)?,
        ca: dim(OP, "channels of a", ca)?,
        cb: dim(OP, "channels of b", cb)?,
        hw: dim(OP, "spatial size", h * w)?,
    };
    Dispatch::new(
        gpu,
        &KERNEL,
        OP,
        label,
        &params,
        &[a, b, out],
        workgroups_for(out.len() as u64, KERNEL.workgroup_size),
    )
    .map(|d| d.with_cost(Cost::new(0, 2 * out.len() as u64)))
}
