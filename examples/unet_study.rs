//! The whole-network study: one UNet forward pass with the baseline kernels (`--kernels baseline`: `conv2d`,
//! `group_norm`), with the kernels `auto` picks for the adapter but the Winograd convolution off, and with
//! `auto`, in one process, on three devices opened on the same adapter, round-robin; plus dispatch counts and
//! memory.
//!
//! `cargo run --release --example unet_study -- [MODEL] [BATCH] [ROUNDS]`: MODEL is our weights file, a
//! diffusers directory or a diffusers config.json (random weights); default the CIFAR-10 UNet's config
//! (benches/configs/ddpm-cifar10-32.json), batch 8, 3 rounds. Wall time per forward pass (inputs written, one
//! submit, output read back), median per variant; both variants' outputs are compared.

use pollster::FutureExt as _;
use std::path::PathBuf;
use std::time::Instant;

use ddim_wgpu::gpu::KernelChoice;
use ddim_wgpu::gpu::{DeviceOptions, Gpu, describe};
use ddim_wgpu::graph::plan::Plan;
use ddim_wgpu::model::convert::load_model;
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::sampler::ddim::latents;
use ddim_wgpu::unet;
use ddim_wgpu::unet::config::UNetConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/configs/ddpm-cifar10-32.json"))
    });
    let batch: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);

    let weights = if model.extension().is_some_and(|e| e == "json") {
        let config = UNetConfig::from_diffusers_json(&std::fs::read_to_string(&model)?)?;
        Weights::random(&config, 0)?
    } else {
        load_model(&model)?
    };
    let config = weights.config.clone();
    let graph = unet::build(&config)?;
    let per_image = config.in_channels * config.sample_size * config.sample_size;
    let x = latents(0, 0, batch, per_image);
    let t = vec![500.0; batch];

    let base = DeviceOptions::from_env()?;
    let mut variants = Vec::new();
    for (kernels, winograd) in
        [(KernelChoice::Baseline, true), (KernelChoice::Auto, false), (KernelChoice::Auto, true)]
    {
        let gpu = Gpu::new(&DeviceOptions { kernels, winograd, ..base.clone() }).block_on()?;
        let kernels = format!("{kernels:?}{}", if winograd { "" } else { " (Winograd off)" });
        let uploaded = weights.upload(&gpu)?;
        let plan = Plan::new(&gpu, &graph, &uploaded, batch, &[])?;
        plan.run(&gpu, &[&x, &t]).block_on()?; // warm-up
        variants.push((kernels, gpu, plan, Vec::new()));
    }
    println!("adapter: {}", describe(&variants[2].1.info()));
    println!(
        "model {} ({} parameters), batch {batch}, {rounds} rounds",
        model.display(),
        weights.parameter_count()
    );
    let mut outputs = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (k, (_, gpu, plan, times)) in variants.iter_mut().enumerate() {
            let start = Instant::now();
            outputs[k] = plan.run(gpu, &[&x, &t]).block_on()?;
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let scale = outputs[0].iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let diff = |k: usize| {
        outputs[0].iter().zip(&outputs[k]).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
    };
    let mut medians = Vec::new();
    for (kernels, gpu, plan, times) in &mut variants {
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        medians.push(median);
        let launches: usize = plan.dispatches().iter().map(|d| d.launch_count()).sum();
        let owned: u64 = plan.dispatches().iter().map(|d| d.owned_bytes()).sum();
        let s = plan.stats();
        println!(
            "{kernels}: forward {:.1} ms median ({:.1} ms per image); {} dispatches, {launches} launches; \
             activations planned {:.1} MiB in {} buffers, lower bound {:.1} MiB ({:.2}x), no reuse {:.1} MiB; \
             packed weights {:.1} MiB, scratch {:.1} MiB",
            median * 1e3,
            median * 1e3 / batch as f64,
            plan.dispatches().len(),
            mib(s.planned),
            s.buffers,
            mib(s.lower_bound),
            s.planned as f64 / s.lower_bound as f64,
            mib(s.no_reuse),
            mib(owned),
            mib(gpu.scratch_bytes()),
        );
    }
    println!(
        "speed-up over the baseline {:.2}x (Winograd off) and {:.2}x; Winograd on over off {:.2}x; outputs \
         differ from the baseline's by at most {:.1e} and {:.1e} of max|output|",
        medians[0] / medians[1],
        medians[0] / medians[2],
        medians[1] / medians[2],
        diff(1),
        diff(2)
    );
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
