//! What the commands that sample share: the sampler's flags and how they override a model's own settings,
//! reading models and batches, checking outputs, the progress bar.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use ddim_wgpu::diffusion::schedule::BetaSchedule;
use ddim_wgpu::diffusion::step::{Prediction, Threshold};
use ddim_wgpu::diffusion::timesteps::Spacing;
use ddim_wgpu::io::{NpyArray, read_npy};
use ddim_wgpu::model::convert::load_model;
use ddim_wgpu::model::weights::{Training, Weights};
use ddim_wgpu::ops::ddim::UpdateMode;
use ddim_wgpu::pipeline::{Progress, check_settings, default_settings};
use ddim_wgpu::sampler::ddim::SamplerSettings;

/// The default model (`weights/default.safetensors`, 2.2 MB), built into the binary so that `ddim` samples
/// wherever it runs.
const DEFAULT_MODEL_BYTES: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/weights/default.safetensors"));

/// The flags of every command that runs the sampler's steps (`sample`, `interpolate`, `profile`, `invert`). Where
/// a flag mirrors a diffusers setting it takes diffusers' values, and diffusers' name works as an alias.
#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Sampling")]
pub struct StepArgs {
    /// Sampling steps S.
    #[arg(short = 's', long, visible_alias = "num-inference-steps", default_value_t = 50)]
    pub steps: usize,
    /// Timestep spacing: leading, linspace, trailing (diffusers) or uniform, quad (official DDIM code). Default:
    /// the model's, else leading.
    #[arg(long, visible_alias = "timestep-spacing", value_parser = parse_spacing)]
    pub spacing: Option<Spacing>,
    /// Added to every timestep (diffusers' steps_offset). Default: the model's, else 0.
    #[arg(long)]
    pub steps_offset: Option<usize>,
    /// Past the last timestep use a = 1 (true) or a_0 (false). Default: the model's, else true.
    #[arg(long)]
    pub set_alpha_to_one: Option<bool>,
    /// What the model predicts: epsilon, v_prediction or sample. Default: the model's, else epsilon.
    #[arg(long, visible_alias = "prediction-type", value_enum)]
    pub prediction: Option<PredictionArg>,
    /// Clip the predicted x0 to [-R, R] (a number; `true` is 1), or `off`. Default: the model's (diffusers'
    /// clip_sample and clip_sample_range), else off.
    #[arg(long, visible_alias = "clip-sample-range", value_name = "R|off", value_parser = parse_clip)]
    pub clip_sample: Option<Clip>,
    /// Training beta schedule: linear, scaled_linear or squaredcos_cap_v2. Default: the model's, else linear.
    #[arg(long, value_enum)]
    pub beta_schedule: Option<BetaKind>,
    /// First beta of a linear or scaled_linear schedule.
    #[arg(long)]
    pub beta_start: Option<f64>,
    /// Last beta of a linear or scaled_linear schedule.
    #[arg(long)]
    pub beta_end: Option<f64>,
    /// Training timesteps T.
    #[arg(long, visible_alias = "num-train-timesteps")]
    pub train_steps: Option<usize>,
    /// Explicit training betas, a 1-D .npy of length T.
    #[arg(long)]
    pub trained_betas: Option<PathBuf>,
    /// Rescale the schedule to zero terminal SNR (Lin et al. 2023).
    #[arg(long, visible_alias = "rescale-betas-zero-snr")]
    pub zero_snr: bool,
    /// How to run the update: fused into the UNet's final convolution (where valid and that convolution keeps
    /// the device's own kernel; else `fused`), as one kernel after the UNet, or as a chain of elementwise kernels.
    #[arg(long, value_enum, default_value_t = UpdateArg::Epilogue)]
    pub update: UpdateArg,
    /// Shorthand for --update unfused.
    #[arg(long)]
    pub unfused: bool,
    /// Most images per GPU batch (larger requests are split; default: what the device's limits allow).
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// No progress bar.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// The flags of the sampler's noise and x0 rules beyond clipping: `sample`, `interpolate` and `profile` take
/// them; `invert` is deterministic and, like diffusers' DDIMInverseScheduler, clips only.
#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Sampling")]
pub struct NoiseArgs {
    /// eta: 0 is deterministic DDIM, 1 the DDPM variance.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub eta: f64,
    /// The paper's sigma-hat (DDPM posterior with variance beta_t, x0 clipped to [-1, 1]); replaces eta.
    #[arg(long)]
    pub sigma_hat: bool,
    /// Dynamic thresholding of x0: quantile ratio and maximum (diffusers' dynamic_thresholding_ratio and
    /// sample_max_value), e.g. 0.995,1.5; or `off`. Default: the model's, else off.
    #[arg(long, value_name = "RATIO,MAX|off", value_parser = parse_threshold)]
    pub threshold: Option<ThresholdArg>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum UpdateArg {
    Epilogue,
    Fused,
    Unfused,
}

/// diffusers' `prediction_type` values (`v` also names v-prediction).
#[derive(Clone, Copy, ValueEnum)]
pub enum PredictionArg {
    Epsilon,
    #[value(name = "v_prediction", alias = "v")]
    V,
    Sample,
}

/// diffusers' `beta_schedule` values (the hyphenated spellings are aliases).
#[derive(Clone, Copy, ValueEnum)]
pub enum BetaKind {
    Linear,
    #[value(name = "scaled_linear", alias = "scaled-linear")]
    ScaledLinear,
    #[value(name = "squaredcos_cap_v2", alias = "squaredcos-cap-v2")]
    SquaredcosCapV2,
}

/// `--clip-sample`: a range, or off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    Off,
    Range(f32),
}

/// `--threshold`: a ratio and maximum, or off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThresholdArg {
    Off,
    On(Threshold),
}

