//! The DDIM update on the GPU (the maths is `diffusion::step`), two ways:
//!
//! - [`UpdateMode::Fused`]: `kernels/ddim_step.wgsl`, one pass over x with the noise generated in registers
//!   (plus `kernels/ddim_threshold.wgsl` first when dynamic thresholding is on);
//! - [`UpdateMode::Unfused`]: the same maths as a chain of `elementwise` and `randn` dispatches with
//!   temporaries, the way a framework without fusion runs it.
//!
//! Comparing the two is a feature (the profiler and benches report the difference), not dead code.

use bytemuck::{Pod, Zeroable};

use super::conv2d::{Conv2dConfig, ConvShape};
use super::elementwise::{Binary, Unary, binary, unary};
use super::randn;
use crate::diffusion::philox::{NoiseKey, Stream};
use crate::diffusion::step::{Prediction, StepCoefficients, Threshold};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{dim, expect_shape, nonzero};
use crate::gpu::kernel::kernel;
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, Tensor, workgroups_for};

const OP: &str = "ddim_step";

/// The fused update kernel.
pub const STEP_KERNEL: Kernel = kernel!("ddim_step", includes: [], workgroup: 64,
    params: StepParams, bindings: &[ReadWrite, Read, Read, Read]);

/// The final convolution with the update in its epilogue.
pub const CONV_KERNEL: Kernel = kernel!("conv2d_ddim" from "conv2d" where [("DDIM", "1")],
    includes: [super::conv2d::SHAPE, super::conv2d::ACCUMULATE], workgroup: 64,
    params: ConvStepParams, bindings: &[Read, Read, Read, Read, ReadWrite]);

/// The per-image dynamic-threshold scale kernel.
pub const THRESHOLD_KERNEL: Kernel = kernel!("ddim_threshold", includes: [], workgroup: 64,
    params: ThresholdParams, bindings: &[Read, Read, ReadWrite]);

/// Mirrors `DdimStep` in common.wgsl: the constants of one update.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct DdimStepParams {
    pub image_offset: u32,
    pub step: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub prediction: u32,
    pub flags: u32,
    pub noise_mode: u32,
    pub _pad0: u32,
    pub sqrt_a_t: f32,
    pub sqrt_1m_a_t: f32,
    pub sqrt_a_p: f32,
    pub dir_coef: f32,
    pub sigma: f32,
    pub clip: f32,
    pub coef_xt: f32,
    pub _pad1: u32,
}

/// Mirrors `Params` in ddim_step.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct StepParams {
    pub per_image: u32,
    pub batch: u32,
    pub _pad: [u32; 2],
    pub d: DdimStepParams,
}

/// Mirrors `Params` in conv2d.wgsl's `conv2d_ddim` variant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ConvStepParams {
    pub shape: ConvShape,
    pub d: DdimStepParams,
}

/// Mirrors `Params` in ddim_threshold.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ThresholdParams {
    pub per_image: u32,
    pub batch: u32,
    pub prediction: u32,
    pub _pad0: u32,
    pub sqrt_a_t: f32,
    pub sqrt_1m_a_t: f32,
    pub ratio: f32,
    pub max_value: f32,
}

const FLAG_CLIP: u32 = 1;
const FLAG_THRESHOLD: u32 = 2;
const FLAG_CLIPPED_EPS: u32 = 4;

/// The constants of one update (everything but the shapes).
fn step_params(spec: &StepSpec<'_>) -> DdimStepParams {
    let c = &spec.coefficients;
    let (noise_mode, seed, step, first_image) = match spec.noise {
        Noise::None => (0, 0, 0, 0),
        Noise::Philox { key, first_image } => (1, key.seed, key.step, first_image),
        Noise::Tensor(_) => (2, 0, 0, 0),
    };
    let flags = spec.clip.map_or(0, |_| FLAG_CLIP)
        | spec.threshold.map_or(0, |_| FLAG_THRESHOLD)
        | if spec.clipped_eps { FLAG_CLIPPED_EPS } else { 0 };
    DdimStepParams {
        image_offset: first_image,
        step,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        prediction: spec.prediction as u32,
        flags,
        noise_mode,
        _pad0: 0,
        sqrt_a_t: c.sqrt_a_t as f32,
        sqrt_1m_a_t: c.sqrt_1m_a_t as f32,
        sqrt_a_p: c.sqrt_a_p as f32,
        dir_coef: c.dir_coef as f32,
        sigma: c.sigma as f32,
        clip: spec.clip.unwrap_or(0.0),
        coef_xt: c.coef_xt as f32,
        _pad1: 0,
    }
}

