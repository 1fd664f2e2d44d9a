//! Our side of the same-run comparison with PyTorch (tools/bench/gpu_compare.sh runs it beside
//! tools/bench/torch_gpu.py): for one UNet config and batch, a forward pass and a `steps`-step DDIM sample (eta 0,
//! x0 clipped to [-1, 1], leading spacing: diffusers' DDIMScheduler defaults as torch_gpu.py runs them), with
//! random weights (seed 0) and the kernels `auto` picks, on the adapter `DDIM_BACKEND` / `DDIM_ADAPTER` select.
//!
//! `cargo run --release --example gpu_compare -- CONFIG BATCH [ROUNDS] [STEPS]` (defaults 7 rounds, 50 steps)
//! prints one JSON object: the median wall time of a forward pass (its input written and output read back in
//! the time, one submit) and of a sample (latents made on the GPU, the samples read back), every run's time,
//! and the GPU memory the engine allocates for the forward pass (weights, planned activations, packed weight
//! copies, scratch).

use pollster::FutureExt as _;
use std::path::PathBuf;
use std::time::Instant;

use ddim_wgpu::gpu::{DeviceOptions, Gpu, describe};
use ddim_wgpu::graph::plan::Plan;
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::pipeline::{Pipeline, SampleRequest};
use ddim_wgpu::sampler::ddim::latents;
use ddim_wgpu::unet;
use ddim_wgpu::unet::config::UNetConfig;

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gpu_compare CONFIG BATCH [ROUNDS] [STEPS]";
    let config_path = PathBuf::from(args.first().ok_or(usage)?);
    let batch: usize = args.get(1).ok_or(usage)?.parse()?;
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(7).max(1);
    let steps: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(50);

    let config = UNetConfig::from_diffusers_json(&std::fs::read_to_string(&config_path)?)?;
    let weights = Weights::random(&config, 0)?;
    let gpu = Gpu::new(&DeviceOptions::from_env()?).block_on()?;
    let adapter = describe(&gpu.info());
    let gpu_precision = gpu.precision();

    let graph = unet::build(&config)?;
    let uploaded = weights.upload(&gpu)?;
    let plan = Plan::new(&gpu, &graph, &uploaded, batch, &[])?;
    let per_image = config.in_channels * config.sample_size * config.sample_size;
    let x = latents(0, 0, batch, per_image);
    let t = vec![500.0; batch];
    plan.run(&gpu, &[&x, &t]).block_on()?; // warm-up
    let mut forward = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        plan.run(&gpu, &[&x, &t]).block_on()?;
        forward.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let stats = plan.stats();
    let owned: u64 = plan.dispatches().iter().map(|d| d.owned_bytes()).sum();
    let weight_bytes = (gpu.act().size() * weights.parameter_count()) as u64;
    let memory = weight_bytes + stats.planned + owned + gpu.scratch_bytes();
    drop(plan);
    drop(uploaded);

    let pipeline = Pipeline::new(gpu, &weights)?;
    let mut settings = pipeline.default_settings();
    settings.steps = steps;
    settings.clip = Some(1.0);
    let request = SampleRequest::new(settings, batch, 0);
    pipeline.sample(&request, &mut |_| {}).block_on()?; // warm-up
    let sample_rounds = (rounds / 2).max(1);
    let mut sample = Vec::with_capacity(sample_rounds);
    for _ in 0..sample_rounds {
        let start = Instant::now();
        pipeline.sample(&request, &mut |_| {}).block_on()?;
        sample.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let out = serde_json::json!({
        "adapter": adapter,
        "precision": format!("{:?}", gpu_precision),
        "config": config_path.display().to_string(),
        "parameters": weights.parameter_count(),
        "batch": batch,
        "steps": steps,
        "forward_runs_ms": forward,
        "forward_ms": median(&mut forward.clone()),
        "sample_runs_ms": sample,
        "sample_ms": median(&mut sample.clone()),
        "memory_bytes": memory,
    });
    println!("{out}");
    Ok(())
}
