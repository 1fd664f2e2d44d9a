//! The sampler against diffusers' DDIMScheduler and the official DDIM code's generalized_steps (fixtures from
//! tools/fixtures/make_sampler_fixtures.py, with injected step noise), and its invariances: batch size, shards,
//! fused vs unfused, inversion round trips, interpolation endpoints.

mod support;
use pollster::FutureExt as _;
use support::gpu;

use std::path::{Path, PathBuf};

use ddim_wgpu::diffusion::step::Prediction;
use ddim_wgpu::diffusion::timesteps::Spacing;
use ddim_wgpu::gpu::Gpu;
use ddim_wgpu::io::read_npy;
use ddim_wgpu::model::convert::{from_diffusers_dir, from_original};
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::ops::ddim::UpdateMode;
use ddim_wgpu::pipeline::{Pipeline, SampleRequest, StepX0, Watch};
use ddim_wgpu::reference::{self, ddim};
use ddim_wgpu::sampler::ddim::{Sampler, SamplerSettings, StepNoise, latents, plan_steps, slerp};
use ddim_wgpu::unet;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn diffusers_model() -> Weights {
    from_diffusers_dir(&fixtures().join("unet/pad0_onehead_safetensors/model")).unwrap()
}

/// The root mean square of `got - want`, over max(1, max|want|).
fn rms_rel(got: &[f32], want: &[f32]) -> f64 {
    let max_ref = want.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(1.0);
    let sum: f64 = got.iter().zip(want).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    (sum / got.len() as f64).sqrt() / max_ref
}

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    let max_ref = want.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(1.0);
    got.iter().zip(want).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs())) / max_ref
}

/// Ten UNet evaluations and updates, each within ~3e-6 of PyTorch (tests/golden.rs), in f32 on both sides;
/// x0 = (x - sqrt(1 - a) eps) / sqrt(a) magnifies differences by up to 1/sqrt(a_999) = 157 in the first step.
/// Measured on lavapipe: 5e-7 to 2e-6 of max|ref| without clipping, up to 5.2e-5 with clip and eta 0.5 (an x0
/// element at the clip boundary can fall on either side). 2e-4 leaves a 4x margin over the worst, and a wrong
/// timestep, alpha, clip or noise index moves the result by 1e-2 or more.
const TRAJECTORY_BOUND: f64 = 2e-4;

/// The same trajectories at f16 precision: each evaluation within 3.0e-3 of PyTorch's f32 (tests/golden.rs),
/// magnified by the same x0 division, and the latent itself stored in f16 between steps (half an ulp, 2^-11
/// relative, each step). Measured on lavapipe, max and root mean square over max(1, max|ref|): 9.7e-4 to 5.7e-3
/// and 2.9e-4 to 1.1e-3 where the step noise cannot carry a clip's flip on (eta 0, or no clip); with x0 clipped
/// and eta 0.5, 7.5e-2 and 1.3e-2 (x0 elements near the clip boundary land on the other side of it, and the
/// noise carries the difference on). The bounds are 2.4x to 2.8x the worst of each kind; the f32 runs above
/// prove the schedule, clip and noise indices to 2e-4, so what these add is the f16 path's own faults (a binding
/// read at the wrong width, an intermediate kept in f16), which err by order 1.
fn f16_bounds(settings: &SamplerSettings) -> (f64, f64) {
    if settings.clip.is_some() && settings.eta > 0.0 { (2e-1, 3e-2) } else { (1.5e-2, 3e-3) }
}

