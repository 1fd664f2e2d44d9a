//! Which linear layer runs: a 1x1 convolution where the convolution's kernels do better, else [`kernel_for`]
//! picks `linear` or `linear_reduce` by the device's family and the layer's size (never the batch).

use super::layout::{LinearConfig, OP, Params, TokenLayout, view};
use super::reduce::{self, REDUCE_KERNEL};
use super::tokens::{self, KERNEL};
use crate::error::{Error, Result};
use crate::gpu::check::{dim, dims, expect_shape, nonzero};
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, KernelChoice, Tensor};
use crate::ops::conv2d::{self, Conv2dConfig, ConvShape};

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
            &conv2d::KERNEL_TILED_8X8,
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
        reduce::workgroups(b, m, n_out)
    } else {
        tokens::workgroups(b, m, n_out)
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
