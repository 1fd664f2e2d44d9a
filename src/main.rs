//! The `ddim` command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use ddim_wgpu::gpu::profiler::{chrome_trace, kernel_table};
use ddim_wgpu::gpu::{
    DeviceOptions, Fault, Gpu, describe, enumerate_adapters, parse_backend, parse_switch,
};
use ddim_wgpu::graph::{plan::Plan, unet};
use ddim_wgpu::io::{
    OutputSet, check_outputs, check_writable, npy_bytes, png_bytes, png_grid_bytes, read_image,
    read_npy, write_atomic, write_npy,
};
use ddim_wgpu::model::convert::{from_diffusers_dir, from_original, load_model};
use ddim_wgpu::model::weights::{StorageDtype, Training, Weights};
use ddim_wgpu::ops::KernelChoice;
use ddim_wgpu::ops::ddim::{Prediction, Threshold, UpdateMode};
use ddim_wgpu::sampler::ddim::{Sampler, SamplerSettings, StepNoise, latents, plan_steps, slerp};
use ddim_wgpu::sampler::schedule::{BetaSchedule, TrainingSchedule};
use ddim_wgpu::sampler::timesteps::Spacing;

/// Where `ddim sample` looks for a model when --model is not given.
const DEFAULT_MODEL: &str = "weights/default.safetensors";

#[derive(Parser)]
#[command(
    name = "ddim",
    version,
    about = "DDIM sampling on any GPU with hand-written WGSL kernels"
)]
struct Cli {
    /// Backend: vulkan, metal, dx12 or gl. Default: every backend (or WGPU_BACKEND).
    #[arg(long, global = true, env = "DDIM_BACKEND", value_parser = parse_backend_arg)]
    backend: Option<wgpu::Backend>,

    /// Use the adapter whose name contains this text (case-insensitive).
    #[arg(long, global = true, env = "DDIM_ADAPTER")]
    adapter: Option<String>,

    /// Kernel variants: auto (the family for the adapter's kind, CPU or GPU), baseline (one portable kernel
    /// per operation; the reference point for comparisons), cpu (barrier-free, uniform-window kernels) or gpu
    /// (shared-memory tiles), whatever the adapter.
    #[arg(long, global = true, env = "DDIM_KERNELS", default_value = "auto", value_parser = parse_kernels_arg)]
    kernels: KernelChoice,

    /// Whether the cpu family runs 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) where it pays (on), or
    /// always with the direct kernel conv2d_3x3 (off), to compare the two.
    #[arg(long, global = true, env = "DDIM_WINOGRAD", default_value = "on", value_parser = parse_switch_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    winograd: bool,

    /// Whether the cpu family reads activations through 64 KiB uniform windows where it can (on: conv2d_1x1,
    /// the windowed Winograd products), or always from storage (off), to compare the two.
    #[arg(long, global = true, env = "DDIM_INPUT_WINDOWS", default_value = "on", value_parser = parse_input_windows_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    input_windows: bool,

    /// Whether the gpu family's tiled kernels split their reductions (a convolution's K, an attention's keys)
    /// over several workgroups on small maps (on), or not (off), to compare the two.
    #[arg(long, global = true, env = "DDIM_SPLIT_K", default_value = "on", value_parser = parse_split_k_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    split_k: bool,

    /// Open the device with at most this storage-binding size, in bytes (a multiple of 4): what a smaller
    /// device allows, to see batches split on a large one.
    #[arg(long, global = true, env = "DDIM_MAX_BINDING")]
    max_binding: Option<u64>,

