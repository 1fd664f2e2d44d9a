//! What every form of the update takes: the step's specification ([`StepSpec`]: coefficients, prediction,
//! clipping or thresholding, noise source), the form ([`UpdateMode`]), the scratch the forms share, and the
//! step constants the kernels read (`DdimStep` in common.wgsl).

use crate::diffusion::philox::{NoiseKey, Stream};
use crate::diffusion::step::{Prediction, StepCoefficients, Threshold, check_x0_rules};
use crate::error::{Error, Result};
use crate::gpu::check::expect_shape;
use crate::gpu::kernel::params;
use crate::gpu::{Gpu, Tensor};
pub(super) const OP: &str = "ddim_step";

params! {
    /// Mirrors `DdimStep` in common.wgsl: the constants of one update.
    pub struct DdimStepParams {
        pub image_offset: u32, pub step: u32, pub seed_lo: u32, pub seed_hi: u32,
        pub prediction: u32, pub flags: u32, pub noise_mode: u32, pub _pad0: u32, pub sqrt_a_t: f32,
        pub sqrt_1m_a_t: f32, pub sqrt_a_p: f32, pub dir_coef: f32, pub sigma: f32, pub clip: f32,
        pub coef_xt: f32, pub _pad1: u32,
    }
}

const FLAG_CLIP: u32 = 1;

const FLAG_THRESHOLD: u32 = 2;

const FLAG_CLIPPED_EPS: u32 = 4;

/// The constants of one update (everything but the shapes).
pub(super) fn step_params(spec: &StepSpec<'_>) -> DdimStepParams {
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
    /// Fused into the epilogue of the UNet's final convolution ([`conv_ddim_update`](super::conv_ddim_update))
    /// where valid (the model ends in a convolution, no dynamic thresholding) and where the epilogue computes the
    /// convolution with the device family's own kernel ([`epilogue_keeps_kernel`](super::epilogue_keeps_kernel));
    /// otherwise as `Fused`. The sampler's default.
    #[default]
    Epilogue,
    /// One kernel after the UNet.
    Fused,
    /// A chain of elementwise kernels with temporaries.
    Unfused,
}

/// Temporaries of the update for one x shape, allocated once and shared by every step.
pub struct DdimScratch {
    pub(super) shape: Vec<usize>,
    pub(super) thresh: Tensor,
    pub(super) x0: Tensor,
    pub(super) x0c: Tensor,
    pub(super) eps: Tensor,
    pub(super) xp: Tensor,
    pub(super) acc: Tensor,
    pub(super) noise: Tensor,
}

impl DdimScratch {
    /// Temporaries for x of `shape` (`[N, ...]`). Only the per-image threshold is used by the fused mode.
    pub fn new(gpu: &Gpu, shape: &[usize], mode: UpdateMode) -> Result<Self> {
        if shape.is_empty() {
            return Err(Error::shape(OP, "x must have a batch dimension"));
        }
        // The chain's noise comes from randn.wgsl as f32 words, and its temporaries would round to f16
        // between kernels: it is the f32 study of what fusing saves.
        if mode == UpdateMode::Unfused && gpu.act() != crate::gpu::DType::F32 {
            return Err(Error::param(
                OP,
                "the unfused update runs at f32 precision only (use --update epilogue or fused with f16)",
            ));
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

pub(super) fn validate(spec: &StepSpec<'_>, x: &Tensor) -> Result<()> {
    check_x0_rules(spec.clip, spec.threshold)?;
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
