// common.wgsl: helpers prepended to every kernel in kernels/ before compilation (WGSL has no #include).
// Nothing here binds resources; each kernel declares its own Params struct and bindings.
//
// Grid convention: every kernel is dispatched over a 2-D grid of workgroups (x up to the device's
// max_compute_workgroups_per_dimension, y as many rows as needed) and flattens it with `flat_index`. Invocations
// past the end of the work return early, so grids may overshoot.

fn flat_workgroup(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, local: u32, size: u32) -> u32 {
    return flat_workgroup(wg, nwg) * size + local;
}

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

// ---- Philox4x32-10 (Salmon et al. 2011, Random123), bit-identical to src/sampler/rng.rs. ----

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// Full 64-bit product of two u32 as (hi, lo), from 16-bit halves (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round = round + 1u) {
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
    }
    return c;
}

// Streams: the fourth counter word separates the uses of one (seed, image, step) key.
const STREAM_LATENT: u32 = 0u;
const STREAM_STEP_NOISE: u32 = 1u;

// A u32 to a uniform in (0, 1): the top 24 bits, centred, so neither 0 nor 1 occurs. From 2^23 up the half is
// a tie, rounded to even as every backend rounds an f32 addition (philox.rs's twin works in f64).
fn unit_open(x: u32) -> f32 {
    return (f32(x >> 8u) + 0.5) * (1.0 / 16777216.0);
}

// sin and cos from + and * only, so that every backend agrees to a few ulp: WGSL promises its builtins only an
// absolute 2^-11 on [-pi, pi] (sin, cos) and 3 ulp (log), and drivers differ by that much. (sin r, cos r) for
// |r| <= pi: r is reduced by the nearest multiple k of pi/2 with pi/2 split in three parts (Cody-Waite; the
// first has 8 significant bits, so k times it is exact), then Cephes' minimax polynomials on [-pi/4, pi/4] and
// the quadrant k mod 4 pick the result.
const HALF_PI_A: f32 = 1.5703125;
const HALF_PI_B: f32 = 4.837512969970703125e-4;
const HALF_PI_C: f32 = 7.54978995489188216e-8;

