//! `attention_tiled.wgsl`: the GPU family's attention where a workgroup holds 14.5 KiB, flash-attention style
//! over shared-memory tiles of 32 keys, 8 queries a workgroup; and what it shares with `attention_flash.wgsl`
//! ([`super::flash`]): the key split ([`KeySplit`], merged by `attention_combine.wgsl`) and the launches of a
//! query-blocked kernel ([`Blocking`], `blocked`).

use super::portable::OP;
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::dim;
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Dispatch, Gpu, Kernel, Tensor};
use crate::ops::{split_reduction, split_scratch_floats};

/// The Params of [`TILED_KERNEL`] and [`COMBINE_KERNEL`] ([`TiledParams`]).
const TILED_PARAMS: &str = include_str!("../../../kernels/attention_tiled_params.inc.wgsl");

/// The GPU family's kernel: a workgroup per 8 queries (and key split), keys and values staged in workgroup
/// memory.
pub const TILED_KERNEL: Kernel = kernel!("attention_tiled", includes: [TILED_PARAMS], workgroup: 64,
    params: TiledParams, bindings: &[Read, Read, Read, ReadWrite, ReadWrite]);

/// Merges the key splits of [`TILED_KERNEL`].
pub const COMBINE_KERNEL: Kernel = kernel!("attention_combine", includes: [TILED_PARAMS],
    workgroup: 256, params: TiledParams, bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in attention_tiled.wgsl and attention_combine.wgsl.
    pub struct TiledParams {
        pub pairs: u32, pub head_dim: u32, pub tokens: u32, pub scale: f32, pub key_splits: u32,
        pub keys_per_split: u32, pub pair0: u32, pub _pad: u32,
    }
}

/// A kernel over blocks of queries and keys with `attention_tiled_params.inc.wgsl`'s Params and partial state:
/// a workgroup per `queries` queries (and key split), keys in blocks of `keys`.
#[derive(Clone, Copy, Debug)]
pub struct Blocking {
    /// The kernel (`attention_flash` or `attention_tiled`).
    pub kernel: &'static Kernel,
    /// Queries per workgroup (the kernel's `BQ`).
    pub queries: usize,
    /// Keys per block (its `BK`): key splits are multiples of it.
    pub keys: usize,
    /// Workgroup memory the kernel declares, in bytes.
    pub workgroup_bytes: u32,
}

/// [`TILED_KERNEL`]: 8 queries a workgroup, blocks of 32 keys, 3,720 floats of workgroup memory.
pub const TILED: Blocking =
    Blocking { kernel: &TILED_KERNEL, queries: 8, keys: 32, workgroup_bytes: 3720 * 4 };

impl Blocking {
    /// Whether the kernel uses subgroup operations (its `SUBGROUPS` variant).
    pub fn uses_subgroups(&self) -> bool {
        self.kernel.defines.contains(&("SUBGROUPS", "1"))
    }

    /// Whether this device runs the kernel: its workgroups hold the kernel's invocations and workgroup memory,
    /// and it has subgroups where the kernel uses them.
    pub fn fits(&self, gpu: &Gpu) -> bool {
        let limits = gpu.limits();
        (gpu.subgroups() || !self.uses_subgroups())
            && limits.max_compute_workgroup_storage_size >= self.workgroup_bytes
            && limits.max_compute_invocations_per_workgroup >= self.kernel.workgroup_size
            && limits.max_compute_workgroup_size_x >= self.kernel.workgroup_size
    }
}

/// Workgroups (query blocks x heads x key splits) [`KeySplit`] aims for per image: about the multiprocessors
/// of a large GPU (an H200 has 132).
pub const KEY_SPLIT_TARGET: usize = 128;

/// The fewest keys a split takes (two blocks): each query's partial state is head_dim + 2 floats written and
/// read once, against 4 x head_dim FLOPs per key.
pub const KEY_SPLIT_MIN: usize = 64;

/// How [`TILED_KERNEL`] splits the keys of each (image, head) pair: `splits` ranges of `keys` (a multiple of
/// 32; the last may be shorter), merged by [`COMBINE_KERNEL`] in order; the pairs run in launches of `pairs`
/// so that the partial state fits the scratch limit. Chosen from one image's geometry, never the batch, so an
/// image's result does not depend on the batch it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySplit {
    pub splits: usize,
    pub keys: usize,
    pub pairs: usize,
}

