//! Stacking linear layers: layers that read the same vector with the same settings, and whose outputs are
//! only ever added to convolutions' output channels (a UNet's per-block time projections of the time
//! embedding), become one layer over their weights stacked along the output axis, and each convolution reads
//! its slice of the stacked output (`Op::Conv2dAddChannel`'s offset). One matrix-vector product over all the
//! blocks' weights runs where one small product per block did, each its own launch.
//!
//! Invariants: the result computes what the graph did, value for value (each output row is the same dot
//! product); the graph's inputs, output and checkpoints keep their tensors; nodes stay in a topological
//! order; the weights the graph reads from a file ([`Graph::params`]) are the same names and shapes.

use super::ir::{Graph, Op, TensorDef, TensorId, TensorKind};
use crate::ops::linear::TokenLayout;

/// The most bytes of f32 weights one stack holds: WebGPU's guaranteed storage binding size (128 MiB), so a
/// device that can bind each layer's weights can bind the stack's. A group with more runs as several stacks.
pub const MAX_STACK_BYTES: usize = 128 << 20;

/// Stacks every group of two or more linear layers that may merge (see the module), each stack within
/// [`MAX_STACK_BYTES`]; returns the number of layers merged away (0 where there was nothing to stack).
pub fn stack_channel_linears(g: &mut Graph) -> usize {
    stack_within(g, MAX_STACK_BYTES)
}

/// Layers that may stack: the same input, SiLU on it or not, and output scale (`key`); their nodes in order,
/// and the bytes of their weights.
struct Group {
    key: (TensorId, bool, u32),
    members: Vec<usize>,
    bytes: usize,
}

fn stack_within(g: &mut Graph, max_bytes: usize) -> usize {
    let readers = g.readers();
    let pinned = |t: TensorId| g.output == Some(t) || g.checkpoints.iter().any(|&(_, c)| c == t);
    // A weight of the file that this node alone reads (the stack replaces it).
    let own_param = |t: TensorId, i: usize, pos: usize| {
        matches!(g.tensors[t.0].kind, TensorKind::Param(_)) && readers[&t][..] == [(i, pos)]
    };

    // Candidates grouped by (input, SiLU on the input, output scale), in node order.
    let mut groups: Vec<Group> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let Op::Linear { layout: TokenLayout::RowMajor, silu_input, out_scale } = node.op else {
            continue;
        };
        let only_channel_offsets = readers.get(&node.output).is_some_and(|r| {
            r.iter()
                .all(|&(c, pos)| pos == 3 && matches!(g.nodes[c].op, Op::Conv2dAddChannel { .. }))
        });
        if node.inputs.len() != 3
            || !own_param(node.inputs[1], i, 1)
            || !own_param(node.inputs[2], i, 2)
            || pinned(node.output)
            || !only_channel_offsets
        {
            continue;
        }
        let key = (node.inputs[0], silu_input, out_scale.to_bits());
        let bytes = 4 * g.tensors[node.inputs[1].0].shape.iter().product::<usize>();
        // The latest group with this key takes the layer while the stack stays within max_bytes.
        match groups.iter_mut().rev().find(|group| group.key == key) {
            Some(group) if group.bytes + bytes <= max_bytes => {
                group.members.push(i);
                group.bytes += bytes;
            }
            _ => groups.push(Group { key, members: vec![i], bytes }),
        }
    }

    let mut merged = vec![false; g.nodes.len()];
    let mut count = 0;
    for members in groups.iter().map(|group| &group.members).filter(|m| m.len() >= 2) {
        let first = members[0];
        let part = |t: TensorId| match &g.tensors[t.0].kind {
            TensorKind::Param(name) => (name.clone(), g.tensors[t.0].shape.clone()),
            _ => unreachable!("candidates read parameters"),
        };
        let weights: Vec<_> = members.iter().map(|&m| part(g.nodes[m].inputs[1])).collect();
        let biases: Vec<_> = members.iter().map(|&m| part(g.nodes[m].inputs[2])).collect();
        // Each member's rows: its bias's length.
        let lens: Vec<usize> = biases.iter().map(|(_, s)| s[0]).collect();
        let rows = lens.iter().sum();
        let cols = weights[0].1[1];
        let name = stacked_name(members.iter().map(|&m| g.nodes[m].name.as_str()));

        // The first member becomes the stacked layer: its weight and bias tensors the stacked ones, its
        // output every member's output.
        let (w, b, out) = {
            let node = &g.nodes[first];
            (node.inputs[1], node.inputs[2], node.output)
        };
        g.tensors[w.0] = TensorDef {
            kind: TensorKind::Stacked { name: format!("{name}.weight"), parts: weights },
            shape: vec![rows, cols],
        };
        g.tensors[b.0] = TensorDef {
            kind: TensorKind::Stacked { name: format!("{name}.bias"), parts: biases },
            shape: vec![rows],
        };
        g.tensors[out.0].shape = vec![rows];
        // A member's rows start after those of the members before it.
        let mut offset = 0;
        for (&m, len) in members.iter().zip(&lens) {
            let own = g.nodes[m].output;
            for &(reader, pos) in &readers[&own] {
                let node = &mut g.nodes[reader];
                node.inputs[pos] = out;
                if let Op::Conv2dAddChannel { offset: o, .. } = &mut node.op {
                    *o += offset;
                }
            }
            offset += len;
            merged[m] = m != first;
        }
        g.nodes[first].name = name;
        count += members.len() - 1;
    }
    if count > 0 {
        let mut i = 0;
        g.nodes.retain(|_| {
            i += 1;
            !merged[i - 1]
        });
        compact(g);
    }
    count
}

