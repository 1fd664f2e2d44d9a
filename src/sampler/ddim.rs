//! The DDIM sampling loop, inversion, and slerp interpolation, on the GPU.
//!
//! Each step records the planned UNet and the update into one compute pass and submits once; the only
//! host-to-GPU traffic in the loop is the step's timestep (a few bytes), and nothing is read back until the end
//! (unless the caller watches each step's predicted x0, which reads that back after every step).
//! Every random number is Philox keyed by (seed, global image index, step), so an image depends on its seed and
//! index only: never on the batch it was drawn in, the shard, or how a large batch was split.

use std::collections::HashMap;

use crate::diffusion::philox::{self, NoiseKey, Stream};
use crate::diffusion::schedule::TrainingSchedule;
use crate::diffusion::step::{
    Prediction, StepCoefficients, Threshold, check_alpha_for_prediction, check_eta,
    check_eta_for_steps, check_x0_rules,
};
use crate::diffusion::timesteps::{Spacing, timesteps};
use crate::error::{Error, Result};
use crate::gpu::Dispatch;
use crate::gpu::profiler::{DispatchTiming, Profiler};
use crate::gpu::{Gpu, Tensor};
use crate::graph::ir::Graph;
use crate::graph::plan::Plan;
use crate::ops::ddim::{
    DdimScratch, Noise, StepSpec, UpdateMode, conv_ddim_update, ddim_update, epilogue_keeps_kernel,
    predicted_x0,
};
use crate::ops::finite;

/// Everything that decides the trajectory besides the model and the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerSettings {
    /// How the model was trained.
    pub schedule: TrainingSchedule,
    /// Sampling steps S.
    pub steps: usize,
    /// How the S timesteps are spread.
    pub spacing: Spacing,
    /// Added to every timestep (diffusers' `steps_offset`).
    pub steps_offset: usize,
    /// Past the last timestep, a_p = 1 (true) or a_0 (false).
    pub set_alpha_to_one: bool,
    /// The paper's eta: 0 is deterministic DDIM, 1 the DDPM variance.
    pub eta: f64,
    /// The paper's sigma-hat (the DDPM posterior with variance beta_t, x0 clipped); eta is then unused.
    pub sigma_hat: bool,
    /// What the model predicts.
    pub prediction: Prediction,
    /// Clip x0 to [-r, r].
    pub clip: Option<f32>,
    /// Dynamic thresholding of x0.
    pub threshold: Option<Threshold>,
    /// The fused kernel or the chain of elementwise kernels.
    pub mode: UpdateMode,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        SamplerSettings {
            schedule: TrainingSchedule::default(),
            steps: 50,
            spacing: Spacing::Leading,
            steps_offset: 0,
            set_alpha_to_one: true,
            eta: 0.0,
            sigma_hat: false,
            prediction: Prediction::Epsilon,
            clip: None,
            threshold: None,
            mode: UpdateMode::Epilogue,
        }
    }
}

/// One planned step: the timestep the UNet sees and the update's coefficients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The timestep t.
    pub t: usize,
    /// The previous timestep in the sequence (`None` past the end).
    pub prev: Option<usize>,
    /// The update from t to prev.
    pub coefficients: StepCoefficients,
}

