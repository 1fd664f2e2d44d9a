//! 2-D convolution (`kernels/conv2d.wgsl`): NCHW, any kernel size and stride, padding per side, bias, and a
//! fused epilogue `(conv + bias + residual) * out_scale`.

use bytemuck::{Pod, Zeroable};

use super::{Access, Cost, Dispatch, Kernel, dim, dims, expect_shape, nonzero, workgroups_for};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

const OP: &str = "conv2d";

/// The kernel.
pub const KERNEL: Kernel = Kernel {
    name: "conv2d",
    source: include_str!("../../kernels/conv2d.wgsl"),
    bindings: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
    workgroup_size: 64,
    params_size: std::mem::size_of::<Params>(),
};

/// Mirrors `Params` in conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Params {
    pub batch: u32,
    pub cin: u32,
    pub h: u32,
    pub w: u32,
    pub cout: u32,
    pub ho: u32,
    pub wo: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub has_residual: u32,
    pub out_scale: f32,
    pub _pad: [u32; 2],
}

/// Padding per side, in pixels. diffusers' Downsample2D with `padding=0` pads only bottom and right by 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides.
    pub fn uniform(p: usize) -> Self {
        Padding {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }
}

/// Geometry of a convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: Padding,
    /// Multiplies the result after bias and residual (diffusers' `1 / output_scale_factor`).
    pub out_scale: f32,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: 1,
            padding: Padding::default(),
            out_scale: 1.0,
        }
    }
}

/// The output spatial size of a convolution, or an error if the window does not fit.
pub fn output_size(
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    cfg: &Conv2dConfig,
) -> Result<(usize, usize)> {
    if cfg.stride == 0 {
        return Err(Error::param(OP, "stride is 0"));
    }
    let ph = h + cfg.padding.top + cfg.padding.bottom;
    let pw = w + cfg.padding.left + cfg.padding.right;
    if ph < kh || pw < kw {
        return Err(Error::shape(
            OP,
            format!("a {kh}x{kw} kernel does not fit a padded {ph}x{pw} input"),
        ));
    }
    Ok(((ph - kh) / cfg.stride + 1, (pw - kw) / cfg.stride + 1))
}

/// Prepares `out = (conv(x, weight) + bias + residual) * out_scale`.
///
/// Shapes: x `[N, Cin, H, W]`, weight `[Cout, Cin, KH, KW]`, bias `[Cout]`, residual and out `[N, Cout, Ho, Wo]`.
#[allow(clippy::too_many_arguments)] // the operands of one convolution; grouping them would only rename them
pub fn conv2d(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    let [n, cin, h, w] = dims::<4>(OP, x)?;
    let [cout, wcin, kh, kw] = dims::<4>(OP, weight)?;
    for (what, v) in [
        ("batch", n),
        ("input channels", cin),
        ("height", h),
        ("width", w),
    ] {
        nonzero(OP, what, v)?;
    }
    for (what, v) in [
        ("output channels", cout),
        ("kernel height", kh),
        ("kernel width", kw),
    ] {
        nonzero(OP, what, v)?;
    }
    if wcin != cin {
        return Err(Error::shape(
            OP,
            format!(
                "weight `{}` {:?} expects {wcin} input channels but `{}` has {cin}",
                weight.label(),
                weight.shape(),
                x.label()
            ),
        ));
    }
    expect_shape(OP, bias, &[cout])?;
    let (ho, wo) = output_size(h, w, kh, kw, cfg)?;
    expect_shape(OP, out, &[n, cout, ho, wo])?;
    if let Some(r) = residual {
        expect_shape(OP, r, &[n, cout, ho, wo])?;
    }
    let params = Params {
        batch: dim(OP, "batch", n)?,
        cin: dim(OP, "cin", cin)?,
        h: dim(OP, "h", h)?,
        w: dim(OP, "w", w)?,
        cout: dim(OP, "cout", cout)?,
        ho: dim(OP, "ho", ho)?,
        wo: dim(OP, "wo", wo)?,
        kh: dim(OP, "kh", kh)?,
        kw: dim(OP, "kw", kw)?,
        stride: dim(OP, "stride", cfg.stride)?,
        pad_top: dim(OP, "pad_top", cfg.padding.top)?,
        pad_left: dim(OP, "pad_left", cfg.padding.left)?,
        has_residual: residual.is_some() as u32,
        out_scale: cfg.out_scale,
        _pad: [0; 2],
    };
    // 4 output channels x 4 output columns per invocation.
    let invocations = (n * cout.div_ceil(4) * ho * wo.div_ceil(4)) as u64;
    Dispatch::new(
        gpu,
        &KERNEL,
        OP,
        label,
        &params,
        &[x, weight, bias, residual.unwrap_or(x), out],
        workgroups_for(invocations, KERNEL.workgroup_size),
    )
    .map(|d| {
        d.with_cost(Cost::new(
            2 * (n * cout * ho * wo * cin * kh * kw) as u64,
            (x.len() + weight.len() + cout + out.len() * (1 + residual.is_some() as usize)) as u64,
        ))
    })
}
