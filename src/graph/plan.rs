//! The memory plan and executor. Planning assigns every activation to a buffer by liveness (a buffer is reused
//! once the tensor in it is dead), allocates those buffers, and prepares every node's dispatch (pipeline,
//! uniform, bind group) once. Running the plan then records the prepared dispatches into one compute pass and
//! submits once: nothing is validated, allocated or bound per evaluation.

use std::collections::HashMap;

use super::ir::{Graph, Op, TensorId, TensorKind};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::ops::Dispatch;
use crate::ops::timestep_embedding::TimestepEmbedding;
use crate::ops::{attention, concat, conv2d, elementwise, group_norm, linear, upsample};

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
    std::iter::once(batch)
        .chain(shape.iter().copied())
        .collect()
}

impl Plan {
    /// Plans `graph` for `batch` images with `weights` (every parameter the graph names, by name). Tensors in
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
        let output_id = graph
            .output
            .ok_or_else(|| Error::param("plan", "the graph has no output"))?;

        // Parameters: present with the declared shape.
        for (name, shape) in graph.params() {
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

        // Liveness: the index of the last node reading each activation (kept tensors live forever).
        let mut last_use: HashMap<TensorId, usize> = HashMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            for &t in &node.inputs {
                last_use.insert(t, i);
            }
        }
        for &t in keep.iter().chain([&output_id]) {
            last_use.insert(t, usize::MAX);
        }

        // Assignment: best fit among free buffers, else grow the largest free one, else a new buffer. A node's
        // inputs are freed only after its output is placed, so an output never shares a buffer with an input.
        let bytes =
            |t: TensorId| (batch * graph.shape(t).iter().product::<usize>() * 4).max(4) as u64;
        let mut capacity: Vec<u64> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut home: HashMap<TensorId, usize> = HashMap::new();
        let (mut live, mut lower_bound, mut no_reuse) = (0u64, 0u64, 0u64);
        for (i, node) in graph.nodes.iter().enumerate() {
            let need = bytes(node.output);
            no_reuse += need;
            let fit = free
                .iter()
                .enumerate()
                .filter(|&(_, &b)| capacity[b] >= need)
                .min_by_key(|&(_, &b)| capacity[b])
                .map(|(slot, _)| slot)
                .or_else(|| (0..free.len()).max_by_key(|&slot| capacity[free[slot]]));
            let buffer = match fit {
                Some(slot) => free.swap_remove(slot),
                None => {
                    capacity.push(0);
                    capacity.len() - 1
                }
            };
            capacity[buffer] = capacity[buffer].max(need);
            home.insert(node.output, buffer);
            live += need;
            lower_bound = lower_bound.max(live);
            let mut seen = Vec::new();
            for &t in &node.inputs {
                if graph.tensors[t.0].kind == TensorKind::Activation
                    && last_use.get(&t) == Some(&i)
                    && !seen.contains(&t)
                {
                    seen.push(t);
                    free.push(home[&t]);
                    live -= bytes(t);
                }
            }
        }

        let buffers = capacity
            .iter()
            .enumerate()
            .map(|(i, &c)| gpu.zeros(&format!("activation buffer {i}"), &[(c / 4) as usize]))
            .collect::<Result<Vec<_>>>()?;
        let mut activations = HashMap::new();
        for node in &graph.nodes {
            let t = buffers[home[&node.output]]
                .view(&node.name, &batched(batch, graph.shape(node.output)))?;
            activations.insert(node.output, t);
        }
        let inputs = graph
            .inputs
            .iter()
            .enumerate()
            .map(|(i, &id)| gpu.zeros(&format!("input {i}"), &batched(batch, graph.shape(id))))
            .collect::<Result<Vec<_>>>()?;

        let mut plan = Plan {
            batch,
            output: activations[&output_id].clone(),
            inputs,
            activations,
            dispatches: Vec::with_capacity(graph.nodes.len()),
            output_conv: None,
            stats: MemoryStats {
                planned: capacity.iter().sum(),
                no_reuse,
                lower_bound,
                buffers: capacity.len(),
            },
            _embeddings: Vec::new(),
        };
        for node in &graph.nodes {
            let tensor = |id: TensorId| -> &Tensor {
                match &graph.tensors[id.0].kind {
                    TensorKind::Param(name) => &weights[name],
                    TensorKind::Input => {
                        let i = graph
                            .inputs
                            .iter()
                            .position(|&x| x == id)
                            .expect("declared input");
                        &plan.inputs[i]
                    }
                    TensorKind::Activation => &plan.activations[&id],
                }
            };
            let ins: Vec<&Tensor> = node.inputs.iter().map(|&id| tensor(id)).collect();
            let out = &plan.activations[&node.output];
            let label = node.name.as_str();
            let d = match &node.op {
                Op::TimestepEmbedding {
                    dim,
                    flip_sin_to_cos,
                    freq_shift,
                } => {
                    let emb = TimestepEmbedding::new(gpu, *dim, *flip_sin_to_cos, *freq_shift)?;
                    let d = emb.dispatch(gpu, label, ins[0], out)?;
                    plan._embeddings.push(emb);
                    d
                }
                Op::Linear {
                    layout,
                    silu_input,
                    out_scale,
                } => {
                    let cfg = linear::LinearConfig {
                        layout: *layout,
                        silu_input: *silu_input,
                        out_scale: *out_scale,
                    };
                    linear::linear(
                        gpu,
                        label,
                        ins[0],
                        ins[1],
                        ins[2],
                        ins.get(3).copied(),
                        out,
                        &cfg,
                    )?
                }
                Op::Conv2d(cfg) => conv2d::conv2d(
                    gpu,
                    label,
                    ins[0],
                    ins[1],
                    ins[2],
                    ins.get(3).copied(),
                    out,
                    cfg,
                )?,
                Op::GroupNorm { groups, eps, silu } => group_norm::group_norm(
                    gpu, label, ins[0], ins[1], ins[2], out, *groups, *eps, *silu,
                )?,
                Op::Attention { head_dim } => {
                    attention::attention(gpu, label, ins[0], ins[1], ins[2], out, *head_dim)?
                }
                Op::AddChannel => elementwise::binary(
                    gpu,
                    label,
                    elementwise::Binary::AddChannel,
                    ins[0],
                    ins[1],
                    out,
                )?,
                Op::Upsample2x => upsample::upsample_nearest2x(gpu, label, ins[0], out)?,
                Op::Concat => concat::concat_channels(gpu, label, ins[0], ins[1], out)?,
            };
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
    pub fn run(&self, gpu: &Gpu, inputs: &[&[f32]]) -> Result<Vec<f32>> {
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
        gpu.run("unet", &self.dispatches.iter().collect::<Vec<_>>())?;
        gpu.download(&self.output)
    }
}
