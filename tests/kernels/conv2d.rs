use ddim_wgpu::gpu::KernelChoice;
use ddim_wgpu::gpu::{DeviceOptions, Gpu, Tensor};
use ddim_wgpu::ops::conv2d::winograd::{GEMM_KERNEL, GEMM_WIDE_KERNEL, GEMM_WINDOWED_KERNEL};
use ddim_wgpu::ops::conv2d::{
    ChannelSlice, Conv2dConfig, ConvShape, Im2col, InputNorm, Padding, SplitK, TileShape, conv2d,
    conv2d_normed, conv2d_with_channel, kernel_for, lay_columns, normed_kernel_for, output_size,
};
use ddim_wgpu::reference::nn;
use pollster::FutureExt as _;

use crate::common::{
    assert_close, assert_normalised, conv_families, data, gpu_families, random, run,
};
use crate::gpu_or_skip;

struct Case {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    padding: Padding,
    residual: bool,
    out_scale: f32,
}

/// f32 accumulation over K = cin * k * k products of values in [-1, 1): the rounding error grows like
/// sqrt(K) * 2^-24 * (typical partial sum), about 1e-6 of max|ref| at K = 2304 (measured on lavapipe: 5e-8 for the 1x1 case, 1.4e-6 at
/// K = 2304). 1e-5 is a 7x margin that any indexing mistake (a wrong tap, channel or pad) exceeds by orders of magnitude.
const BOUND: f64 = 1e-5;

/// The Winograd convolution (ops::conv2d::winograd) rounds its transformed inputs, sums of up to 36 inputs with
/// coefficients up to 6.25, before the products, and its outputs are sums of 36 products with coefficients up
/// to 8 x 8: the f32 error is a few times the direct sum's. Measured on lavapipe: 6.8e-6 at K = 4608 (512
/// input channels) against 2.2-2.3e-6 for the direct kernels on the same case (3.0x), 4.3e-6 at K = 2304, 1.2-1.9e-6
/// at K <= 180. 3e-5 is BOUND x 3 (that ratio): 4.4x above the worst measured, while a wrong tile offset,
/// position or coefficient errs by the size of the outputs.
pub const WINOGRAD_BOUND: f64 = 3e-5;

/// Runs the case with each kernel family, each against the reference, checking that the CPU family ran
/// `expect` (so each test knows which kernel it proves), the GPU family `conv2d_tiled` (`conv2d_tiled_8x8` on
/// the device with 8 x 8 tiles) and the baseline `conv2d`.
fn check(name: &str, c: Case, expect: &str) {
    gpu_or_skip!();
    for gpu in conv_families() {
        run_case(gpu, name, &c, expect);
    }
}

/// Runs one case against the reference (`check_result`).
fn run_case(gpu: &Gpu, name: &str, c: &Case, expect: &str) {
    let (x, xv) = random(gpu, "x", &[c.n, c.cin, c.h, c.w], 1);
    let (wt, wv) = random(gpu, "weight", &[c.cout, c.cin, c.k, c.k], 2);
    let (b, bv) = random(gpu, "bias", &[c.cout], 3);
    let cfg = Conv2dConfig {
        stride: c.stride,
        padding: c.padding,
        out_scale: c.out_scale,
        upsample: false,
    };
    let (ho, wo) = output_size(c.h, c.w, c.k, c.k, &cfg).unwrap();
    let (res, rv) = random(gpu, "residual", &[c.n, c.cout, ho, wo], 4);
    let out = gpu.zeros("out", &[c.n, c.cout, ho, wo]).unwrap();
    let d = conv2d(gpu, name, &x, &wt, &b, c.residual.then_some(&res), &out, &cfg).unwrap();
    let got = run(gpu, &[&d], &out);
    let p = c.padding;
    let (want, shape) = nn::conv2d(
        &xv,
        [c.n, c.cin, c.h, c.w],
        &wv,
        [c.cout, c.cin, c.k, c.k],
        &bv,
        c.residual.then_some(rv.as_slice()),
        c.stride,
        (p.top, p.bottom, p.left, p.right),
        c.out_scale as f64,
    );
    assert_eq!(shape, [c.n, c.cout, ho, wo]);
    let geometry = ConvShape {
        batch: c.n as u32,
        cin: c.cin as u32,
        h: c.h as u32,
        w: c.w as u32,
        cout: c.cout as u32,
        ho: ho as u32,
        wo: wo as u32,
        kh: c.k as u32,
        kw: c.k as u32,
        stride: c.stride as u32,
        pad_top: p.top as u32,
        pad_left: p.left as u32,
        up: 0,
        chan_stride: c.cout as u32,
        chan_offset: 0,
        _pad: 0,
    };
    // The CPU family takes the product over columns only where `Im2col::on` applies on this device (one
    // image's columns within its binding limits, the 1x1 product's windows at its uniform-offset alignment:
    // lavapipe's 16 bytes allow these shapes, SwiftShader's 256 do not); elsewhere a strided convolution runs
    // the packed kernel.
    let expect = match expect {
        "conv2d_im2col" if Im2col::on(gpu, &geometry).is_none() => "conv2d_packed",
        e => e,
    };
    check_result(gpu, name, d.kernel().name, expect, &got, &want);
}

