//! Checks an operation makes when it prepares a dispatch, so that a prepared dispatch cannot fail for shape
//! reasons: ranks, shapes, dimensions that fit a uniform's u32, empty work, and the binding-size limit.

use super::{Gpu, Tensor};
use crate::error::{Error, Result};

/// Refuses a tensor larger than the device's storage-binding limit, naming it.
pub(crate) fn check_bindings(gpu: &Gpu, op: &'static str, tensors: &[&Tensor]) -> Result<()> {
    let limit = gpu.limits().max_storage_buffer_binding_size;
    for t in tensors {
        if t.bytes() > limit {
            return Err(Error::TooLarge {
                op,
                tensor: t.label().to_string(),
                bytes: t.bytes(),
                limit,
            });
        }
    }
    Ok(())
}

/// Checks that a tensor has exactly `expected` shape.
pub(crate) fn expect_shape(op: &'static str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.shape() != expected {
        return Err(Error::shape(
            op,
            format!("tensor `{}` has shape {:?}, expected {:?}", t.label(), t.shape(), expected),
        ));
    }
    Ok(())
}

/// Returns a tensor's shape as `R` dimensions, or an error naming the tensor if it has another rank.
pub(crate) fn dims<const R: usize>(op: &'static str, t: &Tensor) -> Result<[usize; R]> {
    t.shape().try_into().map_err(|_| {
        Error::shape(
            op,
            format!("tensor `{}` has shape {:?}, expected {R} dimensions", t.label(), t.shape()),
        )
    })
}

/// Converts a dimension to the u32 a uniform carries, refusing what does not fit.
pub(crate) fn dim(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(op, format!("{what} = {v} does not fit in 32 bits")))
}

/// Refuses empty work: zero-sized dimensions make no sense for any kernel here.
pub(crate) fn nonzero(op: &'static str, what: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::shape(op, format!("{what} is 0")));
    }
    Ok(())
}
