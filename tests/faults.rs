//! GPU faults during sampling (item 4 of #7): a real wgpu validation error and a real device loss, injected
//! through `DeviceOptions::fault` (`DDIM_INJECT_FAULT` for the CLI), surface as our errors naming the node (and
//! kernel) or the sampling step; the CLI exits non-zero and writes nothing.

mod support;
use pollster::FutureExt as _;
use support::{ddim, error_line, gpu_required, small_config, temp_dir};

use ddim_wgpu::Error;
use ddim_wgpu::gpu::{DeviceOptions, Fault, Gpu};
use ddim_wgpu::model::weights::{StorageDtype, Weights};
use ddim_wgpu::sampler::ddim::{Sampler, SamplerSettings, StepNoise, latents};
use ddim_wgpu::unet;
use ddim_wgpu::unet::config::UNetConfig;

fn config() -> UNetConfig {
    small_config(&[4, 8])
}

/// Samples 2 images in 3 steps on a device opened with `fault`; `None` when there is no adapter (and none is
/// required).
fn sample_with(fault: Fault) -> Option<Result<Vec<f32>, Error>> {
    let options = DeviceOptions { fault: Some(fault), ..DeviceOptions::from_env().unwrap() };
    let gpu = match Gpu::new(&options).block_on() {
        Ok(g) => g,
        Err(e) => {
            assert!(!gpu_required(), "no GPU adapter: {e}");
            return None;
        }
    };
    let cfg = config();
    let weights = Weights::random(&cfg, 5).unwrap();
    let graph = unet::build(&cfg).unwrap();
    let uploaded = weights.upload(&gpu).unwrap();
    let settings = SamplerSettings { steps: 3, ..SamplerSettings::default() };
    let sampler = Sampler::new(&gpu, &graph, &uploaded, settings).unwrap();
    let x_t = latents(1, 0, 2, 64);
    Some(sampler.sample(&x_t, 2, 0, StepNoise::Philox(1), &mut |_| {}).block_on())
}

#[test]
fn a_validation_error_names_the_step_the_node_and_the_kernel() {
    for (node, kernel) in [
        ("mid_block.attentions.0.attention", "attention"),
        ("down_blocks.0.resnets.0.norm1", "group_norm"),
    ] {
        let Some(result) = sample_with(Fault::InvalidDispatch(node.into())) else {
            return;
        };
        let e = result.expect_err("an invalid dispatch must fail the run");
        let line = e.to_string();
        assert!(matches!(e, Error::Gpu { .. }), "{line}");
        assert!(line.contains("sampling step 1 (t = "), "{line}");
        assert!(line.contains(&format!("node `{node}`")), "{line}");
        assert!(line.contains(&format!("(kernel `{kernel}")), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}

#[test]
fn a_device_loss_names_the_step() {
    let Some(result) = sample_with(Fault::LoseDevice("sampling step 2".into())) else {
        return;
    };
    let e = result.expect_err("a lost device must fail the run");
    let line = e.to_string();
    assert!(matches!(e, Error::DeviceLost { .. }), "{line}");
    assert!(line.contains("sampling step 2 (t = "), "{line}");
}

#[test]
fn the_cli_exits_non_zero_and_writes_nothing() {
    let dir = temp_dir("faults");
    let model = dir.join("model.safetensors");
    Weights::random(&config(), 5).unwrap().save(&model, StorageDtype::F16).unwrap();
    let (png, npy) = (dir.join("x.png"), dir.join("x.npy"));
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for (fault, expected) in [
        ("invalid-dispatch:up_blocks.1.resnets.0.conv1", "node `up_blocks.1.resnets.0.conv1`"),
        ("lose-device:sampling step 2", "GPU device lost while running sampling step 2"),
    ] {
        let out = ddim(&[
            "sample",
            "--inject-fault",
            fault,
            "--model",
            &p(&model),
            "--steps",
            "3",
            "--batch",
            "2",
            "--out",
            &p(&png),
            "--out-npy",
            &p(&npy),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !gpu_required() && stderr.contains("no GPU adapter") {
            return;
        }
        assert_eq!(out.status.code(), Some(1), "{fault}: {stderr}");
        let line = error_line(&out);
        assert!(line.contains(expected), "{fault}: {line}");
        assert!(!png.exists() && !npy.exists(), "{fault}: an output was written");
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "{fault}: only the model may be in {}", dir.display());
    }
    std::fs::remove_dir_all(&dir).ok();
}
