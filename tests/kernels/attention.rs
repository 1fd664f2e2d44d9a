use ddim_wgpu::gpu::KernelChoice;
use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::ops::attention::{
    BLOCKINGS, Blocking, FLASH, FLASH_SUBGROUPS, KeySplit, Products, TILED, WindowGeometry,
    attention, attention_blocked, blocking_for,
};
use ddim_wgpu::reference::nn;
use pollster::FutureExt as _;

use crate::common::{assert_normalised, data, gpu_families, random, run};
use crate::gpu_or_skip;

/// The kernel streams keys through an online softmax in f32; the reference materialises the full softmax in
/// f64. Score dot products of length head_dim <= 256 and sums over <= 1024 keys round at ~1e-7 relative;
/// exp of scores within a few units adds a few ulp. Measured on lavapipe: up to 1.9e-6 of max|ref| (one
/// 256-dim head over 256 tokens, and the peaked case); 1e-5 leaves 5x.
const BOUND: f64 = 1e-5;

/// Runs the case with each kernel family against the reference: the CPU family runs the products over stored
/// scores (`attention_scores`) where q, k and v can be read through uniform windows and `attention_windowed`
/// (keys and values packed into uniform windows) otherwise, where a key block fits a window (head_dim up to
/// 1,024; `attention_products_read_operands_through_windows` pins which runs where), the GPU family
/// `attention_flash` where its 28.5 KiB workgroups fit (lavapipe's 32 KiB do) and `attention_tiled` elsewhere,
/// the baseline `attention`. On the GPU family's device both query-blocked kernels run, whichever it chooses.
fn check(name: &str, shape: [usize; 4], head_dim: usize, scale_inputs: f32) {
    gpu_or_skip!();
    for gpu in gpu_families() {
        let kernel = run_case(gpu, name, shape, head_dim, scale_inputs);
        let gpu_family = blocking_for(gpu).map_or("attention", |b| b.kernel.name);
        let expect: &[&str] = match gpu.kernel_family() {
            KernelChoice::Cpu if head_dim <= 1024 => &["attention_scores", "attention_windowed"],
            KernelChoice::Gpu => &[gpu_family],
            _ => &["attention"],
        };
        assert!(expect.contains(&kernel), "{name}: kernel chosen: {kernel}");
        if gpu.kernel_family() == KernelChoice::Gpu {
            for b in BLOCKINGS.into_iter().filter(|b| b.fits(gpu)) {
                let ran = run_with(gpu, Some(b), name, shape, head_dim, scale_inputs, false);
                assert_eq!(ran, b.kernel.name, "{name}");
            }
        }
    }
}

fn run_case(
    gpu: &Gpu,
    name: &str,
    shape: [usize; 4],
    head_dim: usize,
    scale_inputs: f32,
) -> &'static str {
    run_placed(gpu, name, shape, head_dim, scale_inputs, false)
}

/// [`run_case`] with q, k and v either sized exactly or (`room`) placed as the graph's planner places
/// activations: 256 bytes into an arena with a 64 KiB uniform window of room past them.
fn run_placed(
    gpu: &Gpu,
    name: &str,
    shape: [usize; 4],
    head_dim: usize,
    scale_inputs: f32,
    room: bool,
) -> &'static str {
    run_with(gpu, None, name, shape, head_dim, scale_inputs, room)
}

/// [`run_placed`] with the GPU family's query-blocked kernel `blocking` where given.
fn run_with(
    gpu: &Gpu,
    blocking: Option<&Blocking>,
    name: &str,
    [n, c, h, w]: [usize; 4],
    head_dim: usize,
    scale_inputs: f32,
    room: bool,
) -> &'static str {
    let shape = [n, c, h, w];
    let len = shape.iter().product();
    // Larger q and k make the softmax peaked, which exercises the running-max rescaling.
    let qv = data(60, len, -scale_inputs, scale_inputs);
    let kv = data(61, len, -scale_inputs, scale_inputs);
    let vv = data(62, len, -1.0, 1.0);
    let place = |label: &str, values: &[f32]| {
        if room {
            let arena = gpu.zeros("arena", &[64 + len + 16384]).unwrap();
            let t = arena.view_at(label, &shape, 256).unwrap();
            t.write(gpu, values).unwrap();
            t
        } else {
            gpu.upload(label, &shape, values).unwrap()
        }
    };
    let (q, k, v) = (place("q", &qv), place("k", &kv), place("v", &vv));
    let out = gpu.zeros("out", &shape).unwrap();
    let d = match blocking {
        Some(b) => attention_blocked(gpu, b, name, [&q, &k, &v, &out], head_dim).unwrap(),
        None => attention(gpu, name, &q, &k, &v, &out, head_dim).unwrap(),
    };
    let got = run(gpu, &[&d], &out);
    let want = nn::attention(&qv, &kv, &vv, n, c, h * w, head_dim);
    let kernel = d.kernel().name;
    assert_normalised(&format!("{name} ({kernel})"), &got, &want, BOUND);
    kernel
}

