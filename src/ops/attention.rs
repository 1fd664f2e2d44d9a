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
use bytemuck::{Pod, Zeroable};

use super::{
    Access, Cost, Dispatch, Kernel, KernelChoice, LaunchSpec, UNIFORM_WINDOW, WINDOW_FLOATS,
    check_bindings, dim, dims, expect_shape, has_uniform_windows, nonzero, split_reduction,
    split_scratch_floats, window_at, window_binding, window_starts, windows_fit, windows_then,
    workgroups_for,
};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

const OP: &str = "attention";

/// The per-lane row reads and writes both attention kernels share.
const ROWS: &str = include_str!("../../kernels/attention_rows.inc.wgsl");

/// The kernel.
pub const KERNEL: Kernel = Kernel {
    name: "attention",
    source: include_str!("../../kernels/attention.wgsl"),
    includes: &[ROWS],
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    workgroup_size: 64,
    params_size: std::mem::size_of::<Params>(),
};

/// The Params of [`TILED_KERNEL`] and [`COMBINE_KERNEL`] ([`TiledParams`]).
const TILED_PARAMS: &str = include_str!("../../kernels/attention_tiled_params.inc.wgsl");

/// The GPU family's kernel: a workgroup per 8 queries (and key split), keys and values staged in workgroup
/// memory.
pub const TILED_KERNEL: Kernel = Kernel {
    name: "attention_tiled",
    source: include_str!("../../kernels/attention_tiled.wgsl"),
    includes: &[TILED_PARAMS],
    bindings: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    workgroup_size: 64,
    params_size: std::mem::size_of::<TiledParams>(),
};

/// Merges the key splits of [`TILED_KERNEL`].
pub const COMBINE_KERNEL: Kernel = Kernel {
    name: "attention_combine",
    source: include_str!("../../kernels/attention_combine.wgsl"),
    includes: &[TILED_PARAMS],
    bindings: &[Access::Read, Access::ReadWrite],
    workgroup_size: 256,
    params_size: std::mem::size_of::<TiledParams>(),
};

/// Mirrors `Params` in attention_tiled.wgsl and attention_combine.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct TiledParams {
    pub pairs: u32,
    pub head_dim: u32,
    pub tokens: u32,
    pub scale: f32,
    pub key_splits: u32,
    pub keys_per_split: u32,
    pub pair0: u32,
    pub _pad: u32,
}

/// Keys per block of [`TILED_KERNEL`] (its `BK`): key splits are multiples of it.
const TILED_KEYS: usize = 32;

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
    /// The split for `pairs` pairs of `heads` heads of `head_dim` over `tokens` tokens, with at most
    /// `max_floats` of partial state per launch: enough splits to bring an image to [`KEY_SPLIT_TARGET`]
    /// workgroups, with at least [`KEY_SPLIT_MIN`] keys each, balanced; one split (no partial state) where that
    /// is one, or where one pair's state would not fit.
    pub fn new(
        pairs: usize,
        heads: usize,
        head_dim: usize,
        tokens: usize,
        max_floats: usize,
    ) -> Self {
        let whole = KeySplit {
            splits: 1,
            keys: tokens.div_ceil(TILED_KEYS) * TILED_KEYS,
            pairs,
        };
        let blocks = heads * tokens.div_ceil(TILED_QUERIES);
        let (splits, keys) =
            split_reduction(tokens, blocks, KEY_SPLIT_TARGET, KEY_SPLIT_MIN, TILED_KEYS);
        let per_launch = max_floats / (splits * tokens * (head_dim + 2));
        if splits == 1 || per_launch == 0 {
            return whole;
        }
        KeySplit {
            splits,
            keys,
            pairs: per_launch.min(pairs),
        }
    }

    /// The split on this device: partial state within [`super::SPLIT_SCRATCH_BYTES`] and its binding limits; one
    /// split where the device was opened with split reductions off ([`crate::gpu::DeviceOptions::split_k`]).
    pub fn on(gpu: &Gpu, pairs: usize, heads: usize, head_dim: usize, tokens: usize) -> Self {
        Self::new(pairs, heads, head_dim, tokens, split_scratch_floats(gpu))
    }
}

