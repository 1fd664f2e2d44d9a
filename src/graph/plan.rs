//! The memory plan and executor. Planning places every activation at an offset in one of a few arena buffers by
//! liveness (bytes are reused once the tensor in them is dead; see [`place`]), allocates the arenas, and
//! prepares every node's dispatch (pipeline, uniform, bind group) once. Running the plan then records the prepared dispatches into one compute pass and
//! submits once: nothing is validated, allocated or bound per evaluation.

use std::collections::HashMap;

use super::ir::{Graph, Op, TensorId, TensorKind};
use super::prologue;
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::gpu::{Dispatch, UNIFORM_WINDOW};
use crate::ops::timestep_embedding::TimestepEmbedding;
use crate::ops::{attention, concat, conv2d, elementwise, group_norm, linear, upsample};

/// One activation's life: written by node `start`, last read by node `end` (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Life {
    pub start: usize,
    pub end: usize,
    pub bytes: u64,
}

impl Life {
    fn meets(&self, other: &Life) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// Shares buffers among activations whose lives do not meet, by "greedy by size" for shared objects (Pisarchyk
/// and Lee 2020, "Efficient Memory Management for Deep Neural Net Inference"): largest first, each into the
/// smallest existing buffer none of whose tensors' lives meets its own, else into a new buffer of its size.
/// Buffers never grow (each is sized by its first, largest tensor). Returns each tensor's buffer and each
/// buffer's size.
pub fn assign(lives: &[Life]) -> (Vec<usize>, Vec<u64>) {
    let mut order: Vec<usize> = (0..lives.len()).collect();
    // Largest first; among equals, earlier first, so the result does not depend on the sort's stability.
    order.sort_by_key(|&i| (std::cmp::Reverse(lives[i].bytes), lives[i].start, i));
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut capacity: Vec<u64> = Vec::new();
    let mut slot = vec![0; lives.len()];
    for i in order {
        let fit = (0..members.len())
            .filter(|&b| members[b].iter().all(|&j| !lives[j].meets(&lives[i])))
            .min_by_key(|&b| (capacity[b], b));
        let b = fit.unwrap_or_else(|| {
            members.push(Vec::new());
            capacity.push(lives[i].bytes);
            members.len() - 1
        });
        members[b].push(i);
        slot[i] = b;
    }
    (slot, capacity)
}

/// The life of every node's output, in node order, for `batch` images of `dtype` activations; tensors in `keep`
/// and the graph's output live to the end.
pub fn lives(graph: &Graph, batch: usize, dtype: DType, keep: &[TensorId]) -> Vec<Life> {
    // The index of the last node reading each activation.
    let mut last_use: HashMap<TensorId, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for &t in &node.inputs {
            last_use.insert(t, i);
        }
    }
    for &t in keep.iter().chain(graph.output.as_ref()) {
        last_use.insert(t, usize::MAX);
    }
    // Each activation lives from the node that writes it to the last node that reads it, inclusive: a node's
    // output and its inputs are alive together, so they never share a buffer (wgpu's usage rules forbid
    // reading and writing one buffer in a dispatch anyway).
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| Life {
            start: i,
            end: last_use.get(&node.output).copied().unwrap_or(i).max(i),
            bytes: dtype.bytes(batch * graph.shape(node.output).iter().product::<usize>()).max(4),
        })
        .collect()
}

