//! `ddim convert`: a diffusers directory or an original checkpoint into our weights file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use ddim_wgpu::io::OutputSet;
use ddim_wgpu::model::convert::{from_diffusers_dir, from_original};
use ddim_wgpu::model::weights::{StorageDtype, Weights};

/// The flags of `ddim convert`.
#[derive(clap::Args)]
pub struct Args {
    /// The diffusers directory, or the original checkpoint (.ckpt).
    pub src: PathBuf,
    /// The official DDIM repository's YAML config, for an original checkpoint.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How to store the tensors.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Where to write the weights file.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Dtype {
    F32,
    F16,
}

/// Runs `ddim convert`.
pub fn run(args: Args) -> Result<()> {
    convert(&args.src, args.config.as_deref(), args.dtype, &args.out)
}

fn convert(src: &Path, config: Option<&Path>, dtype: Dtype, out: &Path) -> Result<()> {
    let mut outputs = OutputSet::new();
    outputs.reserve(out)?;
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
    outputs.write(out, &weights.to_bytes(storage)?)?;
    outputs.commit()?;
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
