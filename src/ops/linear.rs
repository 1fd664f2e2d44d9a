//! Linear layers (`kernels/linear.wgsl`): `y = act(x) W^T + b (+ residual) * out_scale` over batches of token
//! matrices, reading and writing either row-major `[N, M, K]` or NCHW feature maps viewed as tokens.
//!
//! On feature maps without input SiLU (the attention projections) a linear layer is a 1x1 convolution: where
//! [`conv2d::kernel_for`] would run it with weights in uniform windows (`conv2d_1x1`, `conv2d_1x1_wide`,
//! `conv2d_packed`, CPU family) or shared-memory tiles (`conv2d_tiled`, GPU family), that is what runs,
//! since those read each weight once per workgroup and `linear.wgsl` cannot. The baseline kernels keep `linear.wgsl`. Layers with
//! few tokens (the time embedding) run `linear_reduce.wgsl` in the GPU family, a workgroup per output
//! splitting the dot products ([`kernel_for`]).

use bytemuck::{Pod, Zeroable};

use super::conv2d::{self, Conv2dConfig, ConvShape};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{dim, dims, expect_shape, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, KernelChoice, Tensor, workgroups_for};

const OP: &str = "linear";

/// The Params and bindings both linear kernels share.
const PARAMS: &str = include_str!("../../kernels/linear_params.inc.wgsl");

/// The kernel.
pub const KERNEL: Kernel = kernel!("linear", includes: [PARAMS], workgroup: 64, params: Params,
    bindings: &[Read, Read, Read, Read, ReadWrite]);

/// Mirrors `Params` in linear.wgsl.
/// The GPU family's kernel for layers with few tokens: a workgroup per (8 tokens, output feature) splitting the
/// input features (`linear_reduce.wgsl`).
pub const REDUCE_KERNEL: Kernel = kernel!("linear_reduce", includes: [PARAMS], workgroup: 64,
    params: Params, bindings: KERNEL.bindings);

/// Below this many invocations of [`KERNEL`] (4 tokens x 4 outputs each), the GPU family runs
/// [`REDUCE_KERNEL`]: 4,096 invocations are a quarter of the lanes of a large GPU (an H200 runs 16,896 FMAs
/// per clock), and each would run a chain of k dependent loads. The time-embedding layers (8 rows of 512
/// features at batch 8: 128 invocations) fall under it; token-major layers over feature maps do not.
const REDUCE_BELOW: u64 = 4096;

/// The kernel [`linear`] runs for `b` x `m` tokens of `n_out` outputs, where it does not run as a 1x1
/// convolution: `linear_reduce` for the GPU family on small layers, `linear` otherwise.
pub fn kernel_for(gpu: &Gpu, b: usize, m: usize, n_out: usize) -> &'static Kernel {
    let invocations = (b * m.div_ceil(4) * n_out.div_ceil(4)) as u64;
    if gpu.kernel_family() == KernelChoice::Gpu && invocations < REDUCE_BELOW {
        &REDUCE_KERNEL
    } else {
        &KERNEL
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Params {
    pub batch: u32,
    pub m: u32,
    pub k: u32,
    pub n_out: u32,
    pub x_sb: u32,
    pub x_sm: u32,
    pub x_sk: u32,
    pub y_sb: u32,
    pub y_sm: u32,
    pub y_sn: u32,
    pub silu_input: u32,
    pub has_residual: u32,
    pub out_scale: f32,
    pub _pad: [u32; 3],
}

/// How the input and output tensors hold their tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenLayout {
    /// `[..., M, K]` row-major: a token's features are contiguous (the time-embedding MLP: `[N, K]`).
    RowMajor,
    /// `[N, C, H, W]`: the H*W pixels are the tokens, the channels their features (attention projections).
    Channels,
}

/// Options of a linear layer.
#[derive(Clone, Copy, Debug)]
pub struct LinearConfig {
    /// Layout of x and y (and residual).
    pub layout: TokenLayout,
    /// Apply SiLU to the input first (diffusers' time embedding: `linear_2(silu(linear_1(t)))`).
    pub silu_input: bool,
    /// Multiplies the result after bias and residual.
    pub out_scale: f32,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig { layout: TokenLayout::RowMajor, silu_input: false, out_scale: 1.0 }
    }
}

