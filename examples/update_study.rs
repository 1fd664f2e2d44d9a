//! The fused-update study: the DDIM update run three ways after the UNet's final convolution, timed with GPU
//! timestamps (median of repeated runs):
//!
//! - unfused: conv_out, then the update as a chain of elementwise kernels;
//! - fused:   conv_out, then the fused update kernel;
//! - epilogue: conv_out with the update in its epilogue (one kernel, the model output never stored).
//!
//! `cargo run --release --example update_study` (add `quick` for smaller shapes). Every configuration of a row
//! is run round-robin 15 times in one process and the median GPU time of each is printed; ratios are of
//! medians from the same run.

use ddim_wgpu::diffusion::philox::{NoiseKey, Stream};
use ddim_wgpu::diffusion::step::{Prediction, StepCoefficients};
use ddim_wgpu::gpu::Dispatch;
use ddim_wgpu::gpu::profiler::Profiler;
use ddim_wgpu::gpu::{DeviceOptions, Gpu, Tensor, describe};
use ddim_wgpu::ops::conv2d::{Conv2dConfig, Padding, conv2d};
use ddim_wgpu::ops::ddim::{
    DdimScratch, Noise, StepSpec, UpdateMode, conv_ddim_update, ddim_update,
};
use pollster::FutureExt as _;

fn filled(gpu: &Gpu, label: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 2003) as f32 / 1001.5 - 1.0) * 0.1).collect();
    gpu.upload(label, shape, &v).expect("upload")
}

/// GPU time in ms of each dispatch list, run round-robin `rounds` times (one submit per run, so the lists
/// share whatever the machine is doing), median per list.
fn median_ms(gpu: &Gpu, lists: &[Vec<&Dispatch>], rounds: usize) -> Vec<f64> {
    let longest = lists.iter().map(Vec::len).max().unwrap_or(1);
    let mut profiler = Profiler::new(gpu, longest, rounds * lists.len()).expect("timestamps");
    for list in lists {
        gpu.run("warm-up", list).block_on().expect("run");
    }
    for r in 0..rounds {
        for (k, list) in lists.iter().enumerate() {
            let mut encoder = gpu
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            profiler.record_step(&mut encoder, r * lists.len() + k, list).expect("record");
            gpu.submit_and_wait("study", encoder).block_on().expect("submit");
        }
    }
    let timings = profiler.finish(gpu).block_on().expect("timestamps");
    (0..lists.len())
        .map(|k| {
            let mut runs: Vec<f64> = (0..rounds)
                .map(|r| {
                    let step = r * lists.len() + k;
                    timings.iter().filter(|t| t.step == step).map(|t| t.ns()).sum::<f64>() / 1e6
                })
                .collect();
            runs.sort_by(f64::total_cmp);
            runs[rounds / 2]
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let gpu =
        Gpu::new(&DeviceOptions::from_env().expect("options")).block_on().expect("a GPU adapter");
    println!("adapter: {}", describe(&gpu.info()));
    // (label, batch, conv_out input channels, size): CIFAR-10's conv_out is 128 -> 3 at 32x32. At 256x256 the
    // input of a 128-channel conv_out would exceed one 128 MiB binding at batch 8, so that row uses 32 channels.
    let cases: Vec<(&str, usize, usize, usize)> = if quick {
        vec![("3x32x32", 1, 32, 32)]
    } else {
        vec![("3x32x32", 1, 128, 32), ("3x32x32", 64, 128, 32), ("3x256x256", 8, 32, 256)]
    };
    let rounds = if quick { 7 } else { 15 };
    println!("update alone: the unfused chain and the fused kernel (ms), and unfused / fused;");
    println!(
        "with conv_out: conv_out alone, + unfused, + fused, the epilogue kernel (ms), and totals / epilogue."
    );
    println!(
        "{:<10} {:>5} {:>5} | {:>9} {:>9} {:>7} | {:>9} | {:>10} {:>10} {:>10} | {:>7} {:>7}",
        "image",
        "batch",
        "eta",
        "unfused",
        "fused",
        "unf/fus",
        "conv",
        "+unfused",
        "+fused",
        "epilogue",
        "unf/epi",
        "fus/epi"
    );
    for (label, batch, cin, size) in cases {
        let h = filled(&gpu, "conv_out input", &[batch, cin, size, size]);
        let w = filled(&gpu, "conv_out.weight", &[3, cin, 3, 3]);
        let b = filled(&gpu, "conv_out.bias", &[3]);
        let eps = gpu.zeros("eps", &[batch, 3, size, size]).unwrap();
        let x = filled(&gpu, "x", &[batch, 3, size, size]);
        let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
        let conv = conv2d(&gpu, "conv_out", &h, &w, &b, None, &eps, &cfg).unwrap();
        for eta in [0.0, 1.0] {
            let spec = StepSpec {
                coefficients: StepCoefficients::ddim(0.5, 0.7, eta).unwrap(),
                prediction: Prediction::Epsilon,
                clip: Some(1.0),
                threshold: None,
                clipped_eps: false,
                noise: if eta > 0.0 {
                    Noise::Philox {
                        key: NoiseKey { seed: 0, step: 0, stream: Stream::StepNoise },
                        first_image: 0,
                    }
                } else {
                    Noise::None
                },
            };
            let unfused_scratch = DdimScratch::new(&gpu, x.shape(), UpdateMode::Unfused).unwrap();
            let fused_scratch = DdimScratch::new(&gpu, x.shape(), UpdateMode::Fused).unwrap();
            let unfused =
                ddim_update(&gpu, "ddim", &x, &eps, &spec, UpdateMode::Unfused, &unfused_scratch)
                    .unwrap();
            let fused =
                ddim_update(&gpu, "ddim", &x, &eps, &spec, UpdateMode::Fused, &fused_scratch)
                    .unwrap();
            let epilogue =
                conv_ddim_update(&gpu, "conv_out+ddim", &h, &w, &b, &cfg, &x, &spec).unwrap();
            if eta == 0.0 {
                println!(
                    "{label} batch {batch}: conv_out runs {}, the epilogue {}",
                    conv.kernel().name,
                    epilogue.kernel().name
                );
            }
            let lists: Vec<Vec<&Dispatch>> = vec![
                vec![&conv],
                std::iter::once(&conv).chain(&unfused).collect(),
                std::iter::once(&conv).chain(&fused).collect(),
                vec![&epilogue],
                unfused.iter().collect(),
                fused.iter().collect(),
            ];
            let t = median_ms(&gpu, &lists, rounds);
            println!(
                "{:<10} {:>5} {:>5} | {:>9.3} {:>9.3} {:>7.1} | {:>9.3} | {:>10.3} {:>10.3} {:>10.3} | {:>7.2} {:>7.2}",
                label,
                batch,
                eta,
                t[4],
                t[5],
                t[4] / t[5],
                t[0],
                t[1],
                t[2],
                t[3],
                t[1] / t[3],
                t[2] / t[3]
            );
        }
    }
}
