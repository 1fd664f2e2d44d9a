//! Builds the IR of a diffusers `UNet2DModel` from its config. The only module that knows the architecture;
//! node and parameter names are diffusers' state-dict keys, so a failing block is named as PyTorch names it.

use super::config::{DownBlock, UNetConfig, UpBlock};
use crate::error::Result;
use crate::graph::ir::{Graph, Op, TensorId, downsample_padding};
use crate::ops::conv2d::{Conv2dConfig, Padding};
use crate::ops::linear::{LinearConfig, TokenLayout};

/// Row-major vectors (the time-embedding path), with and without SiLU on the input; NCHW maps as tokens.
const ROW: LinearConfig =
    LinearConfig { layout: TokenLayout::RowMajor, silu_input: false, out_scale: 1.0 };
const ROW_SILU: LinearConfig = LinearConfig { silu_input: true, ..ROW };
const TOKENS: LinearConfig = LinearConfig { layout: TokenLayout::Channels, ..ROW };

fn padded(stride: usize, padding: Padding) -> Conv2dConfig {
    Conv2dConfig { stride, padding, ..Default::default() }
}

struct Builder<'a> {
    g: Graph,
    cfg: &'a UNetConfig,
    temb: TensorId,
}

impl Builder<'_> {
    /// A k x k convolution named `name` (parameters `name.weight`, `name.bias`) with an optional residual.
    fn conv(
        &mut self,
        name: &str,
        x: TensorId,
        (cout, k): (usize, usize),
        cfg: Conv2dConfig,
        residual: Option<TensorId>,
    ) -> Result<TensorId> {
        let cin = self.g.shape(x)[0];
        let w = self.g.param(&format!("{name}.weight"), &[cout, cin, k, k]);
        let b = self.g.param(&format!("{name}.bias"), &[cout]);
        let mut inputs = vec![x, w, b];
        inputs.extend(residual);
        self.g.node(name, Op::Conv2d(cfg), &inputs)
    }

    fn conv3x3(&mut self, name: &str, x: TensorId, cout: usize) -> Result<TensorId> {
        self.conv(name, x, (cout, 3), padded(1, Padding::uniform(1)), None)
    }

    /// A linear layer named `name` with an optional residual.
    fn linear(
        &mut self,
        name: &str,
        x: TensorId,
        n_out: usize,
        cfg: LinearConfig,
        residual: Option<TensorId>,
    ) -> Result<TensorId> {
        let k = self.g.shape(x)[0];
        let w = self.g.param(&format!("{name}.weight"), &[n_out, k]);
        let b = self.g.param(&format!("{name}.bias"), &[n_out]);
        let mut inputs = vec![x, w, b];
        inputs.extend(residual);
        let op =
            Op::Linear { layout: cfg.layout, silu_input: cfg.silu_input, out_scale: cfg.out_scale };
        self.g.node(name, op, &inputs)
    }

    fn norm(&mut self, name: &str, x: TensorId, groups: usize, silu: bool) -> Result<TensorId> {
        let c = self.g.shape(x)[0];
        let gamma = self.g.param(&format!("{name}.weight"), &[c]);
        let beta = self.g.param(&format!("{name}.bias"), &[c]);
        let op = Op::GroupNorm { groups, eps: self.cfg.norm_eps as f32, silu };
        self.g.node(name, op, &[x, gamma, beta])
    }

    /// diffusers' `ResnetBlock2D` (time_embedding_norm "default").
    fn resnet(
        &mut self,
        name: &str,
        x: TensorId,
        cout: usize,
        output_scale: f64,
    ) -> Result<TensorId> {
        let groups = self.cfg.norm_num_groups;
        let cin = self.g.shape(x)[0];
        let h = self.norm(&format!("{name}.norm1"), x, groups, true)?;
        // conv1(h) + time_emb_proj(silu(temb))[:, :, None, None], the add in conv1's epilogue.
        let temb = self.temb;
        let t = self.linear(&format!("{name}.time_emb_proj"), temb, cout, ROW_SILU, None)?;
        let conv1 = format!("{name}.conv1");
        let w = self.g.param(&format!("{conv1}.weight"), &[cout, cin, 3, 3]);
        let b = self.g.param(&format!("{conv1}.bias"), &[cout]);
        let cfg = padded(1, Padding::uniform(1));
        let op = Op::Conv2dAddChannel { config: cfg, offset: 0 };
        let h = self.g.node(&conv1, op, &[h, w, b, t])?;
        let h = self.norm(&format!("{name}.norm2"), h, groups, true)?;
        let shortcut = if cin != cout {
            let cfg = padded(1, Padding::default());
            self.conv(&format!("{name}.conv_shortcut"), x, (cout, 1), cfg, None)?
        } else {
            x
        };
        // out = (shortcut + conv2(h)) / output_scale_factor, fused into conv2's epilogue.
        let cfg = Conv2dConfig {
            out_scale: (1.0 / output_scale) as f32,
            ..padded(1, Padding::uniform(1))
        };
        self.conv(&format!("{name}.conv2"), h, (cout, 3), cfg, Some(shortcut))
    }

    /// diffusers' `Attention` as built for UNet2DModel blocks: GroupNorm, q/k/v projections over the H*W
    /// tokens, softmax(q k^T / sqrt(d)) v per head, output projection, residual, / rescale_output_factor.
    fn attention(
        &mut self,
        name: &str,
        x: TensorId,
        groups: usize,
        output_scale: f64,
    ) -> Result<TensorId> {
        let c = self.g.shape(x)[0];
        let head_dim = self.cfg.attention_head_dim.unwrap_or(c);
        let h = self.norm(&format!("{name}.group_norm"), x, groups, false)?;
        let q = self.linear(&format!("{name}.to_q"), h, c, TOKENS, None)?;
        let k = self.linear(&format!("{name}.to_k"), h, c, TOKENS, None)?;
        let v = self.linear(&format!("{name}.to_v"), h, c, TOKENS, None)?;
        let a =
            self.g.node(&format!("{name}.attention"), Op::Attention { head_dim }, &[q, k, v])?;
        let out = LinearConfig { out_scale: (1.0 / output_scale) as f32, ..TOKENS };
        self.linear(&format!("{name}.to_out.0"), a, c, out, Some(x))
    }
}

