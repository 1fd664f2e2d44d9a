//! What both group norms share: the validated normalisation they run.

use crate::error::{Error, Result};
use crate::gpu::check::{dim, expect_shape, nonzero};
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Tensor};

/// The operation's name in errors.
pub(crate) const OP: &str = "group_norm";

/// A validated group normalisation: `out = silu?(group_norm(x) * gamma + beta)` over `n` images of `c`
/// channels of `hw` values in `groups` groups; the counts fit the u32s the kernels read.
pub(crate) struct Norm<'a> {
    pub(crate) x: &'a Tensor,
    pub(crate) gamma: &'a Tensor,
    pub(crate) beta: &'a Tensor,
    pub(crate) out: &'a Tensor,
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) hw: usize,
    pub(crate) groups: usize,
    pub(crate) eps: f32,
    pub(crate) silu: bool,
}

params! {
    /// The part of both kernels' Params that describes the normalisation (the first fields of
    /// each).
    pub struct NormParams {
        pub batch: u32, pub c: u32, pub hw: u32, pub groups: u32, pub eps: f32, pub silu: u32,
    }
}

impl<'a> Norm<'a> {
    /// The normalisation as the kernels read it (every count checked to fit a u32 in [`Norm::new`]).
    pub(crate) fn params(&self) -> NormParams {
        NormParams {
            batch: self.n as u32,
            c: self.c as u32,
            hw: self.hw as u32,
            groups: self.groups as u32,
            eps: self.eps,
            silu: self.silu as u32,
        }
    }

    /// Checks the operands: x and out `[N, C, ...]` (any trailing spatial dimensions), gamma and beta `[C]`,
    /// `groups` dividing C, a positive finite eps.
    #[allow(clippy::too_many_arguments)] // the operands and the three settings of one normalisation
    pub(crate) fn new(
        x: &'a Tensor,
        gamma: &'a Tensor,
        beta: &'a Tensor,
        out: &'a Tensor,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Self> {
        let shape = x.shape();
        if shape.len() < 2 {
            return Err(Error::shape(
                OP,
                format!("tensor `{}` has shape {shape:?}, expected [N, C, ...]", x.label()),
            ));
        }
        let (n, c) = (shape[0], shape[1]);
        let hw: usize = shape[2..].iter().product();
        for (what, v) in [("batch", n), ("channels", c), ("spatial size", hw), ("groups", groups)] {
            nonzero(OP, what, v)?;
            dim(OP, what, v)?;
        }
        if c % groups != 0 {
            return Err(Error::param(
                OP,
                format!("{groups} groups do not divide the {c} channels of `{}`", x.label()),
            ));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::param(OP, format!("eps must be positive and finite, got {eps}")));
        }
        expect_shape(OP, gamma, &[c])?;
        expect_shape(OP, beta, &[c])?;
        expect_shape(OP, out, shape)?;
        Ok(Norm { x, gamma, beta, out, n, c, hw, groups, eps, silu })
    }

    /// [`Norm::new`] for the statistics alone: `affine` `[N, C, 4]` takes, per image and channel, what
    /// normalises x there (`group_norm.wgsl`'s STATS variants), in place of `out`.
    pub(crate) fn statistics(
        x: &'a Tensor,
        gamma: &'a Tensor,
        beta: &'a Tensor,
        affine: &'a Tensor,
        groups: usize,
        eps: f32,
    ) -> Result<Self> {
        // x stands for the output Norm::new checks (of x's shape); affine takes its place after.
        let norm = Norm::new(x, gamma, beta, x, groups, eps, false)?;
        expect_shape(OP, affine, &[norm.n, norm.c, 4])?;
        Ok(Norm { out: affine, ..norm })
    }

    /// The work: about 10 flops per value; x read and out written once, gamma and beta read once.
    pub(crate) fn cost(&self) -> Cost {
        Cost::new(10 * self.x.len() as u64, 2 * self.x.len() as u64 + 2 * self.c as u64)
    }
}
