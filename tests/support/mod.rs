//! Helpers shared by the integration-test binaries (each includes this file with `mod support;`).
#![allow(dead_code)] // each test binary uses a different subset

use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use pollster::FutureExt as _;

/// True when `CI` or `DDIM_REQUIRE_GPU` is set (and not "0" or "false"): a missing adapter must fail the tests.
pub fn gpu_required() -> bool {
    ["CI", "DDIM_REQUIRE_GPU"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false"))
}

/// A device on the adapter `DDIM_BACKEND` / `DDIM_ADAPTER` select, or `None` (the test then returns early)
/// when there is none and none is required.
pub fn gpu() -> Option<Gpu> {
    open(DeviceOptions::from_env().expect("DDIM_BACKEND / DDIM_ADAPTER"))
}

/// Like [`gpu`], with the kernel family `kernels` whatever `DDIM_KERNELS` says.
#[allow(dead_code)] // not every test binary compares kernel families
pub fn gpu_with(kernels: ddim_wgpu::gpu::KernelChoice) -> Option<Gpu> {
    let options = DeviceOptions::from_env().expect("DDIM_BACKEND / DDIM_ADAPTER");
    open(DeviceOptions { kernels, ..options })
}

/// A device with the GPU family and its 8 x 8 convolution tiles (`DeviceOptions::conv_tile_8x8`).
pub fn gpu_tile8() -> Option<Gpu> {
    let options = DeviceOptions::from_env().expect("DDIM_BACKEND / DDIM_ADAPTER");
    open(DeviceOptions {
        kernels: ddim_wgpu::gpu::KernelChoice::Gpu,
        conv_tile_8x8: true,
        ..options
    })
}

/// A device at f16 precision with the GPU family (`conv_tile_8x8` as given), or `None` (the test then skips its
/// f16 part) where the adapter lacks `shader-f16` (GL, SwiftShader) or there is no adapter and none is
/// required. An adapter that offers the feature must open: a failure there fails the test.
pub fn gpu_f16(conv_tile_8x8: bool) -> Option<Gpu> {
    use ddim_wgpu::gpu::{KernelChoice, Precision};
    let plain = gpu()?;
    if !plain.adapter_features().contains(wgpu::Features::SHADER_F16) {
        eprintln!("skipping the f16 part: the adapter has no shader-f16");
        return None;
    }
    let options = DeviceOptions {
        kernels: KernelChoice::Gpu,
        precision: Precision::F16,
        conv_tile_8x8,
        ..DeviceOptions::from_env().expect("DDIM_BACKEND / DDIM_ADAPTER")
    };
    Some(Gpu::new(&options).block_on().expect("an adapter with shader-f16 opens at f16"))
}

fn open(options: DeviceOptions) -> Option<Gpu> {
    match Gpu::new(&options).block_on() {
        Ok(g) => Some(g),
        Err(e) => {
            assert!(!gpu_required(), "no GPU adapter and CI or DDIM_REQUIRE_GPU is set: {e}");
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

/// Runs the `ddim` binary built for these tests.
pub fn ddim(args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ddim"));
    quiet_mesa(&mut cmd);
    cmd.args(args).output().expect("run ddim")
}

/// Mesa's window-system code prints `error: XDG_RUNTIME_DIR is invalid or not set` on stderr when it is unset
/// (a headless CI shell); this gives `cmd` a private directory so that stderr holds only what ddim says.
pub fn quiet_mesa(cmd: &mut std::process::Command) {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("ddim-xdg-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        cmd.env("XDG_RUNTIME_DIR", dir);
    }
}

/// A path under tests/fixtures/unet/.
pub fn fixture(p: &str) -> String {
    format!("{}/tests/fixtures/unet/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ddim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The single `error: ...` line a failed command prints (asserts there is exactly one).
pub fn error_line(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line: {stderr}");
    lines[0].to_string()
}

/// A UNet small enough for tests that run the CLI or try every byte of a file: one level per entry of
/// `channels` (2 groups per norm, heads of 2 channels), attention at every second level and in the mid block.
pub fn small_config(channels: &[usize]) -> ddim_wgpu::unet::config::UNetConfig {
    use ddim_wgpu::unet::config::{DownBlock, UNetConfig, UpBlock};
    let levels = channels.len();
    let attention_at = |level: usize| level % 2 == 1;
    UNetConfig {
        sample_size: 8,
        in_channels: 1,
        out_channels: 1,
        block_out_channels: channels.to_vec(),
        layers_per_block: 1,
        down_block_types: (0..levels)
            .map(|l| match attention_at(l) {
                true => DownBlock::AttnDownBlock2D,
                false => DownBlock::DownBlock2D,
            })
            .collect(),
        up_block_types: (0..levels)
            .map(|i| match attention_at(levels - 1 - i) {
                true => UpBlock::AttnUpBlock2D,
                false => UpBlock::UpBlock2D,
            })
            .collect(),
        mid_block_attention: true,
        mid_block_scale_factor: 1.0,
        norm_num_groups: 2,
        attn_norm_num_groups: None,
        norm_eps: 1e-6,
        attention_head_dim: Some(2),
        downsample_padding: 1,
        flip_sin_to_cos: false,
        freq_shift: 1.0,
        time_embed_dim: 4 * channels[0],
    }
}
