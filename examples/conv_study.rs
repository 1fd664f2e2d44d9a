//! The convolution study: every 3x3 convolution shape of the CIFAR-10 UNet (google/ddpm-cifar10-32) at
//! batch 8, run with the general kernel (`conv2d.wgsl`) and the 3x3 kernel over packed weights
//! (`conv2d_3x3.wgsl`), each against the FMA roof measured in the same run.
//!
//! `cargo run --release --example conv_study` (add `quick` for batch 2 and 5 rounds). The two kernels run
//! round-robin, `ROUNDS` times each, on two devices opened on the same adapter; the roof is measured before
//! and after. Medians of wall time per dispatch (one dispatch per submit, so wall time is kernel time plus
//! one submit, under 1% at these sizes).
//!
//! Two kernel choices after the options compare other devices: `conv_study cpu gpu` runs the CPU family
//! (`conv2d_3x3`, `conv2d_packed`) against the GPU family (`conv2d_tiled`) on whatever adapter this is.

use std::time::Instant;

use ddim_wgpu::gpu::{DeviceOptions, Gpu, Tensor, describe};
use ddim_wgpu::ops::Dispatch;
use ddim_wgpu::ops::KernelChoice;
use ddim_wgpu::ops::conv2d::{Conv2dConfig, Padding, conv2d};
use ddim_wgpu::ops::roofline;

fn filled(gpu: &Gpu, label: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 2003) as f32 / 1001.5 - 1.0) * 0.1)
        .collect();
    gpu.upload(label, shape, &v).expect("upload")
}

struct Case {
    dispatch: Dispatch,
    _tensors: Vec<Tensor>,
}

fn case(gpu: &Gpu, n: usize, cin: usize, cout: usize, hw: usize) -> Case {
    let x = filled(gpu, "x", &[n, cin, hw, hw]);
    let w = filled(gpu, "weight", &[cout, cin, 3, 3]);
    let b = filled(gpu, "bias", &[cout]);
    let out = gpu.zeros("out", &[n, cout, hw, hw]).expect("zeros");
    let cfg = Conv2dConfig {
        padding: Padding::uniform(1),
        ..Default::default()
    };
    let dispatch = conv2d(gpu, "conv", &x, &w, &b, None, &out, &cfg).expect("conv2d");
    Case {
        dispatch,
        _tensors: vec![x, w, b, out],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), ddim_wgpu::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "quick");
    let (batch, rounds) = if quick { (2, 5) } else { (8, 9) };
    let choices = args
        .iter()
        .filter(|a| *a != "quick")
        .map(|a| a.parse::<KernelChoice>())
        .collect::<Result<Vec<_>, _>>()?;
    let (first, second) = match choices[..] {
        [] => (KernelChoice::Baseline, KernelChoice::Auto),
        [a, b] => (a, b),
        _ => {
            eprintln!("conv_study: give two kernel choices (e.g. `cpu gpu`) or none");
            std::process::exit(2);
        }
    };
    let base = DeviceOptions::from_env()?;
    let general = Gpu::new(&DeviceOptions {
        kernels: first,
        ..base.clone()
    })?;
    let auto = Gpu::new(&DeviceOptions {
        kernels: second,
        ..base
    })?;
    println!("adapter: {}", describe(&auto.info()));
    let roof_before = roofline::measure(&auto)?;

    // (cin, cout, side): conv_in, the ResNet convolutions of each level, and the up path's concatenations.
    let shapes = [
        (3, 128, 32),
        (128, 128, 32),
        (256, 128, 32),
        (384, 128, 32),
        (128, 256, 16),
        (256, 256, 16),
        (512, 256, 16),
        (256, 256, 8),
        (512, 256, 8),
        (256, 256, 4),
        (512, 256, 4),
    ];
    let mut rows = Vec::new();
    for &(cin, cout, hw) in &shapes {
        let g = case(&general, batch, cin, cout, hw);
        let a = case(&auto, batch, cin, cout, hw);
        let kernel = a.dispatch.kernel().name;
        let launches = a.dispatch.launch_count();
        let (mut tg, mut ta) = (Vec::new(), Vec::new());
        for (gpu, c) in [(&general, &g), (&auto, &a)] {
            gpu.run("warm-up", &[&c.dispatch])?;
        }
        for _ in 0..rounds {
            for (gpu, c, t) in [(&general, &g, &mut tg), (&auto, &a, &mut ta)] {
                let start = Instant::now();
                gpu.run("conv", &[&c.dispatch])?;
                t.push(start.elapsed().as_secs_f64());
            }
        }
        let flops = g.dispatch.cost().flops as f64;
        rows.push((
            cin,
            cout,
            hw,
            kernel,
            launches,
            flops,
            median(tg),
            median(ta),
        ));
    }
    let roof_after = roofline::measure(&auto)?;
    let roof = (roof_before.gflops + roof_after.gflops) / 2.0;
    println!(
        "batch {batch}, {rounds} rounds; FMA roof {:.1} GFLOP/s before, {:.1} after (fractions below use the mean {roof:.1})",
        roof_before.gflops, roof_after.gflops
    );
    println!(
        "{:>16} {:>12} {:>8} {:>10} {:>7} {:>10} {:>7} {:>7}",
        "cin->cout @ hw",
        "kernel",
        "launches",
        format!("{first:?} ms"),
        "roof",
        format!("{second:?} ms"),
        "roof",
        "speedup"
    );
    let (mut total_flops, mut total_g, mut total_a) = (0.0, 0.0, 0.0);
    for (cin, cout, hw, kernel, launches, flops, tg, ta) in rows {
        let frac = |t: f64| flops / t / 1e9 / roof;
        println!(
            "{:>16} {:>12} {:>8} {:>10.2} {:>6.1}% {:>10.2} {:>6.1}% {:>6.2}x",
            format!("{cin}->{cout} @ {hw}"),
            kernel,
            launches,
            tg * 1e3,
            100.0 * frac(tg),
            ta * 1e3,
            100.0 * frac(ta),
            tg / ta
        );
        total_flops += flops;
        total_g += tg;
        total_a += ta;
    }
    println!(
        "all shapes: {first:?} {:.1} GFLOP/s ({:.1}% of roof), {second:?} {:.1} GFLOP/s ({:.1}%), {:.2}x",
        total_flops / total_g / 1e9,
        100.0 * total_flops / total_g / 1e9 / roof,
        total_flops / total_a / 1e9,
        100.0 * total_flops / total_a / 1e9 / roof,
        total_g / total_a
    );
    Ok(())
}
