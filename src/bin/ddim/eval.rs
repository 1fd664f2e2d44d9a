//! `ddim eval`: one UNet evaluation, eps = UNet(x, t), with every block's output on request.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pollster::FutureExt as _;

use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::io::{OutputSet, npy_bytes, read_npy};
use ddim_wgpu::model::convert::load_model;
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::pipeline::{Images, Pipeline};

/// The flags of `ddim eval`.
#[derive(clap::Args)]
pub struct Args {
    /// Our weights file, or a diffusers directory (converted on the fly).
    #[arg(long)]
    pub model: PathBuf,
    /// The input, float32 NCHW .npy.
    #[arg(long)]
    pub input: PathBuf,
    /// One timestep for every image.
    #[arg(long, conflicts_with = "timesteps", required_unless_present = "timesteps")]
    pub timestep: Option<f32>,
    /// One timestep per image (or one for all): int64 or float .npy.
    #[arg(long)]
    pub timesteps: Option<PathBuf>,
    /// Where to write the output, float32 .npy.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write every block's output here as `<block>.npy`.
    #[arg(long)]
    pub dump_dir: Option<PathBuf>,
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// Runs `ddim eval`.
pub fn run(options: &DeviceOptions, args: Args) -> Result<()> {
    eval(
        options,
        &args.model,
        &args.input,
        args.timestep,
        args.timesteps.as_deref(),
        &args.out,
        args.dump_dir.as_deref(),
    )
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
    let mut outputs = OutputSet::new();
    if let Some(dir) = dump_dir {
        outputs.create_dir(dir)?;
    }
    outputs.reserve(out)?;
    let gpu = Gpu::new(options).block_on().context("opening a device")?;
    let pipeline = Pipeline::new(gpu, &weights)?;
    let block_file = |dir: &Path, name: &str| dir.join(format!("{name}.npy"));
    if let Some(dir) = dump_dir {
        for name in pipeline.block_names() {
            outputs.reserve(&block_file(dir, &name))?;
        }
    }
    let images =
        Images::new(x.shape.clone().try_into().expect("checked above: 4 dimensions"), x.data)?;
    let start = web_time::Instant::now();
    let e = pipeline.eval(&images, &t, dump_dir.is_some()).block_on()?;
    let elapsed = start.elapsed();
    if e.batches > 1 {
        eprintln!(
            "note: {batch} images run in {} batches (the device's storage-binding limit); the result does not \
             depend on the split",
            e.batches
        );
    }
    outputs.write(out, &npy_bytes(out, &e.output.shape, &e.output.data)?)?;
    if let Some(dir) = dump_dir {
        for (name, shape, data) in &e.blocks {
            let path = block_file(dir, name);
            outputs.write(&path, &npy_bytes(&path, shape, data)?)?;
        }
    }
    outputs.commit()?;
    let s = e.memory;
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "wrote {} {:?}: {} dispatches in {:.1?}; activations {:.1} MiB planned in {} buffers ({:.1} MiB without \
         reuse, {:.1} MiB lower bound)",
        out.display(),
        e.output.shape,
        e.dispatches,
        elapsed,
        mib(s.planned),
        s.buffers,
        mib(s.no_reuse),
        mib(s.lower_bound)
    );
    Ok(())
}
