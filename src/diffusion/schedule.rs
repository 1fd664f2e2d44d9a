//! Noise schedules: betas and alphas_cumprod, computed in f64 (ARCHITECTURE.md, "The DDIM maths").

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most training timesteps a schedule may have: DDPM uses 1,000, and this bound, far above any published
/// model, keeps a hostile file or flag from making the sampler allocate without limit.
pub const MAX_TRAIN_STEPS: usize = 100_000;

/// How the training betas were made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(start, end, T)` (DDPM: 1e-4 .. 0.02).
    Linear {
        /// beta at t = 0.
        start: f64,
        /// beta at t = T - 1.
        end: f64,
    },
    /// `linspace(sqrt(start), sqrt(end), T)^2` (latent diffusion).
    ScaledLinear {
        /// beta at t = 0.
        start: f64,
        /// beta at t = T - 1.
        end: f64,
    },
    /// The cosine schedule of Nichol and Dhariwal 2021, each beta capped at 0.999.
    SquaredcosCapV2,
    /// Explicit betas (`--trained-betas betas.npy`, diffusers' `trained_betas`); their count is T.
    Trained {
        /// One per training timestep.
        betas: Vec<f64>,
    },
}

/// The training schedule of a model: what the sampler needs to know about how it was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingSchedule {
    /// The betas.
    pub betas: BetaSchedule,
    /// The number of training timesteps T.
    pub train_steps: usize,
    /// Rescale to zero terminal SNR (Lin et al. 2023).
    #[serde(default)]
    pub zero_snr: bool,
}

impl Default for TrainingSchedule {
    /// DDPM's: linear betas from 1e-4 to 0.02 over 1000 steps.
    fn default() -> Self {
        TrainingSchedule {
            betas: BetaSchedule::Linear { start: 1e-4, end: 0.02 },
            train_steps: 1000,
            zero_snr: false,
        }
    }
}

fn linspace(a: f64, b: f64, n: usize) -> impl Iterator<Item = f64> {
    (0..n).map(move |i| if n == 1 { a } else { a + (b - a) * i as f64 / (n - 1) as f64 })
}

impl TrainingSchedule {
    /// The betas, one per training timestep.
    pub fn betas(&self) -> Result<Vec<f64>> {
        let t = self.train_steps;
        if !(1..=MAX_TRAIN_STEPS).contains(&t) {
            return Err(Error::param(
                "schedule",
                format!("{t} training steps; need 1 ..= {MAX_TRAIN_STEPS}"),
            ));
        }
        let betas: Vec<f64> = match &self.betas {
            BetaSchedule::Linear { start, end } => linspace(*start, *end, t).collect(),
            BetaSchedule::ScaledLinear { start, end } => {
                linspace(start.sqrt(), end.sqrt(), t).map(|b| b * b).collect()
            }
            BetaSchedule::SquaredcosCapV2 => {
                let alpha_bar =
                    |s: f64| ((s + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..t)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                    })
                    .collect()
            }
            BetaSchedule::Trained { betas: b } => {
                if b.len() != t {
                    return Err(Error::param(
                        "schedule",
                        format!("{} trained betas for {t} training steps", b.len()),
                    ));
                }
                b.clone()
            }
        };
        if let Some((i, b)) = betas.iter().enumerate().find(|(_, b)| !(**b > 0.0 && **b < 1.0)) {
            return Err(Error::param("schedule", format!("beta {i} is {b}, outside (0, 1)")));
        }
        Ok(if self.zero_snr { rescale_zero_terminal_snr(&betas) } else { betas })
    }

    /// alphas_cumprod a_t = prod_{s <= t} (1 - beta_s), t = 0 .. T-1.
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>> {
        let mut acc = 1.0;
        Ok(self
            .betas()?
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect())
    }
}

/// Lin et al. 2023, Algorithm 1 (diffusers' `rescale_zero_terminal_snr`): shift and scale sqrt(alphas_cumprod)
/// so that the last is 0 and the first unchanged.
fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0;
    let sqrt_ab: Vec<f64> = betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc.sqrt()
        })
        .collect();
    let (first, last) = (sqrt_ab[0], sqrt_ab[sqrt_ab.len() - 1]);
    let ab: Vec<f64> =
        sqrt_ab.iter().map(|s| ((s - last) * first / (first - last)).powi(2)).collect();
    let mut out = vec![1.0 - ab[0]];
    out.extend(ab.windows(2).map(|w| 1.0 - w[1] / w[0]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_matches_ddpm() {
        let a = TrainingSchedule::default().alphas_cumprod().unwrap();
        assert_eq!(a.len(), 1000);
        assert!((a[0] - 0.9999).abs() < 1e-12);
        // DDPM's a_999 for linear 1e-4..0.02 is 4.036e-5.
        assert!((a[999] - 4.0358e-5).abs() < 1e-8, "{}", a[999]);
    }

    #[test]
    fn other_schedules() {
        let cos = TrainingSchedule { betas: BetaSchedule::SquaredcosCapV2, ..Default::default() };
        let b = cos.betas().unwrap();
        assert!(b.iter().all(|&x| x > 0.0 && x <= 0.999));
        assert_eq!(b[999], 0.999);
        let scaled = TrainingSchedule {
            betas: BetaSchedule::ScaledLinear { start: 0.00085, end: 0.012 },
            ..Default::default()
        };
        let b = scaled.betas().unwrap();
        assert!((b[0] - 0.00085).abs() < 1e-15 && (b[999] - 0.012).abs() < 1e-15);
        let zsnr = TrainingSchedule { zero_snr: true, ..Default::default() };
        let a = zsnr.alphas_cumprod().unwrap();
        assert!(a[999].abs() < 1e-15 && (a[0] - 0.9999).abs() < 1e-12);
        let wrong = TrainingSchedule {
            betas: BetaSchedule::Trained { betas: vec![0.1; 10] },
            ..Default::default()
        };
        assert!(wrong.betas().is_err());
    }
}
