//! Golden tests against diffusers/PyTorch: fixtures made by tools/fixtures/make_unet_fixtures.py (torch 2.15.0,
//! diffusers 0.42.1) are converted by our converters and run by our executor; every block's output is compared
//! with PyTorch's, so a failure names the block.
//!
//! Bound: max|ours - torch| <= 1e-4 * max(1, max|torch|). Both sides compute in f32 with different
//! summation orders; measured on lavapipe the largest difference is 1.6e-5 (on activations up to 6.2, so
//! 2.6e-6 relative), 40x inside the bound. At f16 precision (`F16_BOUND`) every stored activation and weight
//! is rounded to f16 and the errors compound through the blocks.

mod support;
use pollster::FutureExt as _;
use support::gpu;

use std::path::{Path, PathBuf};

use ddim_wgpu::gpu::Gpu;
use ddim_wgpu::graph::plan::Plan;
use ddim_wgpu::io::read_npy;
use ddim_wgpu::model::convert::{from_diffusers_dir, from_original};
use ddim_wgpu::model::torch::read_checkpoint;
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::unet;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet")
}

/// f16 precision against PyTorch's f32: each weight and each stored activation carries up to half an f16 ulp
/// (2^-11 = 4.9e-4) of relative error, the 4 x 4 convolutions and `attention_flash` sum 16-term chunks of
/// products in f16, and a block's output sums hundreds of such values through two convolutions, norms and
/// attention. Measured on lavapipe: at most 4.2e-3 of max(1, max|torch|) over every block of the three fixtures
/// (3.0e-3 at the outputs). 1e-2 is 2.4x that: a value read at the wrong width, or an intermediate stored in f16
/// where the kernels keep f32 (a statistic, a softmax row), errs by far more.
const F16_BOUND: f64 = 1e-2;

fn check(case: &str, weights: Weights) {
    let Some(gpu) = gpu() else { return };
    check_on(&gpu, case, &weights, 1e-4);
    // The same fixture at f16 precision (where the adapter has shader-f16).
    if let Some(half) = support::gpu_f16(false) {
        check_on(&half, &format!("{case} at f16"), &weights, F16_BOUND);
    }
}

fn check_on(gpu: &Gpu, case: &str, weights: &Weights, relative: f64) {
    let dir = fixtures().join(case.trim_end_matches(" at f16"));
    let x = read_npy(&dir.join("x.npy")).unwrap();
    let t = read_npy(&dir.join("t.npy")).unwrap();
    let batch = x.shape[0];
    let graph = unet::build(&weights.config).unwrap();
    let keep: Vec<_> = graph.checkpoints.iter().map(|(_, id)| *id).collect();
    let plan = Plan::new(gpu, &graph, &weights.upload(gpu).unwrap(), batch, &keep).unwrap();
    let out = plan.run(gpu, &[&x.data, &t.data]).block_on().unwrap();

    let compare = |what: &str, got: &[f32], want: &[f32]| {
        assert_eq!(got.len(), want.len(), "{case}: {what}: size");
        let max_ref = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        let err =
            got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()));
        let bound = relative * max_ref.max(1.0);
        if std::env::var_os("DDIM_TEST_VERBOSE").is_some() {
            eprintln!("{case}: {what}: max |ours - torch| = {err:.2e} (max |torch| {max_ref:.2})");
        }
        assert!(err <= bound, "{case}: block {what}: max |ours - torch| = {err:.3e} > {bound:.3e}");
    };
    for (name, id) in &graph.checkpoints {
        let want = read_npy(&dir.join("blocks").join(format!("{name}.npy"))).unwrap();
        let got = gpu.download(plan.activation(*id).unwrap()).block_on().unwrap();
        assert_eq!(
            plan.activation(*id).unwrap().shape(),
            want.shape.as_slice(),
            "{case}: block {name}: shape"
        );
        compare(name, &got, &want.data);
    }
    let want = read_npy(&dir.join("out.npy")).unwrap();
    compare("output", &out, &want.data);
}

#[test]
fn diffusers_safetensors_padding0_one_head() {
    let w = from_diffusers_dir(&fixtures().join("pad0_onehead_safetensors/model")).unwrap();
    assert_eq!(w.config.attention_head_dim, None);
    check("pad0_onehead_safetensors", w);
}

#[test]
fn diffusers_bin_legacy_names_padding1_multi_head_defaults() {
    let w = from_diffusers_dir(&fixtures().join("pad1_multihead_bin/model")).unwrap();
    // Keys missing from config.json take diffusers' defaults.
    assert_eq!(w.config.attention_head_dim, Some(8));
    assert_eq!(w.config.norm_eps, 1e-5);
    check("pad1_multihead_bin", w);
}

#[test]
fn original_ddpm_checkpoint_with_yaml() {
    let dir = fixtures().join("original_ckpt");
    let w = from_original(&dir.join("model-1000.ckpt"), &dir.join("config.yml")).unwrap();
    check("original_ckpt", w);
}

#[test]
fn a_hostile_pickle_is_refused_without_running_it() {
    let bytes = std::fs::read(fixtures().join("hostile.bin")).unwrap();
    let e = read_checkpoint(&bytes).unwrap_err().to_string();
    // os.system pickles as posix.system on Linux (nt.system on Windows).
    assert!(e.contains("system") && e.contains("refusing"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn damaged_checkpoints_are_errors() {
    let bytes = std::fs::read(fixtures().join("original_ckpt/model-1000.ckpt")).unwrap();
    for cut in [10, bytes.len() / 2, bytes.len() - 30] {
        let e = read_checkpoint(&bytes[..cut]).unwrap_err().to_string();
        assert!(e.starts_with("checkpoint:") || e.starts_with("weight"), "cut at {cut}: {e}");
    }
    let e = read_checkpoint(b"\x80\x02\x8a\x0alegacy").unwrap_err().to_string();
    assert!(e.contains("legacy"), "{e}");
    // A YAML that does not match the checkpoint: the first mismatching tensor is named.
    let dir = fixtures().join("original_ckpt");
    let tmp = std::env::temp_dir().join(format!("ddim-wrong-{}.yml", std::process::id()));
    let yaml = std::fs::read_to_string(dir.join("config.yml")).unwrap().replace("ch: 32", "ch: 64");
    std::fs::write(&tmp, yaml).unwrap();
    let e = from_original(&dir.join("model-1000.ckpt"), &tmp).unwrap_err().to_string();
    std::fs::remove_file(&tmp).ok();
    assert!(e.starts_with("weight `") && e.contains("shape"), "{e}");
}
