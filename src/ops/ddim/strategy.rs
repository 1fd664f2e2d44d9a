//! Which form of the update runs: [`ddim_update`] validates a step and prepares the form asked for.

use super::fused::{step, threshold};
use super::spec::{DdimScratch, OP, StepSpec, UpdateMode, validate};
use super::unfused::unfused;
use crate::error::{Error, Result};
use crate::gpu::check::{expect_shape, nonzero};
use crate::gpu::{Dispatch, Gpu, Tensor};

/// Prepares the dispatches that replace x (x_t) by x_prev in place, given the model output.
pub fn ddim_update(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    model_out: &Tensor,
    spec: &StepSpec<'_>,
    mode: UpdateMode,
    scratch: &DdimScratch,
) -> Result<Vec<Dispatch>> {
    let shape = x.shape();
    if shape.is_empty() {
        return Err(Error::shape(OP, format!("`{}` has no batch dimension", x.label())));
    }
    let batch = shape[0];
    let per_image: usize = shape[1..].iter().product();
    nonzero(OP, "batch", batch)?;
    nonzero(OP, "elements per image", per_image)?;
    expect_shape(OP, model_out, shape)?;
    if scratch.shape != shape {
        return Err(Error::shape(
            OP,
            format!("scratch was made for {:?}, x is {shape:?}", scratch.shape),
        ));
    }
    if mode == UpdateMode::Unfused && scratch.x0.shape() != shape {
        return Err(Error::shape(OP, "scratch was made for the fused mode"));
    }
    validate(spec, x)?;
    let _c = &spec.coefficients;

    let mut dispatches = Vec::new();
    if let Some(t) = spec.threshold {
        dispatches.push(threshold(gpu, label, x, model_out, spec, t, scratch)?);
    }
    match mode {
        UpdateMode::Fused | UpdateMode::Epilogue => {
            dispatches.push(step(gpu, label, x, model_out, spec, scratch)?);
        }
        UpdateMode::Unfused => unfused(gpu, label, x, model_out, spec, scratch, &mut dispatches)?,
    }
    Ok(dispatches)
}
