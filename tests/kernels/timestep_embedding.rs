use ddim_wgpu::ops::timestep_embedding::TimestepEmbedding;
use ddim_wgpu::reference::nn;

use crate::common::{assert_close, run};
use crate::gpu_or_skip;

/// The GPU rounds t * freq to f32 (as PyTorch does); for arguments below 1024 that is half an ulp, 2^-24 *
/// 1024 = 6.1e-5, which sin and cos pass on at slope <= 1. Range reduction and WGSL's sin/cos add about 1e-6.
/// The reference works in f64 throughout, so 1e-4 absolute bounds the difference with a 1.6x margin
/// (measured on lavapipe: 2.8e-5).
const ATOL: f64 = 1e-4;

#[test]
fn embedding_conventions_and_odd_dim() {
    let gpu = gpu_or_skip!();
    let timesteps = [0.0f32, 1.0, 17.5, 999.0];
    let t = gpu.upload("timesteps", &[4], &timesteps).unwrap();
    for &(dim, flip, shift) in
        &[(128, false, 1.0), (128, true, 0.0), (33, false, 1.0), (2, true, 0.0)]
    {
        let emb = TimestepEmbedding::new(gpu, dim, flip, shift).unwrap();
        let out = gpu.zeros("emb", &[4, dim]).unwrap();
        let d = emb.dispatch(gpu, "timestep embedding", &t, &out).unwrap();
        let got = run(gpu, &[&d], &out);
        let want = nn::timestep_embedding(&timesteps, dim, flip, shift);
        assert_close(
            &format!("embedding dim {dim} flip {flip} shift {shift}"),
            &got,
            &want,
            ATOL,
            0.0,
        );
    }
}

#[test]
fn embedding_refuses_a_zero_denominator() {
    let gpu = gpu_or_skip!();
    // dim 2 with freq_shift 1: half - shift = 0, which diffusers would turn into NaN frequencies.
    let err = TimestepEmbedding::new(gpu, 2, false, 1.0).err().expect("must refuse");
    assert!(err.to_string().contains("freq_shift"), "{err}");
}
