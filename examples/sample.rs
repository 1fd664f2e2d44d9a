//! A whole DDIM sampling through the library's public API: load the default model, open a device, sample four
//! images with the model's own settings at 20 steps, and print each image's value range.
//!
//! `cargo run --release --example sample`

use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::pipeline::{Pipeline, SampleRequest};

fn main() -> Result<(), ddim_wgpu::Error> {
    pollster::block_on(async {
        let weights = Weights::load("weights/default.safetensors".as_ref())?;
        let gpu = Gpu::new(&DeviceOptions::from_env()?).await?;
        let pipeline = Pipeline::new(gpu, &weights)?;

        let mut scheduler = pipeline.default_settings();
        scheduler.steps = 20;
        let request = SampleRequest::new(scheduler, 4, 0);
        let images =
            pipeline.sample(&request, &mut |p| eprint!("\rstep {}/{}", p.done, p.total)).await?;
        eprintln!();

        for k in 0..images.shape[0] {
            let x = images.image(k);
            let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            println!("image {k}: {:?}, values in [{lo:.3}, {hi:.3}]", &images.shape[1..]);
        }
        Ok(())
    })
}
