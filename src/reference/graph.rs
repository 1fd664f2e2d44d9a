//! Runs a graph IR on the CPU with the reference ops, node by node, with one f32 rounding between nodes (as the
//! GPU stores activations in f32). It tests the plan and executor (buffer reuse, bindings, recording order)
//! against a straightforward evaluation of the same graph.

use std::collections::HashMap;

use super::nn;
use crate::graph::ir::{Graph, Op, TensorId, TensorKind};
use crate::ops::conv2d::Conv2dConfig;
use crate::ops::linear::TokenLayout;

/// Evaluates `graph` for `batch` images. `weights` maps the weights file's names to data (a stacked
/// parameter is its parts concatenated, in order), `inputs` follow the graph's input order (batched). Returns every activation (batched, f32-rounded as stored, but kept as f64 for the
/// final output).
pub fn run(
    graph: &Graph,
    weights: &HashMap<String, Vec<f32>>,
    batch: usize,
    inputs: &[&[f32]],
) -> HashMap<TensorId, Vec<f64>> {
    let mut values: HashMap<TensorId, Vec<f32>> = HashMap::new();
    let mut exact: HashMap<TensorId, Vec<f64>> = HashMap::new();
    for (i, &id) in graph.inputs.iter().enumerate() {
        values.insert(id, inputs[i].to_vec());
    }
    for (i, t) in graph.tensors.iter().enumerate() {
        if let TensorKind::Stacked { parts, .. } = &t.kind {
            let stacked =
                parts.iter().flat_map(|(name, _)| weights[name].iter().copied()).collect();
            values.insert(TensorId(i), stacked);
        }
    }
    for node in &graph.nodes {
        let get = |id: TensorId| -> &[f32] {
            match &graph.tensors[id.0].kind {
                TensorKind::Param(name) => &weights[name],
                _ => &values[&id],
            }
        };
        let shape = |id: TensorId| graph.shape(id).to_vec();
        let ins: Vec<&[f32]> = node.inputs.iter().map(|&id| get(id)).collect();
        let out: Vec<f64> = match &node.op {
            Op::TimestepEmbedding { dim, flip_sin_to_cos, freq_shift } => {
                nn::timestep_embedding(ins[0], *dim, *flip_sin_to_cos, *freq_shift)
            }
            Op::Linear { layout, silu_input, out_scale } => {
                let w = shape(node.inputs[1]);
                let (n_out, k) = (w[0], w[1]);
                match layout {
                    TokenLayout::RowMajor => nn::linear(
                        ins[0],
                        k,
                        ins[1],
                        ins[2],
                        *silu_input,
                        ins.get(3).copied(),
                        *out_scale as f64,
                    ),
                    TokenLayout::Channels => {
                        let hw: usize = shape(node.inputs[0])[1..].iter().product();
                        let x = nn::to_tokens(ins[0], batch, k, hw);
                        let r = ins.get(3).map(|r| nn::to_tokens(r, batch, n_out, hw));
                        let y = nn::linear(
                            &x,
                            k,
                            ins[1],
                            ins[2],
                            *silu_input,
                            r.as_deref(),
                            *out_scale as f64,
                        );
                        nn::from_tokens(&y, batch, n_out, hw)
                    }
                }
            }
            Op::Conv2d(cfg) => {
                let extra = Extra::Residual(ins.get(3).copied());
                convolve(
                    ins[0],
                    batch,
                    &shape(node.inputs[0]),
                    cfg,
                    &ins[1..3],
                    &shape(node.inputs[1]),
                    extra,
                )
            }
            Op::Conv2dAddChannel { config, offset } => {
                let extra =
                    Extra::Channel { v: ins[3], len: shape(node.inputs[3])[0], offset: *offset };
                convolve(
                    ins[0],
                    batch,
                    &shape(node.inputs[0]),
                    config,
                    &ins[1..3],
                    &shape(node.inputs[1]),
                    extra,
                )
            }
            Op::NormConv2d { groups, eps, silu, config, channel_offset } => {
                // The norm's output rounded to f32, as the GPU holds it when it normalises while loading.
                let s = shape(node.inputs[0]);
                let hw = s[1..].iter().product();
                let normed: Vec<f32> = nn::group_norm(
                    ins[0],
                    batch,
                    s[0],
                    hw,
                    *groups,
                    ins[1],
                    ins[2],
                    *eps as f64,
                    *silu,
                )
                .into_iter()
                .map(|v| v as f32)
                .collect();
                let extra = match channel_offset {
                    Some(offset) => {
                        Extra::Channel { v: ins[5], len: shape(node.inputs[5])[0], offset: *offset }
                    }
                    None => Extra::Residual(ins.get(5).copied()),
                };
                convolve(&normed, batch, &s, config, &ins[3..5], &shape(node.inputs[3]), extra)
            }
            Op::GroupNorm { groups, eps, silu } => {
                let s = shape(node.inputs[0]);
                let hw = s[1..].iter().product();
                nn::group_norm(ins[0], batch, s[0], hw, *groups, ins[1], ins[2], *eps as f64, *silu)
            }
            Op::Attention { head_dim } => {
                let s = shape(node.inputs[0]);
                nn::attention(ins[0], ins[1], ins[2], batch, s[0], s[1] * s[2], *head_dim)
            }
            Op::AddChannel => {
                let s = shape(node.inputs[0]);
                let inner: usize = s[1..].iter().product();
                ins[0]
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| x as f64 + ins[1][i / inner] as f64)
                    .collect()
            }
            Op::Upsample2x => {
                let s = shape(node.inputs[0]);
                nn::upsample_nearest2x(ins[0], batch * s[0], s[1], s[2])
            }
            Op::Concat => {
                let (a, b) = (shape(node.inputs[0]), shape(node.inputs[1]));
                nn::concat_channels(ins[0], ins[1], batch, a[0], b[0], a[1] * a[2])
            }
        };
        values.insert(node.output, out.iter().map(|&v| v as f32).collect());
        exact.insert(node.output, out);
    }
    exact
}

