//! One DDIM step's maths, device-free: what the model predicts, the step's coefficients (DDIM with eta, the
//! paper's sigma-hat, inversion) computed in f64, and the rule that keeps x0 in range (dynamic thresholding).
//! The kernels take these numbers; the CPU reference recomputes them from first principles.

use crate::error::{Error, Result};

/// The name errors give these checks.
const OP: &str = "ddim_step";

/// Refuses what no sampler can do with x0: clipping and dynamic thresholding together (diffusers applies one
/// or the other), a clip range that is not positive, a quantile outside [0, 1] or a maximum under 1.
pub fn check_x0_rules(clip: Option<f32>, threshold: Option<Threshold>) -> Result<()> {
    if clip.is_some() && threshold.is_some() {
        return Err(Error::param(
            OP,
            "clip and dynamic thresholding are exclusive (diffusers applies one or the other)",
        ));
    }
    if let Some(r) = clip
        && !(r > 0.0 && r.is_finite())
    {
        return Err(Error::param(OP, format!("clip range must be positive, got {r}")));
    }
    if let Some(t) = threshold
        && !((0.0..=1.0).contains(&t.ratio) && t.max_value >= 1.0 && t.max_value.is_finite())
    {
        return Err(Error::param(
            OP,
            format!(
                "threshold ratio must lie in [0, 1] and max value be >= 1, got {} and {}",
                t.ratio, t.max_value
            ),
        ));
    }
    Ok(())
}

/// Refuses an eta that is negative or not finite: the one place eta is checked.
pub fn check_eta(eta: f64) -> Result<()> {
    if !(eta >= 0.0 && eta.is_finite()) {
        return Err(Error::param(OP, format!("eta must be finite and >= 0, got {eta}")));
    }
    Ok(())
}

/// The smallest alphas_cumprod at a sampled timestep for epsilon prediction, which recovers x0 by dividing by
/// sqrt(a_t): at 1e-30 the factor is 1e15 and x0 stays finite in f32 for any |x_t| under 1e23. Published
/// schedules stay far above it (the cosine schedule's last is about 2e-9); the rest are betas too large for
/// their length, whose alphas_cumprod underflows towards 0.
pub const MIN_ALPHA_CUMPROD: f64 = 1e-30;

/// Refuses an eta whose noise would exceed what the steps `(t, a_t, a_p)` can hold, after [`check_eta`]: DDIM's update weighs the direction to x_t by
/// sqrt(1 - a_p - sigma^2), so sigma^2 may not pass 1 - a_p. eta <= 1 always fits (eta = 1 is the DDPM
/// posterior variance); the error gives the largest eta these steps allow.
pub fn check_eta_for_steps(eta: f64, steps: impl Iterator<Item = (usize, f64, f64)>) -> Result<()> {
    let mut limit: Option<(f64, usize)> = None;
    for (t, a_t, a_p) in steps {
        let variance = ddim_variance(a_t, a_p);
        if variance > 0.0 {
            let max = ((1.0 - a_p) / variance).sqrt();
            if limit.is_none_or(|(m, _)| max < m) {
                limit = Some((max, t));
            }
        }
    }
    match limit {
        // A relative margin of 1e-9 lets eta = 1 through where rounding puts its limit a hair under 1.
        Some((max, t)) if eta > max * (1.0 + 1e-9) => Err(Error::param(
            "sampler",
            format!(
                "eta {} is too large for these steps: at t = {t} the noise's variance would exceed \
                 1 - alphas_cumprod of the previous step; at most {max:.6} here (eta = 1 is the DDPM variance)",
                if eta < 1e6 { eta.to_string() } else { format!("{eta:e}") }
            ),
        )),
        _ => Ok(()),
    }
}

/// DDIM's step variance at eta = 1, `(1 - a_p) / (1 - a_t) * (1 - a_t / a_p)`: the DDPM posterior's.
fn ddim_variance(a_t: f64, a_p: f64) -> f64 {
    ((1.0 - a_p) / (1.0 - a_t)) * (1.0 - a_t / a_p)
}

/// Refuses an alphas_cumprod `a_t` at sampled timestep `t` from which `prediction` cannot recover x0 in f32:
/// 0 (zero terminal SNR) or under [`MIN_ALPHA_CUMPROD`] for epsilon prediction, which divides by its root.
pub fn check_alpha_for_prediction(t: usize, a_t: f64, prediction: Prediction) -> Result<()> {
    if prediction != Prediction::Epsilon {
        return Ok(());
    }
    if a_t == 0.0 {
        return Err(Error::param(
            "sampler",
            "alphas_cumprod is 0 at a sampled timestep (zero terminal SNR): epsilon prediction cannot \
             recover x0 there; use v or sample prediction",
        ));
    }
    if a_t < MIN_ALPHA_CUMPROD {
        return Err(Error::param(
            "sampler",
            format!(
                "alphas_cumprod at t = {t} is {a_t:e}, below {MIN_ALPHA_CUMPROD:e}: epsilon prediction divides \
                 by its square root, which f32 cannot do there (the schedule's betas are too large for its length)"
            ),
        ));
    }
    Ok(())
}

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prediction {
    /// The noise epsilon (DDPM, DDIM, most checkpoints).
    #[default]
    Epsilon = 0,
    /// x0 itself.
    Sample = 1,
    /// v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans and Ho 2022).
    V = 2,
}