#[test]
fn conv3x3_awkward_with_residual_and_scale() {
    // 3 input channels: below the Winograd convolution's threshold, so conv2d_3x3 runs.
    check(
        "conv 3x3 2x3x7x33 -> 5, pad 1, residual, scale 0.5",
        Case {
            n: 2,
            cin: 3,
            h: 7,
            w: 33,
            cout: 5,
            k: 3,
            stride: 1,
            padding: Padding::uniform(1),
            residual: true,
            out_scale: 0.5,
        },
        "conv2d_3x3",
    );
}

#[test]
fn conv3x3_winograd_awkward_with_residual_and_scale() {
    // 7 x 33 outputs: 2 x 9 Winograd tiles per image, the last row and column of tiles cut; 19 output
    // channels, so the last block of 8 is partly used.
    check(
        "conv 3x3 2x17x7x33 -> 19, pad 1, residual, scale 0.5",
        Case {
            n: 2,
            cin: 17,
            h: 7,
            w: 33,
            cout: 19,
            k: 3,
            stride: 1,
            padding: Padding::uniform(1),
            residual: true,
            out_scale: 0.5,
        },
        "conv2d_winograd_gemm",
    );
}

#[test]
fn conv1x1_width_one() {
    check(
        "conv 1x1 2x7x3x1 -> 6",
        Case {
            n: 2,
            cin: 7,
            h: 3,
            w: 1,
            cout: 6,
            k: 1,
            stride: 1,
            padding: Padding::default(),
            residual: false,
            out_scale: 1.0,
        },
        "conv2d",
    );
}

#[test]
fn conv_downsample_padding_right_bottom() {
    // diffusers' Downsample2D with padding = 0: pad (0, 1, 0, 1), 3x3, stride 2.
    check(
        "conv 3x3 stride 2 pad (0,1,0,1) 1x4x7x7 -> 3",
        Case {
            n: 1,
            cin: 4,
            h: 7,
            w: 7,
            cout: 3,
            k: 3,
            stride: 2,
            padding: Padding { top: 0, bottom: 1, left: 0, right: 1 },
            residual: false,
            out_scale: 1.0,
        },
        "conv2d",
    );
}

#[test]
fn conv_stride2_pad1_odd_sizes() {
    check(
        "conv 3x3 stride 2 pad 1 2x5x8x9 -> 9",
        Case {
            n: 2,
            cin: 5,
            h: 8,
            w: 9,
            cout: 9,
            k: 3,
            stride: 2,
            padding: Padding::uniform(1),
            residual: true,
            out_scale: 1.0,
        },
        "conv2d",
    );
}

#[test]
fn conv_unet_shape_256_to_256_at_8x8() {
    // A CIFAR-10 UNet ResNet conv at the 8x8 level, batch 2: 4 Winograd tiles per image, 8 units per window
    // (one position's: V read from uniform windows).
    check(
        "conv 3x3 2x256x8x8 -> 256",
        Case {
            n: 2,
            cin: 256,
            h: 8,
            w: 8,
            cout: 256,
            k: 3,
            stride: 1,
            padding: Padding::uniform(1),
            residual: true,
            out_scale: 1.0,
        },
        "conv2d_winograd_gemm_wide",
    );
}

#[test]
fn conv3x3_input_channels_in_two_chunks() {
    // 300 input channels: two chunks of 150 (one window holds 227), so the second launch adds to the first's
    // output and applies the residual and scale; 13 output channels leave 3 of the second block unused (and
    // keep the convolution below the Winograd convolution's threshold, so conv2d_3x3 runs).
    check(
        "conv 3x3 2x300x16x33 -> 13, pad 1, residual, scale 0.7",
        Case {
            n: 2,
            cin: 300,
            h: 16,
            w: 33,
            cout: 13,
            k: 3,
            stride: 1,
            padding: Padding::uniform(1),
            residual: true,
            out_scale: 0.7,
        },
        "conv2d_3x3",
    );
}

#[test]
fn conv3x3_many_blocks_per_window_uneven_padding() {
    // 15 input channels (below the Winograd threshold): 15 blocks of 8 output channels per window, so 130
    // channels (17 blocks) take two windows, the second partly filled. Padding top 0, bottom 2, left 2, right 0.
    check(
        "conv 3x3 1x15x9x70 -> 130, pad (0,2,2,0)",
        Case {
            n: 1,
            cin: 15,
            h: 9,
            w: 70,
            cout: 130,
            k: 3,
            stride: 1,
            padding: Padding { top: 0, bottom: 2, left: 2, right: 0 },
            residual: false,
            out_scale: 1.0,
        },
        "conv2d_3x3",
    );
}

#[test]
fn conv3x3_unet_shape_512_to_256_at_16x16_winograd() {
    // The CIFAR-10 UNet's widest 3x3 convolution at the 16x16 level (an up block's conv1 after the skip
    // concatenation): 16 Winograd tiles per image, K = 4608 products per output in the direct sum; V read from
    // a uniform window (a window holds 1,024 channels of 16 tiles).
    check(
        "conv 3x3 1x512x16x16 -> 256",
        Case {
            n: 1,
            cin: 512,
            h: 16,
            w: 16,
            cout: 256,
            k: 3,
            stride: 1,
            padding: Padding::uniform(1),
            residual: true,
            out_scale: 1.0,
        },
        "conv2d_winograd_gemm_wide",
    );
}

