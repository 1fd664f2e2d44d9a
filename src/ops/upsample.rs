//! Nearest-neighbour 2x upsampling (`kernels/upsample_nearest.wgsl`).

use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{dim, dims, expect_shape, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor};

const OP: &str = "upsample_nearest";

/// The kernel.
pub const KERNEL: Kernel = kernel!("upsample_nearest", includes: [], workgroup: 64, params: Params,
    bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in upsample_nearest.wgsl.
    pub struct Params { pub planes: u32, pub h: u32, pub w: u32, pub _pad: u32 }
}

/// Prepares `out[n, c, y, x] = x[n, c, y / 2, x / 2]`: x `[N, C, H, W]`, out `[N, C, 2H, 2W]`.
pub fn upsample_nearest2x(gpu: &Gpu, label: &str, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let [n, c, h, w] = dims::<4>(OP, x)?;
    for (what, v) in [("batch", n), ("channels", c), ("height", h), ("width", w)] {
        nonzero(OP, what, v)?;
    }
    expect_shape(OP, out, &[n, c, 2 * h, 2 * w])?;
    let params = Params {
        planes: dim(OP, "planes", n * c)?,
        h: dim(OP, "height", h)?,
        w: dim(OP, "width", w)?,
        _pad: 0,
    };
    Dispatch::for_invocations(gpu, &KERNEL, OP, label, &params, &[x, out], out.len() as u64)
        .map(|d| d.with_cost(Cost::new(0, (x.len() + out.len()) as u64)))
}