/// Queries per workgroup of [`TILED_KERNEL`] (its `BQ`).
const TILED_QUERIES: usize = 8;

/// Workgroup memory [`TILED_KERNEL`] declares, in bytes (3,720 floats).
const TILED_WORKGROUP_BYTES: u32 = 3720 * 4;

/// The CPU family's kernel: keys and values from uniform windows.
pub const WINDOWED_KERNEL: Kernel = Kernel {
    name: "attention_windowed",
    source: include_str!("../../kernels/attention_windowed.wgsl"),
    includes: &[ROWS],
    bindings: &[
        Access::Read,
        Access::UniformWindow,
        Access::UniformWindow,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    workgroup_size: 8,
    params_size: std::mem::size_of::<WindowedParams>(),
};

/// Lays keys or values out in windows for [`WINDOWED_KERNEL`].
pub const PACK_KERNEL: Kernel = Kernel {
    name: "attention_pack",
    source: include_str!("../../kernels/attention_pack.wgsl"),
    includes: &[],
    bindings: &[Access::Read, Access::ReadWrite],
    workgroup_size: 64,
    params_size: std::mem::size_of::<PackParams>(),
};

/// Mirrors `Params` in attention_windowed.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct WindowedParams {
    pub pairs: u32,
    pub head_dim: u32,
    pub tokens: u32,
    pub kw: u32,
    pub per_window: u32,
    pub pair0: u32,
    pub key0: u32,
    pub first: u32,
    pub last: u32,
    pub scale: f32,
    pub _pad: [u32; 2],
}

/// Mirrors `Params` in attention_pack.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PackParams {
    pub pairs: u32,
    pub head_dim: u32,
    pub tokens: u32,
    pub kw: u32,
    pub per_window: u32,
    pub key_windows: u32,
    pub windows: u32,
    pub window0: u32,
}

/// Keys per block of `attention_windowed.wgsl` (its `KB`): a window's keys come in multiples of it.
const KEY_BLOCK: usize = 16;

/// How (image, head) pairs and their keys are laid out in windows: each window holds `per_window` pairs with
/// `kw` keys each; a pair's keys take `key_windows` windows, consecutive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowGeometry {
    pub kw: usize,
    pub per_window: usize,
    pub key_windows: usize,
    pub windows: usize,
}

impl WindowGeometry {
    /// The layout for `pairs` pairs of `head_dim` x `tokens`, or `None` when one key block of a head does not
    /// fit a window (head_dim over 1,024).
    pub fn new(pairs: usize, head_dim: usize, tokens: usize) -> Option<Self> {
        let padded = tokens.div_ceil(KEY_BLOCK) * KEY_BLOCK;
        let (kw, per_window, key_windows) = if head_dim * padded <= WINDOW_FLOATS {
            (padded, (WINDOW_FLOATS / (head_dim * padded)).min(pairs), 1)
        } else {
            let kw = WINDOW_FLOATS / head_dim / KEY_BLOCK * KEY_BLOCK;
            (kw, 1, tokens.div_ceil(kw.max(1)))
        };
        (kw > 0 && pairs > 0).then(|| WindowGeometry {
            kw,
            per_window,
            key_windows,
            windows: pairs.div_ceil(per_window) * key_windows,
        })
    }
}

/// The kernel [`attention`] runs on this device for heads of `head_dim`: `attention_windowed` for the CPU
/// family where a key block fits a window (head_dim up to 1,024) and the device has 64 KiB uniform bindings
/// (which [`attention`] replaces by the products, [`SCORES_KERNEL`], where [`Products`] apply and the
/// operands have room for their windows), `attention_tiled` for the GPU family (any head_dim), `attention`
/// otherwise. Never depends on the batch.
pub fn kernel_for(gpu: &Gpu, head_dim: usize) -> &'static Kernel {
    let windows = has_uniform_windows(gpu) && gpu.limits().max_buffer_size >= UNIFORM_WINDOW;
    let tiles = gpu.limits().max_compute_workgroup_storage_size >= TILED_WORKGROUP_BYTES;
    match gpu.kernel_family() {
        KernelChoice::Cpu if windows && WindowGeometry::new(1, head_dim, 1).is_some() => {
            &WINDOWED_KERNEL
        }
        KernelChoice::Gpu if tiles => &TILED_KERNEL,
        _ => &KERNEL,
    }
}

