//! The engine as one API: a loaded model on a device, sampled, inverted, interpolated and evaluated, with
//! results as tensors in memory. Batches larger than the device holds are split here (an image depends on its
//! seed and global index only, so the split never shows in the result), and long work reports progress through
//! a callback. Every method that waits on the GPU is `async`; native front ends block on them at their edge.
//!
//! Files stay outside: [`Pipeline::new`] takes [`Weights`] already read (from our file with
//! [`Weights::from_bytes`], or converted by `model::convert`), and the caller writes PNG or `.npy` from the
//! [`Images`] it gets back.
//!
//! ```no_run
//! use ddim_wgpu::gpu::{DeviceOptions, Gpu};
//! use ddim_wgpu::model::weights::Weights;
//! use ddim_wgpu::pipeline::{Pipeline, SampleRequest};
//!
//! # pollster::block_on(async {
//! let weights = Weights::load(std::path::Path::new("weights/default.safetensors"))?;
//! let gpu = Gpu::new(&DeviceOptions::default()).await?;
//! let pipeline = Pipeline::new(gpu, &weights)?;
//! let request = SampleRequest::new(pipeline.default_settings(), 4, 0);
//! let images = pipeline.sample(&request, &mut |_| {}).await?;
//! assert_eq!(images.shape[0], 4);
//! # Ok::<(), ddim_wgpu::Error>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::profiler::DispatchTiming;
use crate::gpu::{Gpu, Tensor};
use crate::graph::ir::{Graph, TensorId};
use crate::graph::plan::{MemoryStats, Plan, max_batch};
use crate::model::weights::{Training, Weights};
use crate::sampler::ddim::{BatchWatch, Sampler, SamplerSettings, StepNoise, latents, slerp};
use crate::unet::{self, UNetConfig};

/// Images (or latents) in memory: `data` holds `shape[0]` images of `shape[1..]`, NCHW, f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Images {
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// `N * C * H * W` values.
    pub data: Vec<f32>,
}

impl Images {
    /// Images of `shape` from `data`, refusing a length that does not match.
    pub fn new(shape: [usize; 4], data: Vec<f32>) -> Result<Self> {
        let len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if len != Some(data.len()) {
            return Err(Error::param(
                "pipeline",
                format!("{} values do not make images of shape {shape:?}", data.len()),
            ));
        }
        Ok(Images { shape, data })
    }

    /// Values per image.
    pub fn per_image(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// Image `k`'s values.
    pub fn image(&self, k: usize) -> &[f32] {
        let per = self.per_image();
        &self.data[k * per..(k + 1) * per]
    }
}

/// How far a long run has come, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// UNet steps done, over every batch.
    pub done: usize,
    /// UNet steps in all.
    pub total: usize,
    /// Images in the run.
    pub images: usize,
    /// Batches the run is split into (more than one where the request exceeds the device or `max_batch`).
    pub batches: usize,
    /// The most images in one batch.
    pub batch_size: usize,
}

/// What [`Pipeline::eval`] returns.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The model output.
    pub output: Images,
    /// Each block's output, where asked: its name, shape `[N, ...]` and values.
    pub blocks: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// The batches the images ran in.
    pub batches: usize,
    /// Dispatches per evaluation.
    pub dispatches: usize,
    /// How the activations were placed (of the last batch's plan).
    pub memory: MemoryStats,
}

/// What [`Pipeline::profile`] returns.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The samples.
    pub images: Images,
    /// Every dispatch's GPU time, step by step.
    pub timings: Vec<DispatchTiming>,
    /// Each step's wall time, seconds.
    pub step_walls: Vec<f64>,
    /// Each step's timestep.
    pub timesteps: Vec<usize>,
}

/// What a caller watches of a sampling run besides its progress (a page, a GUI, a profiler).
#[derive(Default)]
pub struct Watch<'w> {
    /// Called after every step of every batch with the batch's predicted x0. Costs a readback per step, and the
    /// update then runs as its own kernel rather than in the final convolution's epilogue.
    pub x0: Option<&'w mut dyn FnMut(StepX0<'_>)>,
    /// GPU timestamps around every dispatch (the adapter must offer timestamp queries).
    pub timings: bool,
}

