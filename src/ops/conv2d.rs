//! 2-D convolution (`kernels/conv2d.wgsl`): NCHW, any kernel size and stride, padding per side, bias, and a
//! fused epilogue `(conv + bias + residual) * out_scale`.

use bytemuck::{Pod, Zeroable};

use super::{Access, Cost, Dispatch, Kernel, dim, dims, expect_shape, nonzero, workgroups_for};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

const OP: &str = "conv2d";

/// The convolution loop shared with the DDIM-epilogue convolution (`ops::ddim::CONV_KERNEL`).
pub const ACCUMULATE: &str = include_str!("../../kernels/conv2d_accumulate.inc.wgsl");

/// The kernel.
pub const KERNEL: Kernel = Kernel {
    name: "conv2d",
    source: include_str!("../../kernels/conv2d.wgsl"),
    includes: &[ACCUMULATE],
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
    pub shape: ConvShape,
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

/// The shape part of a convolution's Params, mirrored from `ConvShape` in conv2d_accumulate.inc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ConvShape {
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
    pub _pad: [u32; 4],
}

impl ConvShape {
    /// Validates x `[N, Cin, H, W]`, weight `[Cout, Cin, KH, KW]` and bias `[Cout]` against `cfg`; `op` names
    /// the caller in errors. The output shape is `[N, Cout, ho, wo]`.
    pub(crate) fn new(
        op: &'static str,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        cfg: &Conv2dConfig,
    ) -> Result<Self> {
        let [n, cin, h, w] = dims::<4>(op, x)?;
        let [cout, wcin, kh, kw] = dims::<4>(op, weight)?;
        for (what, v) in [
            ("batch", n),
            ("input channels", cin),
            ("height", h),
            ("width", w),
        ] {
            nonzero(op, what, v)?;
        }
        for (what, v) in [
            ("output channels", cout),
            ("kernel height", kh),
            ("kernel width", kw),
        ] {
            nonzero(op, what, v)?;
        }
        if wcin != cin {
            return Err(Error::shape(
                op,
                format!(
                    "weight `{}` {:?} expects {wcin} input channels but `{}` has {cin}",
                    weight.label(),
                    weight.shape(),
                    x.label()
                ),
            ));
        }
        expect_shape(op, bias, &[cout])?;
        let (ho, wo) = output_size(h, w, kh, kw, cfg)?;
        Ok(ConvShape {
            batch: dim(op, "batch", n)?,
            cin: dim(op, "cin", cin)?,
            h: dim(op, "h", h)?,
            w: dim(op, "w", w)?,
            cout: dim(op, "cout", cout)?,
            ho: dim(op, "ho", ho)?,
            wo: dim(op, "wo", wo)?,
            kh: dim(op, "kh", kh)?,
            kw: dim(op, "kw", kw)?,
            stride: dim(op, "stride", cfg.stride)?,
            pad_top: dim(op, "pad_top", cfg.padding.top)?,
            pad_left: dim(op, "pad_left", cfg.padding.left)?,
            _pad: [0; 4],
        })
    }

    /// `[N, Cout, Ho, Wo]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.cout, self.ho, self.wo].map(|v| v as usize)
    }

    /// Workgroups for one invocation per 4 x 4 block.
    pub(crate) fn workgroups(&self) -> u64 {
        let [n, cout, ho, wo] = self.output_shape();
        workgroups_for(
            (n * cout.div_ceil(4) * ho * wo.div_ceil(4)) as u64,
            KERNEL.workgroup_size,
        )
    }

    /// Multiply-adds x 2.
    pub(crate) fn flops(&self) -> u64 {
        let [n, cout, ho, wo] = self.output_shape();
        2 * (n * cout * ho * wo) as u64 * (self.cin * self.kh * self.kw) as u64
    }
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
    let shape = ConvShape::new(OP, x, weight, bias, cfg)?;
    expect_shape(OP, out, &shape.output_shape())?;
    if let Some(r) = residual {
        expect_shape(OP, r, out.shape())?;
    }
    let params = Params {
        shape,
        has_residual: residual.is_some() as u32,
        out_scale: cfg.out_scale,
        _pad: [0; 2],
    };
    let floats =
        x.len() + weight.len() + bias.len() + out.len() * (1 + residual.is_some() as usize);
    Dispatch::new(
        gpu,
        &KERNEL,
        OP,
        label,
        &params,
        &[x, weight, bias, residual.unwrap_or(x), out],
        shape.workgroups(),
    )
    .map(|d| d.with_cost(Cost::new(shape.flops(), floats as u64)))
}
