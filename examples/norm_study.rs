//! The group-norm study: the group norms (with SiLU) of the CIFAR-10 UNet (google/ddpm-cifar10-32, 32 groups)
//! at batch 8 and of the default MNIST model (16 groups) at batch 64, run with the portable kernel
//! (`group_norm`, scalar loads and a tree reduction) and the kernel this adapter gets (`group_norm_serial` on
//! CPU adapters), each against the copy roof measured in the same run.
//!
//! `cargo run --release --example norm_study` (or `-- cpu gpu`: any two kernel choices, the first in the
//! "portable" columns; `-- baseline gpu` compares `group_norm` with `group_norm_subgroups`, and with
//! `DDIM_SUBGROUPS=off`, with `group_norm_vec4`; a choice ending in `-f16` opens its device at f16 precision:
//! `-- gpu gpu-f16` measures f16 tensors against f32). The two kernels run round-robin, `ROUNDS` times each, on two
//! devices opened on the same adapter; the roof is measured before and after. Medians of wall time per run,
//! each timed over a pass of enough copies to last `roofline::PASS_FLOOR` (many on a real GPU, where one
//! submit costs more than the dispatch). Bytes are counted as the operation's traffic, x read once and out
//! written once (plus gamma and beta), as `ddim profile` counts them.

use ddim_wgpu::gpu::roofline::{self, PASS_FLOOR};
use ddim_wgpu::gpu::{DeviceOptions, Gpu, Precision, Tensor, describe};
use ddim_wgpu::gpu::{Dispatch, KernelChoice};
use ddim_wgpu::ops::group_norm::group_norm;
use pollster::FutureExt as _;

const ROUNDS: usize = 15;

fn filled(gpu: &Gpu, label: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (i * 7919 % 2003) as f32 / 1001.5 - 1.0).collect();
    gpu.upload_as(label, shape, &v, gpu.act()).expect("upload")
}

struct Case {
    dispatch: Dispatch,
    _tensors: Vec<Tensor>,
}