#[test]
fn attention_awkward_multi_head() {
    // 33 tokens: two full key blocks of 16 and a block of 1.
    check("attention 2x6x3x11 head_dim 2", [2, 6, 3, 11], 2, 1.0);
    check("attention 1x5x7x1 one head", [1, 5, 7, 1], 5, 1.0);
    check("attention 2x3x1x1 one token", [2, 3, 1, 1], 1, 1.0);
}

#[test]
fn attention_peaked_softmax() {
    // Scores up to about 8 * 8 * 9 / 3: the maximum moves between key blocks and early blocks are rescaled.
    check("attention peaked 1x9x5x7 head_dim 3", [1, 9, 5, 7], 3, 8.0);
}

#[test]
fn attention_many_tokens() {
    // 32x32 = 1024 tokens: 64 key blocks per query; memory stays O(C * T).
    check("attention 1x8x32x32 head_dim 4", [1, 8, 32, 32], 4, 2.0);
}

#[test]
fn attention_unet_shape() {
    // The CIFAR-10 UNet's attention at 16x16: 256 channels, one head of 256.
    check("attention 1x256x16x16 one head", [1, 256, 16, 16], 256, 1.0);
}

#[test]
fn attention_windows_split_keys_and_pack_several_heads() {
    // head_dim 300: 48 keys per window, so 77 tokens take two key windows (48 + 29) with the softmax state
    // carried between the launches; head_dim 5 over 21 tokens: 32 (padded) keys per head, all 6 heads in one
    // window (it has room for 102).
    assert_eq!(
        WindowGeometry::new(4, 300, 77).map(|g| (g.kw, g.per_window, g.key_windows, g.windows)),
        Some((48, 1, 2, 8))
    );
    check("attention 2x600x7x11 head_dim 300", [2, 600, 7, 11], 300, 1.0);
    assert_eq!(
        WindowGeometry::new(6, 5, 21).map(|g| (g.kw, g.per_window, g.key_windows, g.windows)),
        Some((32, 6, 1, 1))
    );
    check("attention 2x15x3x7 head_dim 5, peaked", [2, 15, 3, 7], 5, 6.0);
    // Too large a head for a window: the portable kernel, in every family.
    assert_eq!(WindowGeometry::new(1, 1030, 4), None);
    check("attention 1x1030x2x2 one head", [1, 1030, 2, 2], 1030, 1.0);
}

/// The CPU family's attention as two products over stored scores ([`Products`]: `attention_scores`,
/// `attention_softmax`, `attention_values`), with q, k and v read through uniform windows where they lie in an
/// arena with room for them, and `attention_windowed` where they are sized exactly (no room) or the tokens are
/// not a multiple of 8. The cuts: several pairs per launch of both products (16 tokens); one pair whose 300
/// channels take two chunks of the scores and five value windows of 64 channels, the last of 44 (256 tokens);
/// 1,024 tokens, whose values take 16 chunks of 64 keys; 24 tokens over three heads of 5 channels, a channel
/// block of 5 rows.
#[test]
fn attention_products_read_operands_through_windows() {
    gpu_or_skip!();
    let floats = 8 << 20;
    let cut = |pairs, d, t| {
        Products::new(pairs, d, t, floats).map(|c| {
            (c.group, c.score_pairs, c.score_chunk, c.value_pairs, c.value_chunk, c.value_rows)
        })
    };
    assert_eq!(cut(6, 4, 16), Some((6, 6, 4, 6, 16, 1024)));
    assert_eq!(cut(1, 300, 256), Some((1, 1, 256, 1, 256, 64)));
    assert_eq!(cut(4, 8, 1024), Some((4, 2, 8, 1, 64, 16)));
    assert_eq!(cut(6, 5, 24), Some((6, 6, 5, 6, 24, 680)));
    // The CIFAR-10 UNet's attention at batch 8: one pair per launch, all 256 channels in one chunk of the
    // scores, keys in one chunk of the values, four value windows of 64 channels.
    assert_eq!(cut(8, 256, 256), Some((8, 1, 256, 1, 256, 64)));
    // Not a multiple of 8 tokens; more than 2,048; no room for one pair's scores.
    assert_eq!(cut(1, 8, 33), None);
    assert_eq!(cut(1, 8, 2056), None);
    assert_eq!(Products::new(1, 8, 1024, 1 << 19), None);

    let cpu = gpu_families()[0];
    for (name, shape, head_dim, scale) in [
        ("attention 3x8x4x4 head_dim 4 (2 heads)", [3, 8, 4, 4], 4, 3.0),
        ("attention 1x300x16x16 one head of 300", [1, 300, 16, 16], 300, 1.0),
        ("attention 2x16x32x32 head_dim 8, peaked", [2, 16, 32, 32], 8, 4.0),
        ("attention 2x15x4x6 head_dim 5 (3 heads)", [2, 15, 4, 6], 5, 2.0),
        ("attention 2x6x3x11 head_dim 2", [2, 6, 3, 11], 2, 1.0),
    ] {
        let tokens = shape[2] * shape[3];
        for room in [true, false] {
            let kernel = run_placed(cpu, name, shape, head_dim, scale, room);
            let expect =
                if room && tokens % 8 == 0 { "attention_scores" } else { "attention_windowed" };
            assert_eq!(kernel, expect, "{name}, room for windows: {room}");
        }
    }

    // A device whose storage bindings hold 9 MiB: 1,024 tokens' scores take 4 MiB a pair, so 4 pairs run in
    // two groups of 2, one after the other through the same scratch.
    let small = Gpu::new(&DeviceOptions {
        kernels: KernelChoice::Cpu,
        max_binding: Some(9 << 20),
        ..DeviceOptions::from_env().unwrap()
    })
    .block_on()
    .unwrap();
    assert_eq!(Products::on(&small, 4, 8, 1024).map(|c| c.group), Some(2));
    let name = "attention 2x16x32x32 head_dim 8, two groups";
    let kernel = run_placed(&small, name, [2, 16, 32, 32], 8, 4.0, true);
    assert_eq!(kernel, "attention_scores", "{name}");
}