/// The steps of a sampling run, and warnings about the sequence (duplicates removed, more steps than asked).
pub fn plan_steps(s: &SamplerSettings) -> Result<(Vec<Step>, Vec<String>)> {
    let alphas = s.schedule.alphas_cumprod()?;
    let (ts, warnings) = timesteps(s.spacing, s.steps, s.schedule.train_steps, s.steps_offset)?;
    let final_alpha = if s.set_alpha_to_one { 1.0 } else { alphas[0] };
    check_eta(s.eta)?;
    check_x0_rules(s.clip, s.threshold)?;
    let pairs: Vec<(usize, Option<usize>, f64, f64)> = ts
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let prev = ts.get(i + 1).copied();
            (t, prev, alphas[t], prev.map_or(final_alpha, |p| alphas[p]))
        })
        .collect();
    if !s.sigma_hat {
        check_eta_for_steps(s.eta, pairs.iter().map(|&(t, _, a_t, a_p)| (t, a_t, a_p)))?;
    }
    let steps = pairs
        .into_iter()
        .map(|(t, prev, a_t, a_p)| {
            check_alpha_for_prediction(t, a_t, s.prediction)?;
            let coefficients = if s.sigma_hat {
                StepCoefficients::sigma_hat(a_t.max(f64::MIN_POSITIVE), a_p, t == 0)?
            } else {
                StepCoefficients::ddim(a_t.max(f64::MIN_POSITIVE), a_p, s.eta)?
            };
            Ok(Step { t, prev, coefficients })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((steps, warnings))
}

/// The starting latents x_T of images `first_image ..`: standard normals from Philox, computed on the CPU so
/// that they are bit-identical on every backend.
pub fn latents(seed: u64, first_image: u32, batch: usize, per_image: usize) -> Vec<f32> {
    let key = NoiseKey { seed, step: 0, stream: Stream::Latent };
    philox::normals(key, first_image, batch, per_image).into_iter().map(|v| v as f32).collect()
}

/// Spherical interpolation between two latents (Shoemake 1985), as the DDIM paper interpolates x_T.
pub fn slerp(a: &[f32], b: &[f32], alpha: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = (dot / (na * nb)).clamp(-1.0, 1.0);
    let theta = cos.acos();
    if theta.abs() < 1e-6 {
        return a
            .iter()
            .zip(b)
            .map(|(&x, &y)| ((1.0 - alpha) * x as f64 + alpha * y as f64) as f32)
            .collect();
    }
    let (wa, wb) =
        (((1.0 - alpha) * theta).sin() / theta.sin(), (alpha * theta).sin() / theta.sin());
    a.iter().zip(b).map(|(&x, &y)| (wa * x as f64 + wb * y as f64) as f32).collect()
}

/// Where the per-step noise comes from when sigma > 0.
pub enum StepNoise<'a> {
    /// Philox under the seed (the default).
    Philox(u64),
    /// Given normals for this batch, `[steps, batch, C, H, W]` flattened (for comparison with other code).
    Given(&'a [f32]),
}

/// What [`Sampler::sample_watched`] returns: one batch's samples and what was recorded of its run.
#[derive(Clone, Debug)]
pub struct BatchRecord {
    /// The samples x_0, unclamped.
    pub x0: Vec<f32>,
    /// Every dispatch's GPU time, step by step (empty unless timed).
    pub timings: Vec<DispatchTiming>,
    /// Each step's wall time, seconds (empty unless timed).
    pub step_walls: Vec<f64>,
}

/// Called after step `i` (0-based) with a batch's predicted x0, `[batch, C, H, W]` flattened, before any clipping.
pub type X0Watch<'w> = &'w mut dyn FnMut(usize, &[f32]);

/// What [`Sampler::sample_watched`] records of a batch's run besides its samples.
#[derive(Default)]
pub struct BatchWatch<'w> {
    /// GPU timestamps around every dispatch, and each step's wall time.
    pub timings: bool,
    /// Each step's predicted x0, read back after the step. The update then runs as its own kernel rather than in
    /// the final convolution's epilogue (the prediction needs the model output in memory).
    pub x0: Option<X0Watch<'w>>,
}

/// What a run is recording: the profiler with each step's wall time, and the x0 watch.
#[derive(Default)]
struct Recording<'w> {
    profile: Option<(Profiler, Vec<f64>)>,
    x0: Option<X0Watch<'w>>,
}

/// Runs the sampler on a model: the UNet graph with its weights on the GPU, and the settings.
pub struct Sampler<'a> {
    gpu: &'a Gpu,
    graph: &'a Graph,
    weights: &'a HashMap<String, Tensor>,
    settings: SamplerSettings,
    steps: Vec<Step>,
    /// Warnings about the timestep sequence, for the user.
    pub warnings: Vec<String>,
}

impl<'a> Sampler<'a> {
    /// Plans the steps; fails on impossible settings (0 steps, more steps than T, negative eta, ...).
    pub fn new(
        gpu: &'a Gpu,
        graph: &'a Graph,
        weights: &'a HashMap<String, Tensor>,
        settings: SamplerSettings,
    ) -> Result<Self> {
        let (steps, warnings) = plan_steps(&settings)?;
        Ok(Sampler { gpu, graph, weights, settings, steps, warnings })
    }

