//! `ddim interpolate`: slerp between two latents, the frames sampled and written as a one-row strip.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pollster::FutureExt as _;

use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::io::{OutputSet, npy_bytes, png_grid_bytes};
use ddim_wgpu::limits;
use ddim_wgpu::pipeline::Pipeline;

use crate::sampling::{self, Bar, NoiseArgs, StepArgs};

/// The flags of `ddim interpolate`.
#[derive(clap::Args)]
pub struct Args {
    /// Our weights file, or a diffusers directory. Default: the model built into ddim (weights/default.safetensors).
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// Two seeds whose latents are the endpoints (image 0 of each).
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "latents",
        required_unless_present = "latents"
    )]
    pub seeds: Vec<u64>,
    /// Two latent files (e.g. from `ddim invert`); the first image of each is an endpoint.
    #[arg(long, value_delimiter = ',')]
    pub latents: Vec<PathBuf>,
    /// Frames, endpoints included.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// The PNG strip (default interpolation.png; models whose images have neither 1 nor 3 channels write
    /// --out-npy only).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also the frames as float32 [F, C, H, W].
    #[arg(long)]
    pub out_npy: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: StepArgs,
    #[command(flatten)]
    pub stochastic: NoiseArgs,
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// Runs `ddim interpolate`.
pub fn run(options: &DeviceOptions, a: Args) -> Result<()> {
    let (args, frames) = (&a.sampling, a.frames);
    if frames < 2 {
        bail!("--frames {frames}: need at least the two endpoints");
    }
    if a.seeds.len() != 2 && a.latents.len() != 2 {
        bail!("give exactly two endpoints: --seeds A,B or --latents a.npy,b.npy");
    }
    let weights = sampling::open_model(a.model.as_deref())?;
    let settings = sampling::settings(args, Some(&a.stochastic), weights.training.as_ref())?;
    let shape = sampling::image_shape(&weights);
    let per: usize = shape.iter().product();
    limits::f32_array("interpolation frames", &[frames, shape[0], shape[1], shape[2]])?;
    let png =
        sampling::png_output(a.out.as_ref(), "interpolation.png", shape[0], a.out_npy.is_some())?;
    let mut outputs = OutputSet::new();
    outputs.reserve_all(
        [png.as_ref(), a.out_npy.as_ref()].into_iter().flatten().map(PathBuf::as_path),
    )?;
    let given: Vec<Vec<f32>> = a
        .latents
        .iter()
        .map(|p| {
            let l = sampling::read_batch(p, shape, "latents")?;
            if l.shape[0] == 0 {
                bail!("{}: holds no latents", p.display());
            }
            Ok(l.data[..per].to_vec())
        })
        .collect::<Result<_>>()?;
    let gpu = Gpu::new(options).block_on().context("opening a device")?;
    let pipeline = Pipeline::new(gpu, &weights)?;
    let ends: Vec<Vec<f32>> = if given.is_empty() {
        a.seeds.iter().map(|&s| Ok(pipeline.latents(s, 0, 1)?.data)).collect::<Result<_>>()?
    } else {
        given
    };
    let seed = a.seeds.first().copied().unwrap_or(0);
    let mut bar = Bar::new(args.quiet);
    let result = pipeline
        .interpolate(&ends[0], &ends[1], frames, &settings, seed, &mut |p| bar.update(p))
        .block_on()?;
    bar.finish();
    if let Some(path) = &png {
        outputs.write(path, &png_grid_bytes(path, &result.data, result.shape, frames)?)?;
    }
    if let Some(path) = &a.out_npy {
        outputs.write(path, &npy_bytes(path, &result.shape, &result.data)?)?;
    }
    outputs.commit()?;
    let first = png.as_ref().or(a.out_npy.as_ref()).expect("png_output requires one output");
    println!("wrote {} ({frames} frames)", first.display()); // (at least two: checked above)
    Ok(())
}