#[test]
fn conv3x3_unet_shape_256_to_256_at_8x8_batch_8() {
    // A CIFAR-10 UNet ResNet conv at the 8x8 level, batch 8 (the GPU family's conv2d_tiled with 64 x 64 tiles
    // over 512 pixels).
    check(
        "conv 3x3 8x256x8x8 -> 256",
        Case {
            n: 8,
            cin: 256,
            h: 8,
            w: 8,
            cout: 256,
            k: 3,
            stride: 1,
            padding: Padding::uniform(1),
            residual: true,
            out_scale: 1.0,
        },
        "conv2d_winograd_gemm_wide",
    );
}

#[test]
fn conv_packed_1x1_input_channels_in_two_chunks() {
    // A 1x1 shortcut with 2100 input channels: two chunks of 1050 (a window holds 2048 for one tap).
    check(
        "conv 1x1 2x2100x16x20 -> 20, residual",
        Case {
            n: 2,
            cin: 2100,
            h: 16,
            w: 20,
            cout: 20,
            k: 1,
            stride: 1,
            padding: Padding::default(),
            residual: true,
            out_scale: 1.0,
        },
        "conv2d_packed",
    );
}

#[test]
fn conv_downsample_stride2_pad_right_bottom() {
    // diffusers' Downsample2D with padding = 0 on an odd size: pad (0, 1, 0, 1), 3x3, stride 2, 33 -> 16: in
    // the CPU family as a matrix product over the input's columns (im2col).
    check(
        "conv 3x3 stride 2 pad (0,1,0,1) 4x12x33x33 -> 17",
        Case {
            n: 4,
            cin: 12,
            h: 33,
            w: 33,
            cout: 17,
            k: 3,
            stride: 2,
            padding: Padding { top: 0, bottom: 1, left: 0, right: 1 },
            residual: false,
            out_scale: 1.0,
        },
        "conv2d_im2col",
    );
    // 27 -> 13 output columns, not a multiple of 4: conv2d_packed.
    check(
        "conv 3x3 stride 2 pad (0,1,0,1) 2x12x27x27 -> 17",
        Case {
            n: 2,
            cin: 12,
            h: 27,
            w: 27,
            cout: 17,
            k: 3,
            stride: 2,
            padding: Padding { top: 0, bottom: 1, left: 0, right: 1 },
            residual: false,
            out_scale: 1.0,
        },
        "conv2d_packed",
    );
}

/// Strided convolutions as matrix products (`Im2col`: conv2d_im2col, then conv2d_1x1 over the columns): 3x3
/// stride 2 over 37 channels (333 rows of columns: two chunks of the product), 20 x 23 -> 10 x 12, with a
/// residual and a scale; 5x5 stride 2 pad 2; and the first case on a device whose storage bindings hold 400
/// KiB, so that the batch's columns run in two groups (2 images, then 1) through the same scratch.
#[test]
fn conv_strided_as_matrix_product_over_columns() {
    let case = |k: usize, pad: usize, residual: bool, out_scale: f32| Case {
        n: 3,
        cin: 37,
        h: 20,
        w: 23,
        cout: 20,
        k,
        stride: 2,
        padding: Padding::uniform(pad),
        residual,
        out_scale,
    };
    let three = "conv 3x3 stride 2 pad 1 3x37x20x23 -> 20, residual, scale 0.5";
    check(three, case(3, 1, true, 0.5), "conv2d_im2col");
    check("conv 5x5 stride 2 pad 2 3x37x20x23 -> 20", case(5, 2, false, 1.0), "conv2d_im2col");
    gpu_or_skip!();
    let small = Gpu::new(&DeviceOptions {
        kernels: KernelChoice::Cpu,
        max_binding: Some(400 * 1024),
        ..DeviceOptions::from_env().unwrap()
    })
    .block_on()
    .unwrap();
    let shape = ConvShape {
        batch: 3,
        cin: 37,
        h: 20,
        w: 23,
        cout: 20,
        ho: 10,
        wo: 12,
        kh: 3,
        kw: 3,
        stride: 2,
        pad_top: 1,
        pad_left: 1,
        up: 0,
        chan_stride: 20,
        chan_offset: 0,
        _pad: 0,
    };
    // 333 rows x 120 pixels = 159,840 bytes an image: 400 KiB holds 2 (where the device takes the product
    // over columns at all; see `run_case`).
    if Im2col::on(gpu_families()[0], &shape).is_some() {
        assert_eq!(Im2col::on(&small, &shape).map(|c| c.images), Some(2));
    }
    run_case(&small, three, &case(3, 1, true, 0.5), "conv2d_im2col");
}

