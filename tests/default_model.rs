//! The default model in weights/: it loads and validates, carries its training schedule, and its samples look
//! like MNIST digits (mostly black background, some bright strokes). Skipped when the file is absent.

use pollster::FutureExt as _;
use std::path::Path;

use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::sampler::ddim::{Sampler, SamplerSettings, StepNoise, latents};
use ddim_wgpu::unet;

mod support;

#[test]
fn default_model_makes_digit_like_images() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/default.safetensors");
    if !path.exists() {
        eprintln!("skipping: no {}", path.display());
        return;
    }
    let w = Weights::load(&path).unwrap();
    assert_eq!((w.config.in_channels, w.config.sample_size), (1, 32));
    let training = w.training.clone().expect("the converter stores the training schedule");
    assert_eq!(training.schedule.train_steps, 1000);
    let Some(gpu) = support::gpu() else { return };
    let graph = unet::build(&w.config).unwrap();
    let uploaded = w.upload(&gpu).unwrap();
    let settings = SamplerSettings { steps: 10, clip: Some(1.0), ..Default::default() };
    let sampler = Sampler::new(&gpu, &graph, &uploaded, settings).unwrap();
    let n = 4;
    let x = sampler
        .sample(&latents(0, 0, n, 32 * 32), n, 0, StepNoise::Philox(0), &mut |_| {})
        .block_on()
        .unwrap();
    assert!(x.iter().all(|v| v.is_finite()));
    // MNIST digits padded to 32x32: about 80% of the pixels are background (-1) and a tenth are strokes (near 1).
    // Pure noise, or a model that collapsed to a flat image, fails one of these.
    for (k, img) in x.chunks(32 * 32).enumerate() {
        let dark = img.iter().filter(|&&v| v < -0.8).count() as f64 / img.len() as f64;
        let bright = img.iter().filter(|&&v| v > 0.5).count() as f64 / img.len() as f64;
        eprintln!("image {k}: {:.0}% background, {:.0}% strokes", 100.0 * dark, 100.0 * bright);
        assert!(dark > 0.5, "image {k}: only {:.0}% background", 100.0 * dark);
        assert!(bright > 0.03, "image {k}: only {:.1}% strokes", 100.0 * bright);
    }
}
