//! `conv2d.wgsl`: the portable convolution, every geometry, weights read from storage. The baseline family's
//! only convolution and every family's fallback.

use super::shape::{ConvShape, OP, Operands, SHAPE};
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Dispatch, Gpu, Kernel};

/// The convolution loop shared with the DDIM-epilogue convolution (`ops::ddim::CONV_KERNEL`).
pub const ACCUMULATE: &str = include_str!("../../../kernels/conv2d_accumulate.inc.wgsl");

/// The kernel.
pub const KERNEL: Kernel = kernel!("conv2d", includes: [SHAPE, ACCUMULATE], workgroup: 64,
    params: Params, bindings: &[Read, Read, Read, Read, ReadWrite, Read]);

params! {
    /// Mirrors `Params` in conv2d.wgsl.
    pub struct Params {
        pub shape: ConvShape, pub has_residual: u32, pub out_scale: f32, pub has_channel: u32,
        pub _pad: u32,
    }
}

/// `conv2d` (the portable kernel) over `shape`: weights from storage, 4 output channels x 4 output columns per
/// invocation. The caller has checked the operands' shapes.
pub(super) fn launch(gpu: &Gpu, label: &str, o: &Operands<'_>) -> Result<Dispatch> {
    let shape = &o.shape;
    let (x, weight, bias, out) = (o.x, o.weight, o.bias, o.out);
    let (channel, residual, cfg) = (o.channel, o.residual, o.cfg);
    let params = Params {
        shape: *shape,
        has_residual: residual.is_some() as u32,
        out_scale: cfg.out_scale,
        has_channel: channel.is_some() as u32,
        _pad: 0,
    };
    let tensors = [x, weight, bias, residual.unwrap_or(x), out, channel.unwrap_or(bias)];
    Dispatch::for_invocations(gpu, &KERNEL, OP, label, &params, &tensors, shape.blocks_4x4())
}
