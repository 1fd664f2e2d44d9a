//! `ddim profile`: a sampling run with GPU timestamps around every dispatch, a per-kernel table against the
//! measured roofline, and optionally a Chrome trace and a JSON report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pollster::FutureExt as _;

use ddim_wgpu::gpu::profiler::{chrome_trace, kernel_table};
use ddim_wgpu::gpu::{DeviceOptions, Gpu, describe};
use ddim_wgpu::io::{OutputSet, read_text};
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::pipeline::Pipeline;

use crate::sampling::{self, NoiseArgs, StepArgs, plural};

/// The flags of `ddim profile`.
#[derive(clap::Args)]
pub struct Args {
    /// Our weights file, a diffusers directory, or a diffusers config.json (random weights, for timing). Default: the model built into ddim (weights/default.safetensors).
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// The seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write a Chrome trace (open in <https://ui.perfetto.dev> or chrome://tracing).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write the table and the roofs as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: StepArgs,
    #[command(flatten)]
    pub stochastic: NoiseArgs,
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// Runs `ddim profile`.
pub fn run(options: &DeviceOptions, args: Args) -> Result<()> {
    profile(
        options,
        args.model.as_deref(),
        &args.sampling,
        &args.stochastic,
        args.batch,
        args.seed,
        args.trace.as_deref(),
        args.json.as_deref(),
    )
}

#[allow(clippy::too_many_arguments)] // the flags of one command
fn profile(
    options: &DeviceOptions,
    model: Option<&Path>,
    args: &StepArgs,
    noise: &NoiseArgs,
    batch: usize,
    seed: u64,
    trace: Option<&Path>,
    json: Option<&Path>,
) -> Result<()> {
    let mut outputs = OutputSet::new();
    outputs.reserve_all([trace, json].into_iter().flatten())?;
    let weights = match model {
        Some(path) if path.extension().is_some_and(|e| e == "json") => {
            let text = read_text(path)?;
            let config = ddim_wgpu::unet::config::UNetConfig::from_diffusers_json(&text)?;
            eprintln!("note: {} is a config: random weights (timings only)", path.display());
            Weights::random(&config, seed)?
        }
        _ => sampling::open_model(model)?,
    };
    if batch == 0 {
        bail!("--batch 0: nothing to profile");
    }
    let settings = sampling::settings(args, Some(noise), weights.training.as_ref())?;
    let [c, h, w] = sampling::image_shape(&weights);
    ddim_wgpu::limits::f32_array("latents", &[batch, c, h, w])?;
    let gpu = Gpu::new(options).block_on().context("opening a device")?;
    eprintln!("measuring the roofline ...");
    let roof = ddim_wgpu::gpu::roofline::measure(&gpu).block_on()?;
    let pipeline = Pipeline::new(gpu, &weights)?;
    let gpu = pipeline.gpu();
    let start = web_time::Instant::now();
    let mut bar = sampling::Bar::new(args.quiet);
    let profile = pipeline.profile(&settings, batch, seed, &mut |p| bar.update(p)).block_on()?;
    bar.finish();
    let wall = start.elapsed().as_secs_f64();
    let (timings, walls) = (&profile.timings, &profile.step_walls);
    let steps = walls.len();
    let rows = kernel_table(timings, &roof);
    let gpu_ms: f64 = rows.iter().map(|r| r.total_ms).sum();
    let step_wall_ms = walls.iter().sum::<f64>() * 1e3;
    println!(
        "{} | {steps} step{}, batch {batch}, {} dispatches, {:?} update, {:?} kernels, {} | roof {:.1} GFLOP/s \
         FMA, {:.2} GB/s copy",
        describe(&gpu.info()),
        plural(steps),
        timings.len(),
        settings.mode,
        gpu.kernel_family(),
        gpu.act().wgsl(),
        roof.gflops,
        roof.gbps
    );
    // The kernel column as wide as its longest name.
    let width = rows.iter().map(|r| r.label.len()).max().unwrap_or(0).max("kernel".len());
    println!(
        "{:<width$} {:>6} {:>10} {:>10} {:>7} {:>9} {:>8} {:>7}",
        "kernel", "calls", "total ms", "mean us", "share", "GFLOP/s", "GB/s", "roof"
    );
    for r in &rows {
        println!(
            "{:<width$} {:>6} {:>10.2} {:>10.1} {:>6.1}% {:>9.2} {:>8.2} {:>6.1}%",
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
    let mut written = Vec::new();
    if let Some(path) = trace {
        let names: Vec<String> = profile
            .timesteps
            .iter()
            .enumerate()
            .map(|(i, t)| format!("step {} (t = {t})", i + 1))
            .collect();
        let doc = chrome_trace(timings, &names);
        outputs.write(path, serde_json::to_string(&doc)?.as_bytes())?;
        let slices = doc["traceEvents"].as_array().map_or(0, Vec::len);
        written.push(format!("{} ({slices} slices)", path.display()));
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "adapter": describe(&gpu.info()),
            "steps": steps,
            "batch": batch,
            "mode": format!("{:?}", settings.mode),
            "kernel_family": format!("{:?}", gpu.kernel_family()),
            "precision": gpu.act().wgsl(),
            "roof": roof,
            "kernels": rows,
            "gpu_ms": gpu_ms,
            "step_wall_ms": step_wall_ms,
            "dispatches": timings.len(),
        });
        outputs.write(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
        written.push(path.display().to_string());
    }
    outputs.commit()?;
    if !written.is_empty() {
        println!("wrote {}", written.join(", "));
    }
    Ok(())
}
