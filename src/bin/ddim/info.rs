//! `ddim info`: the adapters, and the features, limits and roofline of the one that would be used; or, with
//! `--model`, a model: its architecture, training schedule and sampling defaults.

use anyhow::{Context, Result};
use pollster::FutureExt as _;

use std::path::{Path, PathBuf};

use ddim_wgpu::diffusion::schedule::BetaSchedule;
use ddim_wgpu::diffusion::step::Prediction;
use ddim_wgpu::gpu::{DeviceOptions, Gpu, describe, enumerate_adapters};

use crate::sampling::{self, plural};

/// The flags of `ddim info`.
#[derive(clap::Args)]
pub struct Args {
    /// Also measure the roofline: attainable f32 FMA rate and shader copy bandwidth.
    #[arg(long, conflicts_with = "model")]
    pub roofline: bool,
    /// Describe this model instead (our weights file or a diffusers directory): what `sample` uses unless a
    /// flag says otherwise.
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// Runs `ddim info`.
pub fn run(options: &DeviceOptions, args: Args) -> Result<()> {
    match &args.model {
        Some(path) => model(path),
        None => info(options, args.roofline),
    }
}

/// A model's architecture, training schedule and sampling defaults.
fn model(path: &Path) -> Result<()> {
    let weights = sampling::open_model(Some(path))?;
    let c = &weights.config;
    println!("model: {}", path.display());
    println!(
        "  {} parameters; {} channel{}, {}x{} pixels; {} level{} of {:?} channels, {} layer{} per block",
        weights.parameter_count(),
        c.in_channels,
        plural(c.in_channels),
        c.sample_size,
        c.sample_size,
        c.block_out_channels.len(),
        plural(c.block_out_channels.len()),
        c.block_out_channels,
        c.layers_per_block,
        plural(c.layers_per_block),
    );
    let Some(t) = &weights.training else {
        println!(
            "training: not recorded (the library's defaults apply: linear betas, T = 1000, epsilon)"
        );
        return Ok(());
    };
    let s = &t.schedule;
    println!("training:");
    println!("  betas:            {}", describe_betas(&s.betas));
    println!("  timesteps T:      {}", s.train_steps);
    println!("  zero-SNR rescale: {}", s.zero_snr);
    println!(
        "  prediction:       {}",
        match t.prediction {
            Prediction::Epsilon => "epsilon",
            Prediction::V => "v_prediction",
            Prediction::Sample => "sample",
        }
    );
    println!("  steps offset:     {}", t.steps_offset);
    println!("  set alpha to one: {}", t.set_alpha_to_one);
    let d = &t.sampling;
    println!("sampling defaults (flags override them):");
    println!("  spacing:          {}", d.spacing);
    println!(
        "  clip x0:          {}",
        d.clip.map_or("off".to_string(), |r| format!("[-{r}, {r}]"))
    );
    println!(
        "  threshold:        {}",
        d.threshold.map_or("off".to_string(), |t| format!("{},{}", t.ratio, t.max_value))
    );
    Ok(())
}

fn describe_betas(b: &BetaSchedule) -> String {
    match b {
        BetaSchedule::Linear { start, end } => format!("linear {start} .. {end}"),
        BetaSchedule::ScaledLinear { start, end } => format!("scaled_linear {start} .. {end}"),
        BetaSchedule::SquaredcosCapV2 => "squaredcos_cap_v2".to_string(),
        BetaSchedule::Trained { betas } => format!("trained ({} values)", betas.len()),
    }
}

fn info(options: &DeviceOptions, roofline: bool) -> Result<()> {
    let all = DeviceOptions { adapter: None, ..options.clone() };
    println!("adapters:");
    let adapters = enumerate_adapters(&all).block_on();
    if adapters.is_empty() {
        println!("  (none)");
    }
    for a in &adapters {
        println!("  {}", describe(&a.get_info()));
    }
    let gpu = Gpu::new(options).block_on().context("opening a device")?;
    let info = gpu.info();
    println!("chosen: {}", describe(&info));
    let features = gpu.features();
    let has = |f: wgpu::Features| if features.contains(f) { "yes" } else { "no" };
    println!("features:");
    println!("  timestamp queries:        {}", has(wgpu::Features::TIMESTAMP_QUERY));
    println!("  timestamps inside passes: {}", has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES));
    let adapter_features = gpu.adapter_features();
    let offers = |f: wgpu::Features| {
        if adapter_features.contains(f) { "yes" } else { "no" }
    };
    println!("  shader f16 (adapter):     {}", offers(wgpu::Features::SHADER_F16));
    println!("  shader f16 (in use):      {}", has(wgpu::Features::SHADER_F16));
    println!("  subgroups (adapter):      {}", offers(wgpu::Features::SUBGROUP));
    println!("  subgroups (in use):       {}", has(wgpu::Features::SUBGROUP));
    let l = gpu.limits();
    let mib = |b: u64| {
        if b >= 1 << 20 { format!("{} MiB", b >> 20) } else { format!("{b} bytes") }
    };
    println!("limits:");
    println!("  max_storage_buffer_binding_size:    {}", mib(l.max_storage_buffer_binding_size));
    println!("  max_buffer_size:                    {}", mib(l.max_buffer_size));
    println!("  max_compute_workgroups_per_dimension: {}", l.max_compute_workgroups_per_dimension);
    println!(
        "  max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_storage_size: {} KiB",
        l.max_compute_workgroup_storage_size / 1024
    );
    println!("  max_storage_buffers_per_shader_stage: {}", l.max_storage_buffers_per_shader_stage);
    if roofline {
        let roof = ddim_wgpu::gpu::roofline::measure(&gpu).block_on()?;
        println!("roofline:");
        println!("  f32 FMA:     {:.1} GFLOP/s", roof.gflops);
        println!("  shader copy: {:.2} GB/s (read + write)", roof.gbps);
        println!("  ridge point: {:.1} FLOP/byte", roof.gflops / roof.gbps);
    }
    Ok(())
}
