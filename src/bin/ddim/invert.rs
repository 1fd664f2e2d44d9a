//! `ddim invert`: images encoded into latents x_T by DDIM inversion (eta = 0).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pollster::FutureExt as _;

use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::io::{OutputSet, npy_bytes, read_image};
use ddim_wgpu::pipeline::{Images, Pipeline};

use crate::sampling::{self, Bar, StepArgs, plural};

/// The flags of `ddim invert`.
#[derive(clap::Args)]
pub struct Args {
    /// Our weights file, or a diffusers directory. Default: the model built into ddim (weights/default.safetensors).
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// The images (PNG, JPEG, ...); each becomes one latent. A `.npy` file holds a batch of images already in
    /// the model's range: float [N, C, H, W] in [-1, 1], e.g. a held-out set.
    #[arg(long = "image", required = true)]
    pub images: Vec<PathBuf>,
    /// Resize images whose size differs from the model's (otherwise they are refused).
    #[arg(long)]
    pub resize: bool,
    /// Where to write the latents, float32 [N, C, H, W].
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub sampling: StepArgs,
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// Runs `ddim invert`.
pub fn run(options: &DeviceOptions, a: Args) -> Result<()> {
    let args = &a.sampling;
    let weights = sampling::open_model(a.model.as_deref())?;
    let settings = sampling::settings(args, None, weights.training.as_ref())?;
    let mut outputs = OutputSet::new();
    outputs.reserve(&a.out)?;
    let c = &weights.config;
    let shape = sampling::image_shape(&weights);
    let per: usize = shape.iter().product();
    let mut x0 = Vec::new();
    for path in &a.images {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
            let l = sampling::read_batch(path, shape, "images")?;
            if let Some(v) = l.data.iter().find(|v| !(-1.0..=1.0).contains(*v)) {
                bail!(
                    "{}: value {v} outside [-1, 1]: images must be scaled to the model's range",
                    path.display()
                );
            }
            x0.extend(l.data);
        } else {
            x0.extend(read_image(path, c.in_channels, c.sample_size, a.resize)?);
        }
    }
    let n = x0.len() / per;
    if n == 0 {
        bail!("no images to invert: the given .npy batches are empty");
    }
    let images = Images::new([n, shape[0], shape[1], shape[2]], x0)?;
    let gpu = Gpu::new(options).block_on().context("opening a device")?;
    let pipeline = Pipeline::new(gpu, &weights)?;
    let mut bar = Bar::new(args.quiet);
    let latents =
        pipeline.invert(&images, &settings, args.max_batch, &mut |p| bar.update(p)).block_on()?;
    bar.finish();
    outputs.write(&a.out, &npy_bytes(&a.out, &latents.shape, &latents.data)?)?;
    outputs.commit()?;
    let clip = match settings.clip {
        Some(r) => format!(
            "x0 clipped to [-{r}, {r}] as diffusers' DDIMInverseScheduler clips it; --clip-sample off for the exact ODE"
        ),
        None => "x0 not clipped: the exact ODE".to_string(),
    };
    println!(
        "wrote {} ({n} latent{}, {} inversion step{}; {clip})",
        a.out.display(),
        plural(n),
        settings.steps,
        plural(settings.steps)
    );
    Ok(())
}