/// Mirrors `Params` in attention.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Params {
    pub batch: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub tokens: u32,
    pub scale: f32,
    pub _pad: [u32; 3],
}

/// Prepares `out = softmax(q k^T / sqrt(head_dim)) v` per head.
///
/// q, k, v and out are `[N, C, H, W]` maps (the H*W pixels are the tokens), C = heads * head_dim; head h owns
/// channels `h * head_dim .. (h + 1) * head_dim`.
pub fn attention(
    gpu: &Gpu,
    label: &str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    head_dim: usize,
) -> Result<Dispatch> {
    let [n, c, h, w] = dims::<4>(OP, q)?;
    let tokens = h * w;
    for (what, value) in [
        ("batch", n),
        ("channels", c),
        ("tokens", tokens),
        ("head_dim", head_dim),
    ] {
        nonzero(OP, what, value)?;
    }
    if c % head_dim != 0 {
        return Err(Error::param(
            OP,
            format!(
                "head_dim {head_dim} does not divide the {c} channels of `{}`",
                q.label()
            ),
        ));
    }
    for t in [k, v, out] {
        expect_shape(OP, t, q.shape())?;
    }
    let heads = c / head_dim;
    let params = Params {
        batch: dim(OP, "batch", n)?,
        heads: dim(OP, "heads", heads)?,
        head_dim: dim(OP, "head_dim", head_dim)?,
        tokens: dim(OP, "tokens", tokens)?,
        scale: (1.0 / (head_dim as f64).sqrt()) as f32,
        _pad: [0; 3],
    };
    let cost = Cost::new(
        4 * (n * heads * tokens * tokens * head_dim) as u64,
        4 * q.len() as u64,
    );
    let kernel = kernel_for(gpu, head_dim);
    if kernel.name == TILED_KERNEL.name {
        return tiled(
            gpu,
            label,
            [q, k, v, out],
            n * heads,
            heads,
            head_dim,
            tokens,
            params.scale,
        )
        .map(|d| d.with_cost(cost));
    }
    if kernel.name == WINDOWED_KERNEL.name {
        if let Some(cut) = Products::on(gpu, n * heads, head_dim, tokens) {
            let operands = [q, k, v, out];
            let scale = params.scale;
            if let Some(d) = products(
                gpu,
                label,
                &cut,
                operands,
                n * heads,
                head_dim,
                tokens,
                scale,
            )? {
                return Ok(d.with_cost(cost));
            }
        }
        return windowed(
            gpu,
            label,
            [q, k, v, out],
            n * heads,
            head_dim,
            tokens,
            params.scale,
        )
        .map(|d| d.with_cost(cost));
    }
    // One invocation per 8 query tokens.
    let invocations = (n * heads * tokens.div_ceil(8)) as u64;
    Dispatch::new(
        gpu,
        &KERNEL,
        OP,
        label,
        &params,
        &[q, k, v, out],
        workgroups_for(invocations, KERNEL.workgroup_size),
    )
    .map(|d| d.with_cost(cost))
}

