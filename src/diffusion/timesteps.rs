//! Timestep sequences for S sampling steps out of T training steps, in the conventions of diffusers and of the
//! official DDIM code (ARCHITECTURE.md, "The DDIM maths").

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How the S sampling timesteps are spread over the T training timesteps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    /// diffusers: `arange(S) * (T // S) + steps_offset`.
    #[default]
    Leading,
    /// diffusers: `round(linspace(0, T - 1, S))`.
    Linspace,
    /// diffusers: `round(arange(T, 0, -T / S)) - 1`.
    Trailing,
    /// The official DDIM code's `range(0, T, T // S)`: more than S steps when S does not divide T.
    Uniform,
    /// The official DDIM code's `int(s)` for s in `linspace(0, sqrt(0.8 T), S)^2`; duplicates are removed.
    Quad,
}

impl FromStr for Spacing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "leading" => Ok(Spacing::Leading),
            "linspace" => Ok(Spacing::Linspace),
            "trailing" => Ok(Spacing::Trailing),
            "uniform" => Ok(Spacing::Uniform),
            "quad" => Ok(Spacing::Quad),
            other => Err(Error::param(
                "timesteps",
                format!("unknown spacing `{other}` (leading, linspace, trailing, uniform, quad)"),
            )),
        }
    }
}

impl fmt::Display for Spacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Spacing::Leading => "leading",
            Spacing::Linspace => "linspace",
            Spacing::Trailing => "trailing",
            Spacing::Uniform => "uniform",
            Spacing::Quad => "quad",
        };
        f.write_str(s)
    }
}

/// Element `i` of `numpy.linspace(start, stop, n)`, computed as numpy does (`i * step + start`, the last element
/// exactly `stop`), so that rounding and truncation agree with the reference implementations bit for bit.
fn numpy_linspace(start: f64, stop: f64, n: usize, i: usize) -> f64 {
    if n == 1 {
        return start;
    }
    if i == n - 1 {
        return stop;
    }
    i as f64 * ((stop - start) / (n - 1) as f64) + start
}

/// The sampling timesteps, strictly decreasing, and any warnings (duplicates removed).
pub fn timesteps(
    spacing: Spacing,
    steps: usize,
    train_steps: usize,
    steps_offset: usize,
) -> Result<(Vec<usize>, Vec<String>)> {
    let t = train_steps;
    if steps == 0 {
        return Err(Error::param("timesteps", "steps is 0"));
    }
    if steps > t {
        return Err(Error::param(
            "timesteps",
            format!("{steps} steps is more than the model's {t} training steps"),
        ));
    }
    if steps_offset >= t {
        return Err(Error::param(
            "timesteps",
            format!("steps_offset {steps_offset} is not below the model's {t} training steps"),
        ));
    }
    let mut warnings = Vec::new();
    let mut seq: Vec<i64> = match spacing {
        Spacing::Leading => {
            let ratio = t / steps;
            (0..steps).map(|i| (i * ratio + steps_offset) as i64).collect()
        }
        Spacing::Linspace => (0..steps)
            .map(|i| {
                let v = numpy_linspace(0.0, (t - 1) as f64, steps, i);
                v.round_ties_even() as i64 + steps_offset as i64
            })
            .collect(),
        Spacing::Trailing => {
            let ratio = t as f64 / steps as f64;
            (0..steps)
                .map(|i| {
                    (t as f64 - i as f64 * ratio).round_ties_even() as i64 - 1 + steps_offset as i64
                })
                .collect()
        }
        Spacing::Uniform => {
            let skip = t / steps;
            let seq: Vec<i64> = (0..t).step_by(skip).map(|v| v as i64).collect();
            if seq.len() != steps {
                warnings.push(format!(
                    "uniform spacing with skip {skip} gives {} steps, not {steps} ({steps} does not divide {t}), \
                     as the official DDIM code does",
                    seq.len()
                ));
            }
            seq
        }
        Spacing::Quad => {
            let top = (0.8 * t as f64).sqrt();
            let raw: Vec<i64> = (0..steps)
                .map(|i| {
                    let s = numpy_linspace(0.0, top, steps, i);
                    (s * s) as i64
                })
                .collect();
            let mut seq = raw.clone();
            seq.dedup();
            if seq.len() != raw.len() {
                warnings.push(format!(
                    "quad spacing with {steps} steps repeats {} timesteps; they were removed, leaving {}",
                    raw.len() - seq.len(),
                    seq.len()
                ));
            }
            seq
        }
    };
    seq.sort_unstable();
    seq.dedup();
    if let Some(&bad) = seq.iter().find(|&&v| v < 0 || v >= t as i64) {
        return Err(Error::param(
            "timesteps",
            format!(
                "timestep {bad} (spacing {spacing}, steps_offset {steps_offset}) is outside 0..{t}"
            ),
        ));
    }
    seq.reverse();
    Ok((seq.into_iter().map(|v| v as usize).collect(), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: Spacing, steps: usize, offset: usize) -> Vec<usize> {
        timesteps(s, steps, 1000, offset).unwrap().0
    }

    #[test]
    fn diffusers_spacings() {
        // Values printed by diffusers 0.42.1's DDIMScheduler.set_timesteps(10) with T = 1000.
        assert_eq!(ts(Spacing::Leading, 10, 0), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
        assert_eq!(ts(Spacing::Leading, 10, 1), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
        assert_eq!(ts(Spacing::Linspace, 10, 0), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
        assert_eq!(ts(Spacing::Trailing, 10, 0), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
        assert_eq!(ts(Spacing::Trailing, 3, 0), [999, 666, 332]);
    }

    #[test]
    fn official_spacings() {
        assert_eq!(ts(Spacing::Uniform, 10, 0), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
        let (seq, warnings) = timesteps(Spacing::Uniform, 30, 1000, 0).unwrap();
        assert_eq!(seq.len(), 31); // len(range(0, 1000, 33))
        assert_eq!(warnings.len(), 1);
        let (seq, warnings) = timesteps(Spacing::Quad, 100, 1000, 0).unwrap();
        // numpy: len(set(int(s) for s in np.linspace(0, np.sqrt(800), 100) ** 2)) == 96
        assert_eq!(seq.len(), 96);
        assert_eq!(warnings.len(), 1);
        assert_eq!(ts(Spacing::Quad, 10, 0), [800, 632, 483, 355, 246, 158, 88, 39, 9, 0]);
    }

    #[test]
    fn impossible_requests() {
        assert!(timesteps(Spacing::Leading, 0, 1000, 0).is_err());
        assert!(timesteps(Spacing::Leading, 1001, 1000, 0).is_err());
        assert!(timesteps(Spacing::Trailing, 10, 1000, 1).is_err());
        assert!("cosine".parse::<Spacing>().is_err());
    }
}
