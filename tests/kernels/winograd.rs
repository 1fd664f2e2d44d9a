//! The Winograd convolution's kernels (ops::conv2d::winograd), each against reference::winograd, whose transform
//! matrices are derived by Toom-Cook rather than copied from the kernels. The whole convolution is checked
//! against the direct reference in conv2d.rs, where the CPU family picks it.

use ddim_wgpu::gpu::KernelChoice;
use ddim_wgpu::gpu::{DeviceOptions, Gpu};
use ddim_wgpu::ops::conv2d::winograd::{
    self, GEMM_KERNEL, POSITIONS, Tiling, input_transform, output_transform, pack_weights, products,
};
use ddim_wgpu::ops::conv2d::{Conv2dConfig, ConvShape, Padding, conv2d, kernel_for};
use ddim_wgpu::reference::{nn, winograd as reference};
use pollster::FutureExt as _;

use crate::common::{assert_normalised, data, gpu_families, random, run};
use crate::gpu_or_skip;

/// The transforms are short sums in f32 with coefficients exact in binary: B^T d B adds 6 x 6 inputs with
/// weights up to 2.5 x 2.5, so each value carries a few roundings of partial sums no larger than
/// 36 x 6.25 x max|input|, against values of typical size ~10 x max|input|: about 1e-7 of max|V| (measured
/// below 4e-8). 1e-6 leaves a 10x margin that a wrong coefficient or tile offset misses by orders of magnitude.
const TRANSFORM_BOUND: f64 = 1e-6;

/// The products accumulate cin terms in f32 like a direct convolution (conv2d.rs's bound and reasoning), and
/// their weights carry G's thirds and fifteenths rounded to f32 (2^-24 relative).
const PRODUCT_BOUND: f64 = 1e-5;

/// A 3x3 stride-1 shape with `pad` on every side, `up` when the input is read upsampled.
fn shape(n: usize, cin: usize, h: usize, w: usize, cout: usize, pad: usize, up: bool) -> ConvShape {
    let u = up as usize;
    let (h, w) = (h << u, w << u);
    ConvShape {
        batch: n as u32,
        cin: cin as u32,
        h: h as u32,
        w: w as u32,
        cout: cout as u32,
        ho: (h + 2 * pad - 2) as u32,
        wo: (w + 2 * pad - 2) as u32,
        kh: 3,
        kw: 3,
        stride: 1,
        pad_top: pad as u32,
        pad_left: pad as u32,
        up: u as u32,
        chan_stride: cout as u32,
        chan_offset: 0,
        _pad: 0,
    }
}

/// Groups of 8 tiles: with 6 tiles per image, a batch of 3 makes groups of 8, 8 and 2 tiles, the first two
/// across image boundaries.
fn groups_of_8(s: &ConvShape) -> Tiling {
    let (th, tw) = reference::tiles(s.ho as usize, s.wo as usize);
    let total = s.batch as usize * th * tw;
    Tiling { tiles_h: th, tiles_w: tw, total, tp: 8, groups: total.div_ceil(8) }
}

#[test]
fn input_transform_of_each_group_matches_the_reference() {
    let gpu = gpu_or_skip!();
    // 7 x 10 outputs: 2 x 3 tiles, the last row and column of tiles partly outside; pad 1 and pad 0 (9 x 12 in,
    // 7 x 10 out); and an input read upsampled (3 x 5 stored, 6 x 10 read).
    for (s, seed) in [
        (shape(3, 5, 7, 10, 4, 1, false), 1),
        (shape(3, 2, 9, 12, 4, 0, false), 2),
        (shape(3, 3, 3, 5, 4, 1, true), 3),
    ] {
        let t = groups_of_8(&s);
        let (cin, h, w) = (s.cin as usize, s.h as usize, s.w as usize);
        let stored = [3, cin, h >> s.up, w >> s.up];
        let (x, xv) = random(gpu, "x", &stored, seed);
        assert_eq!(t.groups, 3);
        for group in 0..t.groups {
            let v = gpu.zeros("v", &[POSITIONS, cin, t.tp]).unwrap();
            let name =
                format!("input transform {stored:?} pad {} up {}, group {group}", s.pad_top, s.up);
            let d = input_transform(gpu, &name, &s, &t, group, &x, &v).unwrap();
            let got = run(gpu, &[&d], &v);
            let want = reference::input_transform(
                &xv,
                [cin, h, w],
                (s.pad_top as usize, s.pad_left as usize),
                (s.ho as usize, s.wo as usize),
                s.up != 0,
                t.group(group),
                t.tp,
            );
            assert_normalised(&name, &got, &want, TRANSFORM_BOUND);
        }
    }
}