fn golden(case: &str, weights: &Weights, settings: SamplerSettings) {
    let Some(gpu) = gpu() else { return };
    let dir = fixtures().join("sampler").join(case);
    let x_t = read_npy(&dir.join("x_T.npy")).unwrap();
    let noise = read_npy(&dir.join("noise.npy")).unwrap();
    let want = read_npy(&dir.join("x0.npy")).unwrap();
    let graph = unet::build(&weights.config).unwrap();
    let batch = x_t.shape[0];
    // Each update mode on `device`, against the reference: (max, root mean square) over max(1, max|ref|).
    let errors = |device: &Gpu, modes: &[UpdateMode]| {
        let uploaded = weights.upload(device).unwrap();
        let mut out = Vec::new();
        for &mode in modes {
            let sampler = Sampler::new(
                device,
                &graph,
                &uploaded,
                SamplerSettings { mode, ..settings.clone() },
            )
            .unwrap();
            assert_eq!(sampler.steps().len(), noise.shape[0]);
            let got = sampler
                .sample(&x_t.data, batch, 0, StepNoise::Given(&noise.data), &mut |_| {})
                .block_on()
                .unwrap();
            let (e, r) = (max_rel(&got, &want.data), rms_rel(&got, &want.data));
            if std::env::var_os("DDIM_TEST_VERBOSE").is_some() {
                eprintln!(
                    "{case} {mode:?} ({:?}): max |ours - reference| / max(1, max|reference|) = {e:.2e}, \
                     root mean square {r:.2e}",
                    device.precision()
                );
            }
            out.push((mode, e, r));
        }
        out
    };
    for (mode, e, _) in
        errors(&gpu, &[UpdateMode::Epilogue, UpdateMode::Fused, UpdateMode::Unfused])
    {
        assert!(e <= TRAJECTORY_BOUND, "{case} {mode:?}: normalised error {e:.3e}");
    }
    // At f16 precision (where the adapter has shader-f16): the latent, the noise, the weights and every
    // activation in f16, against the same f32 reference.
    let Some(half) = support::gpu_f16(false) else { return };
    let (max_bound, rms_bound) = f16_bounds(&settings);
    for (mode, e, r) in errors(&half, &[UpdateMode::Epilogue, UpdateMode::Fused]) {
        assert!(e <= max_bound, "{case} {mode:?} at f16: normalised error {e:.3e}");
        assert!(r <= rms_bound, "{case} {mode:?} at f16: root mean square error {r:.3e}");
    }
}

#[test]
fn diffusers_leading_clip_eta_half() {
    let w = diffusers_model();
    let settings = SamplerSettings {
        steps: 10,
        spacing: Spacing::Leading,
        eta: 0.5,
        clip: Some(1.0),
        ..Default::default()
    };
    golden("leading_clip_eta05", &w, settings);
}

#[test]
fn diffusers_trailing_eta0() {
    let w = diffusers_model();
    let settings = SamplerSettings { steps: 10, spacing: Spacing::Trailing, ..Default::default() };
    golden("trailing_eta0", &w, settings);
}

#[test]
fn diffusers_v_prediction() {
    let w = diffusers_model();
    let settings = SamplerSettings {
        steps: 10,
        spacing: Spacing::Leading,
        clip: Some(1.0),
        prediction: Prediction::V,
        ..Default::default()
    };
    golden("v_prediction_leading", &w, settings);
}

#[test]
fn official_generalized_steps_uniform() {
    let dir = fixtures().join("unet/original_ckpt");
    let w = from_original(&dir.join("model-1000.ckpt"), &dir.join("config.yml")).unwrap();
    let settings =
        SamplerSettings { steps: 10, spacing: Spacing::Uniform, eta: 0.5, ..Default::default() };
    golden("official_uniform_eta05", &w, settings);
}

