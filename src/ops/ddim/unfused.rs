//! The update as a chain of `elementwise` and `randn` dispatches with temporaries, the way a framework
//! without fusion runs it: the fusion study's baseline.

use super::spec::{DdimScratch, Noise, StepSpec};
use crate::diffusion::step::Prediction;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::ops::elementwise::{Binary, Unary, binary, unary};
use crate::ops::randn;

/// The dispatch that writes the prediction of x0 from x_t (`x`) and the model output `m` into `x0`: the first
/// line of the update, also run alone to watch a run's predictions step by step.
pub fn predicted_x0(
    gpu: &Gpu,
    label: &str,
    spec: &StepSpec<'_>,
    x: &Tensor,
    m: &Tensor,
    x0: &Tensor,
) -> Result<Dispatch> {
    let c = &spec.coefficients;
    let (sa, s1ma) = (c.sqrt_a_t, c.sqrt_1m_a_t);
    let name = format!("{label}/x0");
    let axpby = |a: f64, b: f64| Binary::Axpby(a as f32, b as f32);
    match spec.prediction {
        Prediction::Epsilon => binary(gpu, &name, axpby(1.0 / sa, -s1ma / sa), x, m, x0),
        Prediction::V => binary(gpu, &name, axpby(sa, -s1ma), x, m, x0),
        Prediction::Sample => unary(gpu, &name, Unary::Scale(1.0), m, x0),
    }
}

/// The unfused chain: each line of the maths is its own elementwise dispatch into a temporary.
pub(super) fn unfused(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    m: &Tensor,
    spec: &StepSpec<'_>,
    s: &DdimScratch,
    out: &mut Vec<Dispatch>,
) -> Result<()> {
    let c = &spec.coefficients;
    let (sa, s1ma) = (c.sqrt_a_t, c.sqrt_1m_a_t);
    let name = |what: &str| format!("{label}/{what}");
    let axpby = |a: f64, b: f64| Binary::Axpby(a as f32, b as f32);

    // x0 from the model output.
    out.push(predicted_x0(gpu, label, spec, x, m, &s.x0)?);
    // Clip or threshold x0.
    let x0c = if let Some(r) = spec.clip {
        out.push(unary(gpu, &name("clip"), Unary::Clamp(-r, r), &s.x0, &s.x0c)?);
        &s.x0c
    } else if spec.threshold.is_some() {
        out.push(binary(gpu, &name("rescale"), Binary::Threshold, &s.x0, &s.thresh, &s.x0c)?);
        &s.x0c
    } else {
        &s.x0
    };
    // Epsilon: the model output itself, or derived from x0 (the clipped one with clipped_eps).
    let eps_from_x0 =
        |x0: &Tensor| binary(gpu, &name("eps"), axpby(1.0 / s1ma, -sa / s1ma), x, x0, &s.eps);
    let eps = if spec.clipped_eps {
        out.push(eps_from_x0(x0c)?);
        &s.eps
    } else {
        match spec.prediction {
            Prediction::Epsilon => m,
            Prediction::Sample => {
                out.push(eps_from_x0(&s.x0)?);
                &s.eps
            }
            Prediction::V => {
                out.push(binary(gpu, &name("eps"), axpby(sa, s1ma), m, x, &s.eps)?);
                &s.eps
            }
        }
    };
    // x_prev = c_x0 x0 + dir eps (+ c_xt x_t) (+ sigma z), each term its own pass.
    let direction = axpby(c.sqrt_a_p, c.dir_coef);
    let has_noise = !matches!(spec.noise, Noise::None);
    if c.coef_xt == 0.0 && !has_noise {
        out.push(binary(gpu, &name("x_prev"), direction, x0c, eps, x)?);
        return Ok(());
    }
    out.push(binary(gpu, &name("x_prev"), direction, x0c, eps, &s.xp)?);
    let mut current = &s.xp;
    if c.coef_xt != 0.0 {
        out.push(binary(gpu, &name("add x_t"), axpby(1.0, c.coef_xt), &s.xp, x, &s.acc)?);
        current = &s.acc;
    }
    let add_noise = axpby(1.0, c.sigma);
    match spec.noise {
        Noise::None => out.push(unary(gpu, &name("store"), Unary::Scale(1.0), current, x)?),
        Noise::Philox { key, first_image } => {
            out.push(randn::normal(gpu, &name("noise"), key, first_image, &s.noise)?);
            out.push(binary(gpu, &name("add noise"), add_noise, current, &s.noise, x)?);
        }
        Noise::Tensor(z) => out.push(binary(gpu, &name("add noise"), add_noise, current, z, x)?),
    }
    Ok(())
}