/// Where the noise z of a step comes from.
#[derive(Clone, Copy)]
pub enum Noise<'a> {
    /// No noise (sigma must be 0).
    None,
    /// Philox normals under `key` (stream [`Stream::StepNoise`]); batch image n is global image `first_image + n`.
    Philox {
        /// The seed and step.
        key: NoiseKey,
        /// The global index of the batch's first image.
        first_image: u32,
    },
    /// Given normals with x's shape (for exact comparison with other implementations).
    Tensor(&'a Tensor),
}

/// Everything one update needs besides its tensors.
#[derive(Clone, Copy)]
pub struct StepSpec<'a> {
    /// The step's scalars.
    pub coefficients: StepCoefficients,
    /// What the model output is.
    pub prediction: Prediction,
    /// Clip x0 to [-r, r] (diffusers' `clip_sample` with `clip_sample_range`).
    pub clip: Option<f32>,
    /// Dynamic thresholding of x0 (exclusive with `clip`, as in diffusers).
    pub threshold: Option<Threshold>,
    /// Re-derive epsilon from the clipped x0 (diffusers' `use_clipped_model_output`).
    pub clipped_eps: bool,
    /// The noise source when sigma > 0.
    pub noise: Noise<'a>,
}

/// Which implementation of the update to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UpdateMode {
    /// Fused into the epilogue of the UNet's final convolution ([`conv_ddim_update`]), where valid (the model
    /// ends in a convolution, no dynamic thresholding); otherwise as `Fused`. The sampler's default.
    #[default]
    Epilogue,
    /// One kernel after the UNet.
    Fused,
    /// A chain of elementwise kernels with temporaries.
    Unfused,
}

/// Temporaries of the update for one x shape, allocated once and shared by every step.
pub struct DdimScratch {
    shape: Vec<usize>,
    thresh: Tensor,
    x0: Tensor,
    x0c: Tensor,
    eps: Tensor,
    xp: Tensor,
    acc: Tensor,
    noise: Tensor,
}

impl DdimScratch {
    /// Temporaries for x of `shape` (`[N, ...]`). Only the per-image threshold is used by the fused mode.
    pub fn new(gpu: &Gpu, shape: &[usize], mode: UpdateMode) -> Result<Self> {
        if shape.is_empty() {
            return Err(Error::shape(OP, "x must have a batch dimension"));
        }
        let full = |label: &str| match mode {
            UpdateMode::Unfused => gpu.zeros(label, shape),
            UpdateMode::Fused | UpdateMode::Epilogue => gpu.zeros(label, &[1]),
        };
        Ok(DdimScratch {
            shape: shape.to_vec(),
            thresh: gpu.zeros("ddim threshold scale", &shape[..1])?,
            x0: full("ddim x0")?,
            x0c: full("ddim clipped x0")?,
            eps: full("ddim eps")?,
            xp: full("ddim x_prev before noise")?,
            acc: full("ddim x_prev with x_t")?,
            noise: full("ddim step noise")?,
        })
    }
}

impl DdimScratch {
    /// The per-image dynamic-threshold scale `[N]`, written by the threshold dispatch.
    pub fn threshold_scale(&self) -> &Tensor {
        &self.thresh
    }
}