impl KeySplit {
    /// The split of `blocking`'s kernel for `pairs` pairs of `heads` heads of `head_dim` over `tokens` tokens,
    /// with at most `max_floats` of partial state per launch: enough splits to bring an image to
    /// [`KEY_SPLIT_TARGET`] workgroups, with at least [`KEY_SPLIT_MIN`] keys each (and whole key blocks),
    /// balanced; one split (no partial state) where that is one, or where one pair's state would not fit.
    pub fn new(
        blocking: &Blocking,
        pairs: usize,
        heads: usize,
        head_dim: usize,
        tokens: usize,
        max_floats: usize,
    ) -> Self {
        let bk = blocking.keys;
        let whole = KeySplit { splits: 1, keys: tokens.div_ceil(bk) * bk, pairs };
        let blocks = heads * tokens.div_ceil(blocking.queries);
        let (splits, keys) =
            split_reduction(tokens, blocks, KEY_SPLIT_TARGET, KEY_SPLIT_MIN.max(bk), bk);
        let per_launch = max_floats / (splits * tokens * (head_dim + 2));
        if splits == 1 || per_launch == 0 {
            return whole;
        }
        KeySplit { splits, keys, pairs: per_launch.min(pairs) }
    }

    /// The split on this device: partial state within [`SPLIT_SCRATCH_BYTES`](crate::ops::SPLIT_SCRATCH_BYTES) and its binding limits; one
    /// split where the device was opened with split reductions off ([`crate::gpu::DeviceOptions::split_k`]).
    pub fn on(
        gpu: &Gpu,
        blocking: &Blocking,
        pairs: usize,
        heads: usize,
        head_dim: usize,
        tokens: usize,
    ) -> Self {
        Self::new(blocking, pairs, heads, head_dim, tokens, split_scratch_floats(gpu))
    }
}

/// The GPU family's path: `blocking`'s kernel per launch of [`KeySplit::pairs`] pairs, over all keys, or over
/// key splits into the device's scratch buffer followed by [`COMBINE_KERNEL`].
#[allow(clippy::too_many_arguments)] // the kernel, the four operands and the geometry of one attention
pub(super) fn blocked(
    gpu: &Gpu,
    blocking: &Blocking,
    label: &str,
    [q, k, v, out]: [&Tensor; 4],
    pairs: usize,
    heads: usize,
    head_dim: usize,
    tokens: usize,
    scale: f32,
) -> Result<Dispatch> {
    let split = KeySplit::on(gpu, blocking, pairs, heads, head_dim, tokens);
    // Unsplit, the kernel writes no partial state: any scratch tensor fills the binding.
    let state =
        if split.splits > 1 { split.splits * split.pairs * tokens * (head_dim + 2) } else { 1 };
    let part = gpu.scratch("attention split state", &[state])?;
    let group = |pair0: usize| -> Result<Dispatch> {
        let count = split.pairs.min(pairs - pair0);
        let params = TiledParams {
            pairs: dim(OP, "pairs", count)?,
            head_dim: dim(OP, "head_dim", head_dim)?,
            tokens: dim(OP, "tokens", tokens)?,
            scale,
            key_splits: dim(OP, "key splits", split.splits)?,
            keys_per_split: dim(OP, "keys per split", split.keys)?,
            pair0: dim(OP, "first pair", pair0)?,
            _pad: 0,
        };
        // One workgroup per block of queries of each pair and key split.
        let groups = (split.splits * count * tokens.div_ceil(blocking.queries)) as u64;
        let kernel = blocking.kernel;
        let mut launch = Dispatch::for_invocations(
            gpu,
            kernel,
            OP,
            label,
            &params,
            &[q, k, v, out, &part],
            groups * kernel.workgroup_size as u64,
        )?;
        if split.splits > 1 {
            launch = launch.then(Dispatch::for_invocations(
                gpu,
                &COMBINE_KERNEL,
                OP,
                label,
                &params,
                &[&part, out],
                (count * head_dim * tokens) as u64,
            )?);
        }
        Ok(launch)
    };
    Dispatch::sequence(OP, label, (0..pairs).step_by(split.pairs).map(group))
}