/// conv2d_im2col alone against reference::nn::im2col: a 3x3 stride-2 window with asymmetric padding, a 5x5
/// stride-3 window, and a 3x3 stride-2 window over an input read upsampled 2x, each for images 1..3 of a
/// batch of 3 (the second group of a split batch).
#[test]
fn im2col_columns_match_the_reference() {
    let gpu = gpu_or_skip!();
    // (cin, stored h, w, k, stride, pad top, pad left, up, ho, wo)
    for (cin, h, w, k, stride, top, left, up, ho, wo) in [
        (5, 9, 15, 3, 2, 0, 1, false, 4, 8),
        (3, 14, 14, 5, 3, 1, 2, false, 4, 4),
        (4, 5, 4, 3, 2, 1, 1, true, 5, 4),
    ] {
        let (rh, rw) = if up { (2 * h, 2 * w) } else { (h, w) };
        let shape = ConvShape {
            batch: 3,
            cin: cin as u32,
            h: rh as u32,
            w: rw as u32,
            cout: 1,
            ho: ho as u32,
            wo: wo as u32,
            kh: k as u32,
            kw: k as u32,
            stride: stride as u32,
            pad_top: top as u32,
            pad_left: left as u32,
            up: up as u32,
            chan_stride: 1,
            chan_offset: 0,
            _pad: 0,
        };
        let (x, xv) = random(gpu, "x", &[3, cin, h, w], 90 + k as u64);
        let rows = cin * k * k;
        let cols = gpu.zeros("cols", &[2, rows, ho, wo]).unwrap();
        let name = format!("im2col {cin}x{h}x{w}, {k}x{k} stride {stride}, up {up}");
        let d = lay_columns(gpu, &name, &shape, &x, &cols, 1..3).unwrap();
        let got = run(gpu, &[&d], &cols);
        // The reference reads the input as the kernel does: upsampled by repeating each value 2 x 2.
        let read: Vec<f32> = if up {
            (0..3 * cin * rh * rw)
                .map(|i| {
                    let (plane, y, x) = (i / (rh * rw), i / rw % rh, i % rw);
                    xv[(plane * h + y / 2) * w + x / 2]
                })
                .collect()
        } else {
            xv.clone()
        };
        let all = nn::im2col(&read, [3, cin, rh, rw], (k, k), stride, (top, left), (ho, wo));
        let want = &all[rows * ho * wo..];
        // A copy: exact.
        assert_close(&name, &got, want, 0.0, 0.0);
    }
}

#[test]
fn conv_packed_5x5_with_residual_and_scale() {
    check(
        "conv 5x5 pad 2 1x3x20x45 -> 9, residual, scale 1.5",
        Case {
            n: 1,
            cin: 3,
            h: 20,
            w: 45,
            cout: 9,
            k: 5,
            stride: 1,
            padding: Padding::uniform(2),
            residual: true,
            out_scale: 1.5,
        },
        "conv2d_packed",
    );
}

/// Checks the result against the reference, and that the device's family ran its kernel: `expect` for the CPU
/// family, `conv2d_tiled` for the GPU family (every shape), `conv2d` for the baseline.
fn check_result(gpu: &Gpu, name: &str, kernel: &str, expect: &str, got: &[f32], want: &[f64]) {
    let expect = match gpu.kernel_family() {
        KernelChoice::Cpu => expect,
        KernelChoice::Gpu if gpu.conv_tile_8x8() => "conv2d_tiled_8x8",
        KernelChoice::Gpu => "conv2d_tiled",
        _ => "conv2d",
    };
    assert_eq!(kernel, expect, "{name}: kernel chosen");
    let winograd = [GEMM_KERNEL.name, GEMM_WINDOWED_KERNEL.name, GEMM_WIDE_KERNEL.name];
    let bound = if winograd.contains(&kernel) { WINOGRAD_BOUND } else { BOUND };
    assert_normalised(&format!("{name} ({kernel})"), got, want, bound);
}

/// What the reference adds to a convolution for a per-image channel offset `channel` `[N, Cout]` (constant over
/// each output plane of `plane` pixels) and an optional residual: the offsets as one residual tensor.
fn offsets(channel: &[f32], residual: Option<&[f32]>, plane: usize) -> Vec<f32> {
    (0..channel.len() * plane)
        .map(|e| channel[e / plane] + residual.map_or(0.0, |r| r[e]))
        .collect()
}

/// Channel vectors `[n, offset + cout + 3]` (as a UNet's time projections computed together for several
/// blocks), and the `[n, cout]` values a convolution reading `cout` of them from `offset` must add.
fn channel_slice(gpu: &Gpu, n: usize, cout: usize, offset: usize, seed: u64) -> (Tensor, Vec<f32>) {
    let len = offset + cout + 3;
    let (t, v) = random(gpu, "channel vectors", &[n, len], seed);
    let slice = v.chunks(len).flat_map(|image| image[offset..offset + cout].to_vec()).collect();
    (t, slice)
}

/// `conv2d_with_channel` (a ResNet block's conv1 with its time embedding) on each kernel: the reference adds
/// the per-image channel offset as a residual constant over each output plane. The offsets are a slice of
/// longer per-image vectors (from 0 and from an odd offset).
#[test]
fn conv_with_channel_offset_on_every_kernel() {
    gpu_or_skip!();
    let cases = [
        ([2, 16, 8, 33], 17, 3, true, "conv2d_winograd_gemm"),
        ([2, 5, 8, 33], 9, 3, true, "conv2d_3x3"),
        ([2, 6, 16, 17], 10, 1, false, "conv2d_packed"),
        ([1, 3, 5, 5], 4, 3, true, "conv2d"),
    ];
    for (i, &([n, cin, h, w], cout, k, residual, expect)) in cases.iter().enumerate() {
        for gpu in conv_families() {
            let seed = 60 + 10 * i as u64;
            let (x, xv) = random(gpu, "x", &[n, cin, h, w], seed);
            let (wt, wv) = random(gpu, "weight", &[cout, cin, k, k], seed + 1);
            let (b, bv) = random(gpu, "bias", &[cout], seed + 2);
            let offset = [0, 7][i % 2];
            let (ch, cv) = channel_slice(gpu, n, cout, offset, seed + 3);
            let (r, rv) = random(gpu, "residual", &[n, cout, h, w], seed + 4);
            let out = gpu.zeros("out", &[n, cout, h, w]).unwrap();
            let cfg = Conv2dConfig {
                padding: Padding::uniform(k / 2),
                out_scale: 0.5,
                ..Default::default()
            };
            let name = format!("conv {k}x{k} {n}x{cin}x{h}x{w} -> {cout} + channel offset");
            let res = residual.then_some(&r);
            let ch = ChannelSlice { vectors: &ch, offset };
            let d =
                conv2d_with_channel(gpu, &name, &x, &wt, &b, Some(ch), res, &out, &cfg).unwrap();
            let got = run(gpu, &[&d], &out);
            let plane = h * w;
            let offsets = offsets(&cv, residual.then_some(&rv[..]), plane);
            let (want, _) = nn::conv2d(
                &xv,
                [n, cin, h, w],
                &wv,
                [cout, cin, k, k],
                &bv,
                Some(&offsets),
                1,
                (k / 2, k / 2, k / 2, k / 2),
                0.5,
            );
            check_result(gpu, &name, d.kernel().name, expect, &got, &want);
        }
    }
}

