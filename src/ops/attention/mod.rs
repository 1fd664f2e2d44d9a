//! Multi-head attention over the tokens of a feature map.
//!
//! Four ways to one result. `attention.wgsl` reads q, k and v from storage, one invocation per 8 queries,
//! with an online softmax so that no tokens x tokens matrix is stored: the portable kernel.
//! `attention_tiled.wgsl`, the GPU family's, runs a workgroup per 8 queries over shared-memory tiles of 32
//! keys (flash-attention style), with the keys split over several workgroups where an image has few query
//! blocks ([`KeySplit`], merged by `attention_combine.wgsl`): on a GPU the portable kernel's 8-query
//! invocations are too few to fill the machine and each waits on its own loads. The CPU family's runs as two
//! matrix products over stored scores ([`Products`]: `attention_scores.wgsl`, `attention_softmax.wgsl`,
//! `attention_values.wgsl`), every operand read from 64 KiB uniform windows bound straight onto q, k, v and
//! the scores, which lavapipe reads once per SIMD vector where an address is uniform across the workgroup and
//! as straight-line gathers where it is not; where q, k or v lack room for their windows (a tensor sized
//! exactly) or the tokens are not a multiple of 8, `attention_windowed.wgsl` runs instead: keys and values
//! laid out in uniform windows by `attention_pack.wgsl` at the start of the dispatch, one launch per window,
//! with the softmax's running state carried between a pair's key windows. [`kernel_for`] chooses the family's
//! kernel; [`attention`] the products where they apply.
//!
//! One file per algorithm: [`portable`], [`tiled`], [`windowed`], [`products`]; the choice between them in
//! [`strategy`].

pub mod flash;
pub mod portable;
pub mod products;
pub mod strategy;
pub mod tiled;
pub mod windowed;

pub use flash::{FLASH, FLASH_KERNEL, FLASH_SUBGROUPS, FLASH_SUBGROUPS_KERNEL};
pub use portable::{KERNEL, Params};
pub use products::{
    Products, ProductsParams, SCORES_KERNEL, SCORES_SCRATCH_BYTES, SOFTMAX_KERNEL, VALUES_KERNEL,
};
pub use strategy::{BLOCKINGS, attention, attention_blocked, blocking_for, kernel_for};
pub use tiled::{
    Blocking, COMBINE_KERNEL, KEY_SPLIT_MIN, KEY_SPLIT_TARGET, KeySplit, TILED, TILED_KERNEL,
    TiledParams,
};
pub use windowed::{PACK_KERNEL, PackParams, WINDOWED_KERNEL, WindowGeometry, WindowedParams};
