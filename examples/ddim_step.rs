//! One fused DDIM update on the GPU, checked against the CPU reference.
//!
//! `cargo run --release --example ddim_step`

use ddim_wgpu::diffusion::philox::{NoiseKey, Stream, normals};
use ddim_wgpu::diffusion::step::{Prediction, StepCoefficients};
use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::ops::ddim::{DdimScratch, Noise, StepSpec, UpdateMode, ddim_update};
use ddim_wgpu::reference::ddim::{StepSettings, ddim_step};
use pollster::FutureExt as _;

fn main() -> Result<(), ddim_wgpu::Error> {
    let gpu = Gpu::new(&DeviceOptions::from_env()?).block_on()?;
    println!("adapter: {}", ddim_wgpu::gpu::describe(&gpu.info()));

    let shape = [4, 3, 32, 32];
    let per_image = 3 * 32 * 32;
    let n = 4 * per_image;
    // Any x_t and model output will do for the demonstration: take Philox normals for both.
    let latent = |stream_step| NoiseKey { seed: 1, step: stream_step, stream: Stream::Latent };
    let xv: Vec<f32> = normals(latent(0), 0, 4, per_image).iter().map(|&v| v as f32).collect();
    let ev: Vec<f32> = normals(latent(1), 0, 4, per_image).iter().map(|&v| v as f32).collect();
    let x = gpu.upload("x_t", &shape, &xv)?; // updated in place to x_prev
    let eps = gpu.upload("eps", &shape, &ev)?; // what the UNet would predict

    let key = NoiseKey { seed: 42, step: 0, stream: Stream::StepNoise };
    let (a_t, a_p, eta) = (0.5, 0.7, 1.0);
    let scratch = DdimScratch::new(&gpu, &shape, UpdateMode::Fused)?;
    let spec = StepSpec {
        coefficients: StepCoefficients::ddim(a_t, a_p, eta)?,
        prediction: Prediction::Epsilon,
        clip: Some(1.0),
        threshold: None,
        clipped_eps: false,
        noise: Noise::Philox { key, first_image: 0 },
    };
    let update = ddim_update(&gpu, "step 0", &x, &eps, &spec, UpdateMode::Fused, &scratch)?;
    gpu.run("step 0", &update.iter().collect::<Vec<_>>()).block_on()?;
    let got = gpu.download(&x).block_on()?;

    let settings = StepSettings {
        a_t,
        a_p,
        eta,
        prediction: Prediction::Epsilon,
        clip: Some(1.0),
        threshold: None,
        clipped_eps: false,
        sigma_hat: None,
    };
    let want = ddim_step(&xv, &ev, per_image, &settings, Some(&normals(key, 0, 4, per_image)));
    let max_err = got.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    println!(
        "{n} elements updated in {} dispatch(es); max |gpu - cpu| = {max_err:.2e}",
        update.len()
    );
    Ok(())
}