pub fn parse_spacing(s: &str) -> Result<Spacing, String> {
    s.parse().map_err(|e: ddim_wgpu::Error| e.to_string())
}

pub fn parse_clip(s: &str) -> Result<Clip, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" | "false" | "none" => Ok(Clip::Off),
        "true" | "on" => Ok(Clip::Range(1.0)),
        r => match r.parse::<f32>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(Clip::Range(v)),
            _ => Err(format!("`{s}` is not a positive range or `off`")),
        },
    }
}

pub fn parse_threshold(s: &str) -> Result<ThresholdArg, String> {
    if matches!(s.trim().to_ascii_lowercase().as_str(), "off" | "false" | "none") {
        return Ok(ThresholdArg::Off);
    }
    let (r, m) = s.split_once(',').ok_or("expected RATIO,MAX, e.g. 0.995,1.5, or off")?;
    let ratio: f32 = r.trim().parse().map_err(|_| format!("`{r}` is not a number"))?;
    let max_value: f32 = m.trim().parse().map_err(|_| format!("`{m}` is not a number"))?;
    if !(0.0..=1.0).contains(&ratio) || max_value.is_nan() || max_value < 1.0 {
        return Err(format!("ratio {ratio} must lie in [0, 1] and max {max_value} be >= 1"));
    }
    Ok(ThresholdArg::On(Threshold { ratio, max_value }))
}

/// The clip and threshold after `--clip-sample` and `--threshold` over a model's (`base`): a flag sets its own
/// rule, and a range or a threshold given replaces the other (diffusers applies one or the other); both given is
/// refused.
pub fn x0_rules(
    clip: Option<Clip>,
    threshold: Option<ThresholdArg>,
    (base_clip, base_threshold): (Option<f32>, Option<Threshold>),
) -> Result<(Option<f32>, Option<Threshold>)> {
    Ok(match (clip, threshold) {
        (Some(Clip::Range(_)), Some(ThresholdArg::On(_))) => bail!(
            "--clip-sample and --threshold exclude each other (diffusers applies one or the other)"
        ),
        (Some(Clip::Range(r)), _) => (Some(r), None),
        (_, Some(ThresholdArg::On(t))) => (None, Some(t)),
        (c, t) => (
            if c == Some(Clip::Off) { None } else { base_clip },
            if t == Some(ThresholdArg::Off) { None } else { base_threshold },
        ),
    })
}

