//! Sinusoidal timestep embedding (`kernels/timestep_embedding.wgsl`) in diffusers' conventions
//! (`flip_sin_to_cos`, `downscale_freq_shift`, max period 10000).

use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{dim, expect_shape, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor};

const OP: &str = "timestep_embedding";

/// diffusers' `max_period`.
pub const MAX_PERIOD: f64 = 10000.0;

/// The kernel.
pub const KERNEL: Kernel = kernel!("timestep_embedding", includes: [], workgroup: 64,
    params: Params, bindings: &[Read, Read, ReadWrite]);

params! {
    /// Mirrors `Params` in timestep_embedding.wgsl.
    pub struct Params { pub batch: u32, pub dim: u32, pub half_dim: u32, pub flip: u32 }
}

/// The embedding's settings and its frequency table, uploaded once.
pub struct TimestepEmbedding {
    dim: usize,
    flip_sin_to_cos: bool,
    freqs: Tensor,
}

impl TimestepEmbedding {
    /// Builds the frequency table `exp(-ln(10000) * i / (dim / 2 - freq_shift))` in f64, rounded once to f32.
    pub fn new(gpu: &Gpu, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<Self> {
        let half = dim / 2;
        nonzero(OP, "half the embedding dimension", half)?;
        let denom = half as f64 - freq_shift;
        if denom <= 0.0 || denom.is_nan() {
            return Err(Error::param(
                OP,
                format!(
                    "freq_shift {freq_shift} must be below half the embedding dimension ({half})"
                ),
            ));
        }
        let freqs: Vec<f32> =
            (0..half).map(|i| (-MAX_PERIOD.ln() * i as f64 / denom).exp() as f32).collect();
        Ok(TimestepEmbedding {
            dim,
            flip_sin_to_cos,
            freqs: gpu.upload("timestep frequencies", &[half], &freqs)?,
        })
    }

    /// Prepares `out[n] = embed(timesteps[n])`: timesteps `[N]`, out `[N, dim]`.
    pub fn dispatch(
        &self,
        gpu: &Gpu,
        label: &str,
        timesteps: &Tensor,
        out: &Tensor,
    ) -> Result<Dispatch> {
        let n = timesteps.len();
        nonzero(OP, "batch", n)?;
        expect_shape(OP, timesteps, &[n])?;
        expect_shape(OP, out, &[n, self.dim])?;
        let half = self.dim / 2;
        let params = Params {
            batch: dim(OP, "batch", n)?,
            dim: dim(OP, "dim", self.dim)?,
            half_dim: dim(OP, "half", half)?,
            flip: self.flip_sin_to_cos as u32,
        };
        let cost = Cost::new(20 * out.len() as u64, (n + half + out.len()) as u64);
        let tensors = [timesteps, &self.freqs, out];
        let d = Dispatch::for_invocations(
            gpu,
            &KERNEL,
            OP,
            label,
            &params,
            &tensors,
            (n * half) as u64,
        )?;
        Ok(d.with_cost(cost))
    }
}
