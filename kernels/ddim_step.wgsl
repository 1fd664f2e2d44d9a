// ddim_step: the fused DDIM update (DESIGN.md section 6), in place on x, in one pass.
//
//   x0    = predict_x0(x_t, model_out)             (epsilon, sample or v prediction; common.wgsl)
//   x0    = clamp(x0, -clip, clip)                 when FLAG_CLIP
//   x0    = clamp(x0, -s_n, s_n) / s_n             when FLAG_THRESHOLD (s_n from ddim_threshold.wgsl)
//   eps   = predict_eps(x_t, model_out, x0)        from the unclipped x0, as diffusers does; with FLAG_CLIPPED_EPS
//           eps = (x_t - sqrt_a_t * x0') / sqrt(1 - a_t) from the clipped x0' instead
//   x_p   = c_x0 * x0' + dir_coef * eps + c_xt * x_t + sigma * z
// The host computes the coefficients in f64. DDIM: c_x0 = sqrt(a_p), dir_coef = sqrt(1 - a_p - sigma^2),
// c_xt = 0. The paper's sigma-hat (the DDPM posterior with variance beta_t = 1 - a_t / a_p, the official code's
// ddpm_steps): c_x0 = sqrt(a_p) beta_t / (1 - a_t), c_xt = sqrt(1 - beta_t) (1 - a_p) / (1 - a_t), dir_coef = 0. z is generated in registers by
// Philox (noise_mode 1: counter (e / 4, image_offset + n, step, STREAM_STEP_NOISE), key = seed), read from
// `noise` (noise_mode 2), or absent (noise_mode 0, sigma = 0).
//
// Layouts (row-major f32):
//   x          [batch, per_image]   x_t in, x_prev out
//   model_out  [batch, per_image]
//   noise      [batch, per_image]   read only in noise_mode 2 (otherwise any read-only buffer)
//   thresh     [batch]              read only with FLAG_THRESHOLD (otherwise any read-only buffer)
//
// Grid: one invocation per (n, group of 4 elements), group fastest (so one Philox call feeds 4 elements),
// over the flattened 2-D workgroup grid.
// Invariants: every count > 0; each element is read and written by one invocation only, so in place is safe.

struct Params {
    per_image: u32,
    batch: u32,
    image_offset: u32,
    step: u32,
    seed_lo: u32,
    seed_hi: u32,
    prediction: u32,
    flags: u32,
    noise_mode: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    sqrt_a_t: f32,
    sqrt_1m_a_t: f32,
    sqrt_a_p: f32,
    dir_coef: f32,
    sigma: f32,
    clip: f32,
    coef_xt: f32,
    _pad3: u32,
}

const FLAG_CLIP: u32 = 1u;
const FLAG_THRESHOLD: u32 = 2u;
const FLAG_CLIPPED_EPS: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> model_out: array<f32>;
@group(0) @binding(3) var<storage, read> noise: array<f32>;
@group(0) @binding(4) var<storage, read> thresh: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let id = flat_index(wg, nwg, li, 64u);
    let groups = (p.per_image + 3u) / 4u;
    let g = id % groups;
    let n = id / groups;
    if (n >= p.batch) {
        return;
    }
    var z = vec4<f32>(0.0);
    if (p.noise_mode == 1u) {
        z = philox_normal4(g, p.image_offset + n, p.step, STREAM_STEP_NOISE, vec2<u32>(p.seed_lo, p.seed_hi));
    }
    var s = 1.0;
    if ((p.flags & FLAG_THRESHOLD) != 0u) {
        s = thresh[n];
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        let e = g * 4u + j;
        if (e >= p.per_image) {
            break;
        }
        let i = n * p.per_image + e;
        let xt = x[i];
        let m = model_out[i];
        let x0 = predict_x0(xt, m, p.prediction, p.sqrt_a_t, p.sqrt_1m_a_t);
        var x0c = x0;
        if ((p.flags & FLAG_CLIP) != 0u) {
            x0c = clamp(x0c, -p.clip, p.clip);
        }
        if ((p.flags & FLAG_THRESHOLD) != 0u) {
            x0c = clamp(x0c, -s, s) / s;
        }
        var eps: f32;
        if ((p.flags & FLAG_CLIPPED_EPS) != 0u) {
            // Glide's convention (diffusers' use_clipped_model_output): epsilon re-derived from the clipped x0.
            eps = (xt - p.sqrt_a_t * x0c) / p.sqrt_1m_a_t;
        } else {
            eps = predict_eps(xt, m, x0, p.prediction, p.sqrt_a_t, p.sqrt_1m_a_t);
        }
        var zj = z[j];
        if (p.noise_mode == 2u) {
            zj = noise[i];
        }
        x[i] = p.sqrt_a_p * x0c + p.dir_coef * eps + p.coef_xt * xt + p.sigma * zj;
    }
}