/// (one buffer per activation, the largest total alive at one time): the bounds any assignment lies between.
pub fn bounds(lives: &[Life]) -> (u64, u64) {
    let no_reuse = lives.iter().map(|l| l.bytes).sum();
    let lower_bound = lives
        .iter()
        .map(|at| {
            lives
                .iter()
                .filter(|l| l.start <= at.start && at.start <= l.end)
                .map(|l| l.bytes)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    (no_reuse, lower_bound)
}

/// The node that writes each activation.
pub fn producers(graph: &Graph) -> HashMap<TensorId, usize> {
    graph.nodes.iter().enumerate().map(|(i, n)| (n.output, i)).collect()
}

/// Where an activation lives: an arena (one buffer) and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub arena: usize,
    pub offset: u64,
}

/// How many arenas activations are spread over. A dispatch must not bind one buffer both read-only and
/// read-write (wgpu's usage rules), so a node's output goes to an arena none of its inputs is in; three always
/// leave one free for nodes of up to two activation inputs, and the UNet has no node with more.
pub const ARENAS: usize = 3;

/// Places every node's output (`lives[i]` is node i's) at an offset in one of [`ARENAS`] buffers, such that
/// tensors whose lives meet never overlap and no node's output shares an arena with its inputs. Arenas: each
/// output goes to the allowed arena whose peak of live bytes it raises least (then the lowest peak). Offsets:
/// within an arena, largest tensor first, each at the lowest `align`-aligned offset clear of every placed
/// tensor whose life meets its own ("greedy by size" for offsets, Pisarchyk and Lee 2020). An output alive over
/// more than half the nodes and read by more than two (a UNet's stacked time projections, read by every ResNet
/// block) gets a buffer of its own after the arenas: it holds its bytes over that span wherever it is, and in
/// an arena it would bar that arena to every node that reads it. Returns the placements and each buffer's size.
pub fn place(graph: &Graph, lives: &[Life], align: u64) -> Result<(Vec<Placement>, Vec<u64>)> {
    let producer = producers(graph);
    let steps = graph.nodes.len();
    let readers = graph.readers();
    let own_buffer = |i: usize| {
        let l = lives[i];
        2 * (l.end.min(steps - 1) - l.start) > steps
            && readers.get(&graph.nodes[i].output).is_some_and(|r| r.len() > 2)
    };
    // Live bytes per arena at each node, as outputs are assigned.
    let mut curve = vec![vec![0u64; steps]; ARENAS];
    let mut arena = vec![0usize; lives.len()];
    let mut size = vec![0u64; ARENAS];
    for (i, node) in graph.nodes.iter().enumerate() {
        if own_buffer(i) {
            arena[i] = size.len();
            size.push(lives[i].bytes);
            continue;
        }
        let inputs: Vec<usize> =
            node.inputs.iter().filter_map(|t| producer.get(t).map(|&j| arena[j])).collect();
        let l = lives[i];
        let span = l.start..=l.end.min(steps - 1);
        // How much the arena's peak of live bytes (a lower bound on its size) grows, then its peak.
        let cost = |a: usize| {
            let peak = curve[a].iter().copied().max().unwrap_or(0);
            let with = curve[a][span.clone()].iter().map(|b| b + l.bytes).max().unwrap_or(0);
            (with.saturating_sub(peak), peak, a)
        };
        let a = (0..ARENAS).filter(|a| !inputs.contains(a)).min_by_key(|&a| cost(a)).ok_or_else(
            || {
                Error::param(
                    "plan",
                    format!("node `{}` reads more than {} activations", node.name, ARENAS - 1),
                )
            },
        )?;
        for b in &mut curve[a][span] {
            *b += l.bytes;
        }
        arena[i] = a;
    }
    let mut placement: Vec<Placement> =
        arena.iter().map(|&arena| Placement { arena, offset: 0 }).collect();
    for (a, size) in size.iter_mut().take(ARENAS).enumerate() {
        let mut order: Vec<usize> = (0..lives.len()).filter(|&i| arena[i] == a).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(lives[i].bytes), lives[i].start, i));
        let mut placed: Vec<usize> = Vec::new();
        for i in order {
            let mut neighbours: Vec<(u64, u64)> = placed
                .iter()
                .filter(|&&j| lives[j].meets(&lives[i]))
                .map(|&j| (placement[j].offset, placement[j].offset + lives[j].bytes))
                .collect();
            neighbours.sort_unstable();
            let mut offset = 0;
            for (start, end) in neighbours {
                if offset + lives[i].bytes <= start {
                    break;
                }
                offset = offset.max(end.next_multiple_of(align));
            }
            placement[i] = Placement { arena: a, offset };
            *size = (*size).max(offset + lives[i].bytes);
            placed.push(i);
        }
    }
    Ok((placement, size))
}

