//! The DDIM update written straight from the paper's equation (12) and diffusers' `DDIMScheduler.step`, in f64.

use crate::diffusion::step::Prediction;

/// One step's settings, from first principles (no precomputed coefficients).
#[derive(Clone, Copy, Debug)]
pub struct StepSettings {
    /// alphas_cumprod at t.
    pub a_t: f64,
    /// alphas_cumprod at the previous timestep.
    pub a_p: f64,
    /// The eta of the paper.
    pub eta: f64,
    /// What the model output is.
    pub prediction: Prediction,
    /// Clip x0 to [-r, r].
    pub clip: Option<f64>,
    /// Dynamic thresholding (ratio, max value).
    pub threshold: Option<(f64, f64)>,
    /// Epsilon re-derived from the clipped x0.
    pub clipped_eps: bool,
    /// The paper's sigma-hat: the DDPM posterior mean and sigma = sqrt(1 - a_t / a_p) (eta is ignored);
    /// `Some(true)` on the step from t = 0, which adds no noise.
    pub sigma_hat: Option<bool>,
}

/// `torch.quantile(values, q)` with linear interpolation.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// x_prev for x `[batch, per_image]` (flat), model output m of the same shape, and the noise z (required
/// when eta > 0).
pub fn ddim_step(
    x: &[f32],
    m: &[f32],
    per_image: usize,
    s: &StepSettings,
    noise: Option<&[f64]>,
) -> Vec<f64> {
    let (a_t, a_p) = (s.a_t, s.a_p);
    // (eta 0 is sigma 0 even from a_t = 1, where inversion starts and the ratio is 0 / 0.)
    let sigma = if s.eta == 0.0 {
        0.0
    } else {
        s.eta * ((1.0 - a_p) / (1.0 - a_t)).sqrt() * (1.0 - a_t / a_p).sqrt()
    };
    let mut out = Vec::with_capacity(x.len());
    for (xi, mi) in x.chunks(per_image).zip(m.chunks(per_image)) {
        let base = out.len();
        let xt: Vec<f64> = xi.iter().map(|&v| v as f64).collect();
        let mo: Vec<f64> = mi.iter().map(|&v| v as f64).collect();
        let (x0, eps): (Vec<f64>, Vec<f64>) = xt
            .iter()
            .zip(&mo)
            .map(|(&x, &m)| match s.prediction {
                Prediction::Epsilon => ((x - (1.0 - a_t).sqrt() * m) / a_t.sqrt(), m),
                Prediction::Sample => (m, (x - a_t.sqrt() * m) / (1.0 - a_t).sqrt()),
                Prediction::V => (
                    a_t.sqrt() * x - (1.0 - a_t).sqrt() * m,
                    a_t.sqrt() * m + (1.0 - a_t).sqrt() * x,
                ),
            })
            .unzip();
        let x0c: Vec<f64> = if let Some((ratio, max)) = s.threshold {
            let abs: Vec<f64> = x0.iter().map(|v| v.abs()).collect();
            let scale = quantile(&abs, ratio).clamp(1.0, max);
            x0.iter().map(|v| v.clamp(-scale, scale) / scale).collect()
        } else if let Some(r) = s.clip {
            x0.iter().map(|v| v.clamp(-r, r)).collect()
        } else {
            x0.clone()
        };
        for i in 0..per_image {
            let e = if s.clipped_eps {
                (xt[i] - a_t.sqrt() * x0c[i]) / (1.0 - a_t).sqrt()
            } else {
                eps[i]
            };
            let z = noise.map_or(0.0, |z| z[base + i]);
            if let Some(last) = s.sigma_hat {
                // q(x_p | x_t, x0) of DDPM, written as in the official code's ddpm_steps.
                let beta = 1.0 - a_t / a_p;
                let mean = (a_p.sqrt() * beta * x0c[i] + (1.0 - beta).sqrt() * (1.0 - a_p) * xt[i])
                    / (1.0 - a_t);
                out.push(mean + if last { 0.0 } else { beta.sqrt() * z });
            } else {
                let direction = (1.0 - a_p - sigma * sigma).max(0.0).sqrt() * e;
                out.push(a_p.sqrt() * x0c[i] + direction + sigma * z);
            }
        }
    }
    out
}

/// The finiteness watch (`ops::finite`): `first[n] = step` for each image n of `x` (`first.len()` images of
/// `x.len() / first.len()` values) that holds a NaN or an infinity and whose entry is still `u32::MAX`.
pub fn finite_watch(x: &[f32], first: &mut [u32], step: u32) {
    let per = x.len() / first.len();
    for (image, entry) in x.chunks(per).zip(first.iter_mut()) {
        if *entry == u32::MAX && image.iter().any(|v| !v.is_finite()) {
            *entry = step;
        }
    }
}
