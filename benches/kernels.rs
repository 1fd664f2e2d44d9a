//! Benchmarks: each kernel at CIFAR-10 UNet shapes (batch 1 and 8), the DDIM update three ways (unfused chain,
//! fused kernel, fused into the final convolution), one whole UNet evaluation and a whole 10-step sample of the
//! CIFAR-10 architecture (random weights from benches/configs/ddpm-cifar10-32.json).
//!
//! `cargo bench --bench kernels` on whatever adapter `DDIM_BACKEND` / `DDIM_ADAPTER` select. One iteration is
//! one submit of the dispatches followed by a wait, so it includes the per-submit overhead. Throughput is reported in FLOPs (criterion's "elem/s" = FLOP/s) for the
//! compute kernels and in elements of x for the update. On lavapipe the full run is long (the 10-step CIFAR-10
//! sample dominates it).
//! `DDIM_BENCH_QUICK=1` runs batch 1 only, a 2-level model for the whole-network benches, and fewer samples.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pollster::FutureExt as _;

use ddim_wgpu::diffusion::philox::{NoiseKey, Stream};
use ddim_wgpu::diffusion::step::{Prediction, StepCoefficients};
use ddim_wgpu::gpu::Dispatch;
use ddim_wgpu::gpu::{DeviceOptions, Gpu, Tensor};
use ddim_wgpu::graph::plan::Plan;
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::ops::attention::attention;
use ddim_wgpu::ops::concat::concat_channels;
use ddim_wgpu::ops::conv2d::{Conv2dConfig, Padding, conv2d};
use ddim_wgpu::ops::ddim::{
    DdimScratch, Noise, StepSpec, UpdateMode, conv_ddim_update, ddim_update,
};
use ddim_wgpu::ops::elementwise::{Binary, binary};
use ddim_wgpu::ops::group_norm::group_norm;
use ddim_wgpu::ops::linear;
use ddim_wgpu::ops::timestep_embedding::TimestepEmbedding;
use ddim_wgpu::ops::upsample::upsample_nearest2x;
use ddim_wgpu::sampler::ddim::{Sampler, SamplerSettings, StepNoise, latents};
use ddim_wgpu::unet;
use ddim_wgpu::unet::config::{DownBlock, UNetConfig, UpBlock};

fn quick() -> bool {
    std::env::var_os("DDIM_BENCH_QUICK").is_some()
}

fn gpu() -> Gpu {
    Gpu::new(&DeviceOptions::from_env().expect("options")).block_on().expect("a GPU adapter")
}

fn filled(gpu: &Gpu, label: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    gpu.upload(label, shape, &data).expect("upload")
}

fn bench(
    c: &mut Criterion,
    gpu: &Gpu,
    group: &str,
    name: &str,
    throughput: Throughput,
    ds: &[&Dispatch],
) {
    let mut g = c.benchmark_group(group);
    g.throughput(throughput);
    g.bench_function(name, |b| b.iter(|| gpu.run(name, ds).block_on().expect("run")));
    g.finish();
}

