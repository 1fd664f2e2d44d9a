use ddim_wgpu::diffusion::philox::{self, NoiseKey, Stream};
use ddim_wgpu::diffusion::step::{Prediction, StepCoefficients, Threshold};
use ddim_wgpu::gpu::{Gpu, Tensor};
use ddim_wgpu::ops::ddim::{DdimScratch, Noise, StepSpec, UpdateMode, ddim_update};
use ddim_wgpu::reference::ddim::{StepSettings, ddim_step};
use pollster::FutureExt as _;

use crate::common::{assert_close, conv_families, data};
use crate::gpu_or_skip;

/// Each output is a short f32 expression (a handful of roundings) of values of order 1, but x0 divides by
/// sqrt(a_t): at a_t = 0.02 that magnifies the rounding of x - sqrt(1 - a_t) eps by 7x, and the Philox noise
/// carries the f32 Box-Muller error (up to 1.4e-6, see randn.rs) times sigma <= 1. 5e-6 absolute plus 2e-6
/// relative covers these with a margin of about 3; measured on lavapipe the worst error is 3.4e-7. A wrong
/// coefficient, sign, clip or noise index is off by 1e-2 or more.
const ATOL: f64 = 5e-6;
const RTOL: f64 = 2e-6;

const SHAPE: [usize; 4] = [2, 3, 5, 7];
const PER_IMAGE: usize = 3 * 5 * 7;

#[derive(Clone, Copy, Debug, PartialEq)]
enum NoiseKind {
    None,
    Philox,
    Given,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    prediction: Prediction,
    a_t: f64,
    a_p: f64,
    eta: f64,
    clip: Option<f32>,
    threshold: Option<Threshold>,
    clipped_eps: bool,
    noise: NoiseKind,
    /// The paper's sigma-hat instead of eta (Some(last step)).
    sigma_hat: Option<bool>,
}

const KEY: NoiseKey = NoiseKey { seed: 42, step: 7, stream: Stream::StepNoise };
const FIRST_IMAGE: u32 = 3;

struct Inputs {
    xv: Vec<f32>,
    mv: Vec<f32>,
    zv: Vec<f32>,
    m: Tensor,
    z: Tensor,
}

fn inputs(gpu: &Gpu) -> Inputs {
    let len = SHAPE.iter().product();
    // x and the model output of order 1, scaled so that x0 exceeds the clip range in places.
    let xv = data(200, len, -2.5, 2.5);
    let mv = data(201, len, -2.0, 2.0);
    let zv = data(202, len, -2.0, 2.0);
    Inputs {
        m: gpu.upload("model_out", &SHAPE, &mv).unwrap(),
        z: gpu.upload("noise", &SHAPE, &zv).unwrap(),
        xv,
        mv,
        zv,
    }
}

fn run_gpu(gpu: &Gpu, inp: &Inputs, c: &Case, mode: UpdateMode) -> Vec<f32> {
    let x = gpu.upload("x", &SHAPE, &inp.xv).unwrap();
    let scratch = DdimScratch::new(gpu, &SHAPE, mode).unwrap();
    let spec = StepSpec {
        coefficients: match c.sigma_hat {
            Some(last) => StepCoefficients::sigma_hat(c.a_t, c.a_p, last).unwrap(),
            None => StepCoefficients::ddim(c.a_t, c.a_p, c.eta).unwrap(),
        },
        prediction: c.prediction,
        clip: c.clip,
        threshold: c.threshold,
        clipped_eps: c.clipped_eps,
        noise: match c.noise {
            NoiseKind::None => Noise::None,
            NoiseKind::Philox => Noise::Philox { key: KEY, first_image: FIRST_IMAGE },
            NoiseKind::Given => Noise::Tensor(&inp.z),
        },
    };
    let ds = ddim_update(gpu, "ddim", &x, &inp.m, &spec, mode, &scratch).unwrap();
    gpu.run("ddim", &ds.iter().collect::<Vec<_>>()).block_on().unwrap();
    gpu.download(&x).block_on().unwrap()
}

fn reference(inp: &Inputs, c: &Case) -> Vec<f64> {
    let noise: Option<Vec<f64>> = match c.noise {
        NoiseKind::None => None,
        NoiseKind::Philox => Some(philox::normals(KEY, FIRST_IMAGE, SHAPE[0], PER_IMAGE)),
        NoiseKind::Given => Some(inp.zv.iter().map(|&v| v as f64).collect()),
    };
    let settings = StepSettings {
        a_t: c.a_t,
        a_p: c.a_p,
        eta: c.eta,
        prediction: c.prediction,
        clip: c.clip.map(f64::from),
        threshold: c.threshold.map(|t| (t.ratio as f64, t.max_value as f64)),
        clipped_eps: c.clipped_eps,
        sigma_hat: c.sigma_hat,
    };
    ddim_step(&inp.xv, &inp.mv, PER_IMAGE, &settings, noise.as_deref())
}

