//! The `ddim` command line: one module per subcommand, each a thin client of the library's pipeline.

mod convert;
mod eval;
mod info;
mod interpolate;
mod invert;
mod merge;
mod profile;
mod sample;
mod sampling;

use anyhow::Result;
use clap::{Parser, Subcommand};

use ddim_wgpu::error::printable;
use ddim_wgpu::gpu::{DeviceOptions, Fault, KernelChoice, parse_backend, parse_switch};

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

    /// Kernel variants: auto (the family for the adapter's kind, CPU or GPU), baseline (one portable kernel
    /// per operation; the reference point for comparisons), cpu (barrier-free, uniform-window kernels) or gpu
    /// (shared-memory tiles), whatever the adapter.
    #[arg(long, global = true, env = "DDIM_KERNELS", default_value = "auto", value_parser = parse_kernels_arg)]
    kernels: KernelChoice,

    /// Whether the cpu family runs 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) where it pays (on), or
    /// always with the direct kernel conv2d_3x3 (off), to compare the two.
    #[arg(long, global = true, env = "DDIM_WINOGRAD", default_value = "on", value_parser = parse_switch_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    winograd: bool,

    /// Whether the cpu family reads activations through 64 KiB uniform windows where it can (on: conv2d_1x1,
    /// the windowed Winograd products), or always from storage (off), to compare the two.
    #[arg(long, global = true, env = "DDIM_INPUT_WINDOWS", default_value = "on", value_parser = parse_input_windows_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    input_windows: bool,

    /// Whether the gpu family's tiled kernels split their reductions (a convolution's K, an attention's keys)
    /// over several workgroups on small maps (on), or not (off), to compare the two.
    #[arg(long, global = true, env = "DDIM_SPLIT_K", default_value = "on", value_parser = parse_split_k_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    split_k: bool,

    /// Open the device with at most this storage-binding size, in bytes (a multiple of 4): what a smaller
    /// device allows, to see batches split on a large one.
    #[arg(long, global = true, env = "DDIM_MAX_BINDING")]
    max_binding: Option<u64>,

    /// For testing error handling: inject a GPU fault, `invalid-dispatch:<node>` or
    /// `lose-device:<submission>` (e.g. `lose-device:sampling step 2`).
    #[arg(long, global = true, env = "DDIM_INJECT_FAULT", hide = true, value_parser = parse_fault_arg)]
    inject_fault: Option<Fault>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters, and the features and limits of the one that would be used.
    Info(info::Args),
    /// Sample with GPU timestamps around every dispatch: a per-kernel table against the measured roofline,
    /// wall and GPU time, and optionally a Chrome trace.
    Profile(profile::Args),
    /// Convert a model into our weights file: a diffusers UNet2DModel directory (config.json with
    /// diffusion_pytorch_model.safetensors or .bin), or an original DDPM/DDIM checkpoint with --config.
    Convert(convert::Args),
    /// Run the UNet once on the GPU: eps = UNet(x, t).
    Eval(eval::Args),
    /// Sample images with DDIM. Image k depends only on (seed, k): never on the batch size or the shard.
    Sample(sample::Args),
    /// Encode images into latents x_T by DDIM inversion (eta = 0).
    Invert(invert::Args),
    /// Concatenate .npy outputs of shards (e.g. --out-npy of each `--shard i/n`) along the first axis, in order.
    Merge(merge::Args),
    /// Interpolate (slerp) between two latents and sample the frames, as a one-row strip.
    Interpolate(interpolate::Args),
}

fn parse_fault_arg(s: &str) -> Result<Fault, String> {
    s.parse().map_err(|e: ddim_wgpu::Error| e.to_string())
}

fn parse_kernels_arg(s: &str) -> Result<KernelChoice, String> {
    s.parse().map_err(|e: ddim_wgpu::Error| e.to_string())
}

fn parse_switch_arg(s: &str) -> Result<bool, String> {
    parse_switch("--winograd", s).map_err(|e| e.to_string())
}

fn parse_input_windows_arg(s: &str) -> Result<bool, String> {
    parse_switch("--input-windows", s).map_err(|e| e.to_string())
}

fn parse_split_k_arg(s: &str) -> Result<bool, String> {
    parse_switch("--split-k", s).map_err(|e| e.to_string())
}

fn parse_backend_arg(s: &str) -> Result<wgpu::Backend, String> {
    parse_backend(s).map_err(|e| e.to_string())
}

/// Set by the SIGINT and SIGTERM handler before it removes the staged outputs.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => parse_error(e),
    };
    // An interrupted or terminated run removes what it staged (and the folders it made for it): all or nothing
    // holds for a signal too. A run interrupted while its outputs are being renamed into place finishes that
    // first.
    let handler = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        match ddim_wgpu::io::abandon_outputs() {
            0 => eprintln!("error: interrupted"),
            _ => eprintln!("error: interrupted; the outputs staged so far were removed"),
        }
        std::process::exit(130);
    });
    if let Err(e) = handler {
        eprintln!("warning: no signal handler ({e}); an interrupted run may leave staged files");
    }
    if let Err(e) = run(cli) {
        if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            // The error is the interruption's doing (its outputs were taken away); the handler reports it. Wait
            // for its cleanup before exiting, which would stop it.
            ddim_wgpu::io::abandon_outputs();
            std::process::exit(130);
        }
        // One line: the chain of contexts, outermost first, with every control character escaped whatever
        // context it came from.
        eprintln!("error: {}", printable(&format!("{e:#}")));
        std::process::exit(1);
    }
}

/// Help and version as clap prints them; any other argument error as one line (clap's own spreads over
/// several and echoes the value as given, control characters and all), exit code 2.
fn parse_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let message = parts.join("; ");
    eprintln!("error: {}", printable(message.strip_prefix("error: ").unwrap_or(&message)));
    std::process::exit(2);
}

fn run(cli: Cli) -> Result<()> {
    let options = DeviceOptions {
        backend: cli.backend,
        adapter: cli.adapter.filter(|s| !s.trim().is_empty()),
        kernels: cli.kernels,
        winograd: cli.winograd,
        input_windows: cli.input_windows,
        split_k: cli.split_k,
        max_binding: cli.max_binding,
        fault: cli.inject_fault,
    };
    match cli.command {
        Command::Info(args) => info::run(&options, args),
        Command::Profile(args) => profile::run(&options, args),
        Command::Convert(args) => convert::run(args),
        Command::Eval(args) => eval::run(&options, args),
        Command::Sample(args) => sample::run(&options, args),
        Command::Invert(args) => invert::run(&options, args),
        Command::Merge(args) => merge::run(args),
        Command::Interpolate(args) => interpolate::run(&options, args),
    }
}
