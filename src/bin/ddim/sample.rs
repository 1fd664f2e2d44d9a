//! `ddim sample`: images from the seed (or given latents), written as a PNG grid, one PNG each, or `.npy`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pollster::FutureExt as _;

use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::io::{OutputSet, npy_bytes, png_bytes, png_grid_bytes, read_npy};
use ddim_wgpu::pipeline::{GivenNoise, Pipeline, SampleRequest};

use crate::sampling::{self, Bar, DEFAULT_MODEL, SamplingArgs};

/// The flags of `ddim sample`.
#[derive(clap::Args)]
pub struct Args {
    /// Our weights file, or a diffusers directory.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Images to make (all shards together). Default 16, or the number of latents given.
    #[arg(long)]
    pub batch: Option<usize>,
    /// The seed of the latents and of the step noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start from these latents x_T ([N, C, H, W] .npy, e.g. from `ddim invert`) instead of the seed's.
    #[arg(long)]
    pub latent: Option<PathBuf>,
    /// Use this step noise ([S, N, C, H, W] .npy) instead of Philox's, for comparison with other code.
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Make only shard i of n (images i*N/n .. (i+1)*N/n): n machines together make the N images one would.
    #[arg(long, value_parser = parse_shard, value_name = "i/n")]
    pub shard: Option<Shard>,
    /// The PNG grid of this run's images.
    #[arg(long, default_value = "samples.png")]
    pub out: PathBuf,
    /// Also one PNG per image here, named by its global index (000000.png, ...).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Also the samples as float32 [N, C, H, W], before any clamp or rescale.
    #[arg(long)]
    pub out_npy: Option<PathBuf>,
    /// Also the starting latents x_T as float32 [N, C, H, W].
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
}

/// `--shard i/n`.
#[derive(Clone, Copy, Debug)]
pub struct Shard {
    index: usize,
    count: usize,
}

pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let (i, n) = s.split_once('/').ok_or("expected i/n, e.g. 0/4")?;
    let index: usize = i.trim().parse().map_err(|_| format!("`{i}` is not a shard index"))?;
    let count: usize = n.trim().parse().map_err(|_| format!("`{n}` is not a shard count"))?;
    if count == 0 || index >= count {
        return Err(format!("shard {index}/{count}: need 0 <= i < n"));
    }
    Ok(Shard { index, count })
}

/// Runs `ddim sample`.
pub fn run(options: &DeviceOptions, req: Args) -> Result<()> {
    let args = &req.sampling;
    let weights = sampling::open_model(&req.model)?;
    let settings = sampling::settings(args, weights.training.as_ref())?;
    sampling::check_given_outputs(&[
        Some(&req.out),
        req.out_npy.as_ref(),
        req.save_latents.as_ref(),
    ])?;
    let shape = sampling::image_shape(&weights);
    let per: usize = shape.iter().product();
    // All images of the run (every shard), then this shard's slice.
    let (total, given_latents) = match &req.latent {
        Some(path) => {
            let l = sampling::read_batch(path, shape, "latents")?;
            if let Some(b) = req.batch
                && b != l.shape[0]
            {
                bail!("--batch {b} but {} holds {} latents", path.display(), l.shape[0]);
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
        bail!("--shard {}/{}: more shards than the {total} images", shard.index, shard.count);
    }
    let (lo, hi) = (shard.index * total / shard.count, (shard.index + 1) * total / shard.count);
    let n = hi - lo;
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
    let gpu = Gpu::new(options).block_on().context("opening a device")?;
    let pipeline = Pipeline::new(gpu, &weights)?;
    let x_t = match given_latents {
        Some(all) => all[lo * per..hi * per].to_vec(),
        None => pipeline.latents(req.seed, lo, n)?.data,
    };
    let request = SampleRequest {
        first_image: lo,
        latents: Some(&x_t),
        noise: noise.as_ref().map(|z| GivenNoise { data: &z.data, images: total }),
        max_batch: args.max_batch,
        ..SampleRequest::new(settings.clone(), n, req.seed)
    };
    let start = web_time::Instant::now();
    let mut bar = Bar::new(args.quiet);
    let images = pipeline.sample(&request, &mut |p| bar.update(p)).block_on()?;
    bar.finish();
    let elapsed = start.elapsed();

    let dims = images.shape;
    let cols = (n as f64).sqrt().ceil() as usize;
    let mut outputs = OutputSet::default();
    outputs.stage(&req.out, &png_grid_bytes(&req.out, &images.data, dims, cols)?)?;
    if let Some(dir) = &req.out_dir {
        outputs.create_dir(dir)?;
        for k in 0..n {
            let path = dir.join(format!("{:06}.png", lo + k));
            outputs.stage(&path, &png_bytes(&path, images.image(k), shape)?)?;
        }
    }
    if let Some(path) = &req.out_npy {
        outputs.stage(path, &npy_bytes(path, &dims, &images.data)?)?;
    }
    if let Some(path) = &req.save_latents {
        outputs.stage(path, &npy_bytes(path, &dims, &x_t)?)?;
    }
    outputs.commit()?;
    let noise =
        if settings.sigma_hat { "sigma-hat".to_string() } else { format!("eta {}", settings.eta) };
    println!(
        "wrote {} ({n} images {lo}..{hi} of {total}, {} steps, {noise}) in {:.1?}",
        req.out.display(),
        settings.steps,
        elapsed
    );
    Ok(())
}
