//! Multi-head attention over the tokens of a feature map (`kernels/attention.wgsl`), tiled with an online
//! softmax so that no tokens x tokens matrix is ever stored.

use bytemuck::{Pod, Zeroable};

use super::{Access, Cost, Dispatch, Kernel, dim, dims, expect_shape, nonzero, workgroups_for};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

const OP: &str = "attention";

/// The kernel.
pub const KERNEL: Kernel = Kernel {
    name: "attention",
    source: include_str!("../../kernels/attention.wgsl"),
    includes: &[],
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    workgroup_size: 64,
    params_size: std::mem::size_of::<Params>(),
};

/// Mirrors `Params` in attention.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Params {
    pub batch: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub tokens: u32,
    pub scale: f32,
    pub _pad: [u32; 3],
}

/// Prepares `out = softmax(q k^T / sqrt(head_dim)) v` per head.
///
/// q, k, v and out are `[N, C, H, W]` maps (the H*W pixels are the tokens), C = heads * head_dim; head h owns
/// channels `h * head_dim .. (h + 1) * head_dim`.
pub fn attention(
    gpu: &Gpu,
    label: &str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    head_dim: usize,
) -> Result<Dispatch> {
    let [n, c, h, w] = dims::<4>(OP, q)?;
    let tokens = h * w;
    for (what, value) in [
        ("batch", n),
        ("channels", c),
        ("tokens", tokens),
        ("head_dim", head_dim),
    ] {
        nonzero(OP, what, value)?;
    }
    if c % head_dim != 0 {
        return Err(Error::param(
            OP,
            format!(
                "head_dim {head_dim} does not divide the {c} channels of `{}`",
                q.label()
            ),
        ));
    }
    for t in [k, v, out] {
        expect_shape(OP, t, q.shape())?;
    }
    let heads = c / head_dim;
    let params = Params {
        batch: dim(OP, "batch", n)?,
        heads: dim(OP, "heads", heads)?,
        head_dim: dim(OP, "head_dim", head_dim)?,
        tokens: dim(OP, "tokens", tokens)?,
        scale: (1.0 / (head_dim as f64).sqrt()) as f32,
        _pad: [0; 3],
    };
    // One invocation per (image, head, query token).
    // One invocation per 8 query tokens.
    let invocations = (n * heads * tokens.div_ceil(8)) as u64;
    Dispatch::new(
        gpu,
        &KERNEL,
        OP,
        label,
        &params,
        &[q, k, v, out],
        workgroups_for(invocations, KERNEL.workgroup_size),
    )
    .map(|d| {
        d.with_cost(Cost::new(
            4 * (n * heads * tokens * tokens * head_dim) as u64,
            4 * q.len() as u64,
        ))
    })
}