/// One step's prediction of x0 for one batch of a run, before any clipping.
#[derive(Clone, Copy, Debug)]
pub struct StepX0<'a> {
    /// The step (0-based) and the steps in all.
    pub step: usize,
    /// Steps per batch.
    pub steps: usize,
    /// The index in the request of the batch's first image.
    pub first_image: usize,
    /// `[batch, C, H, W]` of `data`.
    pub shape: [usize; 4],
    /// The prediction, NCHW.
    pub data: &'a [f32],
}

/// What [`Pipeline::sample_watched`] returns.
#[derive(Clone, Debug)]
pub struct Watched {
    /// The samples x_0, unclamped.
    pub images: Images,
    /// Every dispatch's GPU time, step by step, batch after batch (empty unless [`Watch::timings`]).
    pub timings: Vec<DispatchTiming>,
    /// Each step's wall time in seconds, batch after batch (empty unless [`Watch::timings`]).
    pub step_walls: Vec<f64>,
}

/// Given step noise in place of Philox's: `[steps, images, C, H, W]` over every image of the run.
#[derive(Clone, Copy, Debug)]
pub struct GivenNoise<'a> {
    /// The normals, flattened.
    pub data: &'a [f32],
    /// The images the array holds per step (the run's, all shards together).
    pub images: usize,
}

/// What [`Pipeline::sample`] makes: `batch_size` images from global index `first_image`, with settings named
/// as diffusers' `DDIMScheduler` and pipeline name them where they have a name there.
#[derive(Clone, Debug)]
pub struct SampleRequest<'a> {
    /// The scheduler: schedule, steps, spacing, eta, prediction type, clipping, update form.
    pub scheduler: SamplerSettings,
    /// Images to make.
    pub batch_size: usize,
    /// The seed of the latents and of the step noise.
    pub seed: u64,
    /// The global index of the first image: image k of the request is image `first_image + k` of the seed.
    pub first_image: usize,
    /// Start from these latents x_T (`batch_size` images) instead of the seed's.
    pub latents: Option<&'a [f32]>,
    /// Step noise to use instead of Philox's (for comparison with other code).
    pub noise: Option<GivenNoise<'a>>,
    /// The most images per GPU batch; `None`: what the device's limits allow.
    pub max_batch: Option<usize>,
}

impl<'a> SampleRequest<'a> {
    /// `batch_size` images of `seed` from image 0, with `scheduler`.
    pub fn new(scheduler: SamplerSettings, batch_size: usize, seed: u64) -> Self {
        SampleRequest {
            scheduler,
            batch_size,
            seed,
            first_image: 0,
            latents: None,
            noise: None,
            max_batch: None,
        }
    }
}

/// A model on a device, ready to sample.
pub struct Pipeline {
    gpu: Gpu,
    config: UNetConfig,
    training: Option<Training>,
    graph: Graph,
    params: HashMap<String, Tensor>,
}

