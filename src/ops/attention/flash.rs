//! `attention_flash.wgsl`: the GPU family's attention where a workgroup holds 28.5 KiB (GPUs commonly allow 32-64 KiB):
//! flash attention with a workgroup of 256 invocations per 64 queries, keys in blocks of 64, scores and the
//! weighted sum as register-tiled products (4 x 4 outputs per invocation) over workgroup memory. Its launches,
//! key split and partial state are [`TILED`](super::tiled::TILED)'s (`tiled::blocked`).

use super::tiled::{Blocking, TiledParams};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::Kernel;
use crate::gpu::kernel::kernel;

/// The Params of [`FLASH_KERNEL`] (attention_tiled.wgsl's).
const TILED_PARAMS: &str = include_str!("../../../kernels/attention_tiled_params.inc.wgsl");

/// A workgroup of 256 per 64 queries (and key split).
pub const FLASH_KERNEL: Kernel = kernel!("attention_flash", includes: [TILED_PARAMS], workgroup: 256,
    params: TiledParams, bindings: &[Read, Read, Read, ReadWrite, ReadWrite]);

/// [`FLASH_KERNEL`] whose row maxima and sums are first combined across a subgroup's lanes
/// (`subgroupShuffleXor`), for devices opened with subgroups.
pub const FLASH_SUBGROUPS_KERNEL: Kernel = kernel!("attention_flash_subgroups" from "attention_flash"
    where [("SUBGROUPS", "1")], includes: [TILED_PARAMS], workgroup: 256, params: TiledParams,
    bindings: &[Read, Read, Read, ReadWrite, ReadWrite]);

/// Workgroup memory of both flash kernels: 1,536 vec4s, 1,024 floats and 64 vec2s (29,184 bytes).
const FLASH_BYTES: u32 = 1536 * 16 + 1024 * 4 + 64 * 8;

/// [`FLASH_KERNEL`]: 64 queries a workgroup, blocks of 64 keys.
pub const FLASH: Blocking =
    Blocking { kernel: &FLASH_KERNEL, queries: 64, keys: 64, workgroup_bytes: FLASH_BYTES };

/// [`FLASH_SUBGROUPS_KERNEL`]: as [`FLASH`].
pub const FLASH_SUBGROUPS: Blocking = Blocking {
    kernel: &FLASH_SUBGROUPS_KERNEL,
    queries: 64,
    keys: 64,
    workgroup_bytes: FLASH_BYTES,
};