/// Memory figures of a plan, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// The activation buffers the plan allocates.
    pub planned: u64,
    /// What one buffer per activation would take.
    pub no_reuse: u64,
    /// The largest total of activations alive at one time: no plan can use less.
    pub lower_bound: u64,
    /// How many activation buffers the plan allocates.
    pub buffers: usize,
}

/// The graph's last node when it is a convolution without residual: what a fused epilogue needs.
#[derive(Clone)]
pub struct OutputConv {
    /// Its input.
    pub input: Tensor,
    /// Its weight.
    pub weight: Tensor,
    /// Its bias.
    pub bias: Tensor,
    /// Its geometry.
    pub config: crate::ops::conv2d::Conv2dConfig,
}

/// A graph bound to buffers and weights for one batch size.
pub struct Plan {
    batch: usize,
    inputs: Vec<Tensor>,
    output: Tensor,
    activations: HashMap<TensorId, Tensor>,
    dispatches: Vec<Dispatch>,
    output_conv: Option<OutputConv>,
    stats: MemoryStats,
    // Frequency tables of the timestep embeddings; the dispatches bind them.
    _embeddings: Vec<TimestepEmbedding>,
}

fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(batch).chain(shape.iter().copied()).collect()
}

/// Refuses weights that lack a parameter tensor the graph binds (a weight of the file, or stacked weights,
/// by [`Graph::param_name`]) or give it another shape.
fn check_params(graph: &Graph, weights: &HashMap<String, Tensor>) -> Result<()> {
    for (id, def) in graph.tensors.iter().enumerate() {
        let Some(name) = graph.param_name(TensorId(id)) else { continue };
        let shape = def.shape.as_slice();
        let t = weights.get(name).ok_or_else(|| Error::Weights {
            tensor: name.to_string(),
            message: "missing".into(),
        })?;
        if t.shape() != shape {
            return Err(Error::Weights {
                tensor: name.to_string(),
                message: format!("has shape {:?}, the model needs {shape:?}", t.shape()),
            });
        }
    }
    Ok(())
}

/// Every activation of `graph` for `batch` images as a view into one of a few arenas, placed by liveness;
/// with what the placement costs against its bounds.
fn place_activations(
    gpu: &Gpu,
    graph: &Graph,
    batch: usize,
    keep: &[TensorId],
) -> Result<(HashMap<TensorId, Tensor>, MemoryStats)> {
    let lives = lives(graph, batch, gpu.act(), keep);
    let (no_reuse, lower_bound) = bounds(&lives);
    // Arenas with offsets; if an arena would exceed the device's largest buffer, one buffer per group of
    // tensors that never meet (`assign`), each no larger than its largest tensor.
    let limits = gpu.limits();
    // 256 is a multiple of every device's storage offset alignment (a power of two, at most 256) and of
    // the 16 bytes a vec4 binding needs.
    let align = u64::from(limits.min_storage_buffer_offset_alignment).max(256);
    let (placement, sizes) = match place(graph, &lives, align)? {
        (p, sizes) if sizes.iter().all(|&b| b <= limits.max_buffer_size) => (p, sizes),
        _ => {
            let (slot, capacity) = assign(&lives);
            let p = slot.iter().map(|&arena| Placement { arena, offset: 0 }).collect();
            (p, capacity)
        }
    };
    let buffers = sizes
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            // One uniform window of slack past the last activation, so that a kernel reading an
            // activation through 64 KiB windows (conv2d_1x1) never binds past the buffer.
            let slack =
                if b + UNIFORM_WINDOW <= limits.max_buffer_size { UNIFORM_WINDOW } else { 0 };
            (b > 0)
                .then(|| {
                    gpu.zeros(&format!("activation buffer {i}"), &[((b + slack) / 4) as usize])
                })
                .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let mut activations = HashMap::new();
    for (node, p) in graph.nodes.iter().zip(&placement) {
        let arena = buffers[p.arena].as_ref().expect("an arena holding a tensor has a buffer");
        let shape = batched(batch, graph.shape(node.output));
        let t = arena.view_as(&node.name, &shape, p.offset, gpu.act())?;
        activations.insert(node.output, t);
    }
    let stats = MemoryStats {
        planned: sizes.iter().sum(),
        no_reuse,
        lower_bound,
        buffers: buffers.iter().flatten().count(),
    };
    Ok((activations, stats))
}

