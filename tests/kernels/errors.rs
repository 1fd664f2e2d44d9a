//! Bad input gives a one-line error naming the op and tensor; wgpu faults come back as errors, not panics.

use ddim_wgpu::Error;
use ddim_wgpu::gpu::grid;
use ddim_wgpu::ops::conv2d::{Conv2dConfig, conv2d};
use ddim_wgpu::ops::elementwise::{Unary, unary};
use ddim_wgpu::ops::group_norm::group_norm;
use ddim_wgpu::ops::linear;
use pollster::FutureExt as _;

use crate::gpu_or_skip;

#[test]
fn mismatched_shapes_name_the_op_and_tensor() {
    let gpu = gpu_or_skip!();
    let x = gpu.zeros("down.0.x", &[1, 4, 8, 8]).unwrap();
    let w = gpu.zeros("down.0.conv1.weight", &[8, 3, 3, 3]).unwrap();
    let b = gpu.zeros("down.0.conv1.bias", &[8]).unwrap();
    let out = gpu.zeros("out", &[1, 8, 8, 8]).unwrap();
    let err = conv2d(gpu, "conv1", &x, &w, &b, None, &out, &Conv2dConfig::default())
        .err()
        .expect("3 vs 4 input channels must be refused");
    let msg = err.to_string();
    assert!(matches!(err, Error::Shape { op: "conv2d", .. }), "{msg}");
    assert!(msg.contains("down.0.conv1.weight") && msg.contains("down.0.x"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");

    // Groups that do not divide the channels.
    let g = gpu.zeros("gamma", &[4]).unwrap();
    let err = group_norm(gpu, "norm", &x, &g, &g, &x, 3, 1e-6, false).err().expect("3 groups of 4");
    assert!(err.to_string().contains("3 groups"), "{err}");

    // A linear layer whose weight does not take the input's features.
    let t = gpu.zeros("temb", &[2, 16]).unwrap();
    let wt = gpu.zeros("time_embedding.linear_1.weight", &[32, 15]).unwrap();
    let bt = gpu.zeros("bias", &[32]).unwrap();
    let y = gpu.zeros("y", &[2, 32]).unwrap();
    let err = linear::linear(gpu, "l", &t, &wt, &bt, None, &y, &Default::default())
        .err()
        .expect("15 vs 16 features");
    assert!(err.to_string().contains("time_embedding.linear_1.weight"), "{err}");
}

#[test]
fn a_wgpu_validation_error_is_returned_not_raised() {
    let gpu = gpu_or_skip!();
    // Binding one buffer as both input and output is a usage conflict that wgpu reports as a validation
    // error; it must come back as our error, naming what was running, and leave the device usable.
    let x = gpu.upload("x", &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let result = unary(gpu, "aliased silu", Unary::Silu, &x, &x)
        .and_then(|d| gpu.run("aliased silu", &[&d]).block_on());
    let err = result.expect_err("aliasing must fail");
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
    assert!(err.to_string().contains("aliased silu"), "{err}");

    let y = gpu.zeros("y", &[5]).unwrap();
    let d = unary(gpu, "silu", Unary::Silu, &x, &y).unwrap();
    gpu.run("silu after an error", &[&d]).block_on().unwrap();
    assert!(gpu.download(&y).block_on().unwrap()[4] > 4.9);
}

#[test]
fn grids_fold_into_two_dimensions() {
    assert_eq!(grid(10, 65535), Some([10, 1, 1]));
    assert_eq!(grid(65535, 65535), Some([65535, 1, 1]));
    assert_eq!(grid(65536, 65535), Some([65535, 2, 1]));
    assert_eq!(grid(0, 65535), Some([1, 1, 1]));
    assert_eq!(grid(65535u64 * 65535 + 1, 65535), None);
}