/// Same seed, same image: at batch 1 and 4, split as two shards, and with the fused or unfused update.
#[test]
fn images_depend_only_on_seed_and_index() {
    let Some(gpu) = gpu() else { return };
    let w = diffusers_model();
    let graph = unet::build(&w.config).unwrap();
    let uploaded = w.upload(&gpu).unwrap();
    let per = 3 * 8 * 8;
    for eta in [0.0, 1.0] {
        let settings = SamplerSettings { steps: 5, eta, clip: Some(1.0), ..Default::default() };
        let sampler = Sampler::new(&gpu, &graph, &uploaded, settings.clone()).unwrap();
        let x_t = latents(9, 0, 4, per);
        let all = sampler.sample(&x_t, 4, 0, StepNoise::Philox(9), &mut |_| {}).block_on().unwrap();
        // Shards 0/2 and 1/2.
        let lo = sampler
            .sample(&x_t[..2 * per], 2, 0, StepNoise::Philox(9), &mut |_| {})
            .block_on()
            .unwrap();
        let hi = sampler
            .sample(&latents(9, 2, 2, per), 2, 2, StepNoise::Philox(9), &mut |_| {})
            .block_on()
            .unwrap();
        assert_eq!([lo, hi].concat(), all, "eta {eta}: shards differ from one run");
        // Image 3 alone.
        let one = sampler
            .sample(&latents(9, 3, 1, per), 1, 3, StepNoise::Philox(9), &mut |_| {})
            .block_on()
            .unwrap();
        assert_eq!(one, all[3 * per..], "eta {eta}: batch 1 differs from batch 4");
        // The unfused chain: the same maths in other kernels, so equal up to f32 rounding.
        let unfused = Sampler::new(
            &gpu,
            &graph,
            &uploaded,
            SamplerSettings { mode: UpdateMode::Unfused, ..settings },
        )
        .unwrap();
        let u = unfused.sample(&x_t, 4, 0, StepNoise::Philox(9), &mut |_| {}).block_on().unwrap();
        let e = max_rel(&u, &all);
        assert!(e <= TRAJECTORY_BOUND, "eta {eta}: fused vs unfused {e:.2e}");
    }
}

/// A watched run (as the web page runs): each step's predicted x0 arrives batch by batch, step 0's equals
/// (x_T - sqrt(1 - a) eps) / sqrt(a) with eps from a plain evaluation of the UNet, the last step's (eta 0, a final
/// alpha of 1) is the sample itself, every step of every batch is timed, and the samples are the plain run's.
#[test]
fn a_watched_run_shows_each_steps_x0_and_samples_the_same() {
    let Some(gpu) = gpu() else { return };
    let pipeline = Pipeline::new(gpu, &diffusers_model()).unwrap();
    let settings = SamplerSettings { steps: 4, ..pipeline.default_settings() };
    let mut request = SampleRequest::new(settings.clone(), 3, 5);
    // Two batches, of 2 and 1 images.
    request.max_batch = Some(2);
    let plain = pipeline.sample(&request, &mut |_| {}).block_on().unwrap();
    let mut seen: Vec<(usize, usize, [usize; 4], Vec<f32>)> = Vec::new();
    let mut record = |x: StepX0<'_>| seen.push((x.step, x.first_image, x.shape, x.data.to_vec()));
    let timed = pipeline.gpu().features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let watch = Watch { x0: Some(&mut record), timings: timed };
    let watched = pipeline.sample_watched(&request, &mut |_| {}, watch).block_on().unwrap();

    // The update runs outside the final convolution's epilogue: equal up to f32 rounding.
    let e = max_rel(&watched.images.data, &plain.data);
    assert!(e <= TRAJECTORY_BOUND, "watched vs plain run: {e:.2e}");
    let order: Vec<(usize, usize, usize)> = seen.iter().map(|s| (s.0, s.1, s.2[0])).collect();
    let want: Vec<(usize, usize, usize)> = [(0, 2), (2, 1)]
        .iter()
        .flat_map(|&(first, n)| (0..4).map(move |i| (i, first, n)))
        .collect();
    assert_eq!(order, want, "(step, first image, batch) of each x0");

    let per = 3 * 8 * 8;
    let x_t = pipeline.latents(5, 0, 3).unwrap();
    let (steps, _) = plan_steps(&settings).unwrap();
    let t = steps[0].t;
    let a = settings.schedule.alphas_cumprod().unwrap()[t];
    let eps = pipeline.eval(&x_t, &[t as f32; 3], false).block_on().unwrap().output;
    let step0: Vec<f32> = x_t
        .data
        .iter()
        .zip(&eps.data)
        .map(|(&x, &m)| ((x as f64 - (1.0 - a).sqrt() * m as f64) / a.sqrt()) as f32)
        .collect();
    let batch = |k: usize, first: usize, n: usize, v: &[f32]| {
        let (_, _, _, got) = &seen[k];
        max_rel(got, &v[first * per..(first + n) * per])
    };
    for (k, first, n) in [(0, 0, 2), (4, 2, 1)] {
        let e = batch(k, first, n, &step0);
        assert!(e <= TRAJECTORY_BOUND, "step 0's x0, images {first}..: {e:.2e}");
    }
    for (k, first, n) in [(3, 0, 2), (7, 2, 1)] {
        let e = batch(k, first, n, &watched.images.data);
        assert!(
            e <= TRAJECTORY_BOUND,
            "the last step's x0 against the samples, images {first}..: {e:.2e}"
        );
    }
    assert_ne!(seen[0].3, seen[3].3, "the prediction moves between steps");
    if timed {
        for i in 0..4 {
            let x0 = watched
                .timings
                .iter()
                .filter(|d| d.step == i && d.label.ends_with("/x0") && d.kernel == "elementwise");
            assert_eq!(x0.count(), 2, "step {i}: the x0 dispatch of each of the two batches");
        }
        assert_eq!(watched.step_walls.len(), 8, "a wall time per step per batch");
    }
}