/// The dispatch of one node, `op` over `ins` into `out`, labelled `label`; and the frequency table it binds,
/// where the op is a timestep embedding (the plan keeps it alive).
fn prepare(
    gpu: &Gpu,
    op: &Op,
    label: &str,
    ins: &[&Tensor],
    out: &Tensor,
) -> Result<(Dispatch, Option<TimestepEmbedding>)> {
    let d = match op {
        Op::TimestepEmbedding { dim, flip_sin_to_cos, freq_shift } => {
            let emb = TimestepEmbedding::new(gpu, *dim, *flip_sin_to_cos, *freq_shift)?;
            let d = emb.dispatch(gpu, label, ins[0], out)?;
            return Ok((d, Some(emb)));
        }
        Op::Linear { layout, silu_input, out_scale } => {
            let cfg = linear::LinearConfig {
                layout: *layout,
                silu_input: *silu_input,
                out_scale: *out_scale,
            };
            let residual = ins.get(3).copied();
            linear::linear(gpu, label, ins[0], ins[1], ins[2], residual, out, &cfg)?
        }
        Op::Conv2dAddChannel { config: cfg, offset } => {
            let channel = Some(conv2d::ChannelSlice { vectors: ins[3], offset: *offset });
            conv2d::conv2d_with_channel(
                gpu, label, ins[0], ins[1], ins[2], channel, None, out, cfg,
            )?
        }
        Op::Conv2d(cfg) => {
            let residual = ins.get(3).copied();
            conv2d::conv2d(gpu, label, ins[0], ins[1], ins[2], residual, out, cfg)?
        }
        Op::NormConv2d { groups, eps, silu, config, channel_offset } => {
            let norm = conv2d::InputNorm {
                gamma: ins[1],
                beta: ins[2],
                groups: *groups,
                eps: *eps,
                silu: *silu,
            };
            let (channel, residual) = match channel_offset {
                Some(offset) => {
                    (Some(conv2d::ChannelSlice { vectors: ins[5], offset: *offset }), None)
                }
                None => (None, ins.get(5).copied()),
            };
            let (w, b) = (ins[3], ins[4]);
            conv2d::conv2d_normed(gpu, label, ins[0], &norm, w, b, channel, residual, out, config)?
        }
        Op::GroupNorm { groups, eps, silu } => {
            group_norm::group_norm(gpu, label, ins[0], ins[1], ins[2], out, *groups, *eps, *silu)?
        }
        Op::Attention { head_dim } => {
            attention::attention(gpu, label, ins[0], ins[1], ins[2], out, *head_dim)?
        }
        Op::AddChannel => {
            let add = elementwise::Binary::AddChannel;
            elementwise::binary(gpu, label, add, ins[0], ins[1], out)?
        }
        Op::Upsample2x => upsample::upsample_nearest2x(gpu, label, ins[0], out)?,
        Op::Concat => concat::concat_channels(gpu, label, ins[0], ins[1], out)?,
    };
    Ok((d, None))
}

