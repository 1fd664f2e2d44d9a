//! The update as the epilogue of the UNet's final convolution (`conv2d.wgsl`'s `conv2d_ddim` variant): the
//! model output is never stored.

use super::spec::{DdimStepParams, Noise, StepSpec, step_params, validate};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::expect_shape;
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor, workgroups_for};
use crate::ops::conv2d::{Conv2dConfig, ConvShape};
/// The final convolution with the update in its epilogue.
pub const CONV_KERNEL: Kernel = kernel!("conv2d_ddim" from "conv2d" where [("DDIM", "1")],
    includes: [crate::ops::conv2d::SHAPE, crate::ops::conv2d::ACCUMULATE], workgroup: 64,
    params: ConvStepParams, bindings: &[Read, Read, Read, Read, ReadWrite]);

params! {
    /// Mirrors `Params` in conv2d.wgsl's `conv2d_ddim` variant.
    pub struct ConvStepParams { pub shape: ConvShape, pub d: DdimStepParams }
}

/// The UNet's final convolution with the update fused into its epilogue (`kernels/conv2d.wgsl`, variant `conv2d_ddim`): replaces
/// x (x_t, the convolution's output shape) by x_prev without storing the model output. `conv_input`, `weight`,
/// `bias` and `cfg` are the final convolution's. Dynamic thresholding is refused (use [`ddim_update`](super::ddim_update)).
#[allow(clippy::too_many_arguments)] // the convolution's operands and the update's
pub fn conv_ddim_update(
    gpu: &Gpu,
    label: &str,
    conv_input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    cfg: &Conv2dConfig,
    x: &Tensor,
    spec: &StepSpec<'_>,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_ddim";
    let shape = ConvShape::new(OP, conv_input, weight, bias, cfg)?;
    expect_shape(OP, x, &shape.output_shape())?;
    validate(spec, x)?;
    if spec.threshold.is_some() {
        return Err(Error::param(
            OP,
            "dynamic thresholding needs the whole x0 of an image before any element is updated; it cannot be \
             fused into the convolution",
        ));
    }
    if cfg.out_scale != 1.0 {
        return Err(Error::param(OP, "the final convolution has an output scale"));
    }
    let d = step_params(spec);
    let noise = match spec.noise {
        Noise::Tensor(t) => t,
        _ => bias,
    };
    let floats =
        conv_input.len() + weight.len() + bias.len() + (2 + (d.noise_mode == 2) as usize) * x.len();
    Dispatch::new(
        gpu,
        &CONV_KERNEL,
        OP,
        label,
        &ConvStepParams { shape, d },
        &[conv_input, weight, bias, noise, x],
        workgroups_for(shape.blocks_4x4(), CONV_KERNEL.workgroup_size),
    )
    .map(|disp| disp.with_cost(Cost::new(shape.flops() + 12 * x.len() as u64, floats as u64)))
}