    /// For testing error handling: inject a GPU fault, `invalid-dispatch:<node>` or
    /// `lose-device:<submission>` (e.g. `lose-device:sampling step 2`).
    #[arg(long, global = true, env = "DDIM_INJECT_FAULT", hide = true, value_parser = parse_fault_arg)]
    inject_fault: Option<Fault>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters, and the features and limits of the one that would be used.
    Info {
        /// Also measure the roofline: attainable f32 FMA rate and shader copy bandwidth.
        #[arg(long)]
        roofline: bool,
    },
    /// Sample with GPU timestamps around every dispatch: a per-kernel table against the measured roofline,
    /// wall and GPU time, and optionally a Chrome trace.
    Profile {
        /// Our weights file, a diffusers directory, or a diffusers config.json (random weights, for timing).
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Images per batch.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// The seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write a Chrome trace (open in <https://ui.perfetto.dev> or chrome://tracing).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Write the table and the roofs as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Convert a model into our weights file: a diffusers UNet2DModel directory (config.json with
    /// diffusion_pytorch_model.safetensors or .bin), or an original DDPM/DDIM checkpoint with --config.
    Convert {
        /// The diffusers directory, or the original checkpoint (.ckpt).
        src: PathBuf,
        /// The official DDIM repository's YAML config, for an original checkpoint.
        #[arg(long)]
        config: Option<PathBuf>,
        /// How to store the tensors.
        #[arg(long, value_enum, default_value_t = Dtype::F32)]
        dtype: Dtype,
        /// Where to write the weights file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the UNet once on the GPU: eps = UNet(x, t).
    Eval {
        /// Our weights file, or a diffusers directory (converted on the fly).
        #[arg(long)]
        model: PathBuf,
        /// The input, float32 NCHW .npy.
        #[arg(long)]
        input: PathBuf,
        /// One timestep for every image.
        #[arg(
            long,
            conflicts_with = "timesteps",
            required_unless_present = "timesteps"
        )]
        timestep: Option<f32>,
        /// One timestep per image (or one for all): int64 or float .npy.
        #[arg(long)]
        timesteps: Option<PathBuf>,
        /// Where to write the output, float32 .npy.
        #[arg(long)]
        out: PathBuf,
        /// Also write every block's output here as `<block>.npy`.
        #[arg(long)]
        dump_dir: Option<PathBuf>,
    },
    /// Sample images with DDIM. Image k depends only on (seed, k): never on the batch size or the shard.
    Sample {
        /// Our weights file, or a diffusers directory.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[command(flatten)]
        request: SampleRequest,
    },
    /// Encode images into latents x_T by DDIM inversion (eta = 0).
    Invert {
        /// Our weights file, or a diffusers directory.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// The images (PNG, JPEG, ...); each becomes one latent. A `.npy` file holds a batch of images already in
        /// the model's range: float [N, C, H, W] in [-1, 1], e.g. a held-out set.
        #[arg(long = "image", required = true)]
        images: Vec<PathBuf>,
        /// Resize images whose size differs from the model's (otherwise they are refused).
        #[arg(long)]
        resize: bool,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Where to write the latents, float32 [N, C, H, W].
        #[arg(long)]
        out: PathBuf,
    },
    /// Concatenate .npy outputs of shards (e.g. --out-npy of each `--shard i/n`) along the first axis, in order.
    Merge {
        /// The shard files, in shard order.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The merged file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Interpolate (slerp) between two latents and sample the frames, as a one-row strip.
    Interpolate {
        /// Our weights file, or a diffusers directory.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// Two seeds whose latents are the endpoints (image 0 of each).
        #[arg(
            long,
            value_delimiter = ',',
            conflicts_with = "latents",
            required_unless_present = "latents"
        )]
        seeds: Vec<u64>,
        /// Two latent files (e.g. from `ddim invert`); the first image of each is an endpoint.
        #[arg(long, value_delimiter = ',')]
        latents: Vec<PathBuf>,
        /// Frames, endpoints included.
        #[arg(long, default_value_t = 8)]
        frames: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// The PNG strip.
        #[arg(long, default_value = "interpolation.png")]
        out: PathBuf,
        /// Also the frames as float32 [F, C, H, W].
        #[arg(long)]
        out_npy: Option<PathBuf>,
    },
}

/// The sampler's settings. Schedule defaults come from the model file when it records them.
#[derive(clap::Args, Clone)]
struct SamplingArgs {
    /// Sampling steps S.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// eta: 0 is deterministic DDIM, 1 the DDPM variance.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    eta: f64,
    /// The paper's sigma-hat (DDPM posterior with variance beta_t, x0 clipped to [-1, 1]); replaces eta.
    #[arg(long)]
    sigma_hat: bool,
    /// Timestep spacing: leading, linspace, trailing (diffusers) or uniform, quad (official DDIM code).
    #[arg(long, default_value = "leading", value_parser = parse_spacing)]
    spacing: Spacing,
    /// Added to every timestep (diffusers' steps_offset). Default: the model's, else 0.
    #[arg(long)]
    steps_offset: Option<usize>,
    /// Past the last timestep use a = 1 (true) or a_0 (false). Default: the model's, else true.
    #[arg(long)]
    set_alpha_to_one: Option<bool>,
    /// What the model predicts. Default: the model's, else epsilon.
    #[arg(long, value_enum)]
    prediction: Option<PredictionArg>,
    /// Clip the predicted x0 to [-R, R]. Off by default (diffusers' DDIMScheduler clips at 1 by default).
    #[arg(long, value_name = "R")]
    clip_sample: Option<f32>,
    /// Dynamic thresholding of x0: quantile ratio and maximum, e.g. 0.995,1.5.
    #[arg(long, value_name = "RATIO,MAX", value_parser = parse_threshold)]
    threshold: Option<Threshold>,
    /// Training beta schedule. Default: the model's, else linear.
    #[arg(long, value_enum)]
    beta_schedule: Option<BetaKind>,
    /// First beta of a linear or scaled_linear schedule.
    #[arg(long)]
    beta_start: Option<f64>,
    /// Last beta of a linear or scaled_linear schedule.
    #[arg(long)]
    beta_end: Option<f64>,
    /// Training timesteps T.
    #[arg(long)]
    train_steps: Option<usize>,
    /// Explicit training betas, a 1-D .npy of length T.
    #[arg(long)]
    trained_betas: Option<PathBuf>,
    /// Rescale the schedule to zero terminal SNR (Lin et al. 2023).
    #[arg(long)]
    zero_snr: bool,
    /// How to run the update: fused into the UNet's final convolution (where valid; else `fused`), as one
    /// kernel after the UNet, or as a chain of elementwise kernels.
    #[arg(long, value_enum, default_value_t = UpdateArg::Epilogue)]
    update: UpdateArg,
    /// Shorthand for --update unfused.
    #[arg(long)]
    unfused: bool,
    /// Most images per GPU batch (larger requests are split; default: what the device's limits allow).
    #[arg(long)]
    max_batch: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum UpdateArg {
    Epilogue,
    Fused,
    Unfused,
}

#[derive(Clone, Copy, ValueEnum)]
enum PredictionArg {
    Epsilon,
    V,
    Sample,
}

#[derive(Clone, Copy, ValueEnum)]
enum BetaKind {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
}

/// `--shard i/n`.
#[derive(Clone, Copy, Debug)]
struct Shard {
    index: usize,
    count: usize,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    let (i, n) = s.split_once('/').ok_or("expected i/n, e.g. 0/4")?;
    let index: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("`{i}` is not a shard index"))?;
    let count: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("`{n}` is not a shard count"))?;
    if count == 0 || index >= count {
        return Err(format!("shard {index}/{count}: need 0 <= i < n"));
    }
    Ok(Shard { index, count })
}