#[test]
fn products_over_packed_weights_match_the_reference() {
    let gpu = gpu_or_skip!();
    // 13 output channels: two blocks, the second with 3 unused channels; all 72 units (position, block) in one
    // window. 600 input channels: 3 units per window, so 40 output channels (5 blocks) take 60 windows, and
    // most hold units of two positions.
    for (cout, cin, tp, seed) in [(13, 5, 24, 10), (40, 600, 8, 20)] {
        let (wt, wv) = random(gpu, "weight", &[cout, cin, 3, 3], seed);
        let (v, vv) = random(gpu, "v", &[POSITIONS, cin, tp], seed + 1);
        let m = gpu.zeros("m", &[POSITIONS, cout, tp]).unwrap();
        let name = format!("products {cout}x{cin}, {tp} tiles");
        let packed = pack_weights(gpu, &name, &wt).unwrap();
        let d = products(gpu, &name, &packed, &v, &m).unwrap();
        let got = run(gpu, &[&d], &m);
        let u = reference::weight_transform(&wv, cout, cin);
        let want = reference::products(&u, &vv, cout, cin, tp);
        assert_normalised(&name, &got, &want, PRODUCT_BOUND);
    }
}

/// The products of a random `cout` x `cin` convolution over a random V `[36, cin, tp]`, run twice: with V in a
/// larger buffer, as the device's scratch V is (room for uniform windows), by `roomy` (kernel, launches), and
/// with V sized exactly, by the storage kernel. Checks the first against the reference and the two bit for
/// bit: every products kernel makes the storage kernel's sums in the same order.
fn products_against_storage(
    gpu: &Gpu,
    (cout, cin, tp): (usize, usize, usize),
    seed: u64,
    roomy: (&str, usize),
) {
    let (wt, wv) = random(gpu, "weight", &[cout, cin, 3, 3], seed);
    let vv = data(seed + 1, POSITIONS * cin * tp, -1.0, 1.0);
    let room = gpu
        .zeros("v arena", &[vv.len() + (winograd::V_SLACK / 4) as usize])
        .unwrap()
        .view("v", &[POSITIONS, cin, tp])
        .unwrap();
    room.write(gpu, &vv).unwrap();
    let exact = gpu.upload("v", &[POSITIONS, cin, tp], &vv).unwrap();
    let packed = pack_weights(gpu, "products", &wt).unwrap();
    // 36 x ceil(cout / 8) units, 2048 / cin to a weight window; the storage kernel takes one window a launch.
    let units = POSITIONS * cout.div_ceil(8);
    let windows = units.div_ceil((2048 / cin).min(units));
    let mut outputs = Vec::new();
    for (v, (kernel, launches)) in [(&room, roomy), (&exact, (GEMM_KERNEL.name, windows))] {
        let m = gpu.zeros("m", &[POSITIONS, cout, tp]).unwrap();
        let name = format!("products {cout}x{cin}, {tp} tiles, {kernel}");
        let d = products(gpu, &name, &packed, v, &m).unwrap();
        assert_eq!(d.kernel().name, kernel, "{name}");
        assert_eq!(d.launch_count(), launches, "{name}: launches");
        outputs.push(run(gpu, &[&d], &m));
    }
    let u = reference::weight_transform(&wv, cout, cin);
    let want = reference::products(&u, &vv, cout, cin, tp);
    let name = format!("products {cout}x{cin}, {tp} tiles, {}", roomy.0);
    assert_normalised(&name, &outputs[0], &want, PRODUCT_BOUND);
    assert!(
        outputs[0].iter().zip(&outputs[1]).all(|(a, b)| a.to_bits() == b.to_bits()),
        "{name}: differs from the storage kernel's"
    );
}