/// The GPU family's path: [`TILED_KERNEL`] per launch of [`KeySplit::pairs`] pairs, over all keys, or over
/// key splits into the device's scratch buffer followed by [`COMBINE_KERNEL`].
#[allow(clippy::too_many_arguments)] // the four operands and the geometry of one attention
fn tiled(
    gpu: &Gpu,
    label: &str,
    [q, k, v, out]: [&Tensor; 4],
    pairs: usize,
    heads: usize,
    head_dim: usize,
    tokens: usize,
    scale: f32,
) -> Result<Dispatch> {
    let split = KeySplit::on(gpu, pairs, heads, head_dim, tokens);
    // Unsplit, the kernel writes no partial state: any scratch tensor fills the binding.
    let state = if split.splits > 1 {
        split.splits * split.pairs * tokens * (head_dim + 2)
    } else {
        1
    };
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
        // One workgroup per 8 queries of each pair and key split.
        let groups = (split.splits * count * tokens.div_ceil(TILED_QUERIES)) as u64;
        let mut launch = Dispatch::new(
            gpu,
            &TILED_KERNEL,
            OP,
            label,
            &params,
            &[q, k, v, out, &part],
            workgroups_for(
                groups * TILED_KERNEL.workgroup_size as u64,
                TILED_KERNEL.workgroup_size,
            ),
        )?;
        if split.splits > 1 {
            launch = launch.then(Dispatch::new(
                gpu,
                &COMBINE_KERNEL,
                OP,
                label,
                &params,
                &[&part, out],
                workgroups_for(
                    (count * head_dim * tokens) as u64,
                    COMBINE_KERNEL.workgroup_size,
                ),
            )?);
        }
        Ok(launch)
    };
    Dispatch::sequence(OP, label, (0..pairs).step_by(split.pairs).map(group))
}

/// The windowed path: pack k and v into windows (in buffers of at most one storage binding each), then one
/// launch per window, a pair's key windows in order.
#[allow(clippy::too_many_arguments)] // the four operands and the geometry of one attention
fn windowed(
    gpu: &Gpu,
    label: &str,
    [q, k, v, out]: [&Tensor; 4],
    pairs: usize,
    head_dim: usize,
    tokens: usize,
    scale: f32,
) -> Result<Dispatch> {
    check_bindings(gpu, OP, &[q, k, v, out])?;
    let geo = WindowGeometry::new(pairs, head_dim, tokens).ok_or_else(|| {
        Error::shape(
            OP,
            format!("`{label}`: heads of {head_dim} do not fit a window"),
        )
    })?;
    let limits = gpu.limits();
    let per_buffer = (limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
        / UNIFORM_WINDOW) as usize;
    let buffers = geo.windows.div_ceil(per_buffer);
    let pack_params = PackParams {
        pairs: dim(OP, "pairs", pairs)?,
        head_dim: dim(OP, "head_dim", head_dim)?,
        tokens: dim(OP, "tokens", tokens)?,
        kw: dim(OP, "keys per window", geo.kw)?,
        per_window: dim(OP, "pairs per window", geo.per_window)?,
        key_windows: dim(OP, "key windows", geo.key_windows)?,
        windows: 0,
        window0: 0,
    };
    // Buffer b holds windows b * per_buffer ..; each gets one pack launch per operand.
    let mut packed: Vec<[wgpu::Buffer; 2]> = Vec::with_capacity(buffers);
    let mut buffer_params = Vec::with_capacity(buffers);
    for b in 0..buffers {
        let count = per_buffer.min(geo.windows - b * per_buffer);
        let make = |what: &str| {
            let name = format!("{what} windows of `{label}`");
            gpu.scoped(&name, || {
                gpu.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&name),
                    size: count as u64 * UNIFORM_WINDOW,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
                    mapped_at_creation: false,
                })
            })
        };
        packed.push([make("key")?, make("value")?]);
        buffer_params.push(PackParams {
            windows: dim(OP, "windows", count)?,
            window0: dim(OP, "window", b * per_buffer)?,
            ..pack_params
        });
    }
    let rows = (geo.per_window * head_dim) as u64;
    let mut pack_specs = Vec::with_capacity(2 * buffers);
    for (b, params) in buffer_params.iter().enumerate() {
        for (t, src) in [k, v].into_iter().enumerate() {
            pack_specs.push(LaunchSpec {
                params: bytemuck::bytes_of(params),
                resources: vec![src.binding(), packed[b][t].as_entire_binding()],
                workgroups: workgroups_for(
                    params.windows as u64 * rows,
                    PACK_KERNEL.workgroup_size,
                ),
            });
        }
    }
    let pack = Dispatch::launches(gpu, &PACK_KERNEL, OP, label, pack_specs)?;

    // The running maximum and denominator of every query, between a pair's key windows.
    let state = gpu.scoped(&format!("softmax state of `{label}`"), || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: if geo.key_windows > 1 {
                8 * (pairs * tokens) as u64
            } else {
                4
            },
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    })?;
    let groups = tokens
        .div_ceil(4)
        .div_ceil(WINDOWED_KERNEL.workgroup_size as usize);
    let mut params = Vec::with_capacity(geo.windows);
    for w in 0..geo.windows {
        let (group, kwi) = (w / geo.key_windows, w % geo.key_windows);
        params.push(WindowedParams {
            pairs: pack_params.pairs,
            head_dim: pack_params.head_dim,
            tokens: pack_params.tokens,
            kw: pack_params.kw,
            per_window: pack_params.per_window,
            pair0: dim(OP, "pair", group * geo.per_window)?,
            key0: dim(OP, "key", kwi * geo.kw)?,
            first: (kwi == 0) as u32,
            last: (kwi + 1 == geo.key_windows) as u32,
            scale,
            _pad: [0; 2],
        });
    }
    let specs = params
        .iter()
        .enumerate()
        .map(|(w, p)| {
            let [kb, vb] = &packed[w / per_buffer];
            LaunchSpec {
                params: bytemuck::bytes_of(p),
                resources: vec![
                    q.binding(),
                    window_binding(kb, w % per_buffer),
                    window_binding(vb, w % per_buffer),
                    out.binding(),
                    state.as_entire_binding(),
                ],
                workgroups: (geo.per_window.min(pairs - p.pair0 as usize) * groups) as u64,
            }
        })
        .collect();
    let mut d = Dispatch::launches(gpu, &WINDOWED_KERNEL, OP, label, specs)?.after(pack);
    for pair in packed {
        for b in pair {
            d = d.owning(b);
        }
    }
    Ok(d.owning(state))
}