/// Each kernel at the CIFAR-10 UNet's shapes.
fn kernels(c: &mut Criterion) {
    let gpu = gpu();
    let batches: &[usize] = if quick() { &[1] } else { &[1, 8] };
    for &batch in batches {
        // conv 3x3 at the deepest (256 ch, 8x8) and first (128 ch, 32x32) levels.
        for &(ch, hw) in &[(256usize, 8usize), (128, 32)] {
            let x = filled(&gpu, "x", &[batch, ch, hw, hw]);
            let w = filled(&gpu, "w", &[ch, ch, 3, 3]);
            let b = filled(&gpu, "b", &[ch]);
            let out = gpu.zeros("out", &[batch, ch, hw, hw]).unwrap();
            let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
            let d = conv2d(&gpu, "conv", &x, &w, &b, None, &out, &cfg).unwrap();
            let name = format!("conv3x3 {ch}->{ch} {hw}x{hw} batch {batch}");
            bench(c, &gpu, "kernels", &name, Throughput::Elements(d.cost().flops), &[&d]);
        }
        // group norm + SiLU, 128 channels at 32x32, 32 groups.
        let x = filled(&gpu, "x", &[batch, 128, 32, 32]);
        let g = filled(&gpu, "gamma", &[128]);
        let out = gpu.zeros("out", &[batch, 128, 32, 32]).unwrap();
        let d = group_norm(&gpu, "gn", &x, &g, &g, &out, 32, 1e-6, true).unwrap();
        let name = format!("group_norm+silu 128x32x32 batch {batch}");
        bench(c, &gpu, "kernels", &name, Throughput::Bytes(d.cost().bytes), &[&d]);
        // q projection and attention at 16x16 with 256 channels, one head.
        let x = filled(&gpu, "x", &[batch, 256, 16, 16]);
        let w = filled(&gpu, "w", &[256, 256]);
        let b = filled(&gpu, "b", &[256]);
        let q = gpu.zeros("q", &[batch, 256, 16, 16]).unwrap();
        let cfg =
            linear::LinearConfig { layout: linear::TokenLayout::Channels, ..Default::default() };
        let d = linear::linear(&gpu, "to_q", &x, &w, &b, None, &q, &cfg).unwrap();
        let name = format!("linear 256->256 over 16x16 tokens batch {batch}");
        bench(c, &gpu, "kernels", &name, Throughput::Elements(d.cost().flops), &[&d]);
        let out = gpu.zeros("out", &[batch, 256, 16, 16]).unwrap();
        let d = attention(&gpu, "attn", &x, &x, &x, &out, 256).unwrap();
        let name = format!("attention 256 ch 16x16 batch {batch}");
        bench(c, &gpu, "kernels", &name, Throughput::Elements(d.cost().flops), &[&d]);
        // The up path's data movement: upsample 256 ch 8x8 -> 16x16, concat [256 + 256] at 16x16.
        let small = filled(&gpu, "h", &[batch, 256, 8, 8]);
        let up = gpu.zeros("up", &[batch, 256, 16, 16]).unwrap();
        let d = upsample_nearest2x(&gpu, "upsample", &small, &up).unwrap();
        let name = format!("upsample 256x8x8 batch {batch}");
        bench(c, &gpu, "kernels", &name, Throughput::Bytes(d.cost().bytes), &[&d]);
        let cat = gpu.zeros("cat", &[batch, 512, 16, 16]).unwrap();
        let d = concat_channels(&gpu, "concat", &x, &up, &cat).unwrap();
        let name = format!("concat 256+256x16x16 batch {batch}");
        bench(c, &gpu, "kernels", &name, Throughput::Bytes(d.cost().bytes), &[&d]);
        // The ResNet blocks' time-embedding add (128 ch at 32x32) and the time embedding itself.
        let h = filled(&gpu, "h", &[batch, 128, 32, 32]);
        let v = filled(&gpu, "temb", &[batch, 128]);
        let out = gpu.zeros("out", &[batch, 128, 32, 32]).unwrap();
        let d = binary(&gpu, "temb add", Binary::AddChannel, &h, &v, &out).unwrap();
        let name = format!("add_channel 128x32x32 batch {batch}");
        bench(c, &gpu, "kernels", &name, Throughput::Bytes(d.cost().bytes), &[&d]);
        let emb = TimestepEmbedding::new(&gpu, 128, false, 1.0).unwrap();
        let t = filled(&gpu, "t", &[batch]);
        let out = gpu.zeros("emb", &[batch, 128]).unwrap();
        let d = emb.dispatch(&gpu, "time_proj", &t, &out).unwrap();
        let name = format!("timestep_embedding 128 batch {batch}");
        bench(c, &gpu, "kernels", &name, Throughput::Elements(out.len() as u64), &[&d]);
    }
}