/// The scalars of one step from timestep t to the previous timestep p, computed in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefficients {
    /// sqrt(a_t)
    pub sqrt_a_t: f64,
    /// sqrt(1 - a_t)
    pub sqrt_1m_a_t: f64,
    /// The weight of x0: sqrt(a_p) for DDIM.
    pub sqrt_a_p: f64,
    /// sqrt(1 - a_p - sigma^2), the weight of the direction pointing to x_t (DDIM).
    pub dir_coef: f64,
    /// The weight of x_t itself: 0 for DDIM, nonzero for the DDPM posterior mean (sigma-hat).
    pub coef_xt: f64,
    /// The standard deviation of the added noise.
    pub sigma: f64,
}

impl StepCoefficients {
    /// DDIM with `sigma = eta * sqrt((1 - a_p) / (1 - a_t)) * sqrt(1 - a_t / a_p)`; eta = 0 is deterministic,
    /// eta = 1 the DDPM posterior variance. `a_t` and `a_p` are alphas_cumprod at t and at the previous
    /// timestep (1 or a_0 past the end).
    pub fn ddim(a_t: f64, a_p: f64, eta: f64) -> Result<Self> {
        if !(a_t > 0.0 && a_t < 1.0) {
            return Err(Error::param(
                OP,
                format!("alpha_cumprod at t must lie in (0, 1), got {a_t}"),
            ));
        }
        if !(a_p > 0.0 && a_p <= 1.0) {
            return Err(Error::param(
                OP,
                format!("alpha_cumprod at the previous step must lie in (0, 1], got {a_p}"),
            ));
        }
        check_eta(eta)?;
        let sigma = eta * ddim_variance(a_t, a_p).max(0.0).sqrt();
        // 1 - a_p - sigma^2 is exactly 0 for eta = 1 at the last step; rounding may push it below.
        let dir_coef = (1.0 - a_p - sigma * sigma).max(0.0).sqrt();
        Ok(StepCoefficients {
            sqrt_a_t: a_t.sqrt(),
            sqrt_1m_a_t: (1.0 - a_t).sqrt(),
            sqrt_a_p: a_p.sqrt(),
            dir_coef,
            coef_xt: 0.0,
            sigma,
        })
    }

    /// The paper's sigma-hat: the DDPM posterior q(x_p | x_t, x0) with the larger variance beta_t = 1 - a_t/a_p
    /// (the official code's `ddpm_steps`): mean = sqrt(a_p) beta_t / (1 - a_t) x0 + sqrt(1 - beta_t)
    /// (1 - a_p) / (1 - a_t) x_t, standard deviation sqrt(beta_t) (0 when `last`, as the official code drops
    /// the noise at t = 0).
    pub fn sigma_hat(a_t: f64, a_p: f64, last: bool) -> Result<Self> {
        let base = Self::ddim(a_t, a_p, 0.0)?;
        let beta = 1.0 - a_t / a_p;
        Ok(StepCoefficients {
            sqrt_a_p: a_p.sqrt() * beta / (1.0 - a_t),
            dir_coef: 0.0,
            coef_xt: (1.0 - beta).sqrt() * (1.0 - a_p) / (1.0 - a_t),
            sigma: if last { 0.0 } else { beta.max(0.0).sqrt() },
            ..base
        })
    }

    /// One step of DDIM inversion, from alphas_cumprod `a_cur` up to `a_next` (eta = 0):
    /// x_next = sqrt(a_next) x0 + sqrt(1 - a_next) eps. `a_cur` = 1 is the clean image.
    pub fn inversion(a_cur: f64, a_next: f64) -> Result<Self> {
        if !(a_cur > 0.0 && a_cur <= 1.0 && a_next > 0.0 && a_next < 1.0) {
            return Err(Error::param(
                OP,
                format!(
                    "inversion from alpha_cumprod {a_cur} to {a_next}: both must lie in (0, 1]"
                ),
            ));
        }
        Ok(StepCoefficients {
            sqrt_a_t: a_cur.sqrt(),
            sqrt_1m_a_t: (1.0 - a_cur).sqrt(),
            sqrt_a_p: a_next.sqrt(),
            dir_coef: (1.0 - a_next).sqrt(),
            coef_xt: 0.0,
            sigma: 0.0,
        })
    }
}

/// Dynamic thresholding: `s = clamp(quantile(|x0|, ratio), 1, max_value)` per image, `x0 = clamp(x0, -s, s) / s`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Threshold {
    /// The quantile, in [0, 1] (diffusers' `dynamic_thresholding_ratio`, 0.995 by default).
    pub ratio: f32,
    /// The largest s (diffusers' `sample_max_value`), at least 1.
    pub max_value: f32,
}
