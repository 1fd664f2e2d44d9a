//! Helpers shared by the integration-test binaries (each includes this file with `mod support;`).
#![allow(dead_code)] // each test binary uses a different subset

use ddim_wgpu::gpu::{DeviceOptions, Gpu};

/// True when `CI` or `DDIM_REQUIRE_GPU` is set (and not "0" or "false"): a missing adapter must fail the tests.
pub fn gpu_required() -> bool {
    ["CI", "DDIM_REQUIRE_GPU"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false"))
}

/// A device on the adapter `DDIM_BACKEND` / `DDIM_ADAPTER` select, or `None` (the test then returns early)
/// when there is none and none is required.
pub fn gpu() -> Option<Gpu> {
    match Gpu::new(&DeviceOptions::from_env().expect("DDIM_BACKEND / DDIM_ADAPTER")) {
        Ok(g) => Some(g),
        Err(e) => {
            assert!(
                !gpu_required(),
                "no GPU adapter and CI or DDIM_REQUIRE_GPU is set: {e}"
            );
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}
