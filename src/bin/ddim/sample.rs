//! `ddim sample`: images from the seed (or given latents), written as a PNG grid, one PNG each, or `.npy`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pollster::FutureExt as _;

use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::io::{OutputSet, npy_bytes, png_bytes, png_grid_bytes, read_npy};
use ddim_wgpu::limits;
use ddim_wgpu::pipeline::{GivenNoise, Pipeline, SampleRequest};
use ddim_wgpu::sampler::ddim::plan_steps;

use crate::record::{self, RunRecord};
use crate::sampling::{self, Bar, NoiseArgs, StepArgs};

/// The flags of `ddim sample`.
#[derive(clap::Args)]
pub struct Args {
    /// Our weights file, or a diffusers directory. Default: the model built into ddim (weights/default.safetensors).
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// Images to make (all shards together). Default 16, or the number of latents given.
    #[arg(short = 'n', long, short_alias = 'b')]
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
    /// The PNG grid of this run's images (default samples.png; models whose images have neither 1 nor 3
    /// channels write --out-npy only).
    #[arg(short = 'o', long)]
    pub out: Option<PathBuf>,
    /// Also one PNG per image here, named by its global index (000000.png, ...).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Also the samples as float32 [N, C, H, W], before any clamp or rescale.
    #[arg(long)]
    pub out_npy: Option<PathBuf>,
    /// Also the starting latents x_T as float32 [N, C, H, W].
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: StepArgs,
    #[command(flatten)]
    pub stochastic: NoiseArgs,
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// The most images one run may make: Philox keys an image by a 32-bit index.
const MAX_IMAGES: u64 = 1 << 32;

/// `--shard i/n`.
#[derive(Clone, Copy, Debug)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The images `lo .. hi` of `total` this shard makes: `i * total / n .. (i + 1) * total / n`, in 128-bit
    /// arithmetic so that no product overflows.
    fn range(self, total: usize) -> (usize, usize) {
        let at = |i: usize| (i as u128 * total as u128 / self.count as u128) as usize;
        (at(self.index), at(self.index + 1))
    }
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
    let weights = sampling::open_model(req.model.as_deref())?;
    let settings = sampling::settings(args, Some(&req.stochastic), weights.training.as_ref())?;
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
    if total as u64 > MAX_IMAGES {
        bail!(
            "--batch {total}: at most {MAX_IMAGES} images (2^32: Philox keys an image by a 32-bit index)"
        );
    }
    let shard = req.shard.unwrap_or(Shard { index: 0, count: 1 });
    if shard.count > total {
        bail!("--shard {}/{}: more shards than the {total} images", shard.index, shard.count);
    }
    let (lo, hi) = shard.range(total);
    let n = hi - lo;
    limits::f32_array("this run's samples", &[n, shape[0], shape[1], shape[2]])?;
    let noise = match &req.noise {
        Some(path) => {
            let z = read_npy(path)?;
            let steps = plan_steps(&settings)?.0.len();
            let expected = [steps, total, shape[0], shape[1], shape[2]];
            if z.shape != expected {
                bail!(
                    "{}: noise of shape {:?}; these settings take {expected:?} (one normal per step, image and \
                     value)",
                    path.display(),
                    z.shape
                );
            }
            Some(z)
        }
        None => None,
    };

    // Every output is reserved before any work: a bad path fails now, not after the sampling.
    let png =
        sampling::png_output(req.out.as_ref(), "samples.png", shape[0], req.out_npy.is_some())?;
    let mut outputs = OutputSet::new();
    let cell = |k: usize| req.out_dir.as_ref().map(|dir| dir.join(format!("{:06}.png", lo + k)));
    if let Some(dir) = &req.out_dir {
        sampling::refuse_png(dir, shape[0])?;
        outputs.create_dir(dir)?;
        for k in 0..n {
            outputs.reserve(&cell(k).expect("an --out-dir"))?;
        }
    }
    let record_path = req.out_npy.as_deref().map(record::path_for);
    outputs.reserve_all(
        [png.as_ref(), req.out_npy.as_ref(), record_path.as_ref(), req.save_latents.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path),
    )?;

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
    if let Some(path) = &png {
        let cols = ddim_wgpu::io::grid_columns(n);
        outputs.write(path, &png_grid_bytes(path, &images.data, dims, cols)?)?;
    }
    for k in 0..n {
        if let Some(path) = cell(k) {
            outputs.write(&path, &png_bytes(&path, images.image(k), shape)?)?;
        }
    }
    if let Some(path) = &req.out_npy {
        outputs.write(path, &npy_bytes(path, &dims, &images.data)?)?;
        let record = RunRecord {
            model: record::model_id(&weights),
            settings: format!("{settings:?}"),
            start: match &req.latent {
                Some(p) => format!("the latents of {}", p.display()),
                None => format!("seed {}", req.seed),
            },
            images: total,
            first: lo,
            count: n,
        };
        let path = record::path_for(path);
        outputs.write(&path, &record.to_json())?;
    }
    if let Some(path) = &req.save_latents {
        outputs.write(path, &npy_bytes(path, &dims, &x_t)?)?;
    }
    outputs.commit()?;
    let noise =
        if settings.sigma_hat { "sigma-hat".to_string() } else { format!("eta {}", settings.eta) };
    let first = png.as_ref().or(req.out_npy.as_ref()).expect("png_output requires one output");
    println!(
        "wrote {} ({n} image{} {lo}..{hi} of {total}, {} step{}, {noise}) in {:.1?}",
        first.display(),
        sampling::plural(n),
        settings.steps,
        sampling::plural(settings.steps),
        elapsed
    );
    Ok(())
}
