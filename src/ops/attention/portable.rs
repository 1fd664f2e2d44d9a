//! `attention.wgsl`: the portable attention, q, k and v read from storage, one invocation per 8 queries, an
//! online softmax so that no tokens x tokens matrix is stored. The baseline and the fallback.

use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::Kernel;
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;

pub(crate) const OP: &str = "attention";

/// The per-lane row reads and writes both attention kernels share.
pub(super) const ROWS: &str = include_str!("../../../kernels/attention_rows.inc.wgsl");

/// The kernel.
pub const KERNEL: Kernel = kernel!("attention", includes: [ROWS], workgroup: 64, params: Params,
    bindings: &[Read, Read, Read, ReadWrite]);

params! {
    /// Mirrors `Params` in attention.wgsl.
    pub struct Params {
        pub batch: u32, pub heads: u32, pub head_dim: u32, pub tokens: u32, pub scale: f32,
        pub _pad: [u32; 3],
    }
}
