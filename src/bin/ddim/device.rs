//! The device flags: which adapter and which kernel variants, on the commands that use a GPU (under their own
//! help heading). Each also reads its `DDIM_*` environment variable.

use clap::Args;

use ddim_wgpu::gpu::{
    DeviceOptions, Fault, KernelChoice, Precision, parse_backend, parse_conv_tile, parse_switch,
};

/// The device flags.
#[derive(Args, Clone)]
#[command(next_help_heading = "Device")]
pub struct DeviceArgs {
    /// Backend: vulkan, metal, dx12 or gl. Default: every backend (or WGPU_BACKEND).
    #[arg(long, env = "DDIM_BACKEND", value_parser = parse_backend_arg)]
    pub backend: Option<wgpu::Backend>,

    /// Use the adapter whose name contains this text (case-insensitive).
    #[arg(long, env = "DDIM_ADAPTER")]
    pub adapter: Option<String>,

    /// Kernel variants: auto (the family for the adapter's kind, CPU or GPU), baseline (one portable kernel
    /// per operation; the reference point for comparisons), cpu (barrier-free, uniform-window kernels) or gpu
    /// (shared-memory tiles), whatever the adapter.
    #[arg(long, env = "DDIM_KERNELS", default_value = "auto", value_parser = parse_kernels_arg)]
    pub kernels: KernelChoice,

    /// Whether the cpu family runs 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) where it pays (on), or
    /// always with the direct kernel conv2d_3x3 (off), to compare the two.
    #[arg(long, env = "DDIM_WINOGRAD", default_value = "on", value_parser = parse_switch_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    pub winograd: bool,

    /// Whether the cpu family reads activations through 64 KiB uniform windows where it can (on: conv2d_1x1,
    /// the windowed Winograd products), or always from storage (off), to compare the two.
    #[arg(long, env = "DDIM_INPUT_WINDOWS", default_value = "on", value_parser = parse_input_windows_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    pub input_windows: bool,

    /// Whether the gpu family's tiled kernels split their reductions (a convolution's K, an attention's keys)
    /// over several workgroups on small maps (on), or not (off), to compare the two.
    #[arg(long, env = "DDIM_SPLIT_K", default_value = "on", value_parser = parse_split_k_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    pub split_k: bool,

    /// Outputs per invocation of the gpu family's tiled convolution: 4x4 (conv2d_tiled, 64 x 64 tiles) or 8x8
    /// (conv2d_tiled_8x8, 128 x 128 tiles), to compare the two.
    #[arg(long, env = "DDIM_CONV_TILE", default_value = "4x4", value_parser = parse_conv_tile_arg,
          action = clap::ArgAction::Set, value_name = "4x4|8x8")]
    pub conv_tile: bool,

    /// Whether the device is opened with subgroup operations where the adapter has them (on: the gpu
    /// family's group norm reduces subgroup by subgroup), or without (off), to compare the two.
    #[arg(long, env = "DDIM_SUBGROUPS", default_value = "on", value_parser = parse_subgroups_arg,
          action = clap::ArgAction::Set, value_name = "on|off")]
    pub subgroups: bool,

    /// What activations and weights are stored as: f32, or f16 (half the memory and traffic; every kernel
    /// still computes in f32; needs the adapter's shader-f16 feature and runs the gpu family's kernels).
    #[arg(long, env = "DDIM_PRECISION", default_value = "f32", value_parser = parse_precision_arg,
          value_name = "f32|f16")]
    pub precision: Precision,

    /// Open the device with at most this storage-binding size, in bytes (a multiple of 4): what a smaller
    /// device allows, to see batches split on a large one.
    #[arg(long, env = "DDIM_MAX_BINDING")]
    pub max_binding: Option<u64>,

    /// Open the device with at most this many storage buffers per shader stage: what a GLES adapter may allow
    /// (4), to see which kernels it cannot run.
    #[arg(long, env = "DDIM_MAX_STORAGE_BUFFERS")]
    pub max_storage_buffers: Option<u32>,

    /// For testing error handling: inject a GPU fault, `invalid-dispatch:<node>` or
    /// `lose-device:<submission>` (e.g. `lose-device:sampling step 2`).
    #[arg(long, env = "DDIM_INJECT_FAULT", hide = true, value_parser = parse_fault_arg)]
    pub inject_fault: Option<Fault>,
}

impl DeviceArgs {
    /// The library's device options.
    pub fn options(&self) -> DeviceOptions {
        DeviceOptions {
            backend: self.backend,
            adapter: self.adapter.clone().filter(|s| !s.trim().is_empty()),
            kernels: self.kernels,
            winograd: self.winograd,
            input_windows: self.input_windows,
            split_k: self.split_k,
            conv_tile_8x8: self.conv_tile,
            subgroups: self.subgroups,
            precision: self.precision,
            max_binding: self.max_binding,
            max_storage_buffers: self.max_storage_buffers,
            fault: self.inject_fault.clone(),
        }
    }
}

fn parse_fault_arg(s: &str) -> Result<Fault, String> {
    s.parse().map_err(|e: ddim_wgpu::Error| e.to_string())
}

fn parse_precision_arg(s: &str) -> Result<Precision, String> {
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

fn parse_conv_tile_arg(s: &str) -> Result<bool, String> {
    parse_conv_tile(s).map_err(|e| e.to_string())
}

fn parse_subgroups_arg(s: &str) -> Result<bool, String> {
    parse_switch("--subgroups", s).map_err(|e| e.to_string())
}

fn parse_backend_arg(s: &str) -> Result<wgpu::Backend, String> {
    parse_backend(s).map_err(|e| e.to_string())
}
