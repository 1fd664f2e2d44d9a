//! The `ddim` command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use ddim_wgpu::gpu::{DeviceOptions, Gpu, describe, enumerate_adapters, parse_backend};
use ddim_wgpu::graph::{plan::Plan, unet};
use ddim_wgpu::io::{read_npy, write_npy};
use ddim_wgpu::model::convert::{from_diffusers_dir, from_original, load_model};
use ddim_wgpu::model::weights::{StorageDtype, Weights};

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
    /// Convert a model into our weights file: a diffusers UNet2DModel directory (config.json with
    /// diffusion_pytorch_model.safetensors or .bin), or an original DDPM/DDIM checkpoint with --config.
    Convert {
        /// The diffusers directory, or the original checkpoint (.ckpt).
        src: PathBuf,
        /// The official DDIM repository's YAML config, for an original checkpoint.
        #[arg(long)]
        config: Option<PathBuf>,
        /// How to store the tensors.
        #[arg(long, value_enum, default_value_t = Dtype::F32)]
        dtype: Dtype,
        /// Where to write the weights file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the UNet once on the GPU: eps = UNet(x, t).
    Eval {
        /// Our weights file, or a diffusers directory (converted on the fly).
        #[arg(long)]
        model: PathBuf,
        /// The input, float32 NCHW .npy.
        #[arg(long)]
        input: PathBuf,
        /// One timestep for every image.
        #[arg(
            long,
            conflicts_with = "timesteps",
            required_unless_present = "timesteps"
        )]
        timestep: Option<f32>,
        /// One timestep per image (or one for all): int64 or float .npy.
        #[arg(long)]
        timesteps: Option<PathBuf>,
        /// Where to write the output, float32 .npy.
        #[arg(long)]
        out: PathBuf,
        /// Also write every block's output here as <block>.npy.
        #[arg(long)]
        dump_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Dtype {
    F32,
    F16,
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
        Command::Convert {
            src,
            config,
            dtype,
            out,
        } => convert(&src, config.as_deref(), dtype, &out),
        Command::Eval {
            model,
            input,
            timestep,
            timesteps,
            out,
            dump_dir,
        } => eval(
            &options,
            &model,
            &input,
            timestep,
            timesteps.as_deref(),
            &out,
            dump_dir.as_deref(),
        ),
    }
}

fn convert(src: &Path, config: Option<&Path>, dtype: Dtype, out: &Path) -> Result<()> {
    let weights = match config {
        Some(yaml) => from_original(src, yaml),
        None if src.is_dir() => from_diffusers_dir(src),
        None => bail!(
            "{}: a file needs --config (the original DDPM/DDIM YAML); a diffusers model is a directory",
            src.display()
        ),
    }
    .with_context(|| format!("converting {}", src.display()))?;
    let storage = match dtype {
        Dtype::F32 => StorageDtype::F32,
        Dtype::F16 => StorageDtype::F16,
    };
    weights.save(out, storage)?;
    let c = &weights.config;
    println!(
        "wrote {} ({} tensors, {} parameters, {}): UNet {}x{}, channels {:?}, {} layers per block",
        out.display(),
        weights.tensors.len(),
        weights.parameter_count(),
        match dtype {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        },
        c.sample_size,
        c.sample_size,
        c.block_out_channels,
        c.layers_per_block
    );
    Ok(())
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
            "{}: input has shape {:?}; the model takes [N, {}, {}, {}]",
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
    let gpu = Gpu::new(options).context("opening a device")?;
    let graph = unet::build(c)?;
    let keep: Vec<_> = match dump_dir {
        Some(_) => graph.checkpoints.iter().map(|(_, id)| *id).collect(),
        None => Vec::new(),
    };
    let plan = Plan::new(&gpu, &graph, &weights.upload(&gpu)?, batch, &keep)?;
    let start = std::time::Instant::now();
    let result = plan.run(&gpu, &[&x.data, &t])?;
    let elapsed = start.elapsed();
    write_npy(out, plan.output().shape(), &result)?;
    if let Some(dir) = dump_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, id) in &graph.checkpoints {
            let tensor = plan.activation(*id).expect("every checkpoint is planned");
            write_npy(
                &dir.join(format!("{name}.npy")),
                tensor.shape(),
                &gpu.download(tensor)?,
            )?;
        }
    }
    let s = plan.stats();
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "wrote {} {:?}: {} dispatches in {:.1?}; activations {:.1} MiB planned in {} buffers ({:.1} MiB without \
         reuse, {:.1} MiB lower bound)",
        out.display(),
        plan.output().shape(),
        plan.dispatches().len(),
        elapsed,
        mib(s.planned),
        s.buffers,
        mib(s.no_reuse),
        mib(s.lower_bound)
    );
    Ok(())
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