/// The Params of [`SCORES_KERNEL`], [`SOFTMAX_KERNEL`] and [`VALUES_KERNEL`] ([`ProductsParams`]).
const PRODUCTS_PARAMS: &str = include_str!("../../kernels/attention_products_params.inc.wgsl");

/// The 8 x 8 accumulator block the products share with the convolutions.
const BLOCK: &str = include_str!("../../kernels/conv2d_block.inc.wgsl");

/// The CPU family's attention where it applies ([`Products`]), first product: the scores, keys x queries, q and
/// k read from uniform windows on the activations. The dispatch runs under this kernel's name, the softmax and
/// the second product ([`VALUES_KERNEL`]) included.
pub const SCORES_KERNEL: Kernel = Kernel {
    name: "attention_scores",
    source: include_str!("../../kernels/attention_scores.wgsl"),
    includes: &[PRODUCTS_PARAMS, BLOCK],
    bindings: &windows_then::<9>(8, &[Access::ReadWrite]),
    workgroup_size: 8,
    params_size: std::mem::size_of::<ProductsParams>(),
};

/// The scores' softmax over the keys, in place, its normalisation left to [`VALUES_KERNEL`].
pub const SOFTMAX_KERNEL: Kernel = Kernel {
    name: "attention_softmax",
    source: include_str!("../../kernels/attention_softmax.wgsl"),
    includes: &[PRODUCTS_PARAMS],
    bindings: &[Access::ReadWrite, Access::ReadWrite],
    workgroup_size: 8,
    params_size: std::mem::size_of::<ProductsParams>(),
};

/// The second product: the values weighted by the softmax, the exponentials and v read from uniform windows.
pub const VALUES_KERNEL: Kernel = Kernel {
    name: "attention_values",
    source: include_str!("../../kernels/attention_values.wgsl"),
    includes: &[PRODUCTS_PARAMS, BLOCK],
    bindings: &windows_then::<7>(5, &[Access::Read, Access::ReadWrite]),
    workgroup_size: 8,
    params_size: std::mem::size_of::<ProductsParams>(),
};