/// The sampler settings: the model's training schedule and sampling defaults, overridden by flags. `noise` is
/// `None` for inversion (eta 0, no thresholding).
pub fn settings(
    args: &StepArgs,
    noise: Option<&NoiseArgs>,
    training: Option<&Training>,
) -> Result<SamplerSettings> {
    let base = default_settings(training);
    let mut schedule = base.schedule.clone();
    if let Some(t) = args.train_steps {
        schedule.train_steps = t;
    }
    let (old_start, old_end) = match schedule.betas {
        BetaSchedule::Linear { start, end } | BetaSchedule::ScaledLinear { start, end } => {
            (start, end)
        }
        _ => (1e-4, 0.02),
    };
    let (start, end) = (args.beta_start.unwrap_or(old_start), args.beta_end.unwrap_or(old_end));
    schedule.betas = match (args.beta_schedule, &args.trained_betas) {
        (Some(_), Some(_)) => bail!("--beta-schedule and --trained-betas exclude each other"),
        (_, Some(path)) => {
            let b = read_npy(path)?;
            if b.shape.len() != 1 {
                bail!(
                    "{}: betas of shape {:?}; --trained-betas takes a 1-D array, one beta per training step",
                    path.display(),
                    b.shape
                );
            }
            schedule.train_steps = args.train_steps.unwrap_or(b.data.len());
            BetaSchedule::Trained { betas: b.data.iter().map(|&v| v as f64).collect() }
        }
        (Some(BetaKind::Linear), None) => BetaSchedule::Linear { start, end },
        (Some(BetaKind::ScaledLinear), None) => BetaSchedule::ScaledLinear { start, end },
        (Some(BetaKind::SquaredcosCapV2), None) => BetaSchedule::SquaredcosCapV2,
        (None, None) => match schedule.betas {
            BetaSchedule::Linear { .. } => BetaSchedule::Linear { start, end },
            BetaSchedule::ScaledLinear { .. } => BetaSchedule::ScaledLinear { start, end },
            other => {
                if args.beta_start.is_some() || args.beta_end.is_some() {
                    bail!(
                        "--beta-start/--beta-end apply to linear and scaled_linear schedules only"
                    );
                }
                other
            }
        },
    };
    schedule.zero_snr |= args.zero_snr;
    if args.max_batch == Some(0) {
        bail!("--max-batch 0: a batch holds one image or more");
    }
    let threshold_arg = noise.and_then(|n| n.threshold);
    let (clip, threshold) = x0_rules(args.clip_sample, threshold_arg, (base.clip, base.threshold))?;
    let settings = SamplerSettings {
        schedule,
        steps: args.steps,
        spacing: args.spacing.unwrap_or(base.spacing),
        steps_offset: args.steps_offset.unwrap_or(base.steps_offset),
        set_alpha_to_one: args.set_alpha_to_one.unwrap_or(base.set_alpha_to_one),
        eta: noise.map_or(0.0, |n| n.eta),
        sigma_hat: noise.is_some_and(|n| n.sigma_hat),
        prediction: match args.prediction {
            Some(PredictionArg::Epsilon) => Prediction::Epsilon,
            Some(PredictionArg::V) => Prediction::V,
            Some(PredictionArg::Sample) => Prediction::Sample,
            None => base.prediction,
        },
        clip,
        threshold: if noise.is_some() { threshold } else { None },
        mode: match (args.unfused, args.update) {
            (true, _) | (_, UpdateArg::Unfused) => UpdateMode::Unfused,
            (false, UpdateArg::Fused) => UpdateMode::Fused,
            (false, UpdateArg::Epilogue) => UpdateMode::Epilogue,
        },
    };
    // Every impossible combination is refused here, before a device is opened or any output touched.
    check_settings(&settings)?;
    Ok(settings)
}

