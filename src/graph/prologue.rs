//! Norms into convolutions: a group norm whose output only one convolution reads, as that convolution's
//! input, becomes part of it ([`Op::NormConv2d`]), for devices whose convolution normalises its input while
//! it loads it (`ops::conv2d::conv2d_normed`): the normalised map is then never stored. The plan applies it
//! where the device runs such a convolution; the graph a caller builds keeps one node per layer.
//!
//! Invariants: the result computes what the graph did (the same norm, then the same convolution); tensor ids
//! keep their meaning (a fused norm's output is left without a producer, and no node reads it); the graph's
//! inputs, output, checkpoints and the tensors a caller keeps are never fused away; the node that writes the
//! graph's output is never fused (the sampler may run it with the DDIM update in its epilogue); nodes stay in
//! a topological order.

use std::collections::HashMap;

use super::ir::{Graph, Op, TensorId};

/// Fuses every group norm that the convolution after it alone reads into that convolution; `keep` lists
/// tensors that must stay computed (read after a run). Returns the number of norms fused.
pub fn fuse_norms_into_convs(g: &mut Graph, keep: &[TensorId]) -> usize {
    let readers = g.readers();
    let producer: HashMap<TensorId, usize> =
        g.nodes.iter().enumerate().map(|(i, n)| (n.output, i)).collect();
    let pinned = |t: TensorId| {
        g.output == Some(t) || keep.contains(&t) || g.checkpoints.iter().any(|&(_, c)| c == t)
    };
    let mut fused = vec![false; g.nodes.len()];
    let mut count = 0;
    for j in 0..g.nodes.len() {
        let (config, channel_offset) = match g.nodes[j].op {
            Op::Conv2d(config) => (config, None),
            Op::Conv2dAddChannel { config, offset } => (config, Some(offset)),
            _ => continue,
        };
        let t = g.nodes[j].inputs[0];
        let Some(&i) = producer.get(&t) else { continue };
        let Op::GroupNorm { groups, eps, silu } = g.nodes[i].op else { continue };
        let only_reader = readers.get(&t).is_some_and(|r| r[..] == [(j, 0)]);
        if !only_reader || pinned(t) || Some(g.nodes[j].output) == g.output {
            continue;
        }
        let norm_inputs = g.nodes[i].inputs.clone();
        let conv = &mut g.nodes[j];
        let mut inputs = norm_inputs;
        inputs.extend_from_slice(&conv.inputs[1..]);
        conv.inputs = inputs;
        conv.op = Op::NormConv2d { groups, eps, silu, config, channel_offset };
        fused[i] = true;
        count += 1;
    }
    let mut i = 0;
    g.nodes.retain(|_| {
        i += 1;
        !fused[i - 1]
    });
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::Conv2dConfig;

    /// x -> norm a -> conv a (fusable); norm b, read by conv b and by conv c (not fusable); norm d -> conv d,
    /// a checkpoint (not fusable); norm e -> the output convolution (not fusable).
    #[test]
    fn a_norm_only_its_convolution_reads_joins_it() {
        let mut g = Graph::default();
        let x = g.input(&[4, 5, 5]);
        let norm = |g: &mut Graph, name: &str, x: TensorId| {
            let gamma = g.param(&format!("{name}.gamma"), &[4]);
            let beta = g.param(&format!("{name}.beta"), &[4]);
            let op = Op::GroupNorm { groups: 2, eps: 1e-6, silu: true };
            g.node(name, op, &[x, gamma, beta]).unwrap()
        };
        let conv = |g: &mut Graph, name: &str, x: TensorId| {
            let w = g.param(&format!("{name}.weight"), &[4, 4, 3, 3]);
            let b = g.param(&format!("{name}.bias"), &[4]);
            let config = Conv2dConfig {
                padding: crate::ops::conv2d::Padding::uniform(1),
                ..Default::default()
            };
            g.node(name, Op::Conv2d(config), &[x, w, b]).unwrap()
        };
        let na = norm(&mut g, "norm_a", x);
        let a = conv(&mut g, "conv_a", na);
        let nb = norm(&mut g, "norm_b", a);
        conv(&mut g, "conv_b", nb);
        let c = conv(&mut g, "conv_c", nb);
        let nd = norm(&mut g, "norm_d", c);
        g.checkpoint("norm_d", nd);
        let d = conv(&mut g, "conv_d", nd);
        let ne = norm(&mut g, "norm_e", d);
        let e = conv(&mut g, "conv_e", ne);
        g.output = Some(e);
        let before = g.clone();
        assert_eq!(fuse_norms_into_convs(&mut g, &[]), 1);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            ["conv_a", "norm_b", "conv_b", "conv_c", "norm_d", "conv_d", "norm_e", "conv_e"]
        );
        let fused = &g.nodes[0];
        assert!(matches!(
            fused.op,
            Op::NormConv2d { groups: 2, silu: true, channel_offset: None, .. }
        ));
        assert_eq!(fused.inputs[..3], before.nodes[0].inputs[..]);
        assert_eq!(fused.inputs[3..], before.nodes[1].inputs[1..]);
        assert_eq!(fused.output, a);
        // With a's norm kept by the caller, nothing fuses.
        let mut kept = before.clone();
        assert_eq!(fuse_norms_into_convs(&mut kept, &[na]), 0);
    }
}
