//! The graph IR: tensors and ops, with shapes inferred and checked as the graph is built. The IR knows ops and
//! tensors, not UNets (`unet::builder` is the only module that knows the architecture).
//!
//! Activation and input shapes are per image (the batch is a plan parameter); parameter shapes are complete.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ops::conv2d::{Conv2dConfig, Padding, output_size};
use crate::ops::linear::TokenLayout;

/// A tensor of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// What a tensor is.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorKind {
    /// Fed by the caller at every evaluation (the noisy sample, the timesteps).
    Input,
    /// A weight, looked up by name in the weights file.
    Param(String),
    /// Weights of the file stacked along their first axis, in order (the rest of their shapes equal), under
    /// a name of the graph's own (one that no weights file holds): several layers' weights run as one
    /// (see [`stack`](super::stack)).
    Stacked {
        /// The stacked tensor's name.
        name: String,
        /// The weights it stacks, by name, with their shapes.
        parts: Vec<(String, Vec<usize>)>,
    },
    /// Computed by a node.
    Activation,
}

/// A tensor's kind and shape.
#[derive(Clone, Debug)]
pub struct TensorDef {
    /// Input, parameter or activation.
    pub kind: TensorKind,
    /// Per image for inputs and activations; complete for parameters.
    pub shape: Vec<usize>,
}

/// An operation; the tensors it reads are the node's `inputs`, in the order given here.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `[timesteps]` -> `[dim]`: the sinusoidal embedding.
    TimestepEmbedding {
        /// Embedding width.
        dim: usize,
        /// Swap sin and cos.
        flip_sin_to_cos: bool,
        /// `downscale_freq_shift`.
        freq_shift: f64,
    },
    /// `[x, weight, bias, (residual)]`: `(act(x) W^T + b + residual) * out_scale`.
    Linear {
        /// How x and the output hold their tokens.
        layout: TokenLayout,
        /// SiLU on the input.
        silu_input: bool,
        /// Output scale.
        out_scale: f32,
    },
    /// `[x, weight, bias, (residual)]`: `(conv(x) + b + residual) * out_scale`.
    Conv2d(Conv2dConfig),
    /// `[x, weight, bias, v]`: `(conv(x) + b + v[offset + c]) * out_scale`, v `[len]` per image with
    /// `offset + Cout <= len` (a ResNet block's conv1 plus its time-embedding projection: [`Op::Conv2d`] and
    /// [`Op::AddChannel`] in one dispatch; v may hold several blocks' projections, each reading its own slice).
    Conv2dAddChannel {
        /// The convolution.
        config: Conv2dConfig,
        /// Where this convolution's `Cout` values start in v.
        offset: usize,
    },
    /// `[x, gamma, beta, weight, bias, (v | residual)]`: [`Op::GroupNorm`] (with SiLU or not) of x, then the
    /// convolution [`Op::Conv2dAddChannel`] where `channel_offset` is given (the sixth input is then v), else
    /// [`Op::Conv2d`] (the sixth input, if any, its residual). Made by `graph::prologue` from a group norm and
    /// the convolution that alone reads it, for devices whose convolution normalises its input as it loads it.
    NormConv2d {
        /// The norm's groups.
        groups: usize,
        /// The norm's epsilon.
        eps: f32,
        /// SiLU after the norm.
        silu: bool,
        /// The convolution.
        config: Conv2dConfig,
        /// Where the convolution's channel offsets start in v, where it adds them.
        channel_offset: Option<usize>,
    },
    /// `[x, gamma, beta]`.
    GroupNorm {
        /// Number of groups.
        groups: usize,
        /// Epsilon.
        eps: f32,
        /// Fused SiLU on the output.
        silu: bool,
    },
    /// `[q, k, v]`, all `[C, H, W]`.
    Attention {
        /// Channels per head.
        head_dim: usize,
    },
    /// `[x, v]`: `x[c, ...] + v[c]`.
    AddChannel,
    /// `[x]`: nearest 2x.
    Upsample2x,
    /// `[a, b]`: channel concatenation.
    Concat,
}

/// One op applied to tensors.
#[derive(Clone, Debug)]
pub struct Node {
    /// The node's name (the weight prefix where it has weights, e.g. `down_blocks.0.resnets.1.conv1`).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// What it reads.
    pub inputs: Vec<TensorId>,
    /// What it writes (always a fresh activation).
    pub output: TensorId,
}

/// A complete graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Every tensor, indexed by `TensorId`.
    pub tensors: Vec<TensorDef>,
    /// Nodes in execution order (a topological order: inputs are always defined earlier).
    pub nodes: Vec<Node>,
    /// The graph's inputs, in the order an evaluation takes them.
    pub inputs: Vec<TensorId>,
    /// The graph's result.
    pub output: Option<TensorId>,
    /// Named tensors worth inspecting (each block's output), in execution order.
    pub checkpoints: Vec<(String, TensorId)>,
}