fn cases() -> Vec<Case> {
    let base = Case {
        prediction: Prediction::Epsilon,
        a_t: 0.3,
        a_p: 0.6,
        eta: 0.0,
        clip: None,
        threshold: None,
        clipped_eps: false,
        noise: NoiseKind::None,
        sigma_hat: None,
    };
    let threshold = Some(Threshold { ratio: 0.9, max_value: 1.6 });
    let mut out = Vec::new();
    for prediction in [Prediction::Epsilon, Prediction::Sample, Prediction::V] {
        out.push(Case { prediction, ..base });
        out.push(Case { prediction, clip: Some(1.0), eta: 0.5, noise: NoiseKind::Philox, ..base });
        out.push(Case { prediction, threshold, eta: 1.0, noise: NoiseKind::Given, ..base });
        out.push(Case { prediction, clip: Some(1.5), clipped_eps: true, ..base });
    }
    // A nearly pure-noise step (t near T on the linear schedule) and the last step to a_p = 1.
    out.push(Case { a_t: 0.02, a_p: 0.05, eta: 1.0, noise: NoiseKind::Philox, ..base });
    out.push(Case { a_t: 0.98, a_p: 1.0, clip: Some(1.0), ..base });
    // sigma-hat (the DDPM posterior, x0 clipped): a middle step with Philox noise, the last step without.
    out.push(Case { sigma_hat: Some(false), clip: Some(1.0), noise: NoiseKind::Philox, ..base });
    out.push(Case { sigma_hat: Some(true), a_t: 0.9999, a_p: 1.0, clip: Some(1.0), ..base });
    out
}

#[test]
fn fused_update_matches_reference() {
    let gpu = gpu_or_skip!();
    let inp = inputs(gpu);
    for c in cases() {
        let got = run_gpu(gpu, &inp, &c, UpdateMode::Fused);
        assert_close(&format!("fused {c:?}"), &got, &reference(&inp, &c), ATOL, RTOL);
    }
}

#[test]
fn unfused_chain_matches_reference() {
    let gpu = gpu_or_skip!();
    let inp = inputs(gpu);
    for c in cases() {
        let got = run_gpu(gpu, &inp, &c, UpdateMode::Unfused);
        assert_close(&format!("unfused {c:?}"), &got, &reference(&inp, &c), ATOL, RTOL);
    }
}

#[test]
fn fused_and_unfused_agree() {
    let gpu = gpu_or_skip!();
    let inp = inputs(gpu);
    for c in cases() {
        let fused = run_gpu(gpu, &inp, &c, UpdateMode::Fused);
        let unfused = run_gpu(gpu, &inp, &c, UpdateMode::Unfused);
        let unfused: Vec<f64> = unfused.iter().map(|&v| v as f64).collect();
        assert_close(&format!("fused vs unfused {c:?}"), &fused, &unfused, ATOL, RTOL);
    }
}

#[test]
fn threshold_scale_is_the_exact_quantile() {
    let gpu = gpu_or_skip!();
    // The threshold kernel's s must be torch.quantile of |x0| (then clamped), including the interpolation.
    // With sample prediction x0 is the model output itself, so the reference sees exactly the GPU's values.
    let len = SHAPE.iter().product();
    let mv: Vec<f32> = data(210, len, -3.0, 3.0);
    let x = gpu.upload("x", &SHAPE, &data(211, len, -1.0, 1.0)).unwrap();
    let m = gpu.upload("model_out", &SHAPE, &mv).unwrap();
    for ratio in [0.0f32, 0.37, 0.9, 0.995, 1.0] {
        let scratch = DdimScratch::new(gpu, &SHAPE, UpdateMode::Fused).unwrap();
        let spec = StepSpec {
            coefficients: StepCoefficients::ddim(0.5, 0.7, 0.0).unwrap(),
            prediction: Prediction::Sample,
            clip: None,
            threshold: Some(Threshold { ratio, max_value: 100.0 }),
            clipped_eps: false,
            noise: Noise::None,
        };
        let ds = ddim_update(gpu, "ddim", &x, &m, &spec, UpdateMode::Fused, &scratch).unwrap();
        // Only the threshold dispatch: its output is the per-image scale.
        gpu.run("threshold", &[&ds[0]]).block_on().unwrap();
        let s = gpu.download(scratch.threshold_scale()).block_on().unwrap();
        for (n, &got) in s.iter().enumerate() {
            let abs: Vec<f64> =
                mv[n * PER_IMAGE..(n + 1) * PER_IMAGE].iter().map(|v| (*v as f64).abs()).collect();
            let want = ddim_wgpu::reference::ddim::quantile(&abs, ratio as f64).clamp(1.0, 100.0);
            // The order statistics are found exactly; only the interpolation rounds (one f32 FMA).
            assert!(
                (got as f64 - want).abs() <= 1e-6 * want,
                "ratio {ratio} image {n}: got {got}, want {want}"
            );
        }
    }
}

