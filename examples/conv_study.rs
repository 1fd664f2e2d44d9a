//! The convolution study: every 3x3 convolution shape of the CIFAR-10 UNet (google/ddpm-cifar10-32) at
//! batch 8, run with the general kernel (`conv2d.wgsl`) and the 3x3 kernel over packed weights
//! (`conv2d_3x3.wgsl`), each against the FMA roof measured in the same run.
//!
//! `cargo run --release --example conv_study` (add `quick` for batch 2 and 5 rounds, `mnist` for the 3x3
//! shapes of the default MNIST model instead, `batch=N` for another batch size). The two kernels run
//! round-robin, `ROUNDS` times each, on two devices opened on the same adapter; the roof is measured before
//! and after. Medians of wall time per dispatch, each timed over a pass of enough copies
//! of it to last `roofline::PASS_FLOOR` (one copy on lavapipe for most shapes; many on a real GPU, where one
//! submit costs more than the dispatch).
//!
//! Two kernel choices after the options compare other devices: `conv_study cpu gpu` runs the CPU family
//! (Winograd and `conv2d_3x3`, `conv2d_packed`) against the GPU family (`conv2d_tiled`) on whatever adapter
//! this is. A choice ending in `-direct` turns the Winograd convolution off (`DeviceOptions::winograd`):
//! `conv_study cpu-direct cpu` measures what it gains over `conv2d_3x3`. One ending in `-storage` reads
//! activations from storage only (`DeviceOptions::input_windows`): `conv_study cpu-storage cpu` measures the
//! Winograd products reading V from uniform windows, `conv_study 1x1 cpu-storage cpu` runs the CIFAR-10 UNet's
//! 1x1 convolutions instead and measures `conv2d_1x1` against `conv2d_packed`. One ending in `-nosplit` never
//! splits the GPU family's tiled convolution along K (`DeviceOptions::split_k`): `conv_study gpu-nosplit gpu`
//! measures what the split gains. One ending in `-8x8` runs the GPU family's tiled convolution over 128 x 128
//! tiles, 8 x 8 outputs per invocation (`DeviceOptions::conv_tile_8x8`): `conv_study gpu gpu-8x8` measures it
//! against the 4 x 4 kernel. One ending in `-f16` opens the device at f16 precision (`DeviceOptions::precision`:
//! f16 tensors, and the 4 x 4 tiled kernel's f16 products): `conv_study gpu gpu-f16` measures it against f32.
//! Every x lies in a larger buffer, as the planner places activations.
//!
//! Rates and fractions of roof count the direct convolution's multiply-adds (2 x 9 x cin per output) for
//! every kernel, so the Winograd convolution's figures are effective rates: it does about a quarter of that
//! arithmetic (`ops::conv2d::winograd::flops`).

use ddim_wgpu::gpu::Dispatch;
use ddim_wgpu::gpu::KernelChoice;
use ddim_wgpu::gpu::roofline::{self, PASS_FLOOR};
use ddim_wgpu::gpu::{DeviceOptions, Gpu, Tensor, describe};
use ddim_wgpu::ops::conv2d::{Conv2dConfig, Padding, conv2d};
use pollster::FutureExt as _;

/// Deterministic values in [-0.1, 0.1) for a tensor of `shape`.
fn values(shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n).map(|i| ((i * 7919 % 2003) as f32 / 1001.5 - 1.0) * 0.1).collect()
}

fn filled(gpu: &Gpu, label: &str, shape: &[usize]) -> Tensor {
    gpu.upload_as(label, shape, &values(shape), gpu.act()).expect("upload")
}

struct Case {
    dispatch: Dispatch,
    _tensors: Vec<Tensor>,
}

