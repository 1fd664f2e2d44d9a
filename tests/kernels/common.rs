//! Shared test helpers: one GPU per test binary, deterministic data, and the two error measures: elementwise
//! `|a - b| <= atol + rtol |ref|`, and for reductions the normalised `max |a - b| / max |ref|`.

use pollster::FutureExt as _;
use std::sync::OnceLock;

use ddim_wgpu::gpu::Dispatch;
use ddim_wgpu::gpu::KernelChoice;
use ddim_wgpu::gpu::{DeviceOptions, Gpu, Tensor};

/// The shared device, or `None` (the test then returns early) when no adapter exists and neither `CI` nor
/// `DDIM_REQUIRE_GPU` is set. With either set, a missing adapter fails the test.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| open(None)).as_ref()
}

/// A second device on the same adapter that runs the baseline kernels (`KernelChoice::Baseline`), so tests
/// can check both variants of an operation whatever `DDIM_KERNELS` says.
pub fn gpu_baseline() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| open(Some(KernelChoice::Baseline))).as_ref()
}

/// Three devices on the same adapter, opened with the CPU family, the GPU family and the baseline kernels, so
/// a test checks every variant of an operation whatever the adapter and `DDIM_KERNELS` (the GPU family's
/// shared-memory kernels run on lavapipe too, slowly).
pub fn gpu_families() -> [&'static Gpu; 3] {
    static CPU: OnceLock<Option<Gpu>> = OnceLock::new();
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    let msg = "a second device on the same adapter";
    [
        CPU.get_or_init(|| open(Some(KernelChoice::Cpu))).as_ref().expect(msg),
        GPU.get_or_init(|| open(Some(KernelChoice::Gpu))).as_ref().expect(msg),
        gpu_baseline().expect(msg),
    ]
}

/// [`gpu_families`] and a fourth device with the GPU family's 8 x 8 convolution tiles
/// (`DeviceOptions::conv_tile_8x8`), for the convolution tests: every convolution kernel that can run.
pub fn conv_families() -> [&'static Gpu; 4] {
    static TILE8: OnceLock<Option<Gpu>> = OnceLock::new();
    let [cpu, gpu, baseline] = gpu_families();
    let tile8 = TILE8.get_or_init(|| open_with(Some(KernelChoice::Gpu), true));
    [cpu, gpu, baseline, tile8.as_ref().expect("a second device on the same adapter")]
}

fn open(kernels: Option<KernelChoice>) -> Option<Gpu> {
    open_with(kernels, false)
}

fn open_with(kernels: Option<KernelChoice>, conv_tile_8x8: bool) -> Option<Gpu> {
    let mut options =
        DeviceOptions::from_env().expect("DDIM_BACKEND / DDIM_ADAPTER / DDIM_KERNELS");
    if let Some(kernels) = kernels {
        options.kernels = kernels;
    }
    options.conv_tile_8x8 |= conv_tile_8x8;
    match Gpu::new(&options).block_on() {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            let required = ["CI", "DDIM_REQUIRE_GPU"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false"));
            assert!(!required, "no GPU adapter and CI or DDIM_REQUIRE_GPU is set: {e}");
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

/// Returns from the test when there is no GPU (and none is required).
#[macro_export]
macro_rules! gpu_or_skip {
    () => {
        match $crate::common::gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

/// Deterministic test data: splitmix64 mapped to uniform [lo, hi). Independent of the crate's own Philox.
pub fn data(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

/// Uploads `data(seed, ...)` in [-1, 1) as a tensor and returns both.
pub fn random(gpu: &Gpu, label: &str, shape: &[usize], seed: u64) -> (Tensor, Vec<f32>) {
    let v = data(seed, shape.iter().product(), -1.0, 1.0);
    (gpu.upload(label, shape, &v).unwrap(), v)
}

/// Runs one prepared dispatch list and reads `out` back.
pub fn run(gpu: &Gpu, dispatches: &[&Dispatch], out: &Tensor) -> Vec<f32> {
    gpu.run("test", dispatches).block_on().unwrap();
    gpu.download(out).block_on().unwrap()
}

/// Elementwise check: |gpu - ref| <= atol + rtol * |ref| everywhere. Returns the worst ratio of error to bound.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let bound = atol + rtol * w.abs();
        assert!(
            err <= bound && g.is_finite(),
            "{what}: element {i}: got {g}, want {w}, |error| {err:.3e} > {atol:e} + {rtol:e} * |want|"
        );
        let ratio = if bound > 0.0 { err / bound } else { 0.0 };
        if ratio > worst.0 {
            worst = (ratio, i);
        }
    }
    if std::env::var_os("DDIM_TEST_VERBOSE").is_some() {
        eprintln!("{what}: worst error/bound {:.3} at element {}", worst.0, worst.1);
    }
    worst.0
}

/// Reduction check: max|gpu - ref| / max(max|ref|, tiny) <= bound. Returns the measured normalised error.
pub fn assert_normalised(what: &str, got: &[f32], want: &[f64], bound: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    let max_ref = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let max_err = got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
    let e = max_err / max_ref;
    assert!(e <= bound, "{what}: normalised error {e:.3e} > {bound:e}");
    if std::env::var_os("DDIM_TEST_VERBOSE").is_some() {
        eprintln!("{what}: normalised error {e:.3e} (bound {bound:e})");
    }
    e
}
