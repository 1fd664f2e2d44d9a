//! `ddim convert`: a diffusers directory or an original checkpoint into our weights file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use ddim_wgpu::diffusion::timesteps::Spacing;
use ddim_wgpu::io::OutputSet;
use ddim_wgpu::model::convert::{from_diffusers_dir_variant, from_original_entry};
use ddim_wgpu::model::torch::CheckpointEntry;
use ddim_wgpu::model::weights::{StorageDtype, Training, Weights};

use crate::sampling::{
    Clip, ThresholdArg, parse_clip, parse_spacing, parse_threshold, plural, x0_rules,
};

/// The flags of `ddim convert`.
#[derive(clap::Args)]
pub struct Args {
    /// The diffusers directory (a UNet2DModel's, or a pipeline's with model_index.json and unet/), the
    /// original checkpoint (.ckpt), or one of our files to re-save.
    pub src: PathBuf,
    /// Read the weights of this variant of a diffusers model (e.g. fp16: diffusion_pytorch_model.fp16.safetensors).
    #[arg(long)]
    pub variant: Option<String>,
    /// The official DDIM repository's YAML config, for an original checkpoint.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// From an official training checkpoint (`[model, optimizer, epoch, step, ema]`), the model's raw weights
    /// instead of their moving average, which the official sampler uses and convert takes by default.
    #[arg(long)]
    pub no_ema: bool,
    /// How to store the tensors.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Where to write the weights file.
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// Record this timestep spacing as the model's default (else the source's).
    #[arg(long, visible_alias = "timestep-spacing", value_parser = parse_spacing)]
    pub spacing: Option<Spacing>,
    /// Record this x0 clip (a range, or `off`) as the model's default (else the source's).
    #[arg(long, visible_alias = "clip-sample-range", value_name = "R|off", value_parser = parse_clip)]
    pub clip_sample: Option<Clip>,
    /// Record this dynamic thresholding (RATIO,MAX, or `off`) as the model's default (else the source's).
    #[arg(long, value_name = "RATIO,MAX|off", value_parser = parse_threshold)]
    pub threshold: Option<ThresholdArg>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Dtype {
    F32,
    F16,
}

/// Runs `ddim convert`.
pub fn run(args: Args) -> Result<()> {
    let mut outputs = OutputSet::new();
    outputs.reserve(&args.out)?;
    let entry = if args.no_ema { CheckpointEntry::Model } else { CheckpointEntry::EmaIfAny };
    if args.variant.is_some() && !args.src.is_dir() {
        bail!("--variant applies to diffusers directories");
    }
    if args.no_ema && args.config.is_none() {
        bail!("--no-ema applies to original checkpoints (with --config)");
    }
    let (mut weights, read) =
        load(&args.src, args.config.as_deref(), entry, args.variant.as_deref())?;
    if read == CheckpointEntry::Ema {
        eprintln!(
            "note: the checkpoint's EMA weights, as the official sampler uses them (--no-ema: the raw ones)"
        );
    }
    if args.spacing.is_some() || args.clip_sample.is_some() || args.threshold.is_some() {
        let training = weights.training.get_or_insert_with(Training::default);
        let d = &mut training.sampling;
        if let Some(s) = args.spacing {
            d.spacing = s;
        }
        (d.clip, d.threshold) = x0_rules(args.clip_sample, args.threshold, (d.clip, d.threshold))?;
        training.validate()?;
    }
    write(&weights, args.dtype, &args.out, outputs)
}

fn load(
    src: &Path,
    config: Option<&Path>,
    entry: CheckpointEntry,
    variant: Option<&str>,
) -> Result<(Weights, CheckpointEntry)> {
    let model = |w: Weights| (w, CheckpointEntry::Model);
    match config {
        Some(yaml) => from_original_entry(src, yaml, entry),
        None if src.is_dir() => from_diffusers_dir_variant(src, variant).map(model),
        // Our own file: re-saved in the current format version, in the dtype asked for.
        None if src.extension().is_some_and(|e| e == "safetensors") => Weights::load(src).map(model),
        None => bail!(
            "{}: a checkpoint file needs --config (the original DDPM/DDIM YAML); a diffusers model is a \
             directory; a .safetensors file must be one of ours",
            src.display()
        ),
    }
    .with_context(|| format!("converting {}", src.display()))
}

fn write(weights: &Weights, dtype: Dtype, out: &Path, mut outputs: OutputSet) -> Result<()> {
    let storage = match dtype {
        Dtype::F32 => StorageDtype::F32,
        Dtype::F16 => StorageDtype::F16,
    };
    outputs.write(out, &weights.to_bytes(storage)?)?;
    outputs.commit()?;
    let c = &weights.config;
    println!(
        "wrote {} ({} tensors, {} parameters, {}): UNet {}x{}, channels {:?}, {} layer{} per block",
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
        c.layers_per_block,
        plural(c.layers_per_block)
    );
    Ok(())
}
