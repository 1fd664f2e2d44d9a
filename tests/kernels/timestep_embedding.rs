use ddim_wgpu::ops::timestep_embedding::TimestepEmbedding;
use ddim_wgpu::reference::nn;

use crate::common::{assert_close, run};
use crate::gpu_or_skip;

/// The GPU rounds t * freq to f32 (as PyTorch does); for arguments below 1024 that is half an ulp, 2^-24 *
/// 1024 = 6.1e-5, which sin and cos pass on at slope <= 1. Range reduction and sin_cos add 2.5e-7 at most
/// ([`TWIN_ATOL`], checked on its own against [`rounded_argument`]).
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
        let twin = rounded_argument(&timesteps, dim, flip, shift);
        assert_close(
            &format!(
                "embedding dim {dim} flip {flip} shift {shift}, argument as the kernel rounds it"
            ),
            &got,
            &twin,
            TWIN_ATOL,
            0.0,
        );
    }
}

/// Against [`rounded_argument`]: the kernel's reduction to (-pi, pi] rounds once at the end (half an ulp of
/// |r| < pi, 1.2e-7), and sin_cos's own reduction and polynomials add about an ulp of the result (6e-8 near
/// 1): 2.5e-7 absolute, a few ulp, on every backend. Measured on lavapipe and SwiftShader alike (the same
/// bits on both): 1.4e-7. The builtins' sin and cos, which WGSL bounds only by 2^-11 absolute, were 1.3e-4 off
/// on SwiftShader.
const TWIN_ATOL: f64 = 2.5e-7;

/// The embedding with the argument rounded as the kernel rounds it: one f32 product of the timestep and the
/// frequency (made in f64, rounded to f32 by the host), then sin and cos in f64. What is left between this
/// and the kernel is the kernel's own range reduction and polynomials, the same + and * on every backend.
fn rounded_argument(timesteps: &[f32], dim: usize, flip: bool, shift: f64) -> Vec<f64> {
    let half = dim / 2;
    let mut out = vec![0.0; timesteps.len() * dim];
    for (row, &t) in timesteps.iter().enumerate() {
        for i in 0..half {
            let freq = (-(10000f64.ln()) * i as f64 / (half as f64 - shift)).exp() as f32;
            let arg = (t * freq) as f64;
            let (first, second) =
                if flip { (arg.cos(), arg.sin()) } else { (arg.sin(), arg.cos()) };
            out[row * dim + i] = first;
            out[row * dim + half + i] = second;
        }
    }
    out
}

#[test]
fn embedding_refuses_a_zero_denominator() {
    let gpu = gpu_or_skip!();
    // dim 2 with freq_shift 1: half - shift = 0, which diffusers would turn into NaN frequencies.
    let err = TimestepEmbedding::new(gpu, 2, false, 1.0).err().expect("must refuse");
    assert!(err.to_string().contains("freq_shift"), "{err}");
}
