//! Channel concatenation `[a, b]` (`kernels/concat.wgsl`): the UNet's skip connections, as two strided block
//! copies (one launch per input) in one dispatch.

use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{check_bindings, dim, dims, expect_shape, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, LaunchSpec, Tensor, workgroups_for};

const OP: &str = "concat";

/// The kernel.
pub const KERNEL: Kernel = kernel!("concat", includes: [], workgroup: 64, params: Params,
    bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in concat.wgsl.
    pub struct Params { pub batch: u32, pub len: u32, pub out_len: u32, pub offset: u32 }
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
    for (what, v) in
        [("batch", n), ("channels of a", ca), ("channels of b", cb), ("spatial size", h * w)]
    {
        nonzero(OP, what, v)?;
    }
    expect_shape(OP, out, &[n, ca + cb, h, w])?;
    check_bindings(gpu, OP, &[a, b, out])?;
    let hw = h * w;
    let part = |len: usize, offset: usize| -> Result<Params> {
        Ok(Params {
            batch: dim(OP, "batch", n)?,
            len: dim(OP, "floats per image", len)?,
            out_len: dim(OP, "floats per output image", (ca + cb) * hw)?,
            offset: dim(OP, "offset", offset)?,
        })
    };
    let params = [part(ca * hw, 0)?, part(cb * hw, ca * hw)?];
    let specs = [(a, &params[0]), (b, &params[1])]
        .into_iter()
        .map(|(src, p)| LaunchSpec {
            params: bytemuck::bytes_of(p),
            resources: vec![src.binding(), out.binding()],
            workgroups: workgroups_for(
                (n * (p.len as usize).div_ceil(4)) as u64,
                KERNEL.workgroup_size,
            ),
        })
        .collect();
    Dispatch::launches(gpu, &KERNEL, OP, label, specs)
        .map(|d| d.with_cost(Cost::new(0, 2 * out.len() as u64)))
}