fn parse_spacing(s: &str) -> Result<Spacing, String> {
    s.parse().map_err(|e: ddim_wgpu::Error| e.to_string())
}

fn parse_threshold(s: &str) -> Result<Threshold, String> {
    let (r, m) = s
        .split_once(',')
        .ok_or("expected RATIO,MAX, e.g. 0.995,1.5")?;
    let ratio: f32 = r
        .trim()
        .parse()
        .map_err(|_| format!("`{r}` is not a number"))?;
    let max_value: f32 = m
        .trim()
        .parse()
        .map_err(|_| format!("`{m}` is not a number"))?;
    if !(0.0..=1.0).contains(&ratio) || max_value.is_nan() || max_value < 1.0 {
        return Err(format!(
            "ratio {ratio} must lie in [0, 1] and max {max_value} be >= 1"
        ));
    }
    Ok(Threshold { ratio, max_value })
}

#[derive(Clone, Copy, ValueEnum)]
enum Dtype {
    F32,
    F16,
}

fn parse_fault_arg(s: &str) -> Result<Fault, String> {
    s.parse().map_err(|e: ddim_wgpu::Error| e.to_string())
}

fn parse_kernels_arg(s: &str) -> Result<KernelChoice, String> {
    s.parse().map_err(|e: ddim_wgpu::Error| e.to_string())
}

fn parse_switch_arg(s: &str) -> Result<bool, String> {
    parse_switch("--winograd", s).map_err(|e| e.to_string())
}

fn parse_input_windows_arg(s: &str) -> Result<bool, String> {
    parse_switch("--input-windows", s).map_err(|e| e.to_string())
}

fn parse_split_k_arg(s: &str) -> Result<bool, String> {
    parse_switch("--split-k", s).map_err(|e| e.to_string())
}

fn parse_backend_arg(s: &str) -> Result<wgpu::Backend, String> {
    parse_backend(s).map_err(|e| e.to_string())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // One line: the chain of contexts, outermost first.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let options = DeviceOptions {
        backend: cli.backend,
        adapter: cli.adapter.filter(|s| !s.trim().is_empty()),
        kernels: cli.kernels,
        winograd: cli.winograd,
        input_windows: cli.input_windows,
        split_k: cli.split_k,
        max_binding: cli.max_binding,
        fault: cli.inject_fault,
    };
    match cli.command {
        Command::Info { roofline } => info(&options, roofline),
        Command::Profile {
            model,
            sampling,
            batch,
            seed,
            trace,
            json,
        } => profile(
            &options,
            &model,
            &sampling,
            batch,
            seed,
            trace.as_deref(),
            json.as_deref(),
        ),
        Command::Convert {
            src,
            config,
            dtype,
            out,
        } => convert(&src, config.as_deref(), dtype, &out),
        Command::Eval {
            model,
            input,
            timestep,
            timesteps,
            out,
            dump_dir,
        } => eval(
            &options,
            &model,
            &input,
            timestep,
            timesteps.as_deref(),
            &out,
            dump_dir.as_deref(),
        ),
        Command::Sample {
            model,
            sampling,
            request,
        } => sample(&options, &model, &sampling, request),
        Command::Invert {
            model,
            images,
            resize,
            sampling,
            out,
        } => invert(&options, &model, &images, resize, &sampling, &out),
        Command::Merge { inputs, out } => merge(&inputs, &out),
        Command::Interpolate {
            model,
            seeds,
            latents,
            frames,
            sampling,
            out,
            out_npy,
        } => interpolate(
            &options,
            &model,
            &seeds,
            &latents,
            frames,
            &sampling,
            &out,
            out_npy.as_deref(),
        ),
    }
}