#[test]
fn invalid_specs_are_refused() {
    let gpu = gpu_or_skip!();
    let inp = inputs(gpu);
    let x = gpu.upload("x", &SHAPE, &inp.xv).unwrap();
    let scratch = DdimScratch::new(gpu, &SHAPE, UpdateMode::Fused).unwrap();
    let good = StepSpec {
        coefficients: StepCoefficients::ddim(0.3, 0.6, 0.0).unwrap(),
        prediction: Prediction::Epsilon,
        clip: None,
        threshold: None,
        clipped_eps: false,
        noise: Noise::None,
    };
    let both = StepSpec {
        clip: Some(1.0),
        threshold: Some(Threshold { ratio: 0.9, max_value: 2.0 }),
        ..good
    };
    let noisy_without_noise =
        StepSpec { coefficients: StepCoefficients::ddim(0.3, 0.6, 1.0).unwrap(), ..good };
    for (what, spec) in
        [("clip and threshold", both), ("sigma > 0 without noise", noisy_without_noise)]
    {
        let err = ddim_update(gpu, "ddim", &x, &inp.m, &spec, UpdateMode::Fused, &scratch);
        assert!(err.is_err(), "{what} must be refused");
    }
    assert!(StepCoefficients::ddim(0.3, 0.6, -0.1).is_err(), "negative eta");
    assert!(StepCoefficients::ddim(1.0, 0.6, 0.0).is_err(), "a_t = 1");
    assert!(StepCoefficients::ddim(0.3, 0.0, 0.0).is_err(), "a_p = 0");
}