impl Plan {
    /// Plans `graph` for `batch` images with `weights` (every parameter tensor the graph binds, by
    /// [`Graph::param_name`]: what `Weights::upload` gives). Tensors in
    /// `keep` stay alive to the end (their buffers are not reused), so they can be read after a run.
    pub fn new(
        gpu: &Gpu,
        graph: &Graph,
        weights: &HashMap<String, Tensor>,
        batch: usize,
        keep: &[TensorId],
    ) -> Result<Self> {
        if batch == 0 {
            return Err(Error::param("plan", "batch size is 0"));
        }
        // Where the device's convolution can normalise its input as it loads it, group norms join the
        // convolutions that alone read them (`prologue`); ids keep their meaning.
        let fused;
        let graph = if conv2d::normed_kernel_for(gpu).is_some() {
            let mut g = graph.clone();
            prologue::fuse_norms_into_convs(&mut g, keep);
            fused = g;
            &fused
        } else {
            graph
        };
        let output_id =
            graph.output.ok_or_else(|| Error::param("plan", "the graph has no output"))?;
        check_params(graph, weights)?;
        let (activations, stats) = place_activations(gpu, graph, batch, keep)?;
        // An input takes the element type its readers bind: f32 timesteps for the timestep embedding (which
        // may be fractional), activations' elsewhere.
        let readers = graph.readers();
        let inputs = graph
            .inputs
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let timesteps = readers.get(&id).is_some_and(|r| {
                    r.iter()
                        .all(|&(n, _)| matches!(graph.nodes[n].op, Op::TimestepEmbedding { .. }))
                });
                let dtype = if timesteps { DType::F32 } else { gpu.act() };
                gpu.zeros_as(&format!("input {i}"), &batched(batch, graph.shape(id)), dtype)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut plan = Plan {
            batch,
            output: activations[&output_id].clone(),
            inputs,
            activations,
            dispatches: Vec::with_capacity(graph.nodes.len()),
            output_conv: None,
            stats,
            _embeddings: Vec::new(),
        };
        for node in &graph.nodes {
            let tensor = |id: TensorId| -> &Tensor {
                match &graph.tensors[id.0].kind {
                    TensorKind::Param(name) | TensorKind::Stacked { name, .. } => &weights[name],
                    TensorKind::Input => {
                        let i = graph.inputs.iter().position(|&x| x == id).expect("declared input");
                        &plan.inputs[i]
                    }
                    TensorKind::Activation => &plan.activations[&id],
                }
            };
            let ins: Vec<&Tensor> = node.inputs.iter().map(|&id| tensor(id)).collect();
            let out = &plan.activations[&node.output];
            let (d, embedding) = prepare(gpu, &node.op, &node.name, &ins, out)?;
            plan._embeddings.extend(embedding);
            plan.dispatches.push(d);
            if node.output == output_id
                && let Op::Conv2d(config) = &node.op
                && ins.len() == 3
            {
                plan.output_conv = Some(OutputConv {
                    input: ins[0].clone(),
                    weight: ins[1].clone(),
                    bias: ins[2].clone(),
                    config: *config,
                });
            }
        }
        Ok(plan)
    }

    /// The batch size the plan was made for.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Memory figures.
    pub fn stats(&self) -> MemoryStats {
        self.stats
    }

    /// The prepared dispatches, in execution order (one per node).
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// The last node, when it is a convolution without residual (the UNet's `conv_out`).
    pub fn output_conv(&self) -> Option<&OutputConv> {
        self.output_conv.as_ref()
    }

    /// The input tensors, in the graph's input order (write them before recording).
    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }

    /// The output tensor.
    pub fn output(&self) -> &Tensor {
        &self.output
    }

    /// The tensor holding an activation (valid after a run only if it was kept or is the output).
    pub fn activation(&self, id: TensorId) -> Option<&Tensor> {
        self.activations.get(&id)
    }

    /// Records the whole evaluation into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            d.record(pass);
        }
    }

    /// Writes the inputs, runs the graph with one submit, and reads the output back.
    pub async fn run(&self, gpu: &Gpu, inputs: &[&[f32]]) -> Result<Vec<f32>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::param(
                "plan",
                format!(
                    "the graph takes {} inputs, {} were given",
                    self.inputs.len(),
                    inputs.len()
                ),
            ));
        }
        for (t, data) in self.inputs.iter().zip(inputs) {
            t.write(gpu, data)?;
        }
        gpu.run("unet", &self.dispatches.iter().collect::<Vec<_>>()).await?;
        gpu.download(&self.output).await
    }
}