/// Mirrors `Params` in attention_products_params.inc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ProductsParams {
    pub tokens: u32,
    pub head_dim: u32,
    pub rows: u32,
    pub count: u32,
    pub pairs: u32,
    pub blocks: u32,
    pub pair0: u32,
    pub out_pair0: u32,
    pub c0: u32,
    pub j0: u32,
    pub first: u32,
    pub scale: f32,
}

/// The most bytes of scores [`Products`] keeps at once (the shared scratch `attention scores`, a window of
/// slack beside): pairs whose scores do not fit run in groups, one after another.
pub const SCORES_SCRATCH_BYTES: u64 = 32 << 20;

/// x windows (q, or the scores) one launch of the products binds.
const PRODUCT_WINDOWS: usize = 4;

/// How the CPU family's attention runs as two matrix products over a scores matrix it stores: per group of
/// `group` pairs, [`SCORES_KERNEL`] writes `s[j, i] = scale * k_j . q_i` for every key j and query i,
/// [`SOFTMAX_KERNEL`] turns each query's column into exponentials and a normaliser, and [`VALUES_KERNEL`] sums
/// the values they weight. Each product reads both operands from 64 KiB uniform windows (rows of `tokens`
/// floats), the per-lane one (q, the scores) from up to four windows per launch: where an operand's rows for
/// one pair fit a window, a launch takes several pairs from one window; else a launch takes one pair's terms
/// in chunks of up to four windows' rows, which add to the output in order.
///
/// The attention_windowed kernel streams keys through an online softmax with each query's output rows read and
/// written per lane for every block of keys; stored scores make both halves plain products, whose operands
/// lavapipe reads once per SIMD vector (BENCHMARKS.md, "attention").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Products {
    /// Pairs per group: the scores of `group` pairs are stored at once.
    pub group: usize,
    /// Pairs per launch of the scores (several where a pair's q rows fit a window), else 1.
    pub score_pairs: usize,
    /// Channels per launch of the scores, when it takes one pair (`head_dim` when it takes several).
    pub score_chunk: usize,
    /// Pairs per launch of the values (several where a pair's scores and values each fit a window), else 1.
    pub value_pairs: usize,
    /// Keys per launch of the values, when it takes one pair (`tokens` when it takes several).
    pub value_chunk: usize,
    /// Channel rows per value window, when a launch takes one pair: a multiple of 8.
    pub value_rows: usize,
    /// Rows of the scores per window, a multiple of 4.
    pub score_rows: usize,
}

impl Products {
    /// The cut for `pairs` pairs of heads of `head_dim` over `tokens` tokens with at most `max_floats` of
    /// scores at once, or `None` when the products do not apply: tokens not a multiple of 8, more than 2,048
    /// tokens (8 rows of values would not fit a window), or not one pair's scores within `max_floats`.
    pub fn new(pairs: usize, head_dim: usize, tokens: usize, max_floats: usize) -> Option<Self> {
        let (t, d, wf) = (tokens, head_dim, WINDOW_FLOATS);
        if pairs == 0 || d == 0 || t == 0 || t % 8 != 0 || t > wf / 8 {
            return None;
        }
        let group = (max_floats / (t * t)).min(pairs);
        if group == 0 {
            return None;
        }
        let rows = wf / t;
        let (score_pairs, score_chunk) = if d * t <= wf {
            (wf / (d * t), d)
        } else {
            (1, PRODUCT_WINDOWS * rows)
        };
        let score_rows = rows / 4 * 4;
        let (value_pairs, value_chunk) = if t * t <= wf && d * t <= wf {
            ((wf / (t * t)).min(wf / (d * t)), t)
        } else {
            (1, PRODUCT_WINDOWS * score_rows)
        };
        Some(Products {
            group,
            score_pairs: score_pairs.min(group),
            score_chunk,
            value_pairs: value_pairs.min(group),
            value_chunk,
            value_rows: rows / 8 * 8,
            score_rows,
        })
    }