impl Graph {
    /// The shape of a tensor (per image for activations and inputs).
    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.tensors[t.0].shape
    }

    /// Every weight the graph reads from a weights file, as (name, shape), in the order nodes use them (the
    /// parts of a stacked tensor in their stacking order).
    pub fn params(&self) -> Vec<(&str, &[usize])> {
        self.tensors
            .iter()
            .flat_map(|t| match &t.kind {
                TensorKind::Param(name) => vec![(name.as_str(), t.shape.as_slice())],
                TensorKind::Stacked { parts, .. } => {
                    parts.iter().map(|(name, shape)| (name.as_str(), shape.as_slice())).collect()
                }
                _ => Vec::new(),
            })
            .collect()
    }

    /// Who reads each tensor: every (node index, input position), in node order.
    pub fn readers(&self) -> HashMap<TensorId, Vec<(usize, usize)>> {
        let mut readers: HashMap<TensorId, Vec<(usize, usize)>> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for (pos, &t) in node.inputs.iter().enumerate() {
                readers.entry(t).or_default().push((i, pos));
            }
        }
        readers
    }

    /// The name under which a parameter tensor (stored or stacked) is bound: the weights file's name, or the
    /// stacked tensor's own. `None` for inputs and activations.
    pub fn param_name(&self, t: TensorId) -> Option<&str> {
        match &self.tensors[t.0].kind {
            TensorKind::Param(name) | TensorKind::Stacked { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Adds a caller-fed input of per-image `shape`.
    pub fn input(&mut self, shape: &[usize]) -> TensorId {
        let id = self.tensor(TensorKind::Input, shape.to_vec());
        self.inputs.push(id);
        id
    }

    /// Declares the parameter `name` with its full shape.
    pub fn param(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.tensor(TensorKind::Param(name.to_string()), shape.to_vec())
    }

    /// Records a named checkpoint (a tensor the dump of block outputs writes).
    pub fn checkpoint(&mut self, name: &str, t: TensorId) {
        self.checkpoints.push((name.to_string(), t));
    }

    fn tensor(&mut self, kind: TensorKind, shape: Vec<usize>) -> TensorId {
        self.tensors.push(TensorDef { kind, shape });
        TensorId(self.tensors.len() - 1)
    }

    /// Adds a node after inferring and checking its output shape; the error names the node.
    pub fn node(&mut self, name: &str, op: Op, inputs: &[TensorId]) -> Result<TensorId> {
        let shape = self
            .infer(&op, inputs)
            .map_err(|message| Error::Graph { node: name.to_string(), message })?;
        let output = self.tensor(TensorKind::Activation, shape);
        self.nodes.push(Node { name: name.to_string(), op, inputs: inputs.to_vec(), output });
        Ok(output)
    }

    fn infer(&self, op: &Op, inputs: &[TensorId]) -> std::result::Result<Vec<usize>, String> {
        let s = |i: usize| -> &[usize] { self.shape(inputs[i]) };
        let arity = |n: &[usize]| {
            if n.contains(&inputs.len()) {
                Ok(())
            } else {
                Err(format!("takes {n:?} inputs, got {}", inputs.len()))
            }
        };
        match op {
            Op::TimestepEmbedding { dim, .. } => {
                arity(&[1])?;
                if !s(0).is_empty() {
                    return Err(format!("timesteps must be one scalar per image, got {:?}", s(0)));
                }
                Ok(vec![*dim])
            }
            Op::Linear { layout, .. } => {
                arity(&[3, 4])?;
                let (w, b) = (s(1), s(2));
                let [n_out, k] = w else {
                    return Err(format!("weight must be [out, in], got {w:?}"));
                };
                if b != [*n_out] {
                    return Err(format!("bias {b:?} does not match weight {w:?}"));
                }
                let out = match layout {
                    TokenLayout::RowMajor => match s(0) {
                        [f] if f == k => vec![*n_out],
                        x => return Err(format!("input {x:?} is not a vector of {k} features")),
                    },
                    TokenLayout::Channels => match s(0) {
                        [c, h, w] if c == k => vec![*n_out, *h, *w],
                        x => return Err(format!("input {x:?} does not have {k} channels")),
                    },
                };
                if inputs.len() == 4 && s(3) != out {
                    return Err(format!("residual {:?} does not match the output {out:?}", s(3)));
                }
                Ok(out)
            }
            Op::Conv2d(cfg) | Op::Conv2dAddChannel { config: cfg, .. } => {
                let add_channel = matches!(op, Op::Conv2dAddChannel { .. });
                arity(if add_channel { &[4] } else { &[3, 4] })?;
                let [cin, h, w] = s(0) else {
                    return Err(format!("input must be [C, H, W], got {:?}", s(0)));
                };
                let [cout, wcin, kh, kw] = s(1) else {
                    return Err(format!("weight must be [out, in, kh, kw], got {:?}", s(1)));
                };
                if wcin != cin {
                    return Err(format!(
                        "weight {:?} expects {wcin} input channels, input has {cin}",
                        s(1)
                    ));
                }
                if s(2) != [*cout] {
                    return Err(format!("bias {:?} does not match {cout} output channels", s(2)));
                }
                let up = cfg.upsample as usize;
                let (ho, wo) =
                    output_size(*h << up, *w << up, *kh, *kw, cfg).map_err(|e| e.to_string())?;
                let out = vec![*cout, ho, wo];
                if let Op::Conv2dAddChannel { offset, .. } = op {
                    let fits = matches!(s(3), [len] if offset.checked_add(*cout).is_some_and(|e| e <= *len));
                    if !fits {
                        return Err(format!(
                            "channel offsets {:?} do not hold {cout} values from {offset}",
                            s(3)
                        ));
                    }
                } else if inputs.len() == 4 && s(3) != out {
                    return Err(format!("residual {:?} does not match the output {out:?}", s(3)));
                }
                Ok(out)
            }
            Op::NormConv2d { groups, eps, silu, config, channel_offset } => {
                arity(&[5, 6])?;
                let norm = Op::GroupNorm { groups: *groups, eps: *eps, silu: *silu };
                let normed = self.infer(&norm, &inputs[..3])?;
                if normed != s(0) {
                    return Err(format!("the norm changes the input's shape {:?}", s(0)));
                }
                // The convolution reads a tensor of x's shape: x itself stands for it.
                let conv_inputs: Vec<TensorId> =
                    [inputs[0]].into_iter().chain(inputs[3..].iter().copied()).collect();
                let conv = match channel_offset {
                    Some(offset) => Op::Conv2dAddChannel { config: *config, offset: *offset },
                    None => Op::Conv2d(*config),
                };
                self.infer(&conv, &conv_inputs)
            }
            Op::GroupNorm { groups, .. } => {
                arity(&[3])?;
                let c = *s(0).first().ok_or("input has no channel dimension")?;
                if *groups == 0 || c % groups != 0 {
                    return Err(format!("{groups} groups do not divide {c} channels"));
                }
                if s(1) != [c] || s(2) != [c] {
                    return Err(format!(
                        "affine parameters {:?}, {:?} for {c} channels",
                        s(1),
                        s(2)
                    ));
                }
                Ok(s(0).to_vec())
            }
            Op::Attention { head_dim } => {
                arity(&[3])?;
                let [c, _, _] = s(0) else {
                    return Err(format!("q must be [C, H, W], got {:?}", s(0)));
                };
                if s(1) != s(0) || s(2) != s(0) {
                    return Err(format!("q {:?}, k {:?}, v {:?} differ", s(0), s(1), s(2)));
                }
                if *head_dim == 0 || c % head_dim != 0 {
                    return Err(format!("head_dim {head_dim} does not divide {c} channels"));
                }
                Ok(s(0).to_vec())
            }
            Op::AddChannel => {
                arity(&[2])?;
                let c = *s(0).first().ok_or("input has no channel dimension")?;
                if s(1) != [c] {
                    return Err(format!("vector {:?} does not have {c} entries", s(1)));
                }
                Ok(s(0).to_vec())
            }
            Op::Upsample2x => {
                arity(&[1])?;
                let [c, h, w] = s(0) else {
                    return Err(format!("input must be [C, H, W], got {:?}", s(0)));
                };
                Ok(vec![*c, 2 * h, 2 * w])
            }
            Op::Concat => {
                arity(&[2])?;
                match (s(0), s(1)) {
                    ([ca, h, w], [cb, hb, wb]) if (h, w) == (hb, wb) => Ok(vec![ca + cb, *h, *w]),
                    (a, b) => Err(format!("cannot concatenate {a:?} and {b:?} along channels")),
                }
            }
        }
    }
}

/// Padding of diffusers' `Downsample2D`: `padding = 0` pads only right and bottom (then convolves without
/// padding), `padding = 1` pads every side.
pub fn downsample_padding(padding: usize) -> Padding {
    if padding == 0 {
        Padding { top: 0, bottom: 1, left: 0, right: 1 }
    } else {
        Padding::uniform(padding)
    }
}