/// `"s"` unless there is one.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The model at `model` (our weights file or a diffusers directory), or the default model built into the binary.
/// A diffusers `config.json` alone is refused with what it is good for.
pub fn open_model(model: Option<&Path>) -> Result<Weights> {
    match model {
        Some(path) if path.is_file() && path.extension().is_some_and(|e| e == "json") => bail!(
            "{}: a config alone gives random weights, which only `ddim profile` takes (for timings); sample \
             with a model: our weights file or a diffusers directory",
            path.display()
        ),
        Some(path) => Ok(load_model(path)?),
        None => Weights::from_bytes(DEFAULT_MODEL_BYTES)
            .context("the default model built into ddim (weights/default.safetensors)"),
    }
}

/// A progress bar over `total` steps on a terminal; hidden when stderr is not a terminal or with --quiet.
fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {per_sec}  ETA {eta}")
            .expect("a valid template"),
    );
    bar
}

/// A progress bar over a pipeline run's steps, made when the run reports its size; with a note where the run is
/// split into batches.
pub struct Bar {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Bar {
    /// A bar shown on a terminal unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Bar { quiet, bar: None }
    }

    /// Moves the bar to `p`.
    pub fn update(&mut self, p: Progress) {
        let quiet = self.quiet;
        let bar = self.bar.get_or_insert_with(|| {
            if p.batches > 1 && !quiet {
                eprintln!(
                    "note: {} images run in {} batches of at most {} (--max-batch, or the device's storage-binding \
                     limit); the images do not depend on the split",
                    p.images, p.batches, p.batch_size
                );
            }
            progress_bar(p.total as u64, quiet)
        });
        bar.set_position(p.done as u64);
    }

    /// Clears the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The `[C, H, W]` of one image of `weights`' model.
pub fn image_shape(weights: &Weights) -> [usize; 3] {
    let c = &weights.config;
    [c.in_channels, c.sample_size, c.sample_size]
}

/// A batch of `what` (latents, images) from a `.npy` file, refused unless it is `[N, C, H, W]` with `shape` as
/// `[C, H, W]`.
pub fn read_batch(path: &Path, shape: [usize; 3], what: &str) -> Result<NpyArray> {
    let a = read_npy(path)?;
    if a.shape.len() != 4 || a.shape[1..] != shape {
        bail!(
            "{}: {what} of shape {:?}; the model takes [N, {}, {}, {}]",
            path.display(),
            a.shape,
            shape[0],
            shape[1],
            shape[2]
        );
    }
    Ok(a)
}

/// The PNG output of a command that writes images: `given`, else `default` where the model's images have 1
/// or 3 channels. Images of other channel counts cannot be PNG: asking for one is refused, and without a PNG
/// the command must write `.npy` (`npy_given`). Checked before any work.
pub fn png_output(
    given: Option<&PathBuf>,
    default: &str,
    channels: usize,
    npy_given: bool,
) -> Result<Option<PathBuf>> {
    match given {
        Some(path) => {
            refuse_png(path, channels)?;
            Ok(Some(path.clone()))
        }
        None if png_channels(channels) => Ok(Some(default.into())),
        None if npy_given => Ok(None),
        None => bail!(
            "the model's images have {channels} channels, which PNG cannot hold (1: grey, 3: RGB): pass --out-npy \
             FILE"
        ),
    }
}

/// Refuses PNG output at `path` for images of `channels` channels, unless that is 1 or 3.
pub fn refuse_png(path: &Path, channels: usize) -> Result<()> {
    if !png_channels(channels) {
        bail!(
            "{}: the model's images have {channels} channels, and PNG holds 1 (grey) or 3 (RGB); write them with \
             --out-npy",
            path.display()
        );
    }
    Ok(())
}

fn png_channels(channels: usize) -> bool {
    channels == 1 || channels == 3
}