/// A `k` x `k` convolution (3 or 1) of `cin -> cout` channels at `hw` x `hw`, batch `n`. x lies in a larger
/// buffer, as the planner places activations, so that kernels reading it through uniform windows can
/// (`conv2d_1x1`).
fn case(gpu: &Gpu, n: usize, cin: usize, cout: usize, hw: usize, k: usize) -> Case {
    let shape = [n, cin, hw, hw];
    let len: usize = shape.iter().product();
    let arena = gpu.zeros("arena", &[len + 16384]).expect("zeros");
    let x = arena.view_as("x", &shape, 0, gpu.act()).expect("view");
    x.write(gpu, &values(&shape)).expect("write");
    let w = filled(gpu, "weight", &[cout, cin, k, k]);
    let b = filled(gpu, "bias", &[cout]);
    let out = gpu.zeros_as("out", &[n, cout, hw, hw], gpu.act()).expect("zeros");
    let cfg = Conv2dConfig { padding: Padding::uniform(k / 2), ..Default::default() };
    let dispatch = conv2d(gpu, "conv", &x, &w, &b, None, &out, &cfg).expect("conv2d");
    Case { dispatch, _tensors: vec![x, w, b, out] }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), ddim_wgpu::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "quick");
    let mnist = args.iter().any(|a| a == "mnist");
    let one = args.iter().any(|a| a == "1x1");
    let (mut batch, rounds) = if quick { (2, 5) } else { (8, 9) };
    if let Some(b) = args.iter().find_map(|a| a.strip_prefix("batch=")) {
        batch = b.parse().unwrap_or_else(|_| {
            eprintln!("conv_study: batch={b} is not a number");
            std::process::exit(2);
        });
    }
    // A choice is a kernel family with optional suffixes: `-direct` (Winograd off), `-storage` (activations
    // read from storage, not uniform windows), `-nosplit` (the tiled convolution's K never split), `-8x8` (its
    // 8 x 8 tiles), `-f16` (f16 precision), each the device option of that name.
    let base = DeviceOptions::from_env()?;
    let choices = args
        .iter()
        .filter(|a| !["quick", "mnist", "1x1"].contains(&a.as_str()) && !a.starts_with("batch="))
        .map(|a| {
            let mut family = a.as_str();
            let mut o = base.clone();
            loop {
                if let Some(f) = family.strip_suffix("-direct") {
                    (family, o.winograd) = (f, false);
                } else if let Some(f) = family.strip_suffix("-storage") {
                    (family, o.input_windows) = (f, false);
                } else if let Some(f) = family.strip_suffix("-nosplit") {
                    (family, o.split_k) = (f, false);
                } else if let Some(f) = family.strip_suffix("-8x8") {
                    (family, o.conv_tile_8x8) = (f, true);
                } else if let Some(f) = family.strip_suffix("-f16") {
                    (family, o.precision) = (f, ddim_wgpu::gpu::Precision::F16);
                } else {
                    break;
                }
            }
            o.kernels = family.parse::<KernelChoice>()?;
            Ok(o)
        })
        .collect::<Result<Vec<_>, ddim_wgpu::Error>>()?;
    let family = |kernels| DeviceOptions { kernels, ..base.clone() };
    let (first, second) = match &choices[..] {
        [] => (family(KernelChoice::Baseline), family(KernelChoice::Auto)),
        [a, b] => (a.clone(), b.clone()),
        _ => {
            eprintln!("conv_study: give two kernel choices (e.g. `cpu gpu`) or none");
            std::process::exit(2);
        }
    };
    let (general, auto) = (Gpu::new(&first).block_on()?, Gpu::new(&second).block_on()?);
    let name = |o: &DeviceOptions| {
        format!(
            "{:?}{}{}{}{}{}",
            o.kernels,
            if o.winograd { "" } else { "-direct" },
            if o.input_windows { "" } else { "-storage" },
            if o.split_k { "" } else { "-nosplit" },
            if o.conv_tile_8x8 { "-8x8" } else { "" },
            if o.precision == ddim_wgpu::gpu::Precision::F16 { "-f16" } else { "" }
        )
    };
    let (first, second) = (name(&first), name(&second));
    println!("adapter: {}", describe(&auto.info()));
    let roof_before = roofline::measure(&auto).block_on()?;

    // (cin, cout, side): conv_in, the ResNet convolutions of each level, and the up path's concatenations; of
    // the default MNIST model (block_out_channels 32, 64, 64) with `mnist`.
    let mnist_shapes = [
        (1, 32, 32),
        (32, 32, 32),
        (64, 32, 32),
        (32, 64, 16),
        (64, 64, 16),
        (128, 64, 16),
        (64, 64, 8),
        (128, 64, 8),
    ];
    let cifar_shapes = [
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
    // The CIFAR-10 UNet's 1x1 convolutions with `1x1`: attention projections, then the shortcuts.
    let one_shapes = [
        (256, 256, 16),
        (256, 256, 4),
        (128, 256, 16),
        (512, 256, 16),
        (384, 256, 16),
        (512, 256, 8),
        (512, 256, 4),
        (384, 128, 32),
        (256, 128, 32),
    ];
    let shapes: &[(usize, usize, usize)] = match (one, mnist) {
        (true, _) => &one_shapes,
        (false, true) => &mnist_shapes,
        (false, false) => &cifar_shapes,
    };
    let k = if one { 1 } else { 3 };
    let mut rows = Vec::new();
    for &(cin, cout, hw) in shapes {
        let g = case(&general, batch, cin, cout, hw, k);
        let a = case(&auto, batch, cin, cout, hw, k);
        let kernels = (g.dispatch.kernel().name, a.dispatch.kernel().name);
        let launches = a.dispatch.launch_count();
        let (mut tg, mut ta) = (Vec::new(), Vec::new());
        let rg = roofline::repeats_for(&general, &g.dispatch, PASS_FLOOR).block_on()?;
        let ra = roofline::repeats_for(&auto, &a.dispatch, PASS_FLOOR).block_on()?;
        for _ in 0..rounds {
            for (gpu, c, r, t) in [(&general, &g, rg, &mut tg), (&auto, &a, ra, &mut ta)] {
                t.push(roofline::time_pass(gpu, &c.dispatch, r).block_on()?);
            }
        }
        // The direct convolution's arithmetic, whichever kernel ran (module docs).
        let flops = (2 * batch * cout * hw * hw * cin * k * k) as f64;
        rows.push((cin, cout, hw, kernels, launches, flops, median(tg), median(ta)));
    }
    let roof_after = roofline::measure(&auto).block_on()?;
    let roof = (roof_before.gflops + roof_after.gflops) / 2.0;
    println!(
        "batch {batch}, {rounds} rounds; FMA roof {:.1} GFLOP/s before, {:.1} after (fractions below use the mean {roof:.1})",
        roof_before.gflops, roof_after.gflops
    );
    println!(
        "{:>16} {:>22} {:>22} {:>8} {:>10} {:>7} {:>10} {:>7} {:>7}",
        "cin->cout @ hw",
        "first kernel",
        "second kernel",
        "launches",
        format!("{first} ms"),
        "roof",
        format!("{second} ms"),
        "roof",
        "speedup"
    );
    let (mut total_flops, mut total_g, mut total_a) = (0.0, 0.0, 0.0);
    for (cin, cout, hw, (kg, ka), launches, flops, tg, ta) in rows {
        let frac = |t: f64| flops / t / 1e9 / roof;
        println!(
            "{:>16} {:>22} {:>22} {:>8} {:>10.2} {:>6.1}% {:>10.2} {:>6.1}% {:>6.2}x",
            format!("{cin}->{cout} @ {hw}"),
            kg,
            ka,
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
        "all shapes: {first} {:.1} GFLOP/s ({:.1}% of roof), {second} {:.1} GFLOP/s ({:.1}%), {:.2}x",
        total_flops / total_g / 1e9,
        100.0 * total_flops / total_g / 1e9 / roof,
        total_flops / total_a / 1e9,
        100.0 * total_flops / total_a / 1e9 / roof,
        total_g / total_a
    );
    Ok(())
}