/// The products with V read from uniform windows (conv2d_winograd_gemm_windowed): 600 input channels of 64
/// tiles over three of the four windows (256, 256 and 88 channels), 21 output channels in 3 blocks, 3 units
/// (one position's) per weight window, one weight window a launch. V sized exactly does not fit V[35]'s
/// last window and runs the storage kernel.
#[test]
fn products_with_v_in_uniform_windows_match_the_reference_and_the_storage_kernel() {
    let gpu = gpu_or_skip!();
    let (cout, cin, tp) = (21, 600, 64);
    assert_eq!(winograd::windowed_rows(gpu, cout, cin, tp), Some(256));
    // 108 units, 3 to a window.
    let roomy = ("conv2d_winograd_gemm_windowed", 36);
    products_against_storage(gpu, (cout, cin, tp), 30, roomy);
}

/// The products of small maps with several weight windows per launch (conv2d_winograd_gemm_wide), V in one
/// window at the launch's first position: 512 output channels x 256 input channels over 8 tiles (one column),
/// 8 units per window and 8 windows per launch, all of one position; 100 x 300 over 16 tiles (two columns),
/// 6 units per window, 4 windows per launch spanning up to 3 positions; 21 x 600 over 8 tiles, 3 units (one
/// position's, the last block of 5 channels) per window, 2 windows per launch, so one workgroup's lanes
/// straddle two windows.
#[test]
fn products_of_small_maps_with_several_weight_windows_per_launch() {
    let gpu = gpu_or_skip!();
    // (cout, cin, tp, weight windows a launch, weight windows, seed)
    for (cout, cin, tp, wide, windows, seed) in
        [(512, 256, 8, 8, 288usize, 40), (100, 300, 16, 4, 78, 50), (21, 600, 8, 2, 36, 60)]
    {
        assert_eq!(winograd::wide_windows(gpu, cout, cin, tp), Some(wide));
        let roomy = ("conv2d_winograd_gemm_wide", windows.div_ceil(wide));
        products_against_storage(gpu, (cout, cin, tp), seed, roomy);
    }
}

/// The windowed products with four weight windows of one position per launch
/// (conv2d_winograd_gemm_windowed_wide): 125 output channels (16 blocks, the last of 5 channels) x 500 input
/// channels over 64 tiles, 4 units per window, so a position's 16 units fill 4 windows, and V[xi] two V
/// windows (256 + 244 channels): 144 weight windows in 36 launches. V sized exactly does not fit V[35]'s
/// second window and runs the storage kernel.
#[test]
fn products_with_four_weight_windows_of_a_position_per_launch() {
    let gpu = gpu_or_skip!();
    let (cout, cin, tp) = (125, 500, 64);
    assert_eq!(winograd::windowed_rows(gpu, cout, cin, tp), Some(256));
    assert_eq!(winograd::wide_windows(gpu, cout, cin, tp), None);
    let roomy = ("conv2d_winograd_gemm_windowed_wide", 36);
    products_against_storage(gpu, (cout, cin, tp), 70, roomy);
}