/// (batch, tokens, features) of a tensor in `layout`, and its strides (batch, token, feature).
fn view(t: &Tensor, layout: TokenLayout) -> Result<((usize, usize, usize), [usize; 3])> {
    let s = t.shape();
    match layout {
        TokenLayout::RowMajor => {
            if s.is_empty() {
                return Err(Error::shape(OP, format!("tensor `{}` is a scalar", t.label())));
            }
            let k = s[s.len() - 1];
            let m = if s.len() >= 2 { s[s.len() - 2] } else { 1 };
            let b: usize = s[..s.len().saturating_sub(2)].iter().product();
            Ok(((b, m, k), [m * k, k, 1]))
        }
        TokenLayout::Channels => {
            let [n, c, h, w] = dims::<4>(OP, t)?;
            let hw = h * w;
            Ok(((n, hw, c), [c * hw, 1, hw]))
        }
    }
}

/// Prepares a linear layer. weight `[N_out, K]` (PyTorch layout), bias `[N_out]`; x holds tokens of K features
/// and y (and residual) the same tokens with N_out features, both in `cfg.layout`.
#[allow(clippy::too_many_arguments)] // the operands of one layer; grouping them would only rename them
pub fn linear(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    y: &Tensor,
    cfg: &LinearConfig,
) -> Result<Dispatch> {
    let ((b, m, k), xs) = view(x, cfg.layout)?;
    let ((yb, ym, yn), ys) = view(y, cfg.layout)?;
    let [n_out, wk] = dims::<2>(OP, weight)?;
    for (what, v) in
        [("batch", b), ("tokens", m), ("input features", k), ("output features", n_out)]
    {
        nonzero(OP, what, v)?;
    }
    if wk != k {
        return Err(Error::shape(
            OP,
            format!(
                "weight `{}` {:?} takes {wk} input features but `{}` {:?} has {k}",
                weight.label(),
                weight.shape(),
                x.label(),
                x.shape()
            ),
        ));
    }
    if (yb, ym, yn) != (b, m, n_out) {
        return Err(Error::shape(
            OP,
            format!(
                "output `{}` {:?} should hold {b} x {m} tokens of {n_out} features",
                y.label(),
                y.shape()
            ),
        ));
    }
    expect_shape(OP, bias, &[n_out])?;
    if let Some(r) = residual {
        expect_shape(OP, r, y.shape())?;
    }
    if cfg.layout == TokenLayout::Channels && !cfg.silu_input {
        // weight [N_out, K] is the 1x1 convolution weight [N_out, K, 1, 1].
        let w4 = weight.view(weight.label(), &[n_out, k, 1, 1])?;
        let conv = Conv2dConfig { out_scale: cfg.out_scale, ..Default::default() };
        let shape = ConvShape::new(OP, x, &w4, bias, &conv)?;
        let kernel = conv2d::kernel_for(gpu, &shape).name;
        let convolution = [
            &conv2d::KERNEL_1X1,
            &conv2d::KERNEL_1X1_WIDE,
            &conv2d::KERNEL_PACKED,
            &conv2d::KERNEL_TILED,
        ];
        if convolution.iter().any(|k| k.name == kernel) {
            return conv2d::conv2d(gpu, label, x, &w4, bias, residual, y, &conv);
        }
    }
    let params = Params {
        batch: dim(OP, "batch", b)?,
        m: dim(OP, "tokens", m)?,
        k: dim(OP, "input features", k)?,
        n_out: dim(OP, "output features", n_out)?,
        x_sb: dim(OP, "x batch stride", xs[0])?,
        x_sm: dim(OP, "x token stride", xs[1])?,
        x_sk: dim(OP, "x feature stride", xs[2])?,
        y_sb: dim(OP, "y batch stride", ys[0])?,
        y_sm: dim(OP, "y token stride", ys[1])?,
        y_sn: dim(OP, "y feature stride", ys[2])?,
        silu_input: cfg.silu_input as u32,
        has_residual: residual.is_some() as u32,
        out_scale: cfg.out_scale,
        _pad: [0; 3],
    };
    let kernel = kernel_for(gpu, b, m, n_out);
    let workgroups = if kernel.name == REDUCE_KERNEL.name {
        // One workgroup per (b, 8 tokens, output feature).
        let groups = (b * m.div_ceil(8) * n_out) as u64;
        workgroups_for(groups * kernel.workgroup_size as u64, kernel.workgroup_size)
    } else {
        // 4 tokens x 4 output features per invocation.
        let invocations = (b * m.div_ceil(4) * n_out.div_ceil(4)) as u64;
        workgroups_for(invocations, kernel.workgroup_size)
    };
    Dispatch::new(
        gpu,
        kernel,
        OP,
        label,
        &params,
        &[x, weight, bias, residual.unwrap_or(x), y],
        workgroups,
    )
    .map(|d| {
        d.with_cost(Cost::new(
            2 * (b * m * k * n_out) as u64,
            (x.len() + weight.len() + n_out + y.len() * (1 + residual.is_some() as usize)) as u64,
        ))
    })
}
