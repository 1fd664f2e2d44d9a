//! The `ddim` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use ddim_wgpu::gpu::{DeviceOptions, Gpu, describe, enumerate_adapters, parse_backend};

#[derive(Parser)]
#[command(
    name = "ddim",
    version,
    about = "DDIM sampling on any GPU with hand-written WGSL kernels"
)]
struct Cli {
    /// Backend: vulkan, metal, dx12 or gl. Default: every backend (or WGPU_BACKEND).
    #[arg(long, global = true, env = "DDIM_BACKEND", value_parser = parse_backend_arg)]
    backend: Option<wgpu::Backend>,

    /// Use the adapter whose name contains this text (case-insensitive).
    #[arg(long, global = true, env = "DDIM_ADAPTER")]
    adapter: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters, and the features and limits of the one that would be used.
    Info,
}

fn parse_backend_arg(s: &str) -> Result<wgpu::Backend, String> {
    parse_backend(s).map_err(|e| e.to_string())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // One line: the chain of contexts, outermost first.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let options = DeviceOptions {
        backend: cli.backend,
        adapter: cli.adapter.filter(|s| !s.trim().is_empty()),
    };
    match cli.command {
        Command::Info => info(&options),
    }
}

fn info(options: &DeviceOptions) -> Result<()> {
    let all = DeviceOptions {
        adapter: None,
        ..options.clone()
    };
    println!("adapters:");
    let adapters = enumerate_adapters(&all);
    if adapters.is_empty() {
        println!("  (none)");
    }
    for a in &adapters {
        println!("  {}", describe(&a.get_info()));
    }
    let gpu = Gpu::new(options).context("opening a device")?;
    let info = gpu.info();
    println!("chosen: {}", describe(&info));
    let features = gpu.features();
    let has = |f: wgpu::Features| if features.contains(f) { "yes" } else { "no" };
    println!("features:");
    println!(
        "  timestamp queries:        {}",
        has(wgpu::Features::TIMESTAMP_QUERY)
    );
    println!(
        "  timestamps inside passes: {}",
        has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    );
    let adapter_features = gpu.adapter_features();
    let offers = |f: wgpu::Features| {
        if adapter_features.contains(f) {
            "yes"
        } else {
            "no"
        }
    };
    println!(
        "  shader f16 (adapter):     {}",
        offers(wgpu::Features::SHADER_F16)
    );
    println!(
        "  subgroups (adapter):      {}",
        offers(wgpu::Features::SUBGROUP)
    );
    let l = gpu.limits();
    let mib = |b: u64| format!("{} MiB", b >> 20);
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size:    {}",
        mib(l.max_storage_buffer_binding_size)
    );
    println!(
        "  max_buffer_size:                    {}",
        mib(l.max_buffer_size)
    );
    println!(
        "  max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_storage_size: {} KiB",
        l.max_compute_workgroup_storage_size / 1024
    );
    println!(
        "  max_storage_buffers_per_shader_stage: {}",
        l.max_storage_buffers_per_shader_stage
    );
    Ok(())
}
