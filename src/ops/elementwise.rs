//! Elementwise ops (`kernels/elementwise.wgsl`): add, scale, SiLU, per-channel broadcast add, axpby, clamp and
//! the dynamic-threshold rescale. One kernel; the op is a uniform, so every variant shares one pipeline.

use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{dim, expect_shape, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor, workgroups_for};

const OP: &str = "elementwise";

/// The kernel.
pub const KERNEL: Kernel = kernel!("elementwise", includes: [], workgroup: 64, params: Params,
    bindings: &[Read, Read, ReadWrite]);

params! {
    /// Mirrors `Params` in elementwise.wgsl.
    pub struct Params {
        pub len: u32, pub op: u32, pub inner: u32, pub _pad: u32, pub alpha: f32, pub beta: f32,
        pub lo: f32, pub hi: f32,
    }
}

/// An elementwise operation. `a` is the first operand and has the output's shape.
#[derive(Clone, Copy, Debug)]
pub enum Unary {
    /// `alpha * a`
    Scale(f32),
    /// `a * sigmoid(a)`
    Silu,
    /// `clamp(a, lo, hi)`
    Clamp(f32, f32),
}

/// An elementwise operation on two operands.
#[derive(Clone, Copy, Debug)]
pub enum Binary {
    /// `a + b`, same shapes.
    Add,
    /// `alpha * a + beta * b`, same shapes.
    Axpby(f32, f32),
    /// `a[n, c, ...] + b[n, c]`: a per-(image, channel) vector broadcast over the spatial dimensions
    /// (the ResNet block's time-embedding add). `b` has shape `[N, C]`.
    AddChannel,
    /// `clamp(a, -s, s) / s` with `s = b[n]` per image: dynamic thresholding. `b` has shape `[N]`.
    Threshold,
}

fn params(op: u32, len: usize, inner: usize) -> Result<Params> {
    Ok(Params {
        len: dim(OP, "length", len)?,
        op,
        inner: dim(OP, "inner size", inner)?,
        ..Params::default()
    })
}

fn dispatch(
    gpu: &Gpu,
    label: &str,
    p: &Params,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
) -> Result<Dispatch> {
    // 4 elements per invocation.
    let invocations = (p.len as u64).div_ceil(4);
    // Reads a (and b for the binary ops), writes out; about one operation per element.
    let operands = if matches!(p.op, 1 | 2 | 5) { 2 } else { 3 };
    Dispatch::new(
        gpu,
        &KERNEL,
        OP,
        label,
        p,
        &[a, b, out],
        workgroups_for(invocations, KERNEL.workgroup_size),
    )
    .map(|d| d.with_cost(Cost::new(2 * p.len as u64, operands * p.len as u64)))
}

/// Prepares `out = op(a)`; out has a's shape.
pub fn unary(gpu: &Gpu, label: &str, op: Unary, a: &Tensor, out: &Tensor) -> Result<Dispatch> {
    expect_shape(OP, out, a.shape())?;
    nonzero(OP, "length", a.len())?;
    let p = match op {
        Unary::Scale(s) => Params { alpha: s, ..params(1, a.len(), 1)? },
        Unary::Silu => params(2, a.len(), 1)?,
        Unary::Clamp(lo, hi) => {
            if lo.is_nan() || hi.is_nan() || lo > hi {
                return Err(Error::param(OP, format!("clamp range [{lo}, {hi}] is empty")));
            }
            Params { lo, hi, ..params(5, a.len(), 1)? }
        }
    };
    dispatch(gpu, label, &p, a, a, out)
}

/// Prepares `out = op(a, b)`; out has a's shape, b the shape the op names.
pub fn binary(
    gpu: &Gpu,
    label: &str,
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
) -> Result<Dispatch> {
    expect_shape(OP, out, a.shape())?;
    let len = a.len();
    nonzero(OP, "length", len)?;
    let s = a.shape();
    let p = match op {
        Binary::Add => {
            expect_shape(OP, b, s)?;
            params(0, len, 1)?
        }
        Binary::Axpby(alpha, beta) => {
            expect_shape(OP, b, s)?;
            Params { alpha, beta, ..params(4, len, 1)? }
        }
        Binary::AddChannel => {
            if s.len() < 2 {
                return Err(Error::shape(
                    OP,
                    format!("`{}` {s:?} has no channel dimension", a.label()),
                ));
            }
            expect_shape(OP, b, &s[..2])?;
            params(3, len, s[2..].iter().product())?
        }
        Binary::Threshold => {
            if s.is_empty() {
                return Err(Error::shape(OP, format!("`{}` has no batch dimension", a.label())));
            }
            expect_shape(OP, b, &s[..1])?;
            params(6, len, s[1..].iter().product())?
        }
    };
    dispatch(gpu, label, &p, a, b, out)
}
