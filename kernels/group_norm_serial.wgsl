// group_norm_serial: GroupNorm with affine and optional SiLU, without workgroup barriers, for CPU-like adapters
// (lavapipe), where a barrier costs more than the arithmetic around it. Same result as group_norm.wgsl.
//
// Layouts (row-major f32, read as vec4):
//   x, out  [batch, c, hw]   hw a multiple of 4, so no vec4 straddles two channels
//   gamma   [c]
//   beta    [c]
//   stats   [batch * c] vec4: per (image, channel) (shift, mean of x - shift, sum of squared deviations, 0)
// out = silu?((x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c]), biased variance as in PyTorch.
//
// Grid: two launches of the same pipeline, in order, over the flattened 2-D workgroup grid.
//   phase 0: one invocation per (n, channel), one pass over the channel's contiguous run: each vec4's mean and
//            squared deviations, merged into the running ones by Chan's update (so no E[x^2] - E[x]^2
//            cancellation), on x - x[first element of the channel] (shifted data: for values at 1000 +- 1 the
//            differences are exact and small, and the running mean keeps its precision). Reading x once, not
//            twice as a two-pass mean and variance would, is what this phase is for: lavapipe loads per lane.
//   phase 1: workgroup g takes the groups_per_wg groups g * groups_per_wg ..: per group it merges its channels'
//            statistics (Chan again, relative to the group's first channel's shift), then per channel its
//            invocations stride over the channel's vec4s: normalise, scale, shift, SiLU. Group and channel come
//            from the workgroup id and loop counters alone, so stats, gamma and beta are read at workgroup-
//            uniform addresses (once for all lanes, where a per-lane address costs a load per lane).
// Workgroups of 8 invocations, one 256-bit SIMD vector of lavapipe: each workgroup is a single SIMD thread with
// no lanes parked at a channel's end (wider workgroups are slower: examples/norm_study.rs).
// Invariants: groups divides c; hw % 4 == 0; every count > 0; stats is not read before phase 0 wrote it (the
// two launches are recorded in one pass, and wgpu orders them).

struct Params {
    batch: u32,
    c: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    silu: u32,
    phase: u32,
    groups_per_wg: u32,
    channels_per_invocation: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x:vec4 gamma beta stats:vec4 out:vec4

const WG: u32 = 8u;

fn silu4(v: vec4<f32>) -> vec4<f32> {
    return v / (vec4<f32>(1.0) + exp(-v));
}

// Phase 0 for channel i (flattened over images): its shift, shifted mean and sum of squared deviations.
fn channel_statistics(i: u32, hw4: u32) {
    let base = i * hw4;
    let shift = x[base].x;
    // After k vec4s: mean and sum of squared deviations of 4k values. Merging a block of 4 values with
    // mean b and deviations m2b into 4k values: delta = b - mean, mean += delta / (k + 1),
    // m2 += m2b + delta^2 * 4k / (k + 1) (Chan, Golub and LeVeque 1979).
    var mean = 0.0;
    var m2 = 0.0;
    for (var k = 0u; k < hw4; k = k + 1u) {
        let v = x[base + k] - shift;
        let b = (v.x + v.y + v.z + v.w) * 0.25;
        let d = v - b;
        let delta = b - mean;
        let w = 1.0 / f32(k + 1u);
        mean = mean + delta * w;
        m2 = m2 + dot(d, d) + delta * delta * (4.0 - 4.0 * w);
    }
    stats[i] = vec4<f32>(shift, mean, m2, 0.0);
}

#entry 8
    let hw4 = p.hw / 4u;
    if (p.phase == 0u) {
        // Invocation li of workgroup g takes channels (g * channels_per_invocation + j) * WG + li.
        let first = flat_workgroup(wg, nwg) * p.channels_per_invocation;
        for (var j = 0u; j < p.channels_per_invocation; j = j + 1u) {
            let i = (first + j) * WG + li;
            if (i >= p.batch * p.c) {
                return;
            }
            channel_statistics(i, hw4);
        }
        return;
    }
    let cpg = p.c / p.groups;
    let per_channel = 4.0 * f32(hw4);
    let first = flat_workgroup(wg, nwg) * p.groups_per_wg;
    for (var gi = 0u; gi < p.groups_per_wg; gi = gi + 1u) {
        let ng = first + gi;
        if (ng >= p.batch * p.groups) {
            return;
        }
        // The group's statistics from its channels' (all of per_channel values), relative to the shift of
        // its first channel: mean of the channel means, then their squared deviations plus the channels' own.
        let c0 = ng * cpg;
        let shift = stats[c0].x;
        var sum_means = 0.0;
        for (var j = 0u; j < cpg; j = j + 1u) {
            let s = stats[c0 + j];
            sum_means = sum_means + ((s.x - shift) + s.y);
        }
        let mean = sum_means / f32(cpg);
        var m2 = 0.0;
        for (var j = 0u; j < cpg; j = j + 1u) {
            let s = stats[c0 + j];
            let delta = ((s.x - shift) + s.y) - mean;
            m2 = m2 + s.z + delta * delta * per_channel;
        }
        let rstd = inverseSqrt(m2 / (per_channel * f32(cpg)) + p.eps);
        for (var j = 0u; j < cpg; j = j + 1u) {
            let nc = c0 + j;
            let ch = nc % p.c;
            let scale = rstd * gamma[ch];
            let offset = beta[ch];
            let base = nc * hw4;
            for (var k = li; k < hw4; k = k + WG) {
                var v = ((x[base + k] - shift) - mean) * scale + offset;
                if (p.silu != 0u) {
                    v = silu4(v);
                }
                out[base + k] = v;
            }
        }
    }
}