fn case(gpu: &Gpu, n: usize, c: usize, side: usize, groups: usize) -> Case {
    let x = filled(gpu, "x", &[n, c, side, side]);
    let gamma = filled(gpu, "gamma", &[c]);
    let beta = filled(gpu, "beta", &[c]);
    let out = gpu.zeros_as("out", &[n, c, side, side], gpu.act()).expect("zeros");
    let dispatch =
        group_norm(gpu, "norm", &x, &gamma, &beta, &out, groups, 1e-6, true).expect("group_norm");
    Case { dispatch, _tensors: vec![x, gamma, beta, out] }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), ddim_wgpu::Error> {
    // Two kernel choices compare other devices (`norm_study cpu gpu` on a GPU); the default is baseline, auto.
    // A choice ending in `-f16` opens its device at f16 precision.
    let base = DeviceOptions::from_env()?;
    let choices = std::env::args()
        .skip(1)
        .map(|a| {
            let (family, precision) = match a.strip_suffix("-f16") {
                Some(f) => (f.to_string(), Precision::F16),
                None => (a, base.precision),
            };
            Ok(DeviceOptions {
                kernels: family.parse::<KernelChoice>()?,
                precision,
                ..base.clone()
            })
        })
        .collect::<Result<Vec<_>, ddim_wgpu::Error>>()?;
    let (first, second) = match &choices[..] {
        [] => (
            DeviceOptions { kernels: KernelChoice::Baseline, ..base.clone() },
            DeviceOptions { kernels: KernelChoice::Auto, ..base },
        ),
        [a, b] => (a.clone(), b.clone()),
        _ => {
            eprintln!("norm_study: give two kernel choices (e.g. `cpu gpu`) or none");
            std::process::exit(2);
        }
    };
    let portable = Gpu::new(&first).block_on()?;
    let auto = Gpu::new(&second).block_on()?;
    let name = |o: &DeviceOptions| {
        format!("{:?}{}", o.kernels, if o.precision == Precision::F16 { "-f16" } else { "" })
    };
    let (first, second) = (name(&first), name(&second));
    println!("adapter: {}", describe(&auto.info()));
    let roof_before = roofline::measure(&auto).block_on()?;

    // (model, batch, channels, side, groups): every distinct norm shape of the two UNets.
    let shapes = [
        ("cifar10", 8, 128, 32, 32),
        ("cifar10", 8, 256, 32, 32),
        ("cifar10", 8, 384, 32, 32),
        ("cifar10", 8, 256, 16, 32),
        ("cifar10", 8, 512, 16, 32),
        ("cifar10", 8, 256, 8, 32),
        ("cifar10", 8, 512, 8, 32),
        ("cifar10", 8, 256, 4, 32),
        ("cifar10", 8, 512, 4, 32),
        ("mnist", 64, 32, 32, 16),
        ("mnist", 64, 64, 32, 16),
        ("mnist", 64, 64, 16, 16),
        ("mnist", 64, 128, 16, 16),
        ("mnist", 64, 64, 8, 16),
        ("mnist", 64, 128, 8, 16),
    ];
    let mut rows = Vec::new();
    for &(model, n, c, side, groups) in &shapes {
        let p = case(&portable, n, c, side, groups);
        let a = case(&auto, n, c, side, groups);
        let (mut tp, mut ta) = (Vec::new(), Vec::new());
        let rp = roofline::repeats_for(&portable, &p.dispatch, PASS_FLOOR).block_on()?;
        let ra = roofline::repeats_for(&auto, &a.dispatch, PASS_FLOOR).block_on()?;
        for _ in 0..ROUNDS {
            for (gpu, k, r, t) in [(&portable, &p, rp, &mut tp), (&auto, &a, ra, &mut ta)] {
                t.push(roofline::time_pass(gpu, &k.dispatch, r).block_on()?);
            }
        }
        // Each device's own traffic (f16 tensors move half the bytes).
        let bytes = (p.dispatch.cost().bytes as f64, a.dispatch.cost().bytes as f64);
        let kernel = a.dispatch.kernel().name;
        rows.push((model, n, c, side, groups, kernel, bytes, median(tp), median(ta)));
    }
    let roof_after = roofline::measure(&auto).block_on()?;
    let roof = (roof_before.gbps + roof_after.gbps) / 2.0;
    println!(
        "{ROUNDS} rounds; copy roof {:.2} GB/s before, {:.2} after (fractions below use the mean {roof:.2})",
        roof_before.gbps, roof_after.gbps
    );
    println!(
        "{:>26} {:>18} {:>11} {:>7} {:>8} {:>7} {:>7}",
        "shape",
        "kernel",
        format!("{first} ms"),
        "roof",
        format!("{second} ms"),
        "roof",
        "speedup"
    );
    let mut totals: Vec<(&str, (f64, f64), f64, f64)> = Vec::new();
    for (model, n, c, side, groups, kernel, (bp, ba), tp, ta) in rows {
        let frac = |bytes: f64, t: f64| bytes / t / 1e9 / roof;
        println!(
            "{:>26} {:>18} {:>11.3} {:>6.1}% {:>8.3} {:>6.1}% {:>6.2}x",
            format!("{model} {n}x{c}x{side}x{side} g{groups}"),
            kernel,
            tp * 1e3,
            100.0 * frac(bp, tp),
            ta * 1e3,
            100.0 * frac(ba, ta),
            tp / ta
        );
        match totals.iter_mut().find(|t| t.0 == model) {
            Some(t) => {
                (t.1.0, t.1.1) = (t.1.0 + bp, t.1.1 + ba);
                t.2 += tp;
                t.3 += ta;
            }
            None => totals.push((model, (bp, ba), tp, ta)),
        }
    }
    for (model, (bp, ba), tp, ta) in totals {
        println!(
            "{model}, all shapes: {first} {:.2} GB/s ({:.1}% of roof), {second} {:.2} GB/s ({:.1}%), {:.2}x",
            bp / tp / 1e9,
            100.0 * bp / tp / 1e9 / roof,
            ba / ta / 1e9,
            100.0 * ba / ta / 1e9 / roof,
            tp / ta
        );
    }
    Ok(())
}
