//! What both linear kernels share: their Params (`linear_params.inc.wgsl`), how tensors hold their tokens, and
//! a layer's options.

use crate::error::{Error, Result};
use crate::gpu::Tensor;
use crate::gpu::check::dims;
use crate::gpu::kernel::params;

/// The operation's name in errors.
pub(crate) const OP: &str = "linear";

/// The Params and bindings both linear kernels share.
pub(crate) const PARAMS: &str = include_str!("../../../kernels/linear_params.inc.wgsl");

params! {
    /// Mirrors `Params` in linear_params.inc.wgsl.
    pub struct Params {
        pub batch: u32, pub m: u32, pub k: u32, pub n_out: u32, pub x_sb: u32, pub x_sm: u32,
        pub x_sk: u32, pub y_sb: u32, pub y_sm: u32, pub y_sn: u32, pub silu_input: u32,
        pub has_residual: u32, pub out_scale: f32, pub _pad: [u32; 3],
    }
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
pub(crate) fn view(t: &Tensor, layout: TokenLayout) -> Result<((usize, usize, usize), [usize; 3])> {
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
