// ddim_step: the fused DDIM update (ARCHITECTURE.md, "The DDIM maths"), in place on x, in one pass.
//
//   x0    = predict_x0(x_t, model_out)             (epsilon, sample or v prediction; common.wgsl)
//   x0    = clamp(x0, -clip, clip)                 when DDIM_CLIP
//   x0    = clamp(x0, -s_n, s_n) / s_n             when DDIM_THRESHOLD (s_n from ddim_threshold.wgsl)
//   eps   = predict_eps(x_t, model_out, x0)        from the unclipped x0, as diffusers does; with DDIM_CLIPPED_EPS
//           eps = (x_t - sqrt_a_t * x0') / sqrt(1 - a_t) from the clipped x0' instead
//   x_p   = c_x0 * x0' + dir_coef * eps + c_xt * x_t + sigma * z
// The maths is ddim_update in common.wgsl, shared with the conv2d_ddim variant of conv2d.wgsl; the host computes the coefficients in
// f64. DDIM: c_x0 = sqrt(a_p), dir_coef = sqrt(1 - a_p - sigma^2), c_xt = 0. The paper's sigma-hat (the DDPM
// posterior with variance beta_t = 1 - a_t / a_p, the official code's ddpm_steps): c_x0 = sqrt(a_p) beta_t /
// (1 - a_t), c_xt = sqrt(1 - beta_t) (1 - a_p) / (1 - a_t), dir_coef = 0. z is generated in registers by Philox
// (NOISE_PHILOX: counter (e / 4, image_offset + n, step, STREAM_STEP_NOISE), key = seed), read from `noise`
// (NOISE_TENSOR), or absent (NOISE_NONE, sigma = 0).
//
// Layouts (row-major; x, model_out and noise `act`, f32 or f16 by the device's precision, thresh f32; the
// update is computed in f32):
//   x          [batch, per_image]   x_t in, x_prev out
//   model_out  [batch, per_image]
//   noise      [batch, per_image]   read only with NOISE_TENSOR (otherwise any read-only buffer)
//   thresh     [batch]              read only with DDIM_THRESHOLD (otherwise any read-only buffer)
//
// Grid: one invocation per (n, group of 4 elements), group fastest (so one Philox call feeds 4 elements),
// over the flattened 2-D workgroup grid.
// Invariants: every count > 0; each element is read and written by one invocation only, so in place is safe.

struct Params {
    per_image: u32,
    batch: u32,
    _pad0: u32,
    _pad1: u32,
    d: DdimStep,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x:act model_out:act noise:act thresh

#entry 64 id
    let groups = (p.per_image + 3u) / 4u;
    let g = id % groups;
    let n = id / groups;
    if (n >= p.batch) {
        return;
    }
    let d = p.d;
    var z = vec4<f32>(0.0);
    if (d.noise_mode == NOISE_PHILOX) {
        z = philox_normal4(g, d.image_offset + n, d.step, STREAM_STEP_NOISE, vec2<u32>(d.seed_lo, d.seed_hi));
    }
    var s = 1.0;
    if ((d.flags & DDIM_THRESHOLD) != 0u) {
        s = thresh[n];
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        let e = g * 4u + j;
        if (e >= p.per_image) {
            break;
        }
        let i = n * p.per_image + e;
        var zj = z[j];
        if (d.noise_mode == NOISE_TENSOR) {
            zj = f32(noise[i]);
        }
        x[i] = act(ddim_update(d, f32(x[i]), f32(model_out[i]), s, zj));
    }
}