/// A convolution that reads its input upsampled 2x (diffusers' Upsample2D) on each kernel, against the
/// reference upsampling followed by the reference convolution.
#[test]
fn conv_reading_its_input_upsampled_on_every_kernel() {
    gpu_or_skip!();
    let cases = [
        ([2, 16, 4, 17], 17, 3, "conv2d_winograd_gemm"),
        ([2, 5, 4, 17], 9, 3, "conv2d_3x3"),
        ([2, 4, 8, 9], 6, 1, "conv2d_packed"),
        ([1, 3, 2, 3], 4, 3, "conv2d"),
    ];
    for (i, &([n, cin, h, w], cout, k, expect)) in cases.iter().enumerate() {
        for gpu in conv_families() {
            let seed = 90 + 10 * i as u64;
            let (x, xv) = random(gpu, "x", &[n, cin, h, w], seed);
            let (wt, wv) = random(gpu, "weight", &[cout, cin, k, k], seed + 1);
            let (b, bv) = random(gpu, "bias", &[cout], seed + 2);
            let (r, rv) = random(gpu, "residual", &[n, cout, 2 * h, 2 * w], seed + 3);
            let out = gpu.zeros("out", &[n, cout, 2 * h, 2 * w]).unwrap();
            let cfg = Conv2dConfig {
                padding: Padding::uniform(k / 2),
                upsample: true,
                ..Default::default()
            };
            let name = format!("upsample + conv {k}x{k} {n}x{cin}x{h}x{w} -> {cout}");
            let d = conv2d(gpu, &name, &x, &wt, &b, Some(&r), &out, &cfg).unwrap();
            let got = run(gpu, &[&d], &out);
            let up: Vec<f32> =
                nn::upsample_nearest2x(&xv, n * cin, h, w).into_iter().map(|v| v as f32).collect();
            let (want, _) = nn::conv2d(
                &up,
                [n, cin, 2 * h, 2 * w],
                &wv,
                [cout, cin, k, k],
                &bv,
                Some(&rv),
                1,
                (k / 2, k / 2, k / 2, k / 2),
                1.0,
            );
            check_result(gpu, &name, d.kernel().name, expect, &got, &want);
        }
    }
}

/// The 1x1 convolution with x read through uniform windows (conv2d_1x1), with a channel offset, a residual and a
/// scale: whole images per window (a 4x4 map: 42 images of 24 channels fit, 5 run in one launch); an image's
/// channels over several windows of one launch (8x8: 256 + 44 channels; 16x16: 64 + 64 + 64 + 8, 13 output
/// channels in 2 blocks); and in chunks of several launches that add to the output (16x16: 3 chunks of 200
/// channels over 4 windows each; 32x32: 2 chunks of 50). With four weight windows per launch
/// (conv2d_1x1_wide): 300 output channels (38 blocks, 10 to a window: 4 windows, the last of 8 blocks, the
/// last block of 4 channels); 260 from 600 channels at 8x8 (3 blocks to a window, 11 windows in launches of
/// 4, 4 and 3); 300 from 300 at 4x4, 3 images per launch, 7 windows. x lies in a larger buffer, 256 bytes in, as the
/// planner places activations (a window needs room past x); the same x sized exactly runs the storage kernels
/// instead, checked too, and so does x with room and a channel slice of longer vectors (the window kernel adds
/// whole `[N, Cout]` vectors only).
#[test]
fn conv1x1_with_x_in_uniform_windows() {
    gpu_or_skip!();
    let (one, wide) = ("conv2d_1x1", "conv2d_1x1_wide");
    let cases = [
        ([5, 24, 4, 4], 20, one, "conv2d"),
        ([2, 300, 8, 8], 40, one, "conv2d_packed"),
        ([3, 200, 16, 16], 13, one, "conv2d_packed"),
        ([2, 600, 16, 16], 13, one, "conv2d_packed"),
        ([2, 100, 32, 32], 9, one, "conv2d_packed"),
        ([2, 200, 16, 16], 300, wide, "conv2d_packed"),
        ([3, 600, 8, 8], 260, wide, "conv2d_packed"),
        ([3, 300, 4, 4], 300, wide, "conv2d"),
    ];
    for (i, &([n, cin, h, w], cout, with_room, without_room)) in cases.iter().enumerate() {
        for gpu in conv_families() {
            for (room, slice) in [(true, false), (false, false), (true, true)] {
                let seed = 200 + 10 * i as u64;
                let xv = data(seed, n * cin * h * w, -1.0, 1.0);
                let x = if room {
                    let arena = gpu.zeros("arena", &[64 + xv.len() + 16384]).unwrap();
                    let x = arena.view_at("x", &[n, cin, h, w], 256).unwrap();
                    x.write(gpu, &xv).unwrap();
                    x
                } else {
                    gpu.upload("x", &[n, cin, h, w], &xv).unwrap()
                };
                let (wt, wv) = random(gpu, "weight", &[cout, cin, 1, 1], seed + 1);
                let (b, bv) = random(gpu, "bias", &[cout], seed + 2);
                let offset = if slice { 5 } else { 0 };
                let (ch, cv) = if slice {
                    channel_slice(gpu, n, cout, offset, seed + 3)
                } else {
                    random(gpu, "channel", &[n, cout], seed + 3)
                };
                let (r, rv) = random(gpu, "residual", &[n, cout, h, w], seed + 4);
                let out = gpu.zeros("out", &[n, cout, h, w]).unwrap();
                let cfg = Conv2dConfig { out_scale: 0.5, ..Default::default() };
                let name = format!(
                    "conv 1x1 {n}x{cin}x{h}x{w} -> {cout}, room for windows: {room}, slice: {slice}"
                );
                let ch = Some(ChannelSlice { vectors: &ch, offset });
                let d =
                    conv2d_with_channel(gpu, &name, &x, &wt, &b, ch, Some(&r), &out, &cfg).unwrap();
                let got = run(gpu, &[&d], &out);
                let plane = h * w;
                let offsets = offsets(&cv, Some(&rv), plane);
                let (want, _) = nn::conv2d(
                    &xv,
                    [n, cin, h, w],
                    &wv,
                    [cout, cin, 1, 1],
                    &bv,
                    Some(&offsets),
                    1,
                    (0, 0, 0, 0),
                    0.5,
                );
                let expect = if room && !slice { with_room } else { without_room };
                check_result(gpu, &name, d.kernel().name, expect, &got, &want);
            }
        }
    }
}