/// The update three ways, after (or inside) the CIFAR-10 UNet's final convolution (128 -> 3 at 32x32).
fn ddim_update_three_ways(c: &mut Criterion) {
    let gpu = gpu();
    let batches: &[usize] = if quick() { &[1] } else { &[1, 64] };
    for &batch in batches {
        let shape = [batch, 3, 32, 32];
        let h = filled(&gpu, "conv_out input", &[batch, 128, 32, 32]);
        let w = filled(&gpu, "conv_out.weight", &[3, 128, 3, 3]);
        let b = filled(&gpu, "conv_out.bias", &[3]);
        let eps = gpu.zeros("eps", &shape).unwrap();
        let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
        let conv = conv2d(&gpu, "conv_out", &h, &w, &b, None, &eps, &cfg).unwrap();
        for eta in [0.0, 1.0] {
            let x = filled(&gpu, "x", &shape);
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
            let elements = Throughput::Elements(x.len() as u64);
            for mode in [UpdateMode::Unfused, UpdateMode::Fused] {
                let scratch = DdimScratch::new(&gpu, &shape, mode).unwrap();
                let ds = ddim_update(&gpu, "ddim", &x, &eps, &spec, mode, &scratch).unwrap();
                let list: Vec<&Dispatch> = std::iter::once(&conv).chain(&ds).collect();
                let name = format!("conv_out + {mode:?} eta {eta} 3x32x32 batch {batch}");
                bench(c, &gpu, "ddim_update", &name, elements.clone(), &list);
            }
            let d = conv_ddim_update(&gpu, "conv_out+ddim", &h, &w, &b, &cfg, &x, &spec).unwrap();
            let name = format!("conv_out with Epilogue eta {eta} 3x32x32 batch {batch}");
            bench(c, &gpu, "ddim_update", &name, elements, &[&d]);
        }
    }
}

fn model_config() -> UNetConfig {
    if quick() {
        UNetConfig {
            sample_size: 16,
            in_channels: 3,
            out_channels: 3,
            block_out_channels: vec![32, 64],
            layers_per_block: 1,
            down_block_types: vec![DownBlock::DownBlock2D, DownBlock::AttnDownBlock2D],
            up_block_types: vec![UpBlock::AttnUpBlock2D, UpBlock::UpBlock2D],
            mid_block_attention: true,
            mid_block_scale_factor: 1.0,
            norm_num_groups: 8,
            attn_norm_num_groups: None,
            norm_eps: 1e-6,
            attention_head_dim: None,
            downsample_padding: 0,
            flip_sin_to_cos: false,
            freq_shift: 1.0,
            time_embed_dim: 128,
        }
    } else {
        let text = include_str!("configs/ddpm-cifar10-32.json");
        UNetConfig::from_diffusers_json(text).expect("the CIFAR-10 config")
    }
}

/// One UNet evaluation, and a whole 10-step sample, batch 1.
fn whole_network(c: &mut Criterion) {
    let gpu = gpu();
    let cfg = model_config();
    let weights = Weights::random(&cfg, 0).unwrap().upload(&gpu).unwrap();
    let graph = unet::build(&cfg).unwrap();
    let plan = Plan::new(&gpu, &graph, &weights, 1, &[]).unwrap();
    let per = cfg.in_channels * cfg.sample_size * cfg.sample_size;
    let x = latents(0, 0, 1, per);
    let name = if quick() { "small UNet" } else { "CIFAR-10 UNet" };
    let mut g = c.benchmark_group("unet");
    g.bench_function(format!("{name} evaluation batch 1"), |b| {
        b.iter(|| plan.run(&gpu, &[&x, &[500.0]]).block_on().expect("run"))
    });
    let settings = SamplerSettings { steps: 10, ..Default::default() };
    let sampler = Sampler::new(&gpu, &graph, &weights, settings).unwrap();
    g.bench_function(format!("{name} 10-step sample batch 1"), |b| {
        b.iter(|| {
            sampler.sample(&x, 1, 0, StepNoise::Philox(0), &mut |_| {}).block_on().expect("sample")
        })
    });
    g.finish();
}

fn config() -> Criterion {
    let c = Criterion::default().sample_size(10);
    let c = if quick() {
        c.warm_up_time(std::time::Duration::from_millis(200))
            .measurement_time(std::time::Duration::from_millis(500))
    } else {
        c.warm_up_time(std::time::Duration::from_secs(1))
    };
    // Command-line flags (--sample-size, a name filter, ...) override the defaults above.
    c.configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = kernels, ddim_update_three_ways, whole_network
}
criterion_main!(benches);
