//! The update as one kernel: `ddim_step.wgsl`, one pass over x with the noise generated in registers, after
//! `ddim_threshold.wgsl` where dynamic thresholding is on.

use super::spec::{DdimScratch, DdimStepParams, Noise, OP, StepSpec, step_params};
use crate::diffusion::step::Threshold;
use crate::error::Result;
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::dim;
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor};

/// The fused update kernel.
pub const STEP_KERNEL: Kernel = kernel!("ddim_step", includes: [], workgroup: 64,
    params: StepParams, bindings: &[ReadWrite, Read, Read, Read]);

/// The per-image dynamic-threshold scale kernel.
pub const THRESHOLD_KERNEL: Kernel = kernel!("ddim_threshold", includes: [], workgroup: 64,
    params: ThresholdParams, bindings: &[Read, Read, ReadWrite]);

params! {
    /// Mirrors `Params` in ddim_step.wgsl.
    pub struct StepParams {
        pub per_image: u32, pub batch: u32, pub _pad: [u32; 2], pub d: DdimStepParams,
    }
}

params! {
    /// Mirrors `Params` in ddim_threshold.wgsl.
    pub struct ThresholdParams {
        pub per_image: u32, pub batch: u32, pub prediction: u32, pub _pad0: u32, pub sqrt_a_t: f32,
        pub sqrt_1m_a_t: f32, pub ratio: f32, pub max_value: f32,
    }
}

/// `ddim_threshold`: each image's dynamic-thresholding scale into the scratch, before the step.
pub(super) fn threshold(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    model_out: &Tensor,
    spec: &StepSpec<'_>,
    t: Threshold,
    scratch: &DdimScratch,
) -> Result<Dispatch> {
    let (batch, per_image) = (x.shape()[0], x.len() / x.shape()[0]);
    let c = &spec.coefficients;
    let params = ThresholdParams {
        per_image: dim(OP, "elements per image", per_image)?,
        batch: dim(OP, "batch", batch)?,
        prediction: spec.prediction as u32,
        _pad0: 0,
        sqrt_a_t: c.sqrt_a_t as f32,
        sqrt_1m_a_t: c.sqrt_1m_a_t as f32,
        ratio: t.ratio,
        max_value: t.max_value,
    };
    let tensors = [x, model_out, &scratch.thresh];
    let label = format!("{label}/threshold");
    let d = Dispatch::new(gpu, &THRESHOLD_KERNEL, OP, &label, &params, &tensors, batch as u64)?;
    // 32 rounds of recomputing |x0| and counting; reads x and the model output each round.
    Ok(d.with_cost(Cost::new(32 * 4 * x.len() as u64, 2 * x.len() as u64)))
}

/// `ddim_step`: the whole update in one pass over x, noise drawn in registers (or read from a given tensor).
pub(super) fn step(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    model_out: &Tensor,
    spec: &StepSpec<'_>,
    scratch: &DdimScratch,
) -> Result<Dispatch> {
    let (batch, per_image) = (x.shape()[0], x.len() / x.shape()[0]);
    let d = step_params(spec);
    let noise = match spec.noise {
        Noise::Tensor(t) => t,
        _ => model_out,
    };
    let params = StepParams {
        per_image: dim(OP, "elements per image", per_image)?,
        batch: dim(OP, "batch", batch)?,
        _pad: [0; 2],
        d,
    };
    let invocations = per_image.div_ceil(4) as u64 * batch as u64;
    let tensors = [x, model_out, noise, &scratch.thresh];
    let dispatch =
        Dispatch::for_invocations(gpu, &STEP_KERNEL, OP, label, &params, &tensors, invocations)?;
    // Reads x, the model output (and given noise), writes x: about 12 flops per element.
    let floats = (3 + (d.noise_mode == 2) as usize) as u64 * x.len() as u64;
    Ok(dispatch.with_cost(Cost::new(12 * x.len() as u64, floats)))
}