/// What a convolution adds before its scale: a residual, or per-image channel offsets (image n's value for
/// channel c at `n * len + offset + c` of v).
enum Extra<'a> {
    Residual(Option<&'a [f32]>),
    Channel { v: &'a [f32], len: usize, offset: usize },
}

/// The convolution of `x` (`[batch] + xs`, read upsampled 2x where `cfg` says) by `params` (weight, bias of
/// shape `ws` and `[cout]`), plus `extra`, scaled.
fn convolve(
    x: &[f32],
    batch: usize,
    xs: &[usize],
    cfg: &Conv2dConfig,
    params: &[&[f32]],
    ws: &[usize],
    extra: Extra<'_>,
) -> Vec<f64> {
    let [c, h, w] = xs[..] else { unreachable!("convolutions read [C, H, W] maps") };
    // An upsampling convolution reads its input upsampled: upsample it here, then convolve.
    let upsampled: Vec<f32>;
    let (x, h, w) = if cfg.upsample {
        upsampled =
            nn::upsample_nearest2x(x, batch * c, h, w).into_iter().map(|v| v as f32).collect();
        (upsampled.as_slice(), 2 * h, 2 * w)
    } else {
        (x, h, w)
    };
    let ws: [usize; 4] = ws.try_into().expect("weights are [out, in, kh, kw]");
    let p = cfg.padding;
    let geometry = (p.top, p.bottom, p.left, p.right);
    let conv = |residual: Option<&[f32]>| {
        let (weight, bias) = (params[0], params[1]);
        let scale = cfg.out_scale as f64;
        nn::conv2d(x, [batch, c, h, w], weight, ws, bias, residual, cfg.stride, geometry, scale).0
    };
    match extra {
        Extra::Residual(r) => conv(r),
        Extra::Channel { v, len, offset } => {
            // The channel offset enters before the scale, as a residual constant over each plane.
            let cout = ws[0];
            let ho = (h + p.top + p.bottom - ws[2]) / cfg.stride + 1;
            let wo = (w + p.left + p.right - ws[3]) / cfg.stride + 1;
            let offsets: Vec<f32> = (0..batch * cout * ho * wo)
                .map(|i| {
                    let (n, c) = (i / (cout * ho * wo), i / (ho * wo) % cout);
                    v[n * len + offset + c]
                })
                .collect();
            conv(Some(&offsets))
        }
    }
}
