//! The finiteness watch (`kernels/finite_watch.wgsl`): after each sampling step, marks every image that holds a
//! NaN or an infinity with the first step where it did, in a small buffer read back once with the samples. A
//! run whose image turns non-finite is then an error naming the image and the step, never a NaN image written
//! with success, at the cost of one read of x per step and no extra readback.

use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{check_bindings, dim, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor};

const OP: &str = "finite_watch";

/// The kernel.
pub const KERNEL: Kernel = kernel!("finite_watch", includes: [], workgroup: 64, params: Params,
    bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in finite_watch.wgsl.
    pub struct Params { pub per_image: u32, pub batch: u32, pub step: u32, pub _pad: u32 }
}

/// The value of an entry of the watch buffer for an image that has stayed finite.
pub const UNSET: u32 = u32::MAX;

/// A watch buffer for `batch` images, every entry [`UNSET`] (the u32 words travel as the bits of f32s).
pub fn watch_buffer(gpu: &Gpu, label: &str, batch: usize) -> Result<Tensor> {
    gpu.upload(label, &[batch], &vec![f32::from_bits(UNSET); batch])
}

/// The first step at which each image was non-finite (`None`: finite throughout), from a downloaded watch
/// buffer.
pub fn first_steps(words: &[f32]) -> Vec<Option<u32>> {
    words.iter().map(|w| Some(w.to_bits()).filter(|&s| s != UNSET)).collect()
}

/// Prepares a watch of `x` (`[N, ...]`) for step `step`: `first[n] = step` for each image n of x that holds a
/// NaN or an infinity and has no step yet. `first` has shape `[N]`.
pub fn finite_watch(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    first: &Tensor,
    step: u32,
) -> Result<Dispatch> {
    let n = *x.shape().first().ok_or_else(|| Error::shape(OP, "x is a scalar"))?;
    let per: usize = x.shape()[1..].iter().product();
    nonzero(OP, "batch", n)?;
    nonzero(OP, "values per image", per)?;
    if first.shape() != [n] {
        return Err(Error::shape(
            OP,
            format!(
                "`{}` has shape {:?}; x's batch of {n} needs [{n}]",
                first.label(),
                first.shape()
            ),
        ));
    }
    check_bindings(gpu, OP, &[x, first])?;
    let params = Params {
        per_image: dim(OP, "values per image", per)?,
        batch: dim(OP, "batch", n)?,
        step,
        _pad: 0,
    };
    let invocations = (per as u64).div_ceil(4) * n as u64;
    let d = Dispatch::for_invocations(gpu, &KERNEL, OP, label, &params, &[x, first], invocations)?;
    // One bit test per value; reads x once.
    Ok(d.with_cost(Cost::new(x.len() as u64, x.len() as u64)))
}
