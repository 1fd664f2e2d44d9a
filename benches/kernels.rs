//! Per-kernel GPU benchmarks at CIFAR-10 UNet shapes, and the DDIM update fused against unfused.
//!
//! `cargo bench --bench kernels` on whatever adapter `DDIM_BACKEND` / `DDIM_ADAPTER` select. One iteration is
//! one submit of the dispatch followed by a wait, so it includes the per-submit overhead (0.1-0.4 ms on
//! lavapipe, DESIGN.md section 4). Throughput is reported in FLOPs (criterion's "elem/s" = FLOP/s) for the
//! compute kernels and in elements of x for the update.
//! `DDIM_BENCH_QUICK=1` shrinks the shapes and the sampling for a smoke run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ddim_wgpu::gpu::{DeviceOptions, Gpu, Tensor};
use ddim_wgpu::ops::attention::attention;
use ddim_wgpu::ops::conv2d::{Conv2dConfig, Padding, conv2d};
use ddim_wgpu::ops::ddim::{
    DdimScratch, Noise, Prediction, StepCoefficients, StepSpec, UpdateMode, ddim_update,
};
use ddim_wgpu::ops::group_norm::group_norm;
use ddim_wgpu::ops::{Dispatch, linear};
use ddim_wgpu::sampler::rng::{NoiseKey, Stream};

fn quick() -> bool {
    std::env::var_os("DDIM_BENCH_QUICK").is_some()
}

fn filled(gpu: &Gpu, label: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0)
        .collect();
    gpu.upload(label, shape, &data).expect("upload")
}

fn bench_dispatches(
    c: &mut Criterion,
    gpu: &Gpu,
    name: &str,
    throughput: Throughput,
    ds: &[Dispatch],
) {
    let refs: Vec<&Dispatch> = ds.iter().collect();
    let mut group = c.benchmark_group("kernels");
    group.throughput(throughput);
    group.bench_function(name, |b| b.iter(|| gpu.run(name, &refs).expect("run")));
    group.finish();
}

fn kernels(c: &mut Criterion) {
    let gpu = Gpu::new(&DeviceOptions::from_env().expect("options")).expect("a GPU adapter");
    let batch = if quick() { 1 } else { 8 };

    // conv 3x3 256 -> 256 at 8x8 and 128 -> 128 at 32x32 (the CIFAR-10 UNet's deepest and first levels).
    for &(ch, hw) in &[(256usize, 8usize), (128, 32)] {
        let x = filled(&gpu, "x", &[batch, ch, hw, hw]);
        let w = filled(&gpu, "w", &[ch, ch, 3, 3]);
        let b = filled(&gpu, "b", &[ch]);
        let out = gpu.zeros("out", &[batch, ch, hw, hw]).unwrap();
        let cfg = Conv2dConfig {
            padding: Padding::uniform(1),
            ..Default::default()
        };
        let d = conv2d(&gpu, "conv", &x, &w, &b, None, &out, &cfg).unwrap();
        let flops = 2 * batch * ch * ch * 9 * hw * hw;
        let name = format!("conv3x3 {ch}->{ch} {hw}x{hw} batch {batch}");
        bench_dispatches(c, &gpu, &name, Throughput::Elements(flops as u64), &[d]);
    }

    // group norm + SiLU, 128 channels at 32x32, 32 groups.
    let x = filled(&gpu, "x", &[batch, 128, 32, 32]);
    let g = filled(&gpu, "gamma", &[128]);
    let out = gpu.zeros("out", &[batch, 128, 32, 32]).unwrap();
    let d = group_norm(&gpu, "gn", &x, &g, &g, &out, 32, 1e-6, true).unwrap();
    let name = format!("group_norm+silu 128x32x32 batch {batch}");
    bench_dispatches(c, &gpu, &name, Throughput::Elements(x.len() as u64), &[d]);

    // q projection and attention at 16x16 with 256 channels, one head.
    let x = filled(&gpu, "x", &[batch, 256, 16, 16]);
    let w = filled(&gpu, "w", &[256, 256]);
    let b = filled(&gpu, "b", &[256]);
    let q = gpu.zeros("q", &[batch, 256, 16, 16]).unwrap();
    let cfg = linear::LinearConfig {
        layout: linear::TokenLayout::Channels,
        ..Default::default()
    };
    let d = linear::linear(&gpu, "to_q", &x, &w, &b, None, &q, &cfg).unwrap();
    let flops = 2 * batch * 256 * 256 * 256;
    let name = format!("linear 256->256 over 16x16 tokens batch {batch}");
    bench_dispatches(c, &gpu, &name, Throughput::Elements(flops as u64), &[d]);
    let out = gpu.zeros("out", &[batch, 256, 16, 16]).unwrap();
    let d = attention(&gpu, "attn", &x, &x, &x, &out, 256).unwrap();
    let flops = 4 * batch * 256 * 256 * 256;
    let name = format!("attention 256 ch 16x16 batch {batch}");
    bench_dispatches(c, &gpu, &name, Throughput::Elements(flops as u64), &[d]);
}

fn ddim_update_fused_vs_unfused(c: &mut Criterion) {
    let gpu = Gpu::new(&DeviceOptions::from_env().expect("options")).expect("a GPU adapter");
    let batches: &[usize] = if quick() { &[1] } else { &[1, 64] };
    for &batch in batches {
        let shape = [batch, 3, 32, 32];
        let m = filled(&gpu, "eps", &shape);
        for eta in [0.0, 1.0] {
            for mode in [UpdateMode::Fused, UpdateMode::Unfused] {
                let x = filled(&gpu, "x", &shape);
                let scratch = DdimScratch::new(&gpu, &shape, mode).unwrap();
                let spec = StepSpec {
                    coefficients: StepCoefficients::ddim(0.5, 0.7, eta).unwrap(),
                    prediction: Prediction::Epsilon,
                    clip: Some(1.0),
                    threshold: None,
                    clipped_eps: false,
                    noise: if eta > 0.0 {
                        Noise::Philox {
                            key: NoiseKey {
                                seed: 0,
                                step: 0,
                                stream: Stream::StepNoise,
                            },
                            first_image: 0,
                        }
                    } else {
                        Noise::None
                    },
                };
                let ds = ddim_update(&gpu, "ddim", &x, &m, &spec, mode, &scratch).unwrap();
                let refs: Vec<&Dispatch> = ds.iter().collect();
                let mut group = c.benchmark_group("ddim_update");
                group.throughput(Throughput::Elements(x.len() as u64));
                let name = format!(
                    "{mode:?} eta {eta} 3x32x32 batch {batch} ({} dispatches)",
                    ds.len()
                );
                group.bench_function(name, |b| b.iter(|| gpu.run("ddim", &refs).expect("run")));
                group.finish();
            }
        }
    }
}

fn config() -> Criterion {
    let c = Criterion::default();
    let c = if quick() {
        c.sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(200))
            .measurement_time(std::time::Duration::from_millis(500))
    } else {
        c.sample_size(20)
    };
    // Command-line flags (--sample-size, a name filter, ...) override the defaults above.
    c.configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = kernels, ddim_update_fused_vs_unfused
}
criterion_main!(benches);