/// With input windows off (`DeviceOptions::input_windows`, `--input-windows off`) the CPU family reads
/// activations from storage only: the 1x1 convolution runs `conv2d_packed` and the Winograd products the storage
/// kernel, on shapes where the windowed kernels run otherwise.
#[test]
fn input_windows_off_runs_the_storage_kernels() {
    gpu_or_skip!();
    let shape = |cin: u32, cout: u32, side: u32, k: u32| ConvShape {
        batch: 2,
        cin,
        h: side,
        w: side,
        cout,
        ho: side,
        wo: side,
        kh: k,
        kw: k,
        stride: 1,
        pad_top: k / 2,
        pad_left: k / 2,
        up: 0,
        chan_stride: cout,
        chan_offset: 0,
        _pad: 0,
    };
    // 256 -> 256 @ 32, batch 2: 128 tiles, a position's V over two windows (not conv2d_winograd_gemm_wide).
    let (one, three) = (shape(256, 256, 16, 1), shape(256, 256, 32, 3));
    let mut options = DeviceOptions::from_env().unwrap();
    options.kernels = KernelChoice::Cpu;
    for (windows, expect) in [
        (true, ["conv2d_1x1_wide", "conv2d_winograd_gemm_windowed_wide"]),
        (false, ["conv2d_packed", "conv2d_winograd_gemm"]),
    ] {
        options.input_windows = windows;
        let gpu = Gpu::new(&options).block_on().unwrap();
        assert_eq!(gpu.input_windows(), windows);
        let got = [kernel_for(&gpu, &one).name, kernel_for(&gpu, &three).name];
        assert_eq!(got, expect, "input windows {windows}");
    }
}