    /// The cut on this device, the scores within [`SCORES_SCRATCH_BYTES`] and its binding limits; `None` where
    /// the products do not apply, the device does not read activations through uniform windows
    /// ([`crate::gpu::DeviceOptions::input_windows`]), or it binds fewer than the scores' 9 uniform buffers
    /// (8 windows and the Params) per shader stage.
    pub fn on(gpu: &Gpu, pairs: usize, head_dim: usize, tokens: usize) -> Option<Self> {
        let limits = gpu.limits();
        let uniforms = limits.max_uniform_buffers_per_shader_stage as usize;
        if !(gpu.input_windows() && has_uniform_windows(gpu) && uniforms > 2 * PRODUCT_WINDOWS) {
            return None;
        }
        // The scores are bound as storage (the window of slack past them is not), and the buffer holds both.
        let bytes = SCORES_SCRATCH_BYTES
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size.saturating_sub(UNIFORM_WINDOW));
        Self::new(pairs, head_dim, tokens, (bytes / 4) as usize)
    }
}

/// One group of [`Products`]: its launches of each kernel, as Params with the rows (of the x operand; of v for
/// the values) their windows start at.
struct GroupPlan {
    scores: Vec<(ProductsParams, [u64; PRODUCT_WINDOWS])>,
    softmax: ProductsParams,
    values: Vec<(ProductsParams, [u64; PRODUCT_WINDOWS], u64)>,
}