#[test]
fn attention_windows_in_several_buffers() {
    // A device whose storage bindings hold one window (96 KiB): every window gets its own buffer, and with 512
    // channels a head's two key windows lie in two buffers.
    gpu_or_skip!();
    let options = DeviceOptions {
        kernels: KernelChoice::Cpu,
        max_binding: Some(96 * 1024),
        ..DeviceOptions::from_env().unwrap()
    };
    let gpu = Gpu::new(&options).block_on().unwrap();
    for (name, shape, head_dim) in [
        ("attention 1x384x8x8 head_dim 128 (3 heads)", [1, 384, 8, 8], 128),
        ("attention 1x512x6x8 one head of 512", [1, 512, 6, 8], 512),
    ] {
        let kernel = run_case(&gpu, name, shape, head_dim, 2.0);
        assert_eq!(kernel, "attention_windowed", "{name}");
    }
}

/// The GPU family's key split ([`KeySplit`]): the splits it chooses, and a split, peaked, three-head attention
/// run in two launches of pairs (a device whose storage bindings hold 256 KiB of partial state), against the
/// reference.
#[test]
fn attention_tiled_splits_keys_and_groups_pairs() {
    gpu_or_skip!();
    let floats = 8 << 20;
    // The CIFAR-10 UNet's attention: one head of 256 over 256 tokens is 32 query blocks per image; 4 splits of
    // 64 keys bring it to 128 workgroups.
    assert_eq!(
        KeySplit::new(&TILED, 8, 1, 256, 256, floats),
        KeySplit { splits: 4, keys: 64, pairs: 8 }
    );
    // Two heads of 300 over 77 tokens: 2 splits (64 + 13 keys); the MNIST model's 64 tokens: one (64 keys at
    // least per split).
    assert_eq!(KeySplit::new(&TILED, 4, 2, 300, 77, floats).splits, 2);
    assert_eq!(KeySplit::new(&TILED, 64, 1, 64, 64, floats).splits, 1);
    // Pairs per launch as the state allows (4 x 256 x 258 = 264,192 floats a pair); no split without room for
    // one pair.
    assert_eq!(KeySplit::new(&TILED, 8, 1, 256, 256, 300_000).pairs, 1);
    assert_eq!(KeySplit::new(&TILED, 8, 1, 256, 256, 200_000).splits, 1);

    let gpu = Gpu::new(&DeviceOptions {
        kernels: KernelChoice::Gpu,
        max_binding: Some(256 * 1024),
        ..DeviceOptions::from_env().unwrap()
    })
    .block_on()
    .unwrap();
    // Three heads of 64 over 9 x 10 = 90 tokens, batch 3: 9 pairs, 2 splits (64 + 26 keys), 2 x 90 x 66 =
    // 11,880 floats of state a pair: 5 pairs in the first launch, 4 in the second.
    let (shape, head_dim) = ([3, 192, 9, 10], 64);
    assert_eq!(
        KeySplit::on(&gpu, &TILED, 9, 3, head_dim, 90),
        KeySplit { splits: 2, keys: 64, pairs: 5 }
    );
    let len = shape.iter().product();
    let qv = data(63, len, -4.0, 4.0);
    let kv = data(64, len, -4.0, 4.0);
    let (v, vv) = random(&gpu, "v", &shape, 65);
    let q = gpu.upload("q", &shape, &qv).unwrap();
    let k = gpu.upload("k", &shape, &kv).unwrap();
    let out = gpu.zeros("out", &shape).unwrap();
    let name = "attention 3x192x9x10 head_dim 64, split, peaked";
    let d = attention_blocked(&gpu, &TILED, name, [&q, &k, &v, &out], head_dim).unwrap();
    assert_eq!(d.kernel().name, "attention_tiled", "{name}");
    assert_eq!(d.launch_count(), 4, "{name}: two launches of both kernels");
    let got = run(&gpu, &[&d], &out);
    let want = nn::attention(&qv, &kv, &vv, 3, 192, 90, head_dim);
    assert_normalised(name, &got, &want, BOUND);

    // With split reductions off (`--split-k off`): one launch over all keys, the same result.
    let unsplit = Gpu::new(&DeviceOptions {
        kernels: KernelChoice::Gpu,
        split_k: false,
        ..DeviceOptions::from_env().unwrap()
    })
    .block_on()
    .unwrap();
    assert_eq!(KeySplit::on(&unsplit, &TILED, 9, 3, head_dim, 90).splits, 1);
    let (q, k) =
        (unsplit.upload("q", &shape, &qv).unwrap(), unsplit.upload("k", &shape, &kv).unwrap());
    let v = unsplit.upload("v", &shape, &vv).unwrap();
    let out = unsplit.zeros("out", &shape).unwrap();
    let d = attention_blocked(&unsplit, &TILED, name, [&q, &k, &v, &out], head_dim).unwrap();
    assert_eq!(d.launch_count(), 1, "{name}, unsplit");
    let got = run(&unsplit, &[&d], &out);
    assert_normalised(&format!("{name}, unsplit"), &got, &want, BOUND);
}