#[test]
fn output_transform_of_each_group_matches_the_reference() {
    let gpu = gpu_or_skip!();
    // 7 x 10 outputs (tiles cut at the right and bottom), with bias, channel offset, residual and scale; then
    // bias alone.
    let s = shape(3, 4, 7, 10, 5, 1, false);
    let t = groups_of_8(&s);
    let out_shape = [3, 5, 7, 10];
    let (m, mv) = random(gpu, "m", &[POSITIONS, 5, t.tp], 30);
    let (b, bv) = random(gpu, "bias", &[5], 31);
    let (ch, cv) = random(gpu, "channel", &[3, 5], 32);
    let (r, rv) = random(gpu, "residual", &out_shape, 33);
    for full in [true, false] {
        let out = gpu.zeros("out", &out_shape).unwrap();
        let mut want = vec![0.0; out.len()];
        let (channel, residual, scale) =
            if full { (Some(&ch), Some(&r), 0.7) } else { (None, None, 1.0) };
        let name = format!("output transform {out_shape:?}, epilogue {full}");
        let mut dispatches = Vec::new();
        for group in 0..t.groups {
            dispatches.push(
                output_transform(gpu, &name, &s, &t, group, &m, &b, channel, residual, &out, scale)
                    .unwrap(),
            );
            reference::output_transform(
                &mv,
                [5, 7, 10],
                t.tp,
                t.group(group),
                &bv,
                full.then_some(cv.as_slice()),
                full.then_some(rv.as_slice()),
                scale as f64,
                &mut want,
            );
        }
        let got = run(gpu, &dispatches.iter().collect::<Vec<_>>(), &out);
        assert_normalised(&name, &got, &want, TRANSFORM_BOUND);
    }
}

#[test]
fn tiling_groups_tiles_within_the_limit() {
    // 32 x 32 outputs at 128 channels: 64 tiles per image, 36 x 128 x 4 bytes per tile.
    let s = shape(8, 128, 32, 32, 128, 1, false);
    let per_tile = 36 * 128 * 4;
    let t = Tiling::new(&s, 512 * per_tile).unwrap();
    assert_eq!((t.total, t.tp, t.groups), (512, 512, 1));
    // Room for 200 tiles: 3 groups of 171, rounded up to 176.
    let t = Tiling::new(&s, 200 * per_tile).unwrap();
    assert_eq!((t.tp, t.groups, t.group(2)), (176, 3, (352, 160)));
    assert_eq!(Tiling::new(&s, 8 * per_tile).map(|t| t.groups), Some(64));
    assert_eq!(Tiling::new(&s, 8 * per_tile - 1), None);
    // Not 3x3 stride 1.
    let mut strided = s;
    strided.stride = 2;
    assert_eq!(Tiling::new(&strided, u64::MAX), None);
}

/// The whole convolution in several groups of tiles on a device whose storage bindings (96 KiB) hold 32 tiles'
/// transformed values (of 60 in the batch), against the direct reference and against the same convolution in
/// one group: the grouping does not change a bit.
#[test]
fn winograd_in_groups_matches_one_group_bit_for_bit() {
    gpu_or_skip!();
    let small = Gpu::new(&DeviceOptions {
        kernels: KernelChoice::Cpu,
        max_binding: Some(96 * 1024),
        ..DeviceOptions::from_env().unwrap()
    })
    .block_on()
    .unwrap();
    let large = gpu_families()[0];
    let (n, cin, h, w, cout) = (3, 20, 16, 20, 16);
    let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
    let mut outputs = Vec::new();
    for gpu in [&small, large] {
        let (x, xv) = random(gpu, "x", &[n, cin, h, w], 40);
        let (wt, wv) = random(gpu, "weight", &[cout, cin, 3, 3], 41);
        let (b, bv) = random(gpu, "bias", &[cout], 42);
        let out = gpu.zeros("out", &[n, cout, h, w]).unwrap();
        let d = conv2d(gpu, "grouped winograd", &x, &wt, &b, None, &out, &cfg).unwrap();
        assert_eq!(d.kernel().name, GEMM_KERNEL.name);
        let s = shape(n, cin, h, w, cout, 1, false);
        assert_eq!(kernel_for(gpu, &s).name, GEMM_KERNEL.name);
        let got = run(gpu, &[&d], &out);
        let (want, _) = nn::conv2d(
            &xv,
            [n, cin, h, w],
            &wv,
            [cout, cin, 3, 3],
            &bv,
            None,
            1,
            (1, 1, 1, 1),
            1.0,
        );
        assert_normalised("grouped winograd", &got, &want, crate::conv2d::WINOGRAD_BOUND);
        outputs.push(got);
    }
    let groups = Tiling::on(&small, &shape(n, cin, h, w, cout, 1, false));
    assert_eq!(groups.map(|t| (t.tp, t.groups)), Some((32, 2)));
    assert!(outputs[0] == outputs[1], "grouping changed the result");
}