/// The GPU family's split of K ([`SplitK`]): the split it chooses for CIFAR-10 UNet shapes, and convolutions
/// split along K and run in several groups of pixels (a device whose storage bindings hold 256 KiB of partial
/// sums) with a channel offset, a residual and a scale, against the reference.
#[test]
fn conv_tiled_split_along_k_and_into_pixel_groups() {
    gpu_or_skip!();
    let shape = |n: u32, cin: u32, cout: u32, hw: u32| ConvShape {
        batch: n,
        cin,
        h: hw,
        w: hw,
        cout,
        ho: hw,
        wo: hw,
        kh: 3,
        kw: 3,
        stride: 1,
        pad_top: 1,
        pad_left: 1,
        ..Default::default()
    };
    let floats = 8 << 20;
    // 256 -> 256 at 8x8: 4 tiles per image, K = 2304 in 18 slices of 128 (at least 128 each).
    let s = SplitK::new(&shape(8, 256, 256, 8), TileShape::SMALL, floats);
    assert_eq!((s.splits, s.k_split, s.pixels), (18, 128, 512));
    // 128 -> 128 at 32x32: 32 tiles per image, 4 slices bring it to 128 workgroups.
    let s = SplitK::new(&shape(8, 128, 128, 32), TileShape::SMALL, floats);
    assert_eq!((s.splits, s.k_split, s.pixels), (4, 288, 8192));
    // 512 -> 256 at 4x4: 32 slices of 144; the first convolution (K = 27) is not split.
    assert_eq!(SplitK::new(&shape(8, 512, 256, 4), TileShape::SMALL, floats).splits, 32);
    assert_eq!(SplitK::new(&shape(8, 3, 128, 32), TileShape::SMALL, floats).splits, 1);
    // Pixels in launches of whole tiles whose partial sums fit; one slice where a tile's would not.
    let s = SplitK::new(&shape(64, 128, 128, 32), TileShape::SMALL, 4 * 128 * 1000);
    assert_eq!((s.splits, s.pixels), (4, 960));
    assert_eq!(SplitK::new(&shape(1, 128, 128, 32), TileShape::SMALL, 4 * 128 * 63).splits, 1);
    // 128 x 128 tiles: 128 -> 128 at 32x32 is 8 tiles per image, K = 1152 allows 9 slices of 128; pixels in
    // launches of whole 128-pixel tiles.
    let s = SplitK::new(&shape(8, 128, 128, 32), TileShape::LARGE, floats);
    assert_eq!((s.splits, s.k_split, s.pixels), (9, 128, 7168));

    let open = |split_k| {
        Gpu::new(&DeviceOptions {
            kernels: KernelChoice::Gpu,
            max_binding: Some(256 * 1024),
            split_k,
            ..DeviceOptions::from_env().unwrap()
        })
        .block_on()
        .unwrap()
    };
    let (split, unsplit) = (open(true), open(false));
    let split8 = Gpu::new(&DeviceOptions {
        kernels: KernelChoice::Gpu,
        max_binding: Some(256 * 1024),
        conv_tile_8x8: true,
        ..DeviceOptions::from_env().unwrap()
    })
    .block_on()
    .unwrap();
    // (device, x, cout, stride, launches): 3 slices of 128, 128, 104 and 896 pixels per launch (65,536 floats
    // over 3 x 24) over 969 pixels; then stride 2 with K = 450 in 4 slices and 33 outputs; then the first case
    // on a device opened with split K off (`--split-k off`): one launch over the whole K. With 8 x 8 tiles: 3
    // slices of 120 and 896 pixels per launch (65,536 floats over 3 x 24, in 128-pixel tiles); stride 2 in 4
    // slices of 120.
    for (i, &(gpu, [n, cin, h, w], cout, stride, launches)) in [
        (&split, [3, 40, 17, 19], 24, 1, 2),
        (&split, [2, 50, 13, 10], 33, 2, 1),
        (&unsplit, [3, 40, 17, 19], 24, 1, 0),
        (&split8, [3, 40, 17, 19], 24, 1, 2),
        (&split8, [2, 50, 13, 10], 33, 2, 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = 200 + 10 * i as u64;
        let cfg = Conv2dConfig {
            stride,
            padding: Padding::uniform(1),
            out_scale: 0.75,
            ..Default::default()
        };
        let (ho, wo) = output_size(h, w, 3, 3, &cfg).unwrap();
        let (x, xv) = random(gpu, "x", &[n, cin, h, w], seed);
        let (wt, wv) = random(gpu, "weight", &[cout, cin, 3, 3], seed + 1);
        let (b, bv) = random(gpu, "bias", &[cout], seed + 2);
        let offset = 3 * i;
        let (ch, cv) = channel_slice(gpu, n, cout, offset, seed + 3);
        let (r, rv) = random(gpu, "residual", &[n, cout, ho, wo], seed + 4);
        let out = gpu.zeros("out", &[n, cout, ho, wo]).unwrap();
        let name = format!("conv 3x3 stride {stride} {n}x{cin}x{h}x{w} -> {cout}, split");
        let ch = Some(ChannelSlice { vectors: &ch, offset });
        let d = conv2d_with_channel(gpu, &name, &x, &wt, &b, ch, Some(&r), &out, &cfg).unwrap();
        let x_shape = ConvShape {
            ho: ho as u32,
            wo: wo as u32,
            stride: stride as u32,
            h: h as u32,
            w: w as u32,
            ..shape(n as u32, cin as u32, cout as u32, 0)
        };
        let is_split = SplitK::on(gpu, &x_shape).splits > 1;
        assert_eq!(is_split, launches > 0, "{name}: split");
        assert_eq!(d.launch_count(), (2 * launches).max(1), "{name}: launches");
        let got = run(gpu, &[&d], &out);
        let plane = ho * wo;
        let offsets = offsets(&cv, Some(&rv), plane);
        let (want, _) = nn::conv2d(
            &xv,
            [n, cin, h, w],
            &wv,
            [cout, cin, 3, 3],
            &bv,
            Some(&offsets),
            stride,
            (1, 1, 1, 1),
            0.75,
        );
        check_result(gpu, &name, d.kernel().name, "", &got, &want);
    }
}

/// A channel slice that does not fit its vectors, or vectors for another batch, is refused by name.
#[test]
fn channel_slices_that_do_not_fit_are_refused() {
    let gpu = gpu_or_skip!();
    let (x, _) = random(gpu, "x", &[2, 3, 4, 4], 1);
    let (wt, _) = random(gpu, "weight", &[5, 3, 3, 3], 2);
    let (b, _) = random(gpu, "bias", &[5], 3);
    let out = gpu.zeros("out", &[2, 5, 4, 4]).unwrap();
    let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
    let (vectors, _) = random(gpu, "time projections", &[2, 12], 4);
    let (other_batch, _) = random(gpu, "time projections", &[3, 12], 5);
    for (vectors, offset) in [(&vectors, 8), (&vectors, usize::MAX), (&other_batch, 0)] {
        let ch = Some(ChannelSlice { vectors, offset });
        let e = conv2d_with_channel(gpu, "conv1", &x, &wt, &b, ch, None, &out, &cfg)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("`time projections`") && e.contains("5 values"), "{e}");
    }
    let ch = Some(ChannelSlice { vectors: &vectors, offset: 7 });
    conv2d_with_channel(gpu, "conv1", &x, &wt, &b, ch, None, &out, &cfg).unwrap();
}