/// Inversion follows the settings' clip as diffusers' DDIMInverseScheduler does (x0 clipped, the model output
/// kept as epsilon): against the CPU, the graph reference and `reference::ddim::ddim_step` from each step's alpha
/// to the next, on the fixture network, whose large outputs put many x0 values past the clip.
#[test]
fn inversion_clips_x0_as_the_inverse_scheduler_does() {
    let Some(gpu) = gpu() else { return };
    let w = diffusers_model();
    let graph = unet::build(&w.config).unwrap();
    let uploaded = w.upload(&gpu).unwrap();
    let host: std::collections::HashMap<String, Vec<f32>> =
        w.tensors.iter().map(|(k, v)| (k.clone(), v.data.clone())).collect();
    let per = 3 * 8 * 8;
    let x0: Vec<f32> = (0..2 * per).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let settings = SamplerSettings { steps: 3, clip: Some(1.0), ..Default::default() };
    let sampler = Sampler::new(&gpu, &graph, &uploaded, settings.clone()).unwrap();
    let got = sampler.invert(&x0, 2, &mut |_| {}).block_on().unwrap();

    let alphas = settings.schedule.alphas_cumprod().unwrap();
    let (steps, _) = plan_steps(&settings).unwrap();
    let (mut x, mut a_cur, mut clipped) = (x0.clone(), 1.0f64, 0usize);
    for step in steps.iter().rev() {
        let t = vec![step.t as f32; 2];
        let m: Vec<f32> = reference::graph::run(&graph, &host, 2, &[&x, &t])
            [&graph.output.unwrap()]
            .iter()
            .map(|&v| v as f32)
            .collect();
        let a_next = alphas[step.t];
        clipped += x
            .iter()
            .zip(&m)
            .filter(|&(&x, &m)| {
                ((x as f64 - (1.0 - a_cur).sqrt() * m as f64) / a_cur.sqrt()).abs() > 1.0
            })
            .count();
        let s = ddim::StepSettings {
            a_t: a_cur,
            a_p: a_next,
            eta: 0.0,
            prediction: Prediction::Epsilon,
            clip: Some(1.0),
            threshold: None,
            clipped_eps: false,
            sigma_hat: None,
        };
        x = ddim::ddim_step(&x, &m, per, &s, None).iter().map(|&v| v as f32).collect();
        a_cur = a_next;
    }
    // (Measured: 142 of the 1,152 predictions lie past 1.)
    assert!(clipped > 100, "the clip must matter: {clipped} x0 values past 1");
    let e = max_rel(&got, &x);
    assert!(e <= TRAJECTORY_BOUND, "clipped inversion vs the CPU: {e:.2e}");
    // Without the clip the latents differ (the exact ODE).
    let exact = Sampler::new(&gpu, &graph, &uploaded, SamplerSettings { clip: None, ..settings })
        .unwrap()
        .invert(&x0, 2, &mut |_| {})
        .block_on()
        .unwrap();
    assert!(max_rel(&exact, &got) > 1e-2, "the clip changed nothing");
}