/// The largest batch whose every activation fits one storage binding of this device. When one image alone
/// does not fit, an [`Error::ImageTooLarge`] names the node with the largest activation and states the
/// largest image side that would fit (kernels bind whole activations; there is no spatial tiling).
pub fn max_batch(gpu: &Gpu, graph: &Graph) -> Result<usize> {
    let limit = gpu.limits().max_storage_buffer_binding_size;
    let bytes = |t: TensorId| (graph.shape(t).iter().product::<usize>() * gpu.act().size()) as u64;
    let Some(largest) = graph.nodes.iter().max_by_key(|n| bytes(n.output)) else {
        return Ok(usize::MAX);
    };
    let per_image = bytes(largest.output).max(4);
    if per_image <= limit {
        return Ok((limit / per_image) as usize);
    }
    // The image side, and the total downsampling (input side over the smallest feature map's side): a
    // supported side is a multiple of it. Every activation scales with the square of the side.
    let side = graph.inputs.first().map_or(0, |&x| graph.shape(x)[1]);
    let smallest = graph
        .nodes
        .iter()
        .map(|n| graph.shape(n.output))
        .filter(|s| s.len() == 3)
        .map(|s| s[1])
        .min()
        .unwrap_or(side)
        .max(1);
    let factor = (side / smallest).max(1);
    let fits = side as f64 * (limit as f64 / per_image as f64).sqrt();
    Err(Error::ImageTooLarge {
        node: largest.name.clone(),
        bytes: per_image,
        limit,
        side,
        largest: (fits as usize / factor) * factor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet;
    use crate::unet::config::UNetConfig;

    #[test]
    fn assignment_keeps_meeting_lives_apart_and_reuses_the_rest() {
        let l = |start, end, bytes| Life { start, end, bytes };
        // 0 and 1 meet; 2 meets 1 but not 0; 3 meets nothing before it.
        let lives = [l(0, 1, 100), l(1, 2, 60), l(2, 3, 80), l(4, 4, 100)];
        let (slot, capacity) = assign(&lives);
        for i in 0..lives.len() {
            for j in 0..i {
                if lives[i].meets(&lives[j]) {
                    assert_ne!(slot[i], slot[j], "{i} and {j} share a buffer while both alive");
                }
            }
            assert!(capacity[slot[i]] >= lives[i].bytes);
        }
        assert_eq!(capacity.iter().sum::<u64>(), 160);
        assert_eq!(bounds(&lives), (340, 160));
    }

    #[test]
    fn cifar10_unet_at_batch_8_plans_within_1_2x_of_the_lower_bound() {
        let cfg = UNetConfig::from_diffusers_json(include_str!(
            "../../benches/configs/ddpm-cifar10-32.json"
        ))
        .unwrap();
        let graph = unet::build(&cfg).unwrap();
        let producer = producers(&graph);
        for batch in [1, 8] {
            let lives = lives(&graph, batch, DType::F32, &[]);
            let (place, sizes) = place(&graph, &lives, 256).unwrap();
            for i in 0..lives.len() {
                let (pi, li) = (place[i], lives[i]);
                assert_eq!(pi.offset % 256, 0);
                assert!(pi.offset + li.bytes <= sizes[pi.arena]);
                for j in 0..i {
                    let (pj, lj) = (place[j], lives[j]);
                    let overlap = pi.arena == pj.arena
                        && pi.offset < pj.offset + lj.bytes
                        && pj.offset < pi.offset + li.bytes;
                    assert!(!(li.meets(&lj) && overlap), "{i} and {j} overlap while alive");
                }
                for t in &graph.nodes[i].inputs {
                    if let Some(&j) = producer.get(t) {
                        assert_ne!(place[j].arena, pi.arena, "node {i} reads its own arena");
                    }
                }
            }
            let (no_reuse, lower) = bounds(&lives);
            let planned: u64 = sizes.iter().sum();
            let ratio = planned as f64 / lower as f64;
            if std::env::var_os("DDIM_TEST_VERBOSE").is_some() {
                eprintln!(
                    "batch {batch}: planned {planned} B in arenas {sizes:?}, lower bound {lower} B \
                     ({ratio:.3}x), no reuse {no_reuse} B"
                );
            }
            assert!((1.0..=1.2).contains(&ratio), "batch {batch}: {ratio:.3}x the lower bound");
        }
    }
}