/// The products path ([`Products`]); `None` when a window of q, k or v would not lie within its buffer at an
/// aligned offset (a tensor sized exactly, not an arena activation), or the scores' windows would not start at
/// aligned offsets: the caller runs `attention_windowed` then.
#[allow(clippy::too_many_arguments)] // the four operands and the geometry of one attention
fn products(
    gpu: &Gpu,
    label: &str,
    cut: &Products,
    [q, k, v, out]: [&Tensor; 4],
    pairs: usize,
    head_dim: usize,
    tokens: usize,
    scale: f32,
) -> Result<Option<Dispatch>> {
    let (t, d) = (tokens, head_dim);
    let row_bytes = 4 * t as u64;
    let base = ProductsParams {
        tokens: dim(OP, "tokens", t)?,
        head_dim: dim(OP, "head_dim", d)?,
        scale,
        ..Default::default()
    };
    let mut plans = Vec::new();
    for g0 in (0..pairs).step_by(cut.group) {
        let group = cut.group.min(pairs - g0);
        // The scores: windows at rows of q and k, counted from the tensors' first row.
        let rows = WINDOW_FLOATS / t;
        let mut scores = Vec::new();
        for p0 in (0..group).step_by(cut.score_pairs) {
            let n = cut.score_pairs.min(group - p0);
            for c0 in (0..d).step_by(cut.score_chunk) {
                let count = cut.score_chunk.min(d - c0);
                let params = ProductsParams {
                    rows: dim(OP, "rows", rows)?,
                    count: dim(OP, "channels", count)?,
                    pairs: dim(OP, "pairs", n)?,
                    blocks: dim(OP, "key blocks", t / 8)?,
                    pair0: dim(OP, "pair", p0)?,
                    first: (c0 == 0) as u32,
                    ..base
                };
                let first = ((g0 + p0) * d + c0) as u64;
                scores.push((params, window_starts(first, count, rows)));
            }
        }
        // The values: windows at rows of the scores, counted from the scratch's first row, and at rows of v.
        let mut values = Vec::new();
        for p0 in (0..group).step_by(cut.value_pairs) {
            let n = cut.value_pairs.min(group - p0);
            let channel_rows = if d * t <= WINDOW_FLOATS {
                d
            } else {
                cut.value_rows
            };
            for c0 in (0..d).step_by(channel_rows) {
                for j0 in (0..t).step_by(cut.value_chunk) {
                    let count = cut.value_chunk.min(t - j0);
                    let params = ProductsParams {
                        rows: dim(OP, "rows", cut.score_rows)?,
                        count: dim(OP, "keys", count)?,
                        pairs: dim(OP, "pairs", n)?,
                        blocks: dim(OP, "channel blocks", channel_rows.min(d - c0).div_ceil(8))?,
                        pair0: dim(OP, "pair", p0)?,
                        out_pair0: dim(OP, "pair", g0 + p0)?,
                        c0: dim(OP, "channel", c0)?,
                        j0: dim(OP, "key", j0)?,
                        first: (j0 == 0) as u32,
                        ..base
                    };
                    let first = (p0 * t + j0) as u64;
                    let starts = window_starts(first, count, cut.score_rows);
                    values.push((params, starts, ((g0 + p0) * d + c0) as u64));
                }
            }
        }
        let softmax = ProductsParams {
            pairs: dim(OP, "pairs", group)?,
            ..base
        };
        plans.push(GroupPlan {
            scores,
            softmax,
            values,
        });
    }

    // The scores with a window of slack for the values' windows; the kernels that write them bind the scores
    // alone.
    let scratch = gpu.scratch("attention scores", &[cut.group * t * t + WINDOW_FLOATS])?;
    let scores_only = scratch.view("attention scores", &[cut.group * t * t])?;
    let norm = gpu.scratch("attention norm", &[cut.group * t])?;
    let at = |tensor: &Tensor, row: u64| tensor.offset() + row * row_bytes;
    let qk_rows = || {
        plans.iter().flat_map(|g| {
            g.scores
                .iter()
                .flat_map(|(_, starts)| starts.iter().copied())
        })
    };
    let score_rows = plans.iter().flat_map(|g| {
        g.values
            .iter()
            .flat_map(|(_, starts, _)| starts.iter().copied())
    });
    let v_rows = plans
        .iter()
        .flat_map(|g| g.values.iter().map(|&(_, _, vrow)| vrow));
    if !(windows_fit(gpu, q.buffer(), qk_rows().map(|r| at(q, r)))
        && windows_fit(gpu, k.buffer(), qk_rows().map(|r| at(k, r)))
        && windows_fit(gpu, v.buffer(), v_rows.map(|r| at(v, r)))
        && windows_fit(gpu, scratch.buffer(), score_rows.map(|r| at(&scratch, r))))
    {
        return Ok(None);
    }
    check_bindings(gpu, OP, &[out, &scores_only, &norm])?;

    let query_groups = t.div_ceil(64) as u64;
    let group = |plan: &GroupPlan| -> Result<Dispatch> {
        let scores = plan
            .scores
            .iter()
            .map(|(p, starts)| {
                let mut resources: Vec<_> = starts
                    .iter()
                    .map(|&r| window_at(q.buffer(), at(q, r)))
                    .collect();
                resources.extend(starts.iter().map(|&r| window_at(k.buffer(), at(k, r))));
                resources.push(scores_only.binding());
                LaunchSpec {
                    params: bytemuck::bytes_of(p),
                    resources,
                    workgroups: (p.pairs * p.blocks) as u64 * query_groups,
                }
            })
            .collect();
        let softmax = LaunchSpec {
            params: bytemuck::bytes_of(&plan.softmax),
            resources: vec![scores_only.binding(), norm.binding()],
            workgroups: workgroups_for(
                (plan.softmax.pairs as usize * t / 4) as u64,
                SOFTMAX_KERNEL.workgroup_size,
            ),
        };
        let values = plan
            .values
            .iter()
            .map(|(p, starts, vrow)| {
                let mut resources: Vec<_> = starts
                    .iter()
                    .map(|&r| window_at(scratch.buffer(), at(&scratch, r)))
                    .collect();
                resources.extend([
                    window_at(v.buffer(), at(v, *vrow)),
                    norm.binding(),
                    out.binding(),
                ]);
                LaunchSpec {
                    params: bytemuck::bytes_of(p),
                    resources,
                    workgroups: (p.pairs * p.blocks) as u64 * query_groups,
                }
            })
            .collect();
        Ok(Dispatch::launches(gpu, &SCORES_KERNEL, OP, label, scores)?
            .then(Dispatch::launches(
                gpu,
                &SOFTMAX_KERNEL,
                OP,
                label,
                vec![softmax],
            )?)
            .then(Dispatch::launches(gpu, &VALUES_KERNEL, OP, label, values)?))
    };
    Dispatch::sequence(OP, label, plans.iter().map(group)).map(Some)
}
