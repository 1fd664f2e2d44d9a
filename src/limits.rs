//! The size budget: the most memory one host array may take when a file or a flag sets its size (latents, a
//! batch of images, interpolation frames, merged arrays, a model's image), checked with overflow-safe
//! arithmetic before anything is allocated, so that a small hostile file or a large number on the command line
//! is a one-line error rather than an abort or a machine driven into swap.

use crate::error::{Error, Result};

/// The most bytes one such array may take: 4 GiB, a million 32x32 RGB images or 16,000 at 256x256, while a
/// machine with the memory for a few of them keeps working. Larger runs are split with `--shard`.
pub const MAX_ARRAY_BYTES: u64 = 4 << 30;

/// The product of `dims`, or an error naming `what` when it overflows.
pub fn elements(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| too_large(what, dims))
}

/// The number of f32 values of an array of `dims`, after checking that it fits [`MAX_ARRAY_BYTES`]; `what`
/// names the array in the error.
pub fn f32_array(what: &str, dims: &[usize]) -> Result<usize> {
    let n = elements(what, dims)?;
    match (n as u64).checked_mul(4) {
        Some(bytes) if bytes <= MAX_ARRAY_BYTES => Ok(n),
        _ => Err(too_large(what, dims)),
    }
}

fn too_large(what: &str, dims: &[usize]) -> Error {
    let bytes = dims.iter().fold(4u128, |n, &d| n.saturating_mul(d as u128));
    Error::TooLargeForHost {
        what: what.to_string(),
        dims: dims.to_vec(),
        bytes,
        limit: MAX_ARRAY_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_holds_without_overflow() {
        assert_eq!(f32_array("x", &[16, 3, 32, 32]).unwrap(), 16 * 3 * 32 * 32);
        assert_eq!(f32_array("x", &[]).unwrap(), 1);
        assert_eq!(f32_array("x", &[0, usize::MAX]).unwrap(), 0);
        // Exactly the budget passes; one more value does not.
        let at = (MAX_ARRAY_BYTES / 4) as usize;
        assert!(f32_array("x", &[at]).is_ok());
        assert!(f32_array("x", &[at + 1]).is_err());
        let e = f32_array("latents", &[usize::MAX, 2]).unwrap_err().to_string();
        assert!(e.contains("latents") && e.contains("--shard"), "{e}");
        assert!(elements("x", &[usize::MAX, 2]).is_err());
    }
}