fn sin_cos(r: f32) -> vec2<f32> {
    let k = round(r * 0.636619772367581343);
    let y = ((r - k * HALF_PI_A) - k * HALF_PI_B) - k * HALF_PI_C;
    let z = y * y;
    let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * y + y;
    let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z
        - 0.5 * z + 1.0;
    // k mod 4 (two's complement keeps it right for negative k): sin r is s, c, -s, -c; cos r is c, -s, -c, s.
    switch (i32(k) & 3) {
        case 0: { return vec2<f32>(s, c); }
        case 1: { return vec2<f32>(c, -s); }
        case 2: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

// The natural logarithm of a positive normal float, from + and * only (Cephes' logf): x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), a minimax polynomial in m - 1, and e ln 2 added in two parts.
fn ln(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    var e = f32(i32(bits >> 23u) - 126);
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f000000u);
    if (m < 0.707106781186547524) {
        e = e - 1.0;
        m = m + m - 1.0;
    } else {
        m = m - 1.0;
    }
    let z = m * m;
    var y = ((((((((7.0376836292e-2 * m - 1.1514610310e-1) * m + 1.1676998740e-1) * m
        - 1.2420140846e-1) * m + 1.4249322787e-1) * m - 1.6668057665e-1) * m + 2.0000714765e-1) * m
        - 2.4999993993e-1) * m + 3.3333331174e-1) * m * z;
    y = y - 2.12194440e-4 * e;
    y = y - 0.5 * z;
    return (m + y) + 0.693359375 * e;
}

// Box-Muller on two uniforms, with the angle in (-pi, pi) and the functions above.
fn box_muller(a: u32, b: u32) -> vec2<f32> {
    let r = sqrt(-2.0 * ln(unit_open(a)));
    let theta = 3.14159265358979 * (2.0 * unit_open(b) - 1.0);
    let sc = sin_cos(theta);
    return vec2<f32>(r * sc.y, r * sc.x);
}

// Four standard normals for elements 4*group .. 4*group+3 of image `image` at `step` in `stream`.
fn philox_normal4(group: u32, image: u32, step: u32, stream: u32, key: vec2<u32>) -> vec4<f32> {
    let r = philox4x32_10(vec4<u32>(group, image, step, stream), key);
    return vec4<f32>(box_muller(r.x, r.y), box_muller(r.z, r.w));
}

// ---- DDIM: the predicted x0 and epsilon from the model output (ARCHITECTURE.md, "The DDIM maths"). ----

const PRED_EPSILON: u32 = 0u;
const PRED_SAMPLE: u32 = 1u;
const PRED_V: u32 = 2u;

fn predict_x0(x: f32, m: f32, prediction: u32, sqrt_a: f32, sqrt_1m_a: f32) -> f32 {
    switch prediction {
        case 1u: { return m; }
        case 2u: { return sqrt_a * x - sqrt_1m_a * m; }
        default: { return (x - sqrt_1m_a * m) / sqrt_a; }
    }
}

// The constants of one DDIM step, embedded in the Params of ddim_step.wgsl and conv2d.wgsl's conv2d_ddim variant (64 bytes;
// mirrored by ops::ddim::DdimStepParams). x_p = c_x0 * x0' + dir_coef * eps + coef_xt * x_t + sigma * z.
struct DdimStep {
    image_offset: u32,
    step: u32,
    seed_lo: u32,
    seed_hi: u32,
    prediction: u32,
    flags: u32,
    noise_mode: u32,
    _pad0: u32,
    sqrt_a_t: f32,
    sqrt_1m_a_t: f32,
    sqrt_a_p: f32,
    dir_coef: f32,
    sigma: f32,
    clip: f32,
    coef_xt: f32,
    _pad1: u32,
}

const DDIM_CLIP: u32 = 1u;
const DDIM_THRESHOLD: u32 = 2u;
const DDIM_CLIPPED_EPS: u32 = 4u;
const NOISE_NONE: u32 = 0u;
const NOISE_PHILOX: u32 = 1u;
const NOISE_TENSOR: u32 = 2u;

// The step noise of element e of image n drawn alone, as ddim_step.wgsl draws it in groups of 4: word e % 4 of
// counter (e / 4, image_offset + n, step, STREAM_STEP_NOISE). For the update in a convolution's epilogue, whose
// elements need not start on a group of 4.
fn step_noise_at(d: DdimStep, e: u32, n: u32) -> f32 {
    let key = vec2<u32>(d.seed_lo, d.seed_hi);
    return philox_normal4(e / 4u, d.image_offset + n, d.step, STREAM_STEP_NOISE, key)[e % 4u];
}

// x_prev for one element from x_t, the model output m, the image's threshold scale s (1 without thresholding)
// and the noise z (ignored when sigma = 0).
fn ddim_update(d: DdimStep, xt: f32, m: f32, s: f32, z: f32) -> f32 {
    let x0 = predict_x0(xt, m, d.prediction, d.sqrt_a_t, d.sqrt_1m_a_t);
    var x0c = x0;
    if ((d.flags & DDIM_CLIP) != 0u) {
        x0c = clamp(x0c, -d.clip, d.clip);
    }
    if ((d.flags & DDIM_THRESHOLD) != 0u) {
        x0c = clamp(x0c, -s, s) / s;
    }
    var eps: f32;
    if ((d.flags & DDIM_CLIPPED_EPS) != 0u) {
        // Glide's convention (diffusers' use_clipped_model_output): epsilon re-derived from the clipped x0.
        eps = (xt - d.sqrt_a_t * x0c) / d.sqrt_1m_a_t;
    } else {
        eps = predict_eps(xt, m, x0, d.prediction, d.sqrt_a_t, d.sqrt_1m_a_t);
    }
    return d.sqrt_a_p * x0c + d.dir_coef * eps + d.coef_xt * xt + d.sigma * z;
}

fn predict_eps(x: f32, m: f32, x0: f32, prediction: u32, sqrt_a: f32, sqrt_1m_a: f32) -> f32 {
    switch prediction {
        case 1u: { return (x - sqrt_a * x0) / sqrt_1m_a; }
        case 2u: { return sqrt_a * m + sqrt_1m_a * x; }
        default: { return m; }
    }
}