#[test]
fn attention_wide_heads_run_in_passes() {
    // Two heads of 300 over 45 tokens: the GPU family's kernels hold 256 output dims an invocation, so each
    // runs its key loop twice, recomputing the scores.
    check("attention 2x600x5x9 head_dim 300", [2, 600, 5, 9], 300, 1.0);
}

/// `attention_flash`'s key split: 64-query blocks give an image fewer workgroups than 8-query ones, so the
/// keys split wherever a split holds two 64-key blocks; the CIFAR-10 UNet's one head of 256 over 256 tokens,
/// split four ways, against the reference.
#[test]
fn attention_flash_splits_keys() {
    gpu_or_skip!();
    let floats = 8 << 20;
    // 4 query blocks per image; 4 splits of 64 keys bring it to 16 workgroups, as far as 256 keys go.
    assert_eq!(
        KeySplit::new(&FLASH, 8, 1, 256, 256, floats),
        KeySplit { splits: 4, keys: 64, pairs: 8 }
    );
    // 77 tokens: 2 splits (64 + 13); 64 tokens: one.
    assert_eq!(KeySplit::new(&FLASH, 4, 2, 300, 77, floats).splits, 2);
    assert_eq!(KeySplit::new(&FLASH, 64, 1, 64, 64, floats).splits, 1);
    let gpu = Gpu::new(&DeviceOptions {
        kernels: KernelChoice::Gpu,
        ..DeviceOptions::from_env().unwrap()
    })
    .block_on()
    .unwrap();
    if !FLASH.fits(&gpu) {
        return eprintln!("skipping: attention_flash does not fit this device's workgroups");
    }
    let (shape, head_dim) = ([2, 256, 16, 16], 256);
    let len = shape.iter().product();
    let qv = data(66, len, -3.0, 3.0);
    let kv = data(67, len, -3.0, 3.0);
    let (v, vv) = random(&gpu, "v", &shape, 68);
    let (q, k) = (gpu.upload("q", &shape, &qv).unwrap(), gpu.upload("k", &shape, &kv).unwrap());
    let out = gpu.zeros("out", &shape).unwrap();
    let want = nn::attention(&qv, &kv, &vv, 2, 256, 256, head_dim);
    for b in [&FLASH, &FLASH_SUBGROUPS].into_iter().filter(|b| b.fits(&gpu)) {
        let name = format!("attention 2x256x16x16 one head, {}, split", b.kernel.name);
        let d = attention_blocked(&gpu, b, &name, [&q, &k, &v, &out], head_dim).unwrap();
        assert_eq!(d.launch_count(), 2, "{name}: the kernel and the merge");
        let got = run(&gpu, &[&d], &out);
        assert_normalised(&name, &got, &want, BOUND);
    }
}
