use ddim_wgpu::ops::concat::concat_channels;
use ddim_wgpu::ops::upsample::upsample_nearest2x;
use ddim_wgpu::reference::nn;

use crate::common::{assert_close, random, run};
use crate::gpu_or_skip;

// Both ops copy values: the GPU must reproduce them exactly.

#[test]
fn upsample_awkward_shapes() {
    let gpu = gpu_or_skip!();
    for (i, &[n, c, h, w]) in [[2, 3, 1, 1], [1, 5, 3, 7], [2, 1, 7, 33]].iter().enumerate() {
        let (x, xv) = random(gpu, "x", &[n, c, h, w], 110 + i as u64);
        let out = gpu.zeros("out", &[n, c, 2 * h, 2 * w]).unwrap();
        let d = upsample_nearest2x(gpu, "upsample", &x, &out).unwrap();
        let got = run(gpu, &[&d], &out);
        let want = nn::upsample_nearest2x(&xv, n * c, h, w);
        assert_close(&format!("upsample {:?}", [n, c, h, w]), &got, &want, 0.0, 0.0);
    }
}

#[test]
fn upsample_over_a_two_dimensional_grid() {
    let gpu = gpu_or_skip!();
    // 17 x 512 x 512 outputs at 64 per workgroup = 69,632 workgroups: more than 65,535, so the dispatch is
    // folded into a 2-D grid and every element must still be written once.
    let (n, c, h, w) = (1, 17, 256, 256);
    let (x, xv) = random(gpu, "x", &[n, c, h, w], 113);
    let out = gpu.zeros("out", &[n, c, 2 * h, 2 * w]).unwrap();
    let d = upsample_nearest2x(gpu, "upsample 2-D grid", &x, &out).unwrap();
    assert!(d.grid()[1] > 1, "expected a 2-D grid, got {:?}", d.grid());
    let got = run(gpu, &[&d], &out);
    let want = nn::upsample_nearest2x(&xv, n * c, h, w);
    assert_close("upsample 2-D grid", &got, &want, 0.0, 0.0);
}

#[test]
fn concat_awkward_shapes() {
    let gpu = gpu_or_skip!();
    for (i, &(n, ca, cb, h, w)) in
        [(2, 3, 5, 1, 7), (1, 1, 1, 3, 3), (2, 7, 2, 5, 1), (3, 8, 16, 8, 8)].iter().enumerate()
    {
        let (a, av) = random(gpu, "h", &[n, ca, h, w], 120 + i as u64);
        let (b, bv) = random(gpu, "skip", &[n, cb, h, w], 130 + i as u64);
        let out = gpu.zeros("out", &[n, ca + cb, h, w]).unwrap();
        let d = concat_channels(gpu, "concat", &a, &b, &out).unwrap();
        let got = run(gpu, &[&d], &out);
        let want = nn::concat_channels(&av, &bv, n, ca, cb, h * w);
        assert_close(&format!("concat {:?}", (n, ca, cb, h, w)), &got, &want, 0.0, 0.0);
    }
}