    /// The planned steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The largest batch whose every activation fits one storage binding of this device
    /// ([`crate::graph::plan::max_batch`]).
    pub fn max_batch(&self) -> Result<usize> {
        crate::graph::plan::max_batch(self.gpu, self.graph)
    }

    fn prepare(&self, batch: usize) -> Result<(Plan, DdimScratch)> {
        let plan = Plan::new(self.gpu, self.graph, self.weights, batch, &[])?;
        let scratch = DdimScratch::new(self.gpu, plan.inputs()[0].shape(), self.settings.mode)?;
        Ok((plan, scratch))
    }

    /// Runs the prepared per-step dispatches: each step writes its timestep, records the UNet and the update
    /// into one pass, and submits once. `progress` is called after each step with the number done.
    /// Each step records `unet` (the plan's dispatches, or all but the final convolution when the update is fused
    /// into it) and then its own update dispatches. With a profiler, every dispatch is timestamped and each
    /// step's wall time is recorded.
    async fn run_steps(
        &self,
        plan: &Plan,
        unet: &[Dispatch],
        steps: &[(usize, Vec<Dispatch>)],
        progress: &mut dyn FnMut(usize),
        recording: &mut Recording<'_>,
        preview: Option<&Tensor>,
    ) -> Result<Vec<f32>> {
        let batch = plan.batch();
        let x = &plan.inputs()[0];
        let first = finite::watch_buffer(self.gpu, "finite watch", batch)?;
        let watches = (0..steps.len())
            .map(|i| {
                finite::finite_watch(
                    self.gpu,
                    &format!("finite watch {}", i + 1),
                    x,
                    &first,
                    i as u32,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, ((t, step_update), watch)) in steps.iter().zip(&watches).enumerate() {
            let update: Vec<&Dispatch> = step_update.iter().chain([watch]).collect();
            plan.inputs()[1].write(self.gpu, &vec![*t as f32; batch])?;
            let what = format!("sampling step {} (t = {t})", i + 1);
            let start = web_time::Instant::now();
            let encoder = self.gpu.scoped(&what, || {
                let mut encoder = self
                    .gpu
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(&what) });
                match recording.profile.as_mut() {
                    Some((profiler, _)) => {
                        let all: Vec<&Dispatch> =
                            unet.iter().chain(update.iter().copied()).collect();
                        profiler.record_step(&mut encoder, i, &all).map(|_| encoder)
                    }
                    None => {
                        {
                            let mut pass =
                                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                                    label: Some(&what),
                                    timestamp_writes: None,
                                });
                            for d in unet.iter().chain(update.iter().copied()) {
                                d.record(&mut pass);
                            }
                        }
                        Ok(encoder)
                    }
                }
            })?;
            let submitted = match encoder {
                Ok(encoder) => self.gpu.submit_and_wait(&what, encoder).await,
                Err(e) => Err(e),
            };
            submitted
                .map_err(|e| self.gpu.locate_fault(e, unet.iter().chain(update.iter().copied())))?;
            if let Some((_, walls)) = recording.profile.as_mut() {
                walls.push(start.elapsed().as_secs_f64());
            }
            if let (Some(x0), Some(watch)) = (preview, recording.x0.as_mut()) {
                watch(i, &self.gpu.download(x0).await?);
            }
            progress(i + 1);
        }
        let out = self.gpu.download(x).await?;
        let marks = finite::first_steps(&self.gpu.download(&first).await?);
        if let Some((image, step)) =
            marks.iter().enumerate().find_map(|(n, s)| s.map(|s| (n, s as usize)))
        {
            return Err(Error::NonFinite {
                image,
                step: step + 1,
                t: steps[step].0,
                steps: steps.len(),
            });
        }
        Ok(out)
    }

    /// Samples images `first_image .. first_image + batch` from their latents `x_t` (`[batch, C, H, W]`
    /// flattened); returns x_0, unclamped.
    pub async fn sample(
        &self,
        x_t: &[f32],
        batch: usize,
        first_image: u32,
        noise: StepNoise<'_>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>> {
        self.sample_impl(x_t, batch, first_image, noise, progress, &mut Recording::default()).await
    }

    /// [`Sampler::sample`], watched as [`BatchWatch`] asks.
    pub async fn sample_watched(
        &self,
        x_t: &[f32],
        batch: usize,
        first_image: u32,
        noise: StepNoise<'_>,
        progress: &mut dyn FnMut(usize),
        watch: BatchWatch<'_>,
    ) -> Result<BatchRecord> {
        let profile = match watch.timings {
            // The UNet's nodes plus the longest update chain (the unfused one with thresholding: 9 dispatches)
            // and the x0 prediction.
            true => Some((
                Profiler::new(self.gpu, self.graph.nodes.len() + 17, self.steps.len())?,
                Vec::with_capacity(self.steps.len()),
            )),
            false => None,
        };
        let mut recording = Recording { profile, x0: watch.x0 };
        let x0 = self.sample_impl(x_t, batch, first_image, noise, progress, &mut recording).await?;
        let (timings, step_walls) = match recording.profile {
            Some((profiler, walls)) => (profiler.finish(self.gpu).await?, walls),
            None => (Vec::new(), Vec::new()),
        };
        Ok(BatchRecord { x0, timings, step_walls })
    }

    async fn sample_impl(
        &self,
        x_t: &[f32],
        batch: usize,
        first_image: u32,
        noise: StepNoise<'_>,
        progress: &mut dyn FnMut(usize),
        recording: &mut Recording<'_>,
    ) -> Result<Vec<f32>> {
        let (plan, scratch) = self.prepare(batch)?;
        let x = &plan.inputs()[0];
        x.write(self.gpu, x_t)?;
        let given: Vec<Tensor> = match noise {
            StepNoise::Given(z) => {
                let per_step = x.len();
                if z.len() != per_step * self.steps.len() {
                    return Err(Error::shape(
                        "sampler",
                        format!(
                            "the noise holds {} values; {} steps of {:?} need {}",
                            z.len(),
                            self.steps.len(),
                            x.shape(),
                            per_step * self.steps.len()
                        ),
                    ));
                }
                z.chunks(per_step)
                    .enumerate()
                    .map(|(i, c)| {
                        self.gpu.upload_as(&format!("noise {i}"), x.shape(), c, self.gpu.act())
                    })
                    .collect::<Result<_>>()?
            }
            StepNoise::Philox(_) => Vec::new(),
        };
        let s = &self.settings;
        // The update goes into the final convolution's epilogue where that is valid, the model output is not
        // needed for the x0 preview, and the epilogue computes the convolution with the family's own kernel
        // (elsewhere the fused update after the family's convolution is faster).
        let epilogue = match (s.mode, plan.output_conv()) {
            (UpdateMode::Epilogue, Some(conv))
                if s.threshold.is_none()
                    && recording.x0.is_none()
                    && epilogue_keeps_kernel(
                        self.gpu,
                        &conv.input,
                        &conv.weight,
                        &conv.bias,
                        &conv.config,
                    )? =>
            {
                Some(conv)
            }
            _ => None,
        };
        let preview = match recording.x0 {
            Some(_) => Some(self.gpu.zeros_as("predicted x0", x.shape(), self.gpu.act())?),
            None => None,
        };
        let mode = if s.mode == UpdateMode::Epilogue { UpdateMode::Fused } else { s.mode };
        let prepared = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let noise = if step.coefficients.sigma == 0.0 {
                    Noise::None
                } else {
                    match noise {
                        StepNoise::Philox(seed) => Noise::Philox {
                            key: NoiseKey { seed, step: i as u32, stream: Stream::StepNoise },
                            first_image,
                        },
                        StepNoise::Given(_) => Noise::Tensor(&given[i]),
                    }
                };
                let spec = StepSpec {
                    coefficients: step.coefficients,
                    prediction: s.prediction,
                    clip: if s.sigma_hat && s.clip.is_none() && s.threshold.is_none() {
                        Some(1.0)
                    } else {
                        s.clip
                    },
                    threshold: s.threshold,
                    clipped_eps: false,
                    noise,
                };
                let label = format!("ddim step {} (t = {})", i + 1, step.t);
                let mut update = match &preview {
                    Some(x0) => vec![predicted_x0(self.gpu, &label, &spec, x, plan.output(), x0)?],
                    None => Vec::new(),
                };
                match epilogue {
                    Some(c) => update.push(conv_ddim_update(
                        self.gpu, &label, &c.input, &c.weight, &c.bias, &c.config, x, &spec,
                    )?),
                    None => update.extend(ddim_update(
                        self.gpu,
                        &label,
                        x,
                        plan.output(),
                        &spec,
                        mode,
                        &scratch,
                    )?),
                }
                Ok((step.t, update))
            })
            .collect::<Result<Vec<_>>>()?;
        let unet = match epilogue {
            Some(_) => &plan.dispatches()[..plan.dispatches().len() - 1],
            None => plan.dispatches(),
        };
        self.run_steps(&plan, unet, &prepared, progress, recording, preview.as_ref()).await
    }

    /// DDIM inversion (eta = 0) of clean images `x0` (`[batch, C, H, W]`, in [-1, 1]) to latents x_T, visiting
    /// the sampling timesteps in increasing order, with x0 clipped where the settings clip (as diffusers'
    /// DDIMInverseScheduler does with `clip_sample`; without, the exact ODE). Each step evaluates the UNet at the timestep it moves to, from
    /// the current latent (diffusers' DDIMInverseScheduler): S evaluations, mirroring the S of sampling.
    pub async fn invert(
        &self,
        x0: &[f32],
        batch: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>> {
        let (plan, scratch) = self.prepare(batch)?;
        let x = &plan.inputs()[0];
        x.write(self.gpu, x0)?;
        let alphas = self.settings.schedule.alphas_cumprod()?;
        let mut a_cur = if self.settings.set_alpha_to_one { 1.0 } else { alphas[0] };
        let mut prepared = Vec::with_capacity(self.steps.len());
        // Inversion runs the update as its own kernel (fused or unfused as asked).
        let mode = match self.settings.mode {
            UpdateMode::Epilogue => UpdateMode::Fused,
            m => m,
        };
        for (i, step) in self.steps.iter().rev().enumerate() {
            let a_next = alphas[step.t];
            // x0 clipped where the settings clip, the model output kept as epsilon: diffusers'
            // DDIMInverseScheduler (no thresholding there).
            let spec = StepSpec {
                coefficients: StepCoefficients::inversion(a_cur, a_next)?,
                prediction: self.settings.prediction,
                clip: self.settings.clip,
                threshold: None,
                clipped_eps: false,
                noise: Noise::None,
            };
            let label = format!("inversion step {} (t = {})", i + 1, step.t);
            let update = ddim_update(self.gpu, &label, x, plan.output(), &spec, mode, &scratch)?;
            prepared.push((step.t, update));
            a_cur = a_next;
        }
        self.run_steps(
            &plan,
            plan.dispatches(),
            &prepared,
            progress,
            &mut Recording::default(),
            None,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slerp_endpoints_and_norm() {
        let a: Vec<f32> = latents(1, 0, 1, 1000);
        let b: Vec<f32> = latents(2, 0, 1, 1000);
        assert_eq!(slerp(&a, &b, 0.0), a);
        let end = slerp(&a, &b, 1.0);
        assert!(end.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
        let mid = slerp(&a, &b, 0.5);
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        // Between two near-orthogonal Gaussian vectors of similar norm, slerp keeps the norm (lerp would not).
        assert!((norm(&mid) / norm(&a) - 1.0).abs() < 0.05);
    }

    #[test]
    fn steps_go_to_the_true_previous_timestep() {
        let s = SamplerSettings { steps: 4, spacing: Spacing::Linspace, ..Default::default() };
        let (steps, _) = plan_steps(&s).unwrap();
        let ts: Vec<_> = steps.iter().map(|s| (s.t, s.prev)).collect();
        assert_eq!(ts, [(999, Some(666)), (666, Some(333)), (333, Some(0)), (0, None)]);
        let bad = SamplerSettings { eta: -1.0, ..Default::default() };
        assert!(plan_steps(&bad).is_err());
    }
}