/// Encode then decode: the reconstruction error falls as the number of steps grows (the paper's Table 2 trend).
#[test]
fn inversion_error_falls_with_more_steps() {
    let Some(gpu) = gpu() else { return };
    // A random network is no denoiser: its eps of order 5 sends the ODE far from any image and the round trip
    // measures only chaos. Scaled to eps of order 0.1 (conv_out / 40), the ODE is smooth and the error is the
    // discretisation error, which must fall with S.
    let mut w = diffusers_model();
    for name in ["conv_out.weight", "conv_out.bias"] {
        w.tensors.get_mut(name).unwrap().data.iter_mut().for_each(|v| *v /= 40.0);
    }
    let graph = unet::build(&w.config).unwrap();
    let uploaded = w.upload(&gpu).unwrap();
    // Smooth images in [-1, 1]: a gradient and a disc.
    let mut x0 = Vec::new();
    for k in 0..2 {
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..8 {
                    let v = if k == 0 {
                        (x as f32 + y as f32 + c as f32) / 8.0 - 1.0
                    } else if (x as f32 - 3.5).hypot(y as f32 - 3.5) < 2.5 {
                        0.8 - 0.3 * c as f32
                    } else {
                        -0.6
                    };
                    x0.push(v);
                }
            }
        }
    }
    let mut errors = Vec::new();
    for steps in [10, 20, 50] {
        let sampler = Sampler::new(
            &gpu,
            &graph,
            &uploaded,
            SamplerSettings {
                steps,
                // Trailing spacing ends at t = 999 for every S, so each S integrates the same ODE span
                // (leading ends at 900, 950, 980 for S = 10, 20, 50: different problems).
                spacing: Spacing::Trailing,
                ..Default::default()
            },
        )
        .unwrap();
        let z = sampler.invert(&x0, 2, &mut |_| {}).block_on().unwrap();
        let back = sampler.sample(&z, 2, 0, StepNoise::Philox(0), &mut |_| {}).block_on().unwrap();
        let mse = back.iter().zip(&x0).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>()
            / x0.len() as f64;
        eprintln!("inversion round trip, S = {steps}: per-dimension MSE {mse:.3e}");
        errors.push(mse);
    }
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "MSE must fall with S: {errors:?}");
}

#[test]
fn interpolation_endpoints_are_the_two_samples() {
    let Some(gpu) = gpu() else { return };
    let w = diffusers_model();
    let graph = unet::build(&w.config).unwrap();
    let uploaded = w.upload(&gpu).unwrap();
    let sampler =
        Sampler::new(&gpu, &graph, &uploaded, SamplerSettings { steps: 5, ..Default::default() })
            .unwrap();
    let per = 3 * 8 * 8;
    let (a, b) = (latents(1, 0, 1, per), latents(2, 0, 1, per));
    let frames: Vec<f32> = (0..5).flat_map(|f| slerp(&a, &b, f as f64 / 4.0)).collect();
    let strip =
        sampler.sample(&frames, 5, 0, StepNoise::Philox(1), &mut |_| {}).block_on().unwrap();
    let sa = sampler.sample(&a, 1, 0, StepNoise::Philox(1), &mut |_| {}).block_on().unwrap();
    let sb = sampler.sample(&b, 1, 0, StepNoise::Philox(2), &mut |_| {}).block_on().unwrap();
    assert_eq!(strip[..per], sa[..], "first frame");
    assert_eq!(strip[4 * per..], sb[..], "last frame");
}
