//! The CPU family's attention as two matrix products over stored scores ([`Products`]:
//! `attention_scores.wgsl`, `attention_softmax.wgsl`, `attention_values.wgsl`), every operand read through
//! 64 KiB uniform windows bound straight onto q, k, v and the scores.

use super::portable::OP;
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{check_bindings, dim};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::windows::{has_uniform_windows, window_at, window_starts, windows_fit};
use crate::gpu::{
    Dispatch, Gpu, Kernel, LaunchSpec, Tensor, UNIFORM_WINDOW, WINDOW_FLOATS, windows_then,
    workgroups_for,
};

/// The Params of [`SCORES_KERNEL`], [`SOFTMAX_KERNEL`] and [`VALUES_KERNEL`] ([`ProductsParams`]).
const PRODUCTS_PARAMS: &str = include_str!("../../../kernels/attention_products_params.inc.wgsl");

/// The 8 x 8 accumulator block the products share with the convolutions.
const BLOCK: &str = include_str!("../../../kernels/conv2d_block.inc.wgsl");

/// The CPU family's attention where it applies ([`Products`]), first product: the scores, keys x queries, q and
/// k read from uniform windows on the activations. The dispatch runs under this kernel's name, the softmax and
/// the second product ([`VALUES_KERNEL`]) included.
pub const SCORES_KERNEL: Kernel = kernel!("attention_scores", includes: [PRODUCTS_PARAMS, BLOCK],
    workgroup: 8, params: ProductsParams, bindings: &windows_then::<9>(8, &[ReadWrite]));

/// The scores' softmax over the keys, in place, its normalisation left to [`VALUES_KERNEL`].
pub const SOFTMAX_KERNEL: Kernel = kernel!("attention_softmax", includes: [PRODUCTS_PARAMS],
    workgroup: 8, params: ProductsParams, bindings: &[ReadWrite, ReadWrite]);

/// The second product: the values weighted by the softmax, the exponentials and v read from uniform windows.
pub const VALUES_KERNEL: Kernel = kernel!("attention_values", includes: [PRODUCTS_PARAMS, BLOCK],
    workgroup: 8, params: ProductsParams,
    bindings: &windows_then::<7>(5, &[Read, ReadWrite]));

params! {
    /// Mirrors `Params` in attention_products_params.inc.wgsl.
    pub struct ProductsParams {
        pub tokens: u32, pub head_dim: u32, pub rows: u32, pub count: u32, pub pairs: u32,
        pub blocks: u32, pub pair0: u32, pub out_pair0: u32, pub c0: u32, pub j0: u32,
        pub first: u32, pub scale: f32,
    }
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
        let (score_pairs, score_chunk) =
            if d * t <= wf { (wf / (d * t), d) } else { (1, PRODUCT_WINDOWS * rows) };
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
pub(super) fn products(
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
            let channel_rows = if d * t <= WINDOW_FLOATS { d } else { cut.value_rows };
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
        let softmax = ProductsParams { pairs: dim(OP, "pairs", group)?, ..base };
        plans.push(GroupPlan { scores, softmax, values });
    }

    // The scores with a window of slack for the values' windows; the kernels that write them bind the scores
    // alone.
    let scratch = gpu.scratch("attention scores", &[cut.group * t * t + WINDOW_FLOATS])?;
    let scores_only = scratch.view("attention scores", &[cut.group * t * t])?;
    let norm = gpu.scratch("attention norm", &[cut.group * t])?;
    let at = |tensor: &Tensor, row: u64| tensor.offset() + row * row_bytes;
    let qk_rows = || {
        plans.iter().flat_map(|g| g.scores.iter().flat_map(|(_, starts)| starts.iter().copied()))
    };
    let score_rows = plans
        .iter()
        .flat_map(|g| g.values.iter().flat_map(|(_, starts, _)| starts.iter().copied()));
    let v_rows = plans.iter().flat_map(|g| g.values.iter().map(|&(_, _, vrow)| vrow));
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
                let mut resources: Vec<_> =
                    starts.iter().map(|&r| window_at(q.buffer(), at(q, r))).collect();
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
                let mut resources: Vec<_> =
                    starts.iter().map(|&r| window_at(scratch.buffer(), at(&scratch, r))).collect();
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
            .then(Dispatch::launches(gpu, &SOFTMAX_KERNEL, OP, label, vec![softmax])?)
            .then(Dispatch::launches(gpu, &VALUES_KERNEL, OP, label, values)?))
    };
    Dispatch::sequence(OP, label, plans.iter().map(group)).map(Some)
}