/// The UNet's final convolution with the update fused into its epilogue (`kernels/conv2d.wgsl`, variant `conv2d_ddim`): replaces
/// x (x_t, the convolution's output shape) by x_prev without storing the model output. `conv_input`, `weight`,
/// `bias` and `cfg` are the final convolution's. Dynamic thresholding is refused (use [`ddim_update`]).
#[allow(clippy::too_many_arguments)] // the convolution's operands and the update's
pub fn conv_ddim_update(
    gpu: &Gpu,
    label: &str,
    conv_input: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    cfg: &Conv2dConfig,
    x: &Tensor,
    spec: &StepSpec<'_>,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_ddim";
    let shape = ConvShape::new(OP, conv_input, weight, bias, cfg)?;
    expect_shape(OP, x, &shape.output_shape())?;
    validate(spec, x)?;
    if spec.threshold.is_some() {
        return Err(Error::param(
            OP,
            "dynamic thresholding needs the whole x0 of an image before any element is updated; it cannot be \
             fused into the convolution",
        ));
    }
    if cfg.out_scale != 1.0 {
        return Err(Error::param(OP, "the final convolution has an output scale"));
    }
    let d = step_params(spec);
    let noise = match spec.noise {
        Noise::Tensor(t) => t,
        _ => bias,
    };
    let floats =
        conv_input.len() + weight.len() + bias.len() + (2 + (d.noise_mode == 2) as usize) * x.len();
    Dispatch::new(
        gpu,
        &CONV_KERNEL,
        OP,
        label,
        &ConvStepParams { shape, d },
        &[conv_input, weight, bias, noise, x],
        workgroups_for(shape.blocks_4x4(), CONV_KERNEL.workgroup_size),
    )
    .map(|disp| disp.with_cost(Cost::new(shape.flops() + 12 * x.len() as u64, floats as u64)))
}

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
    let c = &spec.coefficients;

    let mut dispatches = Vec::new();
    if let Some(t) = spec.threshold {
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
        dispatches.push(
            Dispatch::new(
                gpu,
                &THRESHOLD_KERNEL,
                OP,
                &format!("{label}/threshold"),
                &params,
                &[x, model_out, &scratch.thresh],
                batch as u64,
            )?
            // 32 rounds of recomputing |x0| and counting; reads x and the model output each round.
            .with_cost(Cost::new(32 * 4 * x.len() as u64, 2 * x.len() as u64)),
        );
    }

    match mode {
        UpdateMode::Fused | UpdateMode::Epilogue => {
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
            let noise_mode = d.noise_mode;
            let groups = per_image.div_ceil(4) as u64 * batch as u64;
            dispatches.push(
                Dispatch::for_invocations(
                    gpu,
                    &STEP_KERNEL,
                    OP,
                    label,
                    &params,
                    &[x, model_out, noise, &scratch.thresh],
                    groups,
                )?
                // Reads x, the model output (and given noise), writes x: about 12 flops per element.
                .with_cost(Cost::new(
                    12 * x.len() as u64,
                    (3 + (noise_mode == 2) as usize) as u64 * x.len() as u64,
                )),
            );
        }
        UpdateMode::Unfused => unfused(gpu, label, x, model_out, spec, scratch, &mut dispatches)?,
    }
    Ok(dispatches)
}

fn validate(spec: &StepSpec<'_>, x: &Tensor) -> Result<()> {
    if spec.clip.is_some() && spec.threshold.is_some() {
        return Err(Error::param(
            OP,
            "clip and dynamic thresholding are exclusive (diffusers applies one or the other)",
        ));
    }
    if let Some(r) = spec.clip
        && !(r > 0.0 && r.is_finite())
    {
        return Err(Error::param(OP, format!("clip range must be positive, got {r}")));
    }
    if let Some(t) = spec.threshold
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
    match spec.noise {
        Noise::None if spec.coefficients.sigma > 0.0 => Err(Error::param(
            OP,
            format!("sigma is {} but no noise source was given", spec.coefficients.sigma),
        )),
        Noise::Philox { key, .. } if key.stream != Stream::StepNoise => {
            Err(Error::param(OP, "step noise must use the StepNoise stream"))
        }
        Noise::Tensor(t) => expect_shape(OP, t, x.shape()),
        _ => Ok(()),
    }
}

/// The unfused chain: each line of the maths is its own elementwise dispatch into a temporary.
fn unfused(
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
    out.push(match spec.prediction {
        Prediction::Epsilon => binary(gpu, &name("x0"), axpby(1.0 / sa, -s1ma / sa), x, m, &s.x0)?,
        Prediction::V => binary(gpu, &name("x0"), axpby(sa, -s1ma), x, m, &s.x0)?,
        Prediction::Sample => unary(gpu, &name("x0"), Unary::Scale(1.0), m, &s.x0)?,
    });
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
