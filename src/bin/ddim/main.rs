//! The `ddim` command line: one module per subcommand, each a thin client of the library's pipeline.

mod convert;
mod device;
mod eval;
mod info;
mod interpolate;
mod invert;
mod merge;
mod profile;
mod record;
mod sample;
mod sampling;

use anyhow::Result;
use clap::{Parser, Subcommand};

use ddim_wgpu::error::printable;

#[derive(Parser)]
#[command(
    name = "ddim",
    version,
    about = "DDIM sampling on any GPU with hand-written WGSL kernels"
)]
struct Cli {
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

/// Set by the SIGINT and SIGTERM handler before it removes the staged outputs.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn main() {
    // Mesa's Vulkan device-select layer prints notices on headless machines (`XDG_RUNTIME_DIR is invalid`) that
    // read like ours, and picks a default GPU, which the engine does itself: off unless the user set it.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: first thing in main, before any other thread exists (the signal handler's, wgpu's), so no
        // thread can read the environment while it changes.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
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
    match cli.command {
        Command::Info(args) => info::run(&args.device.options(), args),
        Command::Profile(args) => profile::run(&args.device.options(), args),
        Command::Convert(args) => convert::run(args),
        Command::Eval(args) => eval::run(&args.device.options(), args),
        Command::Sample(args) => sample::run(&args.device.options(), args),
        Command::Invert(args) => invert::run(&args.device.options(), args),
        Command::Merge(args) => merge::run(args),
        Command::Interpolate(args) => interpolate::run(&args.device.options(), args),
    }
}
