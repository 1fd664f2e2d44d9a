//! What every convolution shares: its configuration, the validated geometry the kernels read ([`ConvShape`]),
//! the operands of its epilogue, and the WGSL pieces the kernels include.

use crate::error::{Error, Result};
use crate::gpu::Tensor;
use crate::gpu::check::{dim, dims, expect_shape, nonzero};
use crate::gpu::kernel::params;

/// The operation's name in errors.
pub(crate) const OP: &str = "conv2d";

pub const SHAPE: &str = include_str!("../../../kernels/conv2d_shape.inc.wgsl");

/// The 8 x 8 accumulator block and its update, shared by the packed-weight kernels and the Winograd products.
pub const BLOCK: &str = include_str!("../../../kernels/conv2d_block.inc.wgsl");

/// The epilogue of the convolutions whose input channels may come in chunks (conv2d_packed.inc.wgsl,
/// conv2d_1x1.wgsl).
pub const EPILOGUE: &str = include_str!("../../../kernels/conv2d_epilogue.inc.wgsl");

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
        Padding { top: p, bottom: p, left: p, right: p }
    }
}

/// Geometry of a convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: Padding,
    /// Multiplies the result after bias and residual (diffusers' `1 / output_scale_factor`).
    pub out_scale: f32,
    /// Read the input upsampled 2x by nearest neighbour (diffusers' Upsample2D: interpolate, then this
    /// convolution), without storing the upsampled tensor: the geometry is that of the upsampled input.
    pub upsample: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig { stride: 1, padding: Padding::default(), out_scale: 1.0, upsample: false }
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

params! {
    /// The shape part of a convolution's Params, mirrored from `ConvShape` in
    /// conv2d_accumulate.inc.wgsl.
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
        /// 1 when the input is read upsampled 2x (h and w are then the upsampled size).
        pub up: u32,
        /// Where image n's channel vector starts in the epilogue's `chan` binding: `n * chan_stride +
        /// chan_offset` (`cout` and 0 unless the vector is a slice of a longer one; [`ChannelSlice`]).
        pub chan_stride: u32,
        /// See `chan_stride`.
        pub chan_offset: u32,
        pub _pad: u32,
    }
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
        for (what, v) in [("batch", n), ("input channels", cin), ("height", h), ("width", w)] {
            nonzero(op, what, v)?;
        }
        for (what, v) in [("output channels", cout), ("kernel height", kh), ("kernel width", kw)] {
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
        let up = cfg.upsample as usize;
        let (h, w) = (h << up, w << up);
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
            up: up as u32,
            chan_stride: dim(op, "cout", cout)?,
            chan_offset: 0,
            _pad: 0,
        })
    }

    /// `[N, Cout, Ho, Wo]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.cout, self.ho, self.wo].map(|v| v as usize)
    }

    /// Invocations of a kernel that computes 4 output channels x 4 output columns each (`conv2d`,
    /// `conv2d_ddim`).
    pub(crate) fn blocks_4x4(&self) -> u64 {
        let [n, cout, ho, wo] = self.output_shape();
        (n * cout.div_ceil(4) * ho * wo.div_ceil(4)) as u64
    }

    /// Multiply-adds x 2.
    pub(crate) fn flops(&self) -> u64 {
        let [n, cout, ho, wo] = self.output_shape();
        2 * (n * cout * ho * wo) as u64 * (self.cin * self.kh * self.kw) as u64
    }
}

/// The per-image channel vector a convolution's epilogue adds to output channel `co` of image `n`:
/// `vectors[n, offset + co]` of a `[N, len]` tensor, `offset + Cout <= len`. One block's slice of vectors
/// computed together for several blocks (a UNet's time projections); `offset` 0 where the tensor is
/// `[N, Cout]`.
#[derive(Clone, Copy)]
pub struct ChannelSlice<'a> {
    /// The `[N, len]` tensor.
    pub vectors: &'a Tensor,
    /// Where this convolution's `Cout` values start in each image's `len`.
    pub offset: usize,
}

impl<'a> ChannelSlice<'a> {
    /// The whole of a `[N, Cout]` tensor.
    pub fn whole(vectors: &'a Tensor) -> Self {
        ChannelSlice { vectors, offset: 0 }
    }

    /// `(chan_stride, chan_offset)` for a convolution of `shape`: an error naming the tensor where it is not
    /// `[N, len]` with room for `Cout` values from `offset`.
    pub(crate) fn layout(&self, shape: &ConvShape) -> Result<(u32, u32)> {
        let (n, cout) = (shape.batch as usize, shape.cout as usize);
        let fits = match self.vectors.shape() {
            [batch, len] => *batch == n && self.offset.checked_add(cout).is_some_and(|e| e <= *len),
            _ => false,
        };
        if !fits {
            return Err(Error::shape(
                OP,
                format!(
                    "channel vectors `{}` {:?}: need [{n}, len] with {cout} values from {}",
                    self.vectors.label(),
                    self.vectors.shape(),
                    self.offset
                ),
            ));
        }
        Ok((
            dim(OP, "channel vector length", self.vectors.shape()[1])?,
            dim(OP, "channel offset", self.offset)?,
        ))
    }
}

/// The tensors of one convolution and its configuration:
/// `out = (conv(x, weight) + bias + channel + residual) * cfg.out_scale`.
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    /// The validated geometry of the convolution.
    pub(crate) shape: ConvShape,
    pub(crate) x: &'a Tensor,
    pub(crate) weight: &'a Tensor,
    pub(crate) bias: &'a Tensor,
    pub(crate) channel: Option<&'a Tensor>,
    pub(crate) residual: Option<&'a Tensor>,
    pub(crate) out: &'a Tensor,
    pub(crate) cfg: &'a Conv2dConfig,
}