/// The IR of `UNet2DModel(config)`: inputs `sample [in_channels, S, S]` and `timesteps []` (per image), output
/// `[out_channels, S, S]`. Checkpoints: the time embedding, conv_in, every block, and the output. The ResNet
/// blocks' time projections run as one linear layer over their stacked weights
/// ([`stack_channel_linears`](crate::graph::stack::stack_channel_linears)); otherwise one node per layer, as
/// [`build_unstacked`].
pub fn build(cfg: &UNetConfig) -> Result<Graph> {
    let mut g = build_unstacked(cfg)?;
    crate::graph::stack::stack_channel_linears(&mut g);
    Ok(g)
}

/// [`build`] with one node per diffusers layer: every time projection its own node (the graph the stacked one
/// is checked against).
pub fn build_unstacked(cfg: &UNetConfig) -> Result<Graph> {
    cfg.validate()?;
    let mut g = Graph::default();
    let s = cfg.sample_size;
    let sample = g.input(&[cfg.in_channels, s, s]);
    let timesteps = g.input(&[]);
    let ch0 = cfg.block_out_channels[0];

    // Time embedding: sinusoidal, linear_1, SiLU, linear_2 (the SiLU is fused into linear_2's input).
    let t = g.node(
        "time_proj",
        Op::TimestepEmbedding {
            dim: ch0,
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
        },
        &[timesteps],
    )?;
    let mut b = Builder { g, cfg, temb: t };
    let t1 = b.linear("time_embedding.linear_1", t, cfg.time_embed_dim, ROW, None)?;
    let temb = b.linear("time_embedding.linear_2", t1, cfg.time_embed_dim, ROW_SILU, None)?;
    b.temb = temb;
    b.g.checkpoint("time_embedding", temb);

    let mut h = b.conv3x3("conv_in", sample, ch0)?;
    b.g.checkpoint("conv_in", h);
    let mut skips = vec![h];

    let levels = cfg.block_out_channels.len();
    for (i, (&cout, kind)) in cfg.block_out_channels.iter().zip(&cfg.down_block_types).enumerate() {
        let name = format!("down_blocks.{i}");
        for j in 0..cfg.layers_per_block {
            h = b.resnet(&format!("{name}.resnets.{j}"), h, cout, 1.0)?;
            if *kind == DownBlock::AttnDownBlock2D {
                h = b.attention(&format!("{name}.attentions.{j}"), h, cfg.norm_num_groups, 1.0)?;
            }
            skips.push(h);
        }
        if i + 1 < levels {
            let down = padded(2, downsample_padding(cfg.downsample_padding));
            h = b.conv(&format!("{name}.downsamplers.0.conv"), h, (cout, 3), down, None)?;
            skips.push(h);
        }
        b.g.checkpoint(&name, h);
    }

    let mid_c = cfg.block_out_channels[levels - 1];
    let mid_scale = cfg.mid_block_scale_factor;
    h = b.resnet("mid_block.resnets.0", h, mid_c, mid_scale)?;
    if cfg.mid_block_attention {
        let groups = cfg.attn_norm_num_groups.unwrap_or(cfg.norm_num_groups);
        h = b.attention("mid_block.attentions.0", h, groups, mid_scale)?;
    }
    h = b.resnet("mid_block.resnets.1", h, mid_c, mid_scale)?;
    b.g.checkpoint("mid_block", h);

    for (i, kind) in cfg.up_block_types.iter().enumerate() {
        let name = format!("up_blocks.{i}");
        let cout = cfg.block_out_channels[levels - 1 - i];
        for j in 0..=cfg.layers_per_block {
            let skip = skips.pop().expect("one skip per down-path output");
            h = b.g.node(&format!("{name}.resnets.{j}.concat"), Op::Concat, &[h, skip])?;
            h = b.resnet(&format!("{name}.resnets.{j}"), h, cout, 1.0)?;
            if *kind == UpBlock::AttnUpBlock2D {
                h = b.attention(&format!("{name}.attentions.{j}"), h, cfg.norm_num_groups, 1.0)?;
            }
        }
        if i + 1 < levels {
            // Upsample2D: nearest 2x, then a 3x3 convolution that reads the input upsampled (never stored).
            let cfg = Conv2dConfig { upsample: true, ..padded(1, Padding::uniform(1)) };
            h = b.conv(&format!("{name}.upsamplers.0.conv"), h, (cout, 3), cfg, None)?;
        }
        b.g.checkpoint(&name, h);
    }

    h = b.norm("conv_norm_out", h, cfg.norm_num_groups, true)?;
    let out = b.conv3x3("conv_out", h, cfg.out_channels)?;
    b.g.checkpoint("conv_out", out);
    b.g.output = Some(out);
    Ok(b.g)
}
