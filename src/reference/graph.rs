//! Runs a graph IR on the CPU with the reference ops, node by node, with one f32 rounding between nodes (as the
//! GPU stores activations in f32). It tests the plan and executor (buffer reuse, bindings, recording order)
//! against a straightforward evaluation of the same graph.

use std::collections::HashMap;

use super::nn;
use crate::graph::ir::{Graph, Op, TensorId, TensorKind};
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
            Op::Conv2d(cfg) | Op::Conv2dAddChannel { config: cfg, .. } => {
                let [c, h, w] = shape(node.inputs[0])[..] else { unreachable!() };
                // An upsampling convolution reads its input upsampled: upsample it here, then convolve.
                let upsampled: Vec<f32>;
                let (x, h, w) = if cfg.upsample {
                    upsampled = nn::upsample_nearest2x(ins[0], batch * c, h, w)
                        .into_iter()
                        .map(|v| v as f32)
                        .collect();
                    (upsampled.as_slice(), 2 * h, 2 * w)
                } else {
                    (ins[0], h, w)
                };
                let ws: [usize; 4] = shape(node.inputs[1]).try_into().unwrap();
                let p = cfg.padding;
                let geometry = (p.top, p.bottom, p.left, p.right);
                let conv = |residual: Option<&[f32]>| {
                    nn::conv2d(
                        x,
                        [batch, c, h, w],
                        ins[1],
                        ws,
                        ins[2],
                        residual,
                        cfg.stride,
                        geometry,
                        cfg.out_scale as f64,
                    )
                };
                if let Op::Conv2dAddChannel { offset, .. } = node.op {
                    // The channel offset enters before the scale, as a residual constant over each plane:
                    // image n's value for channel c at n * len + offset + c of its [len] vectors.
                    let (cout, len) = (ws[0], shape(node.inputs[3])[0]);
                    let ho = (h + p.top + p.bottom - ws[2]) / cfg.stride + 1;
                    let wo = (w + p.left + p.right - ws[3]) / cfg.stride + 1;
                    let offsets: Vec<f32> = (0..batch * cout * ho * wo)
                        .map(|i| {
                            let (n, c) = (i / (cout * ho * wo), i / (ho * wo) % cout);
                            ins[3][n * len + offset + c]
                        })
                        .collect();
                    conv(Some(&offsets)).0
                } else {
                    conv(ins.get(3).copied()).0
                }
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
