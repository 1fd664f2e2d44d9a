//! Philox4x32-10 on the GPU (`kernels/randn.wgsl`): standard normals keyed by (seed, image, step, stream),
//! and the raw u32 stream for the bit-exactness tests. The CPU twin is [`crate::diffusion::philox`].

use crate::diffusion::philox::NoiseKey;
use crate::error::{Error, Result};
use crate::gpu::Access::ReadWrite;
use crate::gpu::check::{dim, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor};

const OP: &str = "randn";

/// The kernel.
pub const KERNEL: Kernel = kernel!("randn", includes: [], workgroup: 64, params: Params,
    bindings: &[ReadWrite]);

params! {
    /// Mirrors `Params` in randn.wgsl.
    pub struct Params {
        pub per_image: u32, pub batch: u32, pub image_offset: u32, pub mode: u32, pub key_lo: u32,
        pub key_hi: u32, pub c0_base: u32, pub c2: u32, pub c3: u32, pub _pad: [u32; 3],
    }
}

/// `out` filled in `mode` (0: normals, 1: the raw stream) from Philox's `counter` (the image's word offset by
/// the batch index) under `key`.
fn prepare(
    gpu: &Gpu,
    label: &str,
    out: &Tensor,
    mode: u32,
    counter: [u32; 4],
    key: [u32; 2],
) -> Result<Dispatch> {
    let (n, per) = batch_and_rest(out)?;
    let params = Params {
        per_image: dim(OP, "elements per image", per)?,
        batch: dim(OP, "batch", n)?,
        image_offset: counter[1],
        mode,
        key_lo: key[0],
        key_hi: key[1],
        c0_base: counter[0],
        c2: counter[2],
        c3: counter[3],
        _pad: [0; 3],
    };
    let invocations = (params.per_image as u64).div_ceil(4) * params.batch as u64;
    // Philox4x32-10 is integer work (about 100 operations per 4 values); Box-Muller about 20 flops per value.
    let cost = Cost::new(20 * out.len() as u64, out.len() as u64);
    let d = Dispatch::for_invocations(gpu, &KERNEL, OP, label, &params, &[out], invocations)?;
    Ok(d.with_cost(cost))
}

fn batch_and_rest(out: &Tensor) -> Result<(usize, usize)> {
    let s = out.shape();
    if s.is_empty() {
        return Err(Error::shape(OP, format!("`{}` is a scalar", out.label())));
    }
    let per: usize = s[1..].iter().product();
    nonzero(OP, "batch", s[0])?;
    nonzero(OP, "elements per image", per)?;
    Ok((s[0], per))
}

/// Prepares standard normals into `out` `[N, ...]`: image n of the batch is global image `first_image + n`, so
/// its values never depend on the batch it is drawn in.
pub fn normal(
    gpu: &Gpu,
    label: &str,
    key: NoiseKey,
    first_image: u32,
    out: &Tensor,
) -> Result<Dispatch> {
    let counter = [0, first_image, key.step, key.stream as u32];
    prepare(gpu, label, out, 0, counter, [key.seed as u32, (key.seed >> 32) as u32])
}

/// Prepares the raw Philox4x32-10 stream: `out[n, e]` (as u32 bits) is word `e % 4` of
/// `philox(counter = [c0 + e / 4, c1 + n, c2, c3], key)`. For tests against known-answer vectors.
pub fn raw(
    gpu: &Gpu,
    label: &str,
    counter: [u32; 4],
    key: [u32; 2],
    out: &Tensor,
) -> Result<Dispatch> {
    prepare(gpu, label, out, 1, counter, key)
}