/// The sampler settings: the model's training schedule, overridden by flags.
fn settings(args: &SamplingArgs, training: Option<&Training>) -> Result<SamplerSettings> {
    let base = training.cloned().unwrap_or_default();
    let mut schedule: TrainingSchedule = base.schedule.clone();
    if let Some(t) = args.train_steps {
        schedule.train_steps = t;
    }
    let (old_start, old_end) = match schedule.betas {
        BetaSchedule::Linear { start, end } | BetaSchedule::ScaledLinear { start, end } => {
            (start, end)
        }
        _ => (1e-4, 0.02),
    };
    let (start, end) = (
        args.beta_start.unwrap_or(old_start),
        args.beta_end.unwrap_or(old_end),
    );
    schedule.betas = match (args.beta_schedule, &args.trained_betas) {
        (Some(_), Some(_)) => bail!("--beta-schedule and --trained-betas exclude each other"),
        (_, Some(path)) => {
            let b = read_npy(path)?;
            schedule.train_steps = args.train_steps.unwrap_or(b.data.len());
            BetaSchedule::Trained {
                betas: b.data.iter().map(|&v| v as f64).collect(),
            }
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
    if args.clip_sample.is_some() && args.threshold.is_some() {
        bail!(
            "--clip-sample and --threshold exclude each other (diffusers applies one or the other)"
        );
    }
    if let Some(r) = args.clip_sample
        && !(r > 0.0 && r.is_finite())
    {
        bail!("--clip-sample {r}: the range must be positive");
    }
    let settings = SamplerSettings {
        schedule,
        steps: args.steps,
        spacing: args.spacing,
        steps_offset: args.steps_offset.unwrap_or(base.steps_offset),
        set_alpha_to_one: args.set_alpha_to_one.unwrap_or(base.set_alpha_to_one),
        eta: args.eta,
        sigma_hat: args.sigma_hat,
        prediction: match args.prediction {
            Some(PredictionArg::Epsilon) => Prediction::Epsilon,
            Some(PredictionArg::V) => Prediction::V,
            Some(PredictionArg::Sample) => Prediction::Sample,
            None => base.prediction,
        },
        clip: args.clip_sample,
        threshold: args.threshold,
        mode: match (args.unfused, args.update) {
            (true, _) | (_, UpdateArg::Unfused) => UpdateMode::Unfused,
            (false, UpdateArg::Fused) => UpdateMode::Fused,
            (false, UpdateArg::Epilogue) => UpdateMode::Epilogue,
        },
    };
    // Every impossible combination is refused here, before a device is opened or any output touched.
    plan_steps(&settings)?;
    Ok(settings)
}

fn open_model(model: &Path) -> Result<Weights> {
    if !model.exists() && model == Path::new(DEFAULT_MODEL) {
        bail!(
            "no model at {DEFAULT_MODEL} (the default model is not in this checkout yet); pass --model with our \
             weights file or a diffusers directory"
        );
    }
    load_model(model).with_context(|| format!("loading {}", model.display()))
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

/// Samples `x_t` (n images starting at global index `first_image`) in batches the device can hold.
#[allow(clippy::too_many_arguments)] // the pieces of one sampling run
fn run_sampler(
    gpu: &Gpu,
    weights: &Weights,
    settings: &SamplerSettings,
    args: &SamplingArgs,
    x_t: &[f32],
    first_image: usize,
    seed: u64,
    noise: Option<(&[f32], usize)>,
) -> Result<Vec<f32>> {
    let graph = unet::build(&weights.config)?;
    let uploaded = weights.upload(gpu)?;
    let sampler = Sampler::new(gpu, &graph, &uploaded, settings.clone())?;
    for w in &sampler.warnings {
        eprintln!("warning: {w}");
    }
    let c = &weights.config;
    let per = c.in_channels * c.sample_size * c.sample_size;
    let n = x_t.len() / per;
    let steps = sampler.steps().len();
    let chunk = args
        .max_batch
        .unwrap_or(usize::MAX)
        .min(sampler.max_batch()?)
        .max(1);
    in_chunks(n, chunk, steps, args.quiet, |start, b, progress| {
        let first = u32::try_from(first_image + start).context("image index exceeds 2^32")?;
        // The given noise is [S, N_total, ...]: gather this chunk's images for every step.
        let gathered: Option<Vec<f32>> = noise.map(|(z, total)| {
            (0..steps)
                .flat_map(|s| {
                    let from = (s * total + first_image + start) * per;
                    z[from..from + b * per].iter().copied()
                })
                .collect()
        });
        let step_noise = match &gathered {
            Some(z) => StepNoise::Given(z),
            None => StepNoise::Philox(seed),
        };
        Ok(sampler.sample(
            &x_t[start * per..(start + b) * per],
            b,
            first,
            step_noise,
            progress,
        )?)
    })
}

/// Runs `n` images in chunks of at most `chunk` (what the device holds), with one progress bar over all the
/// steps; `run(start, count, progress)` handles images `start .. start + count`. The outputs are concatenated.
fn in_chunks(
    n: usize,
    chunk: usize,
    steps: usize,
    quiet: bool,
    mut run: impl FnMut(usize, usize, &mut dyn FnMut(usize)) -> Result<Vec<f32>>,
) -> Result<Vec<f32>> {
    if n > chunk && !quiet {
        eprintln!(
            "note: {n} images run in {} batches of at most {chunk} (--max-batch, or the device's storage-binding \
             limit); the images do not depend on the split",
            n.div_ceil(chunk)
        );
    }
    let bar = progress_bar((n.div_ceil(chunk) * steps) as u64, quiet);
    let mut out = Vec::new();
    for (k, start) in (0..n).step_by(chunk).enumerate() {
        let done = (k * steps) as u64;
        out.extend(run(start, chunk.min(n - start), &mut |i| {
            bar.set_position(done + i as u64)
        })?);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// What `ddim sample` makes and where it writes it.
#[derive(clap::Args)]
struct SampleRequest {
    /// Images to make (all shards together). Default 16, or the number of latents given.
    #[arg(long)]
    batch: Option<usize>,
    /// The seed of the latents and of the step noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Start from these latents x_T ([N, C, H, W] .npy, e.g. from `ddim invert`) instead of the seed's.
    #[arg(long)]
    latent: Option<PathBuf>,
    /// Use this step noise ([S, N, C, H, W] .npy) instead of Philox's, for comparison with other code.
    #[arg(long)]
    noise: Option<PathBuf>,
    /// Make only shard i of n (images i*N/n .. (i+1)*N/n): n machines together make the N images one would.
    #[arg(long, value_parser = parse_shard, value_name = "i/n")]
    shard: Option<Shard>,
    /// The PNG grid of this run's images.
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    /// Also one PNG per image here, named by its global index (000000.png, ...).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Also the samples as float32 [N, C, H, W], before any clamp or rescale.
    #[arg(long)]
    out_npy: Option<PathBuf>,
    /// Also the starting latents x_T as float32 [N, C, H, W].
    #[arg(long)]
    save_latents: Option<PathBuf>,
}

fn sample(
    options: &DeviceOptions,
    model: &Path,
    args: &SamplingArgs,
    req: SampleRequest,
) -> Result<()> {
    let weights = open_model(model)?;
    let settings = settings(args, weights.training.as_ref())?;
    check_outputs(
        &[
            Some(&req.out),
            req.out_npy.as_ref(),
            req.save_latents.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect::<Vec<_>>(),
    )?;
    let c = &weights.config;
    let shape = [c.in_channels, c.sample_size, c.sample_size];
    let per: usize = shape.iter().product();
    // All images of the run (every shard), then this shard's slice.
    let (total, given_latents) = match &req.latent {
        Some(path) => {
            let l = read_npy(path)?;
            if l.shape.len() != 4 || l.shape[1..] != shape {
                bail!(
                    "{}: latents of shape {:?}; the model takes [N, {}, {}, {}]",
                    path.display(),
                    l.shape,
                    shape[0],
                    shape[1],
                    shape[2]
                );
            }
            if let Some(b) = req.batch
                && b != l.shape[0]
            {
                bail!(
                    "--batch {b} but {} holds {} latents",
                    path.display(),
                    l.shape[0]
                );
            }
            (l.shape[0], Some(l.data))
        }
        None => (req.batch.unwrap_or(16), None),
    };
    if total == 0 {
        bail!("--batch 0: nothing to sample");
    }
    let shard = req.shard.unwrap_or(Shard { index: 0, count: 1 });
    if shard.count > total {
        bail!(
            "--shard {}/{}: more shards than the {total} images",
            shard.index,
            shard.count
        );
    }
    let (lo, hi) = (
        shard.index * total / shard.count,
        (shard.index + 1) * total / shard.count,
    );
    let n = hi - lo;
    let x_t = match given_latents {
        Some(all) => all[lo * per..hi * per].to_vec(),
        None => latents(
            req.seed,
            u32::try_from(lo).context("image index exceeds 2^32")?,
            n,
            per,
        ),
    };
    let noise = match &req.noise {
        Some(path) => {
            let z = read_npy(path)?;
            let expected = [settings.steps, total, shape[0], shape[1], shape[2]];
            if z.shape.len() != 5 || z.shape[1..] != expected[1..] {
                bail!(
                    "{}: noise of shape {:?}; expected [S, {total}, {}, {}, {}]",
                    path.display(),
                    z.shape,
                    shape[0],
                    shape[1],
                    shape[2]
                );
            }
            Some(z)
        }
        None => None,
    };
    let gpu = Gpu::new(options).context("opening a device")?;
    let start = std::time::Instant::now();
    let result = run_sampler(
        &gpu,
        &weights,
        &settings,
        args,
        &x_t,
        lo,
        req.seed,
        noise.as_ref().map(|z| (z.data.as_slice(), total)),
    )?;
    let elapsed = start.elapsed();

    let dims = [n, shape[0], shape[1], shape[2]];
    let cols = (n as f64).sqrt().ceil() as usize;
    let mut outputs = OutputSet::default();
    outputs.stage(&req.out, &png_grid_bytes(&req.out, &result, dims, cols)?)?;
    if let Some(dir) = &req.out_dir {
        outputs.create_dir(dir)?;
        for k in 0..n {
            let path = dir.join(format!("{:06}.png", lo + k));
            let bytes = png_bytes(&path, &result[k * per..(k + 1) * per], shape)?;
            outputs.stage(&path, &bytes)?;
        }
    }
    if let Some(path) = &req.out_npy {
        outputs.stage(path, &npy_bytes(path, &dims, &result)?)?;
    }
    if let Some(path) = &req.save_latents {
        outputs.stage(path, &npy_bytes(path, &dims, &x_t)?)?;
    }
    outputs.commit()?;
    let noise = if settings.sigma_hat {
        "sigma-hat".to_string()
    } else {
        format!("eta {}", settings.eta)
    };
    println!(
        "wrote {} ({n} images {lo}..{hi} of {total}, {} steps, {noise}) in {:.1?}",
        req.out.display(),
        settings.steps,
        elapsed
    );
    Ok(())
}

fn merge(inputs: &[PathBuf], out: &Path) -> Result<()> {
    let mut shape: Option<Vec<usize>> = None;
    let mut data = Vec::new();
    for path in inputs {
        let a = read_npy(path)?;
        if a.shape.is_empty() {
            bail!("{}: a scalar cannot be concatenated", path.display());
        }
        match &mut shape {
            None => shape = Some(a.shape.clone()),
            Some(s) if s[1..] == a.shape[1..] => s[0] += a.shape[0],
            Some(s) => bail!(
                "{}: shape {:?} does not continue {:?} along the first axis",
                path.display(),
                a.shape,
                s
            ),
        }
        data.extend(a.data);
    }
    let shape = shape.expect("clap requires one input");
    write_npy(out, &shape, &data)?;
    println!(
        "wrote {} {shape:?} from {} files",
        out.display(),
        inputs.len()
    );
    Ok(())
}

fn invert(
    options: &DeviceOptions,
    model: &Path,
    images: &[PathBuf],
    resize: bool,
    args: &SamplingArgs,
    out: &Path,
) -> Result<()> {
    let weights = open_model(model)?;
    let settings = SamplerSettings {
        eta: 0.0,
        ..settings(args, weights.training.as_ref())?
    };
    if args.eta != 0.0 || args.sigma_hat {
        bail!("inversion is deterministic: --eta and --sigma-hat do not apply");
    }
    check_writable(out)?;
    let c = &weights.config;
    let shape = [c.in_channels, c.sample_size, c.sample_size];
    let per: usize = shape.iter().product();
    let mut x0 = Vec::new();
    for path in images {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
        {
            let a = read_npy(path)?;
            if a.shape.len() != 4 || a.shape[1..] != shape {
                bail!(
                    "{}: images of shape {:?}; the model takes [N, {}, {}, {}]",
                    path.display(),
                    a.shape,
                    shape[0],
                    shape[1],
                    shape[2]
                );
            }
            if let Some(v) = a.data.iter().find(|v| !(-1.0..=1.0).contains(*v)) {
                bail!(
                    "{}: value {v} outside [-1, 1]: images must be scaled to the model's range",
                    path.display()
                );
            }
            x0.extend(a.data);
        } else {
            x0.extend(read_image(path, c.in_channels, c.sample_size, resize)?);
        }
    }
    let n = x0.len() / per;
    if n == 0 {
        bail!("no images to invert: the given .npy batches are empty");
    }
    let gpu = Gpu::new(options).context("opening a device")?;
    let graph = unet::build(c)?;
    let uploaded = weights.upload(&gpu)?;
    let sampler = Sampler::new(&gpu, &graph, &uploaded, settings)?;
    let steps = sampler.steps().len();
    let chunk = args
        .max_batch
        .unwrap_or(usize::MAX)
        .min(sampler.max_batch()?)
        .max(1);
    let latents_out = in_chunks(n, chunk, steps, args.quiet, |start, b, progress| {
        Ok(sampler.invert(&x0[start * per..(start + b) * per], b, progress)?)
    })?;
    write_npy(
        out,
        &[n, c.in_channels, c.sample_size, c.sample_size],
        &latents_out,
    )?;
    println!(
        "wrote {} ({n} latents, {steps} inversion steps)",
        out.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the flags of one command
fn interpolate(
    options: &DeviceOptions,
    model: &Path,
    seeds: &[u64],
    latent_files: &[PathBuf],
    frames: usize,
    args: &SamplingArgs,
    out: &Path,
    out_npy: Option<&Path>,
) -> Result<()> {
    if frames < 2 {
        bail!("--frames {frames}: need at least the two endpoints");
    }
    if seeds.len() != 2 && latent_files.len() != 2 {
        bail!("give exactly two endpoints: --seeds A,B or --latents a.npy,b.npy");
    }
    let weights = open_model(model)?;
    let settings = settings(args, weights.training.as_ref())?;
    check_outputs(
        &[Some(out), out_npy]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
    )?;
    let c = &weights.config;
    let shape = [c.in_channels, c.sample_size, c.sample_size];
    let per: usize = shape.iter().product();
    let ends: Vec<Vec<f32>> = if latent_files.is_empty() {
        seeds.iter().map(|&s| latents(s, 0, 1, per)).collect()
    } else {
        latent_files
            .iter()
            .map(|p| {
                let l = read_npy(p)?;
                if l.shape.len() != 4 || l.shape[1..] != shape {
                    bail!(
                        "{}: latents of shape {:?}; the model takes [N, {}, {}, {}]",
                        p.display(),
                        l.shape,
                        shape[0],
                        shape[1],
                        shape[2]
                    );
                }
                if l.shape[0] == 0 {
                    bail!("{}: holds no latents", p.display());
                }
                Ok(l.data[..per].to_vec())
            })
            .collect::<Result<_>>()?
    };
    let x_t: Vec<f32> = (0..frames)
        .flat_map(|f| slerp(&ends[0], &ends[1], f as f64 / (frames - 1) as f64))
        .collect();
    let gpu = Gpu::new(options).context("opening a device")?;
    let seed = seeds.first().copied().unwrap_or(0);
    let result = run_sampler(&gpu, &weights, &settings, args, &x_t, 0, seed, None)?;
    let dims = [frames, shape[0], shape[1], shape[2]];
    let mut outputs = OutputSet::default();
    outputs.stage(out, &png_grid_bytes(out, &result, dims, frames)?)?;
    if let Some(path) = out_npy {
        outputs.stage(path, &npy_bytes(path, &dims, &result)?)?;
    }
    outputs.commit()?;
    println!("wrote {} ({frames} frames)", out.display());
    Ok(())
}

fn convert(src: &Path, config: Option<&Path>, dtype: Dtype, out: &Path) -> Result<()> {
    let weights = match config {
        Some(yaml) => from_original(src, yaml),
        None if src.is_dir() => from_diffusers_dir(src),
        // Our own file: re-saved in the current format version, in the dtype asked for.
        None if src.extension().is_some_and(|e| e == "safetensors") => Weights::load(src),
        None => bail!(
            "{}: a checkpoint file needs --config (the original DDPM/DDIM YAML); a diffusers model is a \
             directory; a .safetensors file must be one of ours",
            src.display()
        ),
    }
    .with_context(|| format!("converting {}", src.display()))?;
    let storage = match dtype {
        Dtype::F32 => StorageDtype::F32,
        Dtype::F16 => StorageDtype::F16,
    };
    weights.save(out, storage)?;
    let c = &weights.config;
    println!(
        "wrote {} ({} tensors, {} parameters, {}): UNet {}x{}, channels {:?}, {} layers per block",
        out.display(),
        weights.tensors.len(),
        weights.parameter_count(),
        match dtype {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        },
        c.sample_size,
        c.sample_size,
        c.block_out_channels,
        c.layers_per_block
    );
    Ok(())
}

fn eval(
    options: &DeviceOptions,
    model: &Path,
    input: &Path,
    timestep: Option<f32>,
    timesteps: Option<&Path>,
    out: &Path,
    dump_dir: Option<&Path>,
) -> Result<()> {
    let weights: Weights =
        load_model(model).with_context(|| format!("loading {}", model.display()))?;
    let c = &weights.config;
    let x = read_npy(input)?;
    let expected = [c.in_channels, c.sample_size, c.sample_size];
    if x.shape.len() != 4 || x.shape[1..] != expected || x.shape[0] == 0 {
        bail!(
            "{}: input has shape {:?}; the model takes [N, {}, {}, {}] with N >= 1",
            input.display(),
            x.shape,
            expected[0],
            expected[1],
            expected[2]
        );
    }
    let batch = x.shape[0];
    let t: Vec<f32> = match (timestep, timesteps) {
        (Some(t), _) => vec![t; batch],
        (None, Some(path)) => {
            let t = read_npy(path)?;
            match t.data.len() {
                1 => vec![t.data[0]; batch],
                n if n == batch && t.shape.len() <= 1 => t.data,
                _ => bail!(
                    "{}: {} timesteps of shape {:?} for {batch} images (give one, or one per image)",
                    path.display(),
                    t.data.len(),
                    t.shape
                ),
            }
        }
        (None, None) => unreachable!("clap requires --timestep or --timesteps"),
    };
    if let Some(bad) = t.iter().find(|v| !v.is_finite()) {
        bail!("timestep {bad} is not finite");
    }
    check_writable(out)?;
    let gpu = Gpu::new(options).context("opening a device")?;
    let graph = unet::build(c)?;
    let keep: Vec<_> = match dump_dir {
        Some(_) => graph.checkpoints.iter().map(|(_, id)| *id).collect(),
        None => Vec::new(),
    };
    let uploaded = weights.upload(&gpu)?;
    // A batch larger than the device binds runs in chunks (one plan per chunk size); the result is the same.
    let chunk = ddim_wgpu::graph::plan::max_batch(&gpu, &graph)?.min(batch);
    if chunk < batch {
        eprintln!(
            "note: {batch} images run in {} batches of at most {chunk} (the device's storage-binding limit)",
            batch.div_ceil(chunk)
        );
    }
    let per = x.data.len() / batch;
    let start = std::time::Instant::now();
    let (mut result, mut dumps) = (Vec::new(), vec![Vec::new(); keep.len()]);
    let mut plan: Option<Plan> = None;
    for first in (0..batch).step_by(chunk) {
        let b = chunk.min(batch - first);
        if plan.as_ref().map(Plan::batch) != Some(b) {
            plan = Some(Plan::new(&gpu, &graph, &uploaded, b, &keep)?);
        }
        let plan = plan.as_ref().expect("made above");
        let images = &x.data[first * per..(first + b) * per];
        result.extend(plan.run(&gpu, &[images, &t[first..first + b]])?);
        for (dump, id) in dumps.iter_mut().zip(&keep) {
            let tensor = plan.activation(*id).expect("every checkpoint is planned");
            dump.extend(gpu.download(tensor)?);
        }
    }
    let plan = plan.expect("batch >= 1");
    let elapsed = start.elapsed();
    let with_batch = |shape: &[usize]| [&[batch], &shape[1..]].concat();
    let mut outputs = OutputSet::default();
    let out_shape = with_batch(plan.output().shape());
    outputs.stage(out, &npy_bytes(out, &out_shape, &result)?)?;
    if let Some(dir) = dump_dir {
        outputs.create_dir(dir)?;
        for ((name, id), dump) in graph.checkpoints.iter().zip(&dumps) {
            let tensor = plan.activation(*id).expect("every checkpoint is planned");
            let path = dir.join(format!("{name}.npy"));
            outputs.stage(&path, &npy_bytes(&path, &with_batch(tensor.shape()), dump)?)?;
        }
    }
    outputs.commit()?;
    let s = plan.stats();
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "wrote {} {:?}: {} dispatches in {:.1?}; activations {:.1} MiB planned in {} buffers ({:.1} MiB without \
         reuse, {:.1} MiB lower bound)",
        out.display(),
        out_shape,
        plan.dispatches().len(),
        elapsed,
        mib(s.planned),
        s.buffers,
        mib(s.no_reuse),
        mib(s.lower_bound)
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the flags of one command
fn profile(
    options: &DeviceOptions,
    model: &Path,
    args: &SamplingArgs,
    batch: usize,
    seed: u64,
    trace: Option<&Path>,
    json: Option<&Path>,
) -> Result<()> {
    check_outputs(&[trace, json].into_iter().flatten().collect::<Vec<_>>())?;
    let weights = if model.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(model)
            .with_context(|| format!("reading {}", model.display()))?;
        let config = ddim_wgpu::model::config::UNetConfig::from_diffusers_json(&text)?;
        eprintln!(
            "note: {} is a config: random weights (timings only)",
            model.display()
        );
        Weights::random(&config, seed)?
    } else {
        open_model(model)?
    };
    if batch == 0 {
        bail!("--batch 0: nothing to profile");
    }
    let settings = settings(args, weights.training.as_ref())?;
    let gpu = Gpu::new(options).context("opening a device")?;
    eprintln!("measuring the roofline ...");
    let roof = ddim_wgpu::ops::roofline::measure(&gpu)?;
    let c = &weights.config;
    let per = c.in_channels * c.sample_size * c.sample_size;
    let graph = unet::build(c)?;
    let uploaded = weights.upload(&gpu)?;
    let sampler = Sampler::new(&gpu, &graph, &uploaded, settings.clone())?;
    let steps = sampler.steps().len();
    let bar = progress_bar(steps as u64, args.quiet);
    let x_t = latents(seed, 0, batch, per);
    let start = std::time::Instant::now();
    let (_, timings, walls) =
        sampler.sample_profiled(&x_t, batch, 0, StepNoise::Philox(seed), &mut |i| {
            bar.set_position(i as u64)
        })?;
    let wall = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let rows = kernel_table(&timings, &roof);
    let gpu_ms: f64 = rows.iter().map(|r| r.total_ms).sum();
    let step_wall_ms = walls.iter().sum::<f64>() * 1e3;
    println!(
        "{} | {steps} steps, batch {batch}, {} dispatches, {:?} update | roof {:.1} GFLOP/s FMA, {:.2} GB/s copy",
        describe(&gpu.info()),
        timings.len(),
        settings.mode,
        roof.gflops,
        roof.gbps
    );
    println!(
        "{:<20} {:>6} {:>10} {:>10} {:>7} {:>9} {:>8} {:>7}",
        "kernel", "calls", "total ms", "mean us", "share", "GFLOP/s", "GB/s", "roof"
    );
    for r in &rows {
        println!(
            "{:<20} {:>6} {:>10.2} {:>10.1} {:>6.1}% {:>9.2} {:>8.2} {:>6.1}%",
            r.label,
            r.calls,
            r.total_ms,
            r.mean_us,
            100.0 * r.share,
            r.gflops,
            r.gbps,
            100.0 * r.roof_fraction
        );
    }
    println!(
        "GPU {gpu_ms:.1} ms in {step_wall_ms:.1} ms of step wall time ({:.0}%); per step {:.1} ms wall, per image \
         {:.1} ms wall; whole run {:.2} s",
        100.0 * gpu_ms / step_wall_ms.max(1e-9),
        step_wall_ms / steps as f64,
        step_wall_ms / batch as f64,
        wall
    );
    if let Some(path) = trace {
        let names: Vec<String> = sampler
            .steps()
            .iter()
            .enumerate()
            .map(|(i, s)| format!("step {} (t = {})", i + 1, s.t))
            .collect();
        let doc = chrome_trace(&timings, &names);
        write_atomic(path, serde_json::to_string(&doc)?.as_bytes())?;
        println!(
            "wrote {} ({} slices)",
            path.display(),
            doc["traceEvents"].as_array().map_or(0, Vec::len)
        );
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "adapter": describe(&gpu.info()),
            "steps": steps,
            "batch": batch,
            "mode": format!("{:?}", settings.mode),
            "roof": roof,
            "kernels": rows,
            "gpu_ms": gpu_ms,
            "step_wall_ms": step_wall_ms,
            "dispatches": timings.len(),
        });
        write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}

fn info(options: &DeviceOptions, roofline: bool) -> Result<()> {
    let all = DeviceOptions {
        adapter: None,
        ..options.clone()
    };
    println!("adapters:");
    let adapters = enumerate_adapters(&all);
    if adapters.is_empty() {
        println!("  (none)");
    }
    for a in &adapters {
        println!("  {}", describe(&a.get_info()));
    }
    let gpu = Gpu::new(options).context("opening a device")?;
    let info = gpu.info();
    println!("chosen: {}", describe(&info));
    let features = gpu.features();
    let has = |f: wgpu::Features| if features.contains(f) { "yes" } else { "no" };
    println!("features:");
    println!(
        "  timestamp queries:        {}",
        has(wgpu::Features::TIMESTAMP_QUERY)
    );
    println!(
        "  timestamps inside passes: {}",
        has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    );
    let adapter_features = gpu.adapter_features();
    let offers = |f: wgpu::Features| {
        if adapter_features.contains(f) {
            "yes"
        } else {
            "no"
        }
    };
    println!(
        "  shader f16 (adapter):     {}",
        offers(wgpu::Features::SHADER_F16)
    );
    println!(
        "  subgroups (adapter):      {}",
        offers(wgpu::Features::SUBGROUP)
    );
    let l = gpu.limits();
    let mib = |b: u64| {
        if b >= 1 << 20 {
            format!("{} MiB", b >> 20)
        } else {
            format!("{b} bytes")
        }
    };
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size:    {}",
        mib(l.max_storage_buffer_binding_size)
    );
    println!(
        "  max_buffer_size:                    {}",
        mib(l.max_buffer_size)
    );
    println!(
        "  max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_storage_size: {} KiB",
        l.max_compute_workgroup_storage_size / 1024
    );
    println!(
        "  max_storage_buffers_per_shader_stage: {}",
        l.max_storage_buffers_per_shader_stage
    );
    if roofline {
        let roof = ddim_wgpu::ops::roofline::measure(&gpu)?;
        println!("roofline:");
        println!("  f32 FMA:     {:.1} GFLOP/s", roof.gflops);
        println!("  shader copy: {:.2} GB/s (read + write)", roof.gbps);
        println!("  ridge point: {:.1} FLOP/byte", roof.gflops / roof.gbps);
    }
    Ok(())
}