/// Group norm (and SiLU) in the tiled convolution's prologue (`conv2d_normed`) against the reference's group
/// norm followed by its convolution, on the GPU family's two tiles: awkward sizes and groups, stride 2, a
/// convolution reading its input upsampled, channel slices, residuals, K split over workgroups, and a map far
/// from zero (values 1000 +- 1, where the statistics keep the precision that an affine x * a + b would lose);
/// refused by name on the families that do not run the tiled convolution.
#[test]
fn conv_with_group_norm_in_its_prologue() {
    gpu_or_skip!();
    // (x, cout, kernel, stride, upsample, groups, silu, channel slice, residual, offset of x)
    let cases = [
        ([2, 6, 7, 33], 5, 3, 1, false, 3, true, true, false, 0.0),
        ([3, 8, 9, 10], 7, 3, 2, false, 4, false, false, true, 0.0),
        ([2, 4, 5, 6], 9, 3, 1, true, 2, true, false, false, 0.0),
        ([1, 16, 8, 8], 12, 1, 1, false, 8, true, false, true, 0.0),
        ([2, 8, 12, 12], 24, 3, 1, false, 2, false, false, false, 1000.0),
        ([8, 64, 8, 8], 64, 3, 1, false, 32, true, true, true, 0.0),
    ];
    for gpu in conv_families() {
        for (
            i,
            &(
                [n, cin, h, w],
                cout,
                k,
                stride,
                upsample,
                groups,
                silu,
                with_channel,
                with_residual,
                shift,
            ),
        ) in cases.iter().enumerate()
        {
            let seed = 300 + 10 * i as u64;
            let xv: Vec<f32> =
                data(seed, n * cin * h * w, -1.0, 1.0).into_iter().map(|v| v + shift).collect();
            let x = gpu.upload("x", &[n, cin, h, w], &xv).unwrap();
            let (gamma, gv) = random(gpu, "gamma", &[cin], seed + 1);
            let (beta, bv) = random(gpu, "beta", &[cin], seed + 2);
            let (wt, wv) = random(gpu, "weight", &[cout, cin, k, k], seed + 3);
            let (b, biasv) = random(gpu, "bias", &[cout], seed + 4);
            let cfg = Conv2dConfig {
                stride,
                padding: Padding::uniform(k / 2),
                out_scale: 0.75,
                upsample,
            };
            let (hi, wi) = if upsample { (2 * h, 2 * w) } else { (h, w) };
            let (ho, wo) = output_size(hi, wi, k, k, &cfg).unwrap();
            let (ch, cv) = channel_slice(gpu, n, cout, 2, seed + 5);
            let (r, rv) = random(gpu, "residual", &[n, cout, ho, wo], seed + 6);
            let out = gpu.zeros("out", &[n, cout, ho, wo]).unwrap();
            let name = format!(
                "norm {groups} groups (silu {silu}) + conv {k}x{k} stride {stride} up {upsample} \
                 {n}x{cin}x{h}x{w} -> {cout}, shift {shift}"
            );
            let norm = InputNorm { gamma: &gamma, beta: &beta, groups, eps: 1e-6, silu };
            let channel = with_channel.then_some(ChannelSlice { vectors: &ch, offset: 2 });
            let residual = with_residual.then_some(&r);
            let result =
                conv2d_normed(gpu, &name, &x, &norm, &wt, &b, channel, residual, &out, &cfg);
            let Some(kernel) = normed_kernel_for(gpu) else {
                assert_ne!(gpu.kernel_family(), KernelChoice::Gpu, "{name}");
                let e = result.err().expect("refused").to_string();
                assert!(e.contains(&name) && e.contains("tiled convolution"), "{e}");
                continue;
            };
            let tile8 = gpu.conv_tile_8x8();
            assert_eq!(kernel.name, if tile8 { "conv2d_tiled_8x8_gn" } else { "conv2d_tiled_gn" });
            let d = result.unwrap();
            assert_eq!(d.kernel().name, kernel.name, "{name}");
            let got = run(gpu, &[&d], &out);
            let normed = nn::group_norm(&xv, n, cin, h * w, groups, &gv, &bv, 1e-6, silu);
            let normed: Vec<f32> = if upsample {
                let v: Vec<f32> = normed.iter().map(|&v| v as f32).collect();
                nn::upsample_nearest2x(&v, n * cin, h, w).iter().map(|&v| v as f32).collect()
            } else {
                normed.iter().map(|&v| v as f32).collect()
            };
            let plane = ho * wo;
            let zero = vec![0.0; n * cout];
            let added = offsets(
                if with_channel { &cv } else { &zero },
                with_residual.then_some(&rv[..]),
                plane,
            );
            let p = k / 2;
            let (want, _) = nn::conv2d(
                &normed,
                [n, cin, hi, wi],
                &wv,
                [cout, cin, k, k],
                &biasv,
                Some(&added),
                stride,
                (p, p, p, p),
                0.75,
            );
            assert_normalised(&format!("{name} ({})", kernel.name), &got, &want, BOUND);
        }
    }
}