impl Pipeline {
    /// Builds the model's graph and uploads its weights to `gpu`.
    pub fn new(gpu: Gpu, weights: &Weights) -> Result<Self> {
        let graph = unet::build(&weights.config)?;
        let params = weights.upload_for(&gpu, &graph)?;
        Ok(Pipeline {
            gpu,
            config: weights.config.clone(),
            training: weights.training.clone(),
            graph,
            params,
        })
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The model's configuration.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// `[C, H, W]` of one image.
    pub fn image_shape(&self) -> [usize; 3] {
        let c = &self.config;
        [c.in_channels, c.sample_size, c.sample_size]
    }

    /// The sampler settings the model was trained with (its schedule, prediction type, offset), the library's
    /// defaults for everything else.
    pub fn default_settings(&self) -> SamplerSettings {
        default_settings(self.training.as_ref())
    }

    /// The starting latents of images `first .. first + count` of `seed` (Philox, bit-identical everywhere).
    pub fn latents(&self, seed: u64, first: usize, count: usize) -> Result<Images> {
        let [c, h, w] = self.image_shape();
        crate::limits::f32_array("latents", &[count, c, h, w])?;
        let first = image_index(first)?;
        Images::new([count, c, h, w], latents(seed, first, count, c * h * w))
    }

    /// Samples the request's images; returns x_0, unclamped.
    pub async fn sample(
        &self,
        request: &SampleRequest<'_>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Images> {
        Ok(self.sample_watched(request, progress, Watch::default()).await?.images)
    }

    /// [`Pipeline::sample`], watched: each step's predicted x0 and every dispatch's GPU time, as `watch` asks.
    /// The samples are those [`Pipeline::sample`] makes, up to f32 rounding where watching x0 moves the update
    /// out of the final convolution's epilogue.
    pub async fn sample_watched(
        &self,
        request: &SampleRequest<'_>,
        progress: &mut dyn FnMut(Progress),
        mut watch: Watch<'_>,
    ) -> Result<Watched> {
        let [c, h, w] = self.image_shape();
        let per = c * h * w;
        let n = request.batch_size;
        crate::limits::f32_array("samples", &[n, c, h, w])?;
        request.first_image.checked_add(n).ok_or_else(|| {
            Error::param("pipeline", format!("images {} + {n} overflow", request.first_image))
        })?;
        let owned;
        let x_t = match request.latents {
            Some(l) => {
                if l.len() != n * per {
                    return Err(Error::param(
                        "pipeline",
                        format!("{} latent values for {n} images of {per}", l.len()),
                    ));
                }
                check_finite("latents", l, per)?;
                l
            }
            None => {
                owned = self.latents(request.seed, request.first_image, n)?;
                &owned.data
            }
        };
        let sampler =
            Sampler::new(&self.gpu, &self.graph, &self.params, request.scheduler.clone())?;
        let steps = sampler.steps().len();
        if let Some(z) = request.noise {
            let needed = steps.checked_mul(z.images).and_then(|v| v.checked_mul(per));
            if needed != Some(z.data.len()) || request.first_image + n > z.images {
                // (first_image + n does not overflow: checked above.)
                return Err(Error::param(
                    "pipeline",
                    format!(
                        "the given noise holds {} values, not {steps} steps of {} images of {per}",
                        z.data.len(),
                        z.images
                    ),
                ));
            }
        }
        let (mut timings, mut step_walls) = (Vec::new(), Vec::new());
        let data = self
            .in_batches(&sampler, n, request.max_batch, progress, async |start, b, on_step| {
                let first = image_index(request.first_image + start)?;
                // The given noise is [S, N_total, ...]: gather this batch's images for every step.
                let gathered: Option<Vec<f32>> = request.noise.map(|z| {
                    (0..steps)
                        .flat_map(|s| {
                            let from = (s * z.images + request.first_image + start) * per;
                            z.data[from..from + b * per].iter().copied()
                        })
                        .collect()
                });
                let noise = match &gathered {
                    Some(z) => StepNoise::Given(z),
                    None => StepNoise::Philox(request.seed),
                };
                let x = &x_t[start * per..(start + b) * per];
                let mut x0 = watch.x0.as_mut().map(|f| {
                    move |step: usize, data: &[f32]| {
                        f(StepX0 { step, steps, first_image: start, shape: [b, c, h, w], data })
                    }
                });
                let watched = sampler
                    .sample_watched(
                        x,
                        b,
                        first,
                        noise,
                        on_step,
                        BatchWatch {
                            timings: watch.timings,
                            x0: x0.as_mut().map(|f| f as &mut dyn FnMut(usize, &[f32])),
                        },
                    )
                    .await
                    .map_err(|e| globally(e, request.first_image + start))?;
                timings.extend(watched.timings);
                step_walls.extend(watched.step_walls);
                Ok(watched.x0)
            })
            .await?;
        Ok(Watched { images: Images::new([n, c, h, w], data)?, timings, step_walls })
    }

    /// Samples `batch_size` images of `seed` (one batch: it must fit the device) with GPU timestamps around
    /// every dispatch, for the per-kernel table (`gpu::profiler::kernel_table`) and a trace.
    pub async fn profile(
        &self,
        scheduler: &SamplerSettings,
        batch_size: usize,
        seed: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Profile> {
        let sampler = Sampler::new(&self.gpu, &self.graph, &self.params, scheduler.clone())?;
        let x_t = self.latents(seed, 0, batch_size)?;
        let total = sampler.steps().len();
        let mut on_step =
            |done| progress(Progress { done, total, images: batch_size, batches: 1, batch_size });
        let noise = StepNoise::Philox(seed);
        let watch = BatchWatch { timings: true, x0: None };
        let watched =
            sampler.sample_watched(&x_t.data, batch_size, 0, noise, &mut on_step, watch).await?;
        Ok(Profile {
            images: Images::new(x_t.shape, watched.x0)?,
            timings: watched.timings,
            step_walls: watched.step_walls,
            timesteps: sampler.steps().iter().map(|s| s.t).collect(),
        })
    }

    /// DDIM inversion (eta = 0) of clean images in [-1, 1] to latents x_T, with `scheduler`'s steps.
    pub async fn invert(
        &self,
        images: &Images,
        scheduler: &SamplerSettings,
        max_batch: Option<usize>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Images> {
        if images.shape[1..] != self.image_shape() {
            return Err(Error::param(
                "pipeline",
                format!(
                    "images of shape {:?}; the model takes [N, {:?}]",
                    images.shape,
                    self.image_shape()
                ),
            ));
        }
        check_finite("images", &images.data, images.per_image())?;
        let settings = SamplerSettings { eta: 0.0, sigma_hat: false, ..scheduler.clone() };
        let sampler = Sampler::new(&self.gpu, &self.graph, &self.params, settings)?;
        let per = images.per_image();
        let data = self
            .in_batches(
                &sampler,
                images.shape[0],
                max_batch,
                progress,
                async |start, b, on_step| {
                    let x0 = &images.data[start * per..(start + b) * per];
                    sampler.invert(x0, b, on_step).await.map_err(|e| globally(e, start))
                },
            )
            .await?;
        Images::new(images.shape, data)
    }

    /// Samples `frames` latents on the great circle between `a` and `b` (slerp, endpoints included), with
    /// step noise from `seed` where eta > 0.
    pub async fn interpolate(
        &self,
        a: &[f32],
        b: &[f32],
        frames: usize,
        scheduler: &SamplerSettings,
        seed: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Images> {
        let per: usize = self.image_shape().iter().product();
        if frames < 2 || a.len() != per || b.len() != per {
            return Err(Error::param(
                "pipeline",
                format!(
                    "interpolation takes two latents of {per} values and at least 2 frames, got {}, {} and {frames}",
                    a.len(),
                    b.len()
                ),
            ));
        }
        let [c, h, w] = self.image_shape();
        crate::limits::f32_array("interpolation frames", &[frames, c, h, w])?;
        for (which, l) in [("first", a), ("second", b)] {
            check_finite("latents", l, per)?;
            if l.iter().all(|&v| v == 0.0) {
                return Err(Error::param(
                    "pipeline",
                    format!(
                        "the {which} latent is all zeros: slerp interpolates directions, and a zero latent has none"
                    ),
                ));
            }
        }
        let x_t: Vec<f32> =
            (0..frames).flat_map(|f| slerp(a, b, f as f64 / (frames - 1) as f64)).collect();
        let request = SampleRequest {
            latents: Some(&x_t),
            ..SampleRequest::new(scheduler.clone(), frames, seed)
        };
        self.sample(&request, progress).await
    }

    /// The names of the blocks whose outputs [`Pipeline::eval`] returns on request (diffusers' names), in order.
    pub fn block_names(&self) -> Vec<String> {
        self.graph.checkpoints.iter().map(|(name, _)| name.clone()).collect()
    }

    /// One UNet evaluation: the model output at timesteps `t` (one per image) for inputs `x`, in batches the
    /// device holds; with `blocks`, also every block's output, named as diffusers names the block.
    pub async fn eval(&self, x: &Images, t: &[f32], blocks: bool) -> Result<Evaluation> {
        let n = x.shape[0];
        if x.shape[1..] != self.image_shape() || t.len() != n || n == 0 {
            return Err(Error::param(
                "pipeline",
                format!(
                    "inputs of shape {:?} with {} timesteps; the model takes [N, {:?}], N >= 1, and N timesteps",
                    x.shape,
                    t.len(),
                    self.image_shape()
                ),
            ));
        }
        let keep: Vec<TensorId> = if blocks {
            self.graph.checkpoints.iter().map(|(_, id)| *id).collect()
        } else {
            Vec::new()
        };
        // A batch larger than the device binds runs in batches (one plan per batch size); the result is the
        // same.
        let batch = max_batch(&self.gpu, &self.graph)?.min(n);
        let per = x.per_image();
        let (mut output, mut dumps) = (Vec::new(), vec![Vec::new(); keep.len()]);
        let mut plan: Option<Plan> = None;
        for first in (0..n).step_by(batch) {
            let b = batch.min(n - first);
            if plan.as_ref().map(Plan::batch) != Some(b) {
                plan = Some(Plan::new(&self.gpu, &self.graph, &self.params, b, &keep)?);
            }
            let plan = plan.as_ref().expect("made above");
            let images = &x.data[first * per..(first + b) * per];
            output.extend(plan.run(&self.gpu, &[images, &t[first..first + b]]).await?);
            for (dump, id) in dumps.iter_mut().zip(&keep) {
                let tensor = plan.activation(*id).expect("every checkpoint is planned");
                dump.extend(self.gpu.download(tensor).await?);
            }
        }
        let plan = plan.expect("n >= 1");
        let with_batch = |shape: &[usize]| [&[n], &shape[1..]].concat();
        let out_shape = with_batch(plan.output().shape());
        let blocks = self
            .graph
            .checkpoints
            .iter()
            .zip(&keep)
            .zip(dumps)
            .map(|(((name, _), id), data)| {
                let tensor = plan.activation(*id).expect("every checkpoint is planned");
                (name.clone(), with_batch(tensor.shape()), data)
            })
            .collect();
        Ok(Evaluation {
            output: Images::new(out_shape.try_into().expect("the output is a map"), output)?,
            blocks,
            batches: n.div_ceil(batch),
            dispatches: plan.dispatches().len(),
            memory: plan.stats(),
        })
    }

    /// Runs `n` images in batches the device holds (and at most `max_batch`), with one progress count over
    /// every batch's steps; `run(start, count, on_step)` handles images `start .. start + count`, calling
    /// `on_step` with the steps it has done. The outputs are concatenated in order.
    async fn in_batches(
        &self,
        sampler: &Sampler<'_>,
        n: usize,
        max_batch: Option<usize>,
        progress: &mut dyn FnMut(Progress),
        mut run: impl AsyncFnMut(usize, usize, &mut dyn FnMut(usize)) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        if n == 0 {
            return Err(Error::param("pipeline", "no images to run"));
        }
        if max_batch == Some(0) {
            return Err(Error::param(
                "pipeline",
                "a largest batch of 0: a batch holds one image or more",
            ));
        }
        let batch_size = max_batch.unwrap_or(usize::MAX).min(sampler.max_batch()?).clamp(1, n);
        let steps = sampler.steps().len();
        let batches = n.div_ceil(batch_size);
        let total = batches * steps;
        progress(Progress { done: 0, total, images: n, batches, batch_size });
        let mut out = Vec::new();
        for (k, start) in (0..n).step_by(batch_size).enumerate() {
            let mut on_step = |i: usize| {
                progress(Progress { done: k * steps + i, total, images: n, batches, batch_size })
            };
            out.extend(run(start, batch_size.min(n - start), &mut on_step).await?);
        }
        Ok(out)
    }
}

/// The sampler settings of a model trained with `training` (its schedule, prediction type and offset, and the
/// spacing, clipping or thresholding its source samples with), the library's defaults for everything else; those
/// of a model that records none are the library's.
pub fn default_settings(training: Option<&Training>) -> SamplerSettings {
    let base = training.cloned().unwrap_or_default();
    SamplerSettings {
        schedule: base.schedule,
        steps_offset: base.steps_offset,
        set_alpha_to_one: base.set_alpha_to_one,
        prediction: base.prediction,
        spacing: base.sampling.spacing,
        clip: base.sampling.clip,
        threshold: base.sampling.threshold,
        ..SamplerSettings::default()
    }
}

/// An image index as the u32 Philox keys it by.
fn image_index(i: usize) -> Result<u32> {
    u32::try_from(i).map_err(|_| Error::param("pipeline", format!("image index {i} exceeds 2^32")))
}

/// Refuses `values` (images of `per` values each, `what` they are) holding a NaN or an infinity, naming the
/// first: any one turns every result of its image into NaN.
fn check_finite(what: &str, values: &[f32], per: usize) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::param(
            "pipeline",
            format!(
                "{what}: value {} of image {} is {}; inputs must be finite",
                i % per,
                i / per,
                values[i]
            ),
        )),
        None => Ok(()),
    }
}

/// A sampler error about image k of a batch, made about image `first + k` of the run.
fn globally(e: Error, first: usize) -> Error {
    match e {
        Error::NonFinite { image, step, t, steps } => {
            Error::NonFinite { image: first + image, step, t, steps }
        }
        e => e,
    }
}

/// Refuses settings no sampling can run (0 steps, more steps than the schedule has, an eta out of range, epsilon
/// prediction where alphas_cumprod is 0 or nearly), before a device is opened.
pub fn check_settings(settings: &SamplerSettings) -> Result<()> {
    crate::sampler::ddim::plan_steps(settings).map(|_| ())
}