/// The stacked layer's name: the members' common last component and their count (`time_emb_proj x22`), or
/// the first member's name and the count.
fn stacked_name<'a>(mut names: impl Iterator<Item = &'a str>) -> String {
    let first = names.next().unwrap_or_default();
    let last = |n: &'a str| n.rsplit('.').next().unwrap_or(n);
    let mut count = 1;
    let mut common = true;
    for n in names {
        count += 1;
        common &= last(n) == last(first);
    }
    if common { format!("{} x{count}", last(first)) } else { format!("{first} x{count}") }
}

/// Drops the tensors no node, input, output or checkpoint refers to, renumbering the rest in order.
fn compact(g: &mut Graph) {
    let mut used = vec![false; g.tensors.len()];
    let referenced = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().chain([&n.output]))
        .chain(&g.inputs)
        .chain(&g.output)
        .chain(g.checkpoints.iter().map(|(_, t)| t));
    for t in referenced {
        used[t.0] = true;
    }
    let mut renumber = vec![TensorId(usize::MAX); g.tensors.len()];
    let mut kept = Vec::with_capacity(g.tensors.len());
    for (i, def) in std::mem::take(&mut g.tensors).into_iter().enumerate() {
        if used[i] {
            renumber[i] = TensorId(kept.len());
            kept.push(def);
        }
    }
    g.tensors = kept;
    let r = |t: &mut TensorId| *t = renumber[t.0];
    for node in &mut g.nodes {
        node.inputs.iter_mut().for_each(r);
        r(&mut node.output);
    }
    g.inputs.iter_mut().for_each(r);
    g.output.iter_mut().for_each(r);
    g.checkpoints.iter_mut().for_each(|(_, t)| r(t));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::Conv2dConfig;

    /// x -> four linear layers: a and b (SiLU, scale 1) and c (no SiLU) each feed one convolution's channel
    /// offsets; d (SiLU) feeds a convolution too but is also a checkpoint. Only a and b stack.
    fn graph() -> Graph {
        let mut g = Graph::default();
        let x = g.input(&[6]);
        let map = g.input(&[2, 3, 3]);
        let mut h = map;
        for (layer, silu, out) in [("a", true, 4), ("b", true, 3), ("c", false, 5), ("d", true, 2)]
        {
            let w = g.param(&format!("{layer}.weight"), &[out, 6]);
            let b = g.param(&format!("{layer}.bias"), &[out]);
            let op = Op::Linear { layout: TokenLayout::RowMajor, silu_input: silu, out_scale: 1.0 };
            let v = g.node(&format!("block.{layer}.proj"), op, &[x, w, b]).unwrap();
            if layer == "d" {
                g.checkpoint("d", v);
            }
            let cw = g.param(&format!("{layer}.conv.weight"), &[out, g.shape(h)[0], 1, 1]);
            let cb = g.param(&format!("{layer}.conv.bias"), &[out]);
            let op = Op::Conv2dAddChannel { config: Conv2dConfig::default(), offset: 0 };
            h = g.node(&format!("{layer}.conv"), op, &[h, cw, cb, v]).unwrap();
        }
        g.output = Some(h);
        g
    }

    #[test]
    fn sibling_layers_stack_and_their_readers_take_slices() {
        let before = graph();
        let mut g = before.clone();
        assert_eq!(stack_channel_linears(&mut g), 1);
        assert_eq!(g.nodes.len(), before.nodes.len() - 1);
        let stacked = &g.nodes[0];
        assert_eq!(stacked.name, "proj x2");
        assert_eq!(g.shape(stacked.output), [7]);
        assert_eq!(g.shape(stacked.inputs[1]), [7, 6]);
        let TensorKind::Stacked { name, parts } = &g.tensors[stacked.inputs[1].0].kind else {
            panic!("weights not stacked")
        };
        assert_eq!(name, "proj x2.weight");
        assert_eq!(parts, &[("a.weight".into(), vec![4, 6]), ("b.weight".into(), vec![3, 6])]);
        let offsets: Vec<(String, usize, TensorId)> = g
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Conv2dAddChannel { offset, .. } => Some((n.name.clone(), offset, n.inputs[3])),
                _ => None,
            })
            .collect();
        assert_eq!(offsets[0], ("a.conv".into(), 0, stacked.output));
        assert_eq!(offsets[1], ("b.conv".into(), 4, stacked.output));
        assert_eq!((offsets[2].1, offsets[3].1), (0, 0));
        assert_ne!(offsets[2].2, stacked.output);
        // The same weights from the file; nothing left that no node reads.
        let (mut a, mut b) = (g.params(), before.params());
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(g.tensors.len(), before.tensors.len() - 3);
        assert_eq!(g.shape(g.output.unwrap()), before.shape(before.output.unwrap()));
        // Running the pass again finds nothing more.
        assert_eq!(stack_channel_linears(&mut g), 0);
    }

    #[test]
    fn a_stack_stays_within_its_byte_limit() {
        // a's weights take 96 bytes, b's 72: together 168.
        for (limit, merged) in [(168, 1), (167, 0), (96, 0)] {
            let mut g = graph();
            assert_eq!(stack_within(&mut g, limit), merged, "limit {limit}");
        }
    }
}
