//! `ddim info`: the adapters, and the features, limits and roofline of the one that would be used.

use anyhow::{Context, Result};
use pollster::FutureExt as _;

use ddim_wgpu::gpu::{DeviceOptions, Gpu, describe, enumerate_adapters};

/// The flags of `ddim info`.
#[derive(clap::Args)]
pub struct Args {
    /// Also measure the roofline: attainable f32 FMA rate and shader copy bandwidth.
    #[arg(long)]
    pub roofline: bool,
}

/// Runs `ddim info`.
pub fn run(options: &DeviceOptions, args: Args) -> Result<()> {
    info(options, args.roofline)
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
    println!("  subgroups (adapter):      {}", offers(wgpu::Features::SUBGROUP));
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