/// The update fused into a convolution's epilogue against the convolution's reference followed by the update's
/// reference, on every kernel family, on shapes that take each epilogue kernel: the CPU family's
/// `conv2d_3x3_ddim` wherever its plain convolution runs `conv2d_3x3` with the input channels in one weight chunk
/// (several output-channel blocks, a width that is no multiple of 8 or 4, so rows straddle Philox's groups),
/// the GPU family's `conv2d_tiled_ddim` (K split over 3 slices and reduced by `conv2d_split_reduce_ddim` from 33
/// input channels), `conv2d_ddim` elsewhere (too little work for the packed kernel, input channels in two
/// chunks, the baseline).
#[test]
fn conv_epilogue_update_matches_reference() {
    use ddim_wgpu::ops::conv2d::{Conv2dConfig, Padding, conv2d};
    use ddim_wgpu::ops::ddim::conv_ddim_update;
    use ddim_wgpu::reference::nn;

    let _ = gpu_or_skip!();
    let (mut plain_3x3, mut packed_ran, mut tiled_ran) = (false, false, false);
    // (n, cin, h, w, cout)
    for (n, cin, h, w, cout) in
        [(2, 5, 7, 9, 3), (3, 33, 10, 13, 1), (1, 4, 3, 5, 2), (1, 240, 8, 8, 3), (2, 6, 9, 11, 10)]
    {
        let hv = data(220, n * cin * h * w, -1.0, 1.0);
        // Weights scaled as 1/sqrt(cin), as a network's initialisation scales them, so that every shape's model
        // output has about the same size and the f32 sum's rounding (growing as sqrt(9 cin) ulp) stays inside
        // the update's bound up to 2,160 terms.
        let r = 0.3 * (5.0 / cin as f32).sqrt();
        let wv = data(221, cout * cin * 9, -r, r);
        let bv = data(222, cout, -0.1, 0.1);
        let xv = data(223, n * cout * h * w, -2.0, 2.0);
        let (eps, _) = nn::conv2d(
            &hv,
            [n, cin, h, w],
            &wv,
            [cout, cin, 3, 3],
            &bv,
            None,
            1,
            (1, 1, 1, 1),
            1.0,
        );
        let eps32: Vec<f32> = eps.iter().map(|&v| v as f32).collect();
        let per = cout * h * w;
        for gpu in conv_families() {
            let input = gpu.upload("h", &[n, cin, h, w], &hv).unwrap();
            let weight = gpu.upload("conv_out.weight", &[cout, cin, 3, 3], &wv).unwrap();
            let bias = gpu.upload("conv_out.bias", &[cout], &bv).unwrap();
            let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
            // The kernel the plain convolution runs decides the epilogue's: the packed 3x3 kernel's variant
            // where the input channels fit one 64 KiB window per 8 output channels (9 x 8 x cin floats).
            let out = gpu.zeros("out", &[n, cout, h, w]).unwrap();
            let plain = conv2d(gpu, "conv_out", &input, &weight, &bias, None, &out, &cfg).unwrap();
            plain_3x3 |= plain.kernel().name == "conv2d_3x3";
            let expected = match plain.kernel().name {
                "conv2d_3x3" if 9 * 8 * cin <= 16384 => "conv2d_3x3_ddim",
                "conv2d_tiled" => "conv2d_tiled_ddim",
                "conv2d_tiled_8x8" => "conv2d_tiled_8x8_ddim",
                _ => "conv2d_ddim",
            };
            for (eta, clip, prediction) in
                [(0.0, None, Prediction::Epsilon), (0.7, Some(1.0), Prediction::V)]
            {
                let coefficients = StepCoefficients::ddim(0.4, 0.55, eta).unwrap();
                let noise = if eta > 0.0 {
                    Noise::Philox { key: KEY, first_image: FIRST_IMAGE }
                } else {
                    Noise::None
                };
                let spec = StepSpec {
                    coefficients,
                    prediction,
                    clip,
                    threshold: None,
                    clipped_eps: false,
                    noise,
                };
                let x = gpu.upload("x", &[n, cout, h, w], &xv).unwrap();
                let d = conv_ddim_update(
                    gpu,
                    "conv_out + ddim",
                    &input,
                    &weight,
                    &bias,
                    &cfg,
                    &x,
                    &spec,
                )
                .unwrap();
                let what = format!(
                    "{:?} epilogue, {n}x{cin}x{h}x{w} -> {cout}, eta {eta}",
                    gpu.kernel_family()
                );
                assert_eq!(d.kernel().name, expected, "{what}");
                packed_ran |= expected == "conv2d_3x3_ddim";
                tiled_ran |= expected == "conv2d_tiled_ddim";
                if expected == "conv2d_tiled_ddim" && cin >= 33 {
                    // K = 297 and more on these small maps: split, then reduced with the update.
                    assert!(d.launch_count() >= 2, "{what}: K not split");
                }
                gpu.run("epilogue", &[&d]).block_on().unwrap();
                let got = gpu.download(&x).block_on().unwrap();
                let z = (eta > 0.0).then(|| philox::normals(KEY, FIRST_IMAGE, n, per));
                let settings = StepSettings {
                    a_t: 0.4,
                    a_p: 0.55,
                    eta,
                    prediction,
                    clip: clip.map(f64::from),
                    threshold: None,
                    clipped_eps: false,
                    sigma_hat: None,
                };
                let want = ddim_step(&xv, &eps32, per, &settings, z.as_deref());
                // The model output passes through the convolution (K = 9 cin f32 products) first: the update's
                // bound, with the weights scaled above.
                assert_close(&what, &got, &want, ATOL, RTOL);
            }
        }
    }
    // Where the CPU family runs the packed 3x3 convolution at all (64 KiB uniform windows), its epilogue ran.
    assert_eq!(packed_ran, plain_3x3, "conv2d_3x3_ddim ran where conv2d_3x3 runs");
    // The GPU family runs its tiled kernel wherever the device allows 256-invocation workgroups (all here).
    assert!(tiled_ran, "conv2d_tiled_ddim never ran");
    let gpu = gpu_or_skip!();
    let (n, cin, h, w, cout) = (2, 5, 7, 9, 3);
    let hv = data(220, n * cin * h * w, -1.0, 1.0);
    let wv = data(221, cout * cin * 9, -0.3, 0.3);
    let bv = data(222, cout, -0.1, 0.1);
    let xv = data(223, n * cout * h * w, -2.0, 2.0);
    let input = gpu.upload("h", &[n, cin, h, w], &hv).unwrap();
    let weight = gpu.upload("conv_out.weight", &[cout, cin, 3, 3], &wv).unwrap();
    let bias = gpu.upload("conv_out.bias", &[cout], &bv).unwrap();
    let cfg = Conv2dConfig { padding: Padding::uniform(1), ..Default::default() };
    // Thresholding cannot be fused: it needs the whole image first.
    let x = gpu.upload("x", &[n, cout, h, w], &xv).unwrap();
    let spec = StepSpec {
        coefficients: StepCoefficients::ddim(0.4, 0.55, 0.0).unwrap(),
        prediction: Prediction::Epsilon,
        clip: None,
        threshold: Some(Threshold { ratio: 0.9, max_value: 2.0 }),
        clipped_eps: false,
        noise: Noise::None,
    };
    assert!(conv_ddim_update(gpu, "bad", &input, &weight, &bias, &cfg, &x, &spec).is_err());
}
