// group_norm: GroupNorm over [batch, c, hw] with affine and an optional fused SiLU.
//
// Layouts (row-major; `act` elements, f32 or f16 by the device's precision, except affine, f32; the arithmetic
// is f32):
//   x, out  [batch, c, hw]   (hw = h * w; a group's channels are contiguous, so a group is one contiguous run)
//   gamma   [c]
//   beta    [c]
// out = silu?((x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c]), biased variance as in PyTorch.
//
// Variants (LANES, SUBGROUPS): `group_norm` (1, off) reads one f32 at a time and runs on any adapter, any hw;
// `group_norm_vec4` (4, off) reads vec4s (hw a multiple of 4, so a vec4 never straddles two channels);
// `group_norm_subgroups` (4, on) also reduces within each subgroup (`subgroupAdd`) before the workgroup.
// With STATS (`group_norm_stats`, `group_norm_stats_vec4`, `group_norm_stats_subgroups`) the kernel writes no
// normalised tensor: for each channel c of image n it writes
//   affine   [batch, c] of vec4 (shift, mean_shifted, rstd * gamma[c], beta[c])
// so that a consumer normalises x[n, c, ...] as ((x - shift) - mean_shifted) * affine.z + affine.w while it
// loads it (conv2d_tiled.wgsl's prologue): the same arithmetic, in the same order, as the third pass here.
//
// Grid: one workgroup of 256 invocations per (n, group), numbered n * groups + g over the flattened 2-D
// workgroup grid. Statistics take two passes over the group (mean, then the mean of squared deviations), each
// a per-invocation partial sum followed by a reduction across the workgroup: stable where E[x^2] - E[x]^2
// in f32 would cancel. Both passes work on x - x[first element of the group] (shifted data): for a group
// sitting far from zero (1000 +- 1, say) the differences are exact and small, so the statistics keep the
// precision that an f32 mean near 1000, quantised to half an ulp of 1000, would lose.
// The reduction: without subgroups, a tree in workgroup memory (8 halvings, a barrier each); with them, each
// subgroup sums its invocations' values, its first invocation stores the subgroup's sum, and after one barrier
// every invocation adds the nsg sums in subgroup order (the same order for all, so all hold the same total),
// whatever the subgroup size.
// Invariants: groups divides c; every count > 0; for LANES = 4, hw % 4 == 0.

struct Params {
    batch: u32,
    c: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    silu: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#if STATS
#if LANES == 4
#bindings x:act4 gamma:act beta:act affine:vec4
#else
#bindings x:act gamma:act beta:act affine:vec4
#end
#else
#if LANES == 4
#bindings x:act4 gamma:act beta:act out:act4
#else
#bindings x:act gamma:act beta:act out:act
#end
#end
#if LANES == 4
alias V = vec4<f32>;
// What x and out hold: V as the device stores activations.
alias S = act4;
const LANES: u32 = 4u;

fn lane_sum(v: V) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}
#else
alias V = f32;
alias S = act;
const LANES: u32 = 1u;

fn lane_sum(v: V) -> f32 {
    return v;
}
#end

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

#if SUBGROUPS
// Sums `value` across the workgroup, one subgroup at a time; every invocation gets the total.
fn workgroup_sum(sg: u32, nsg: u32, lane: u32, value: f32) -> f32 {
    let s = subgroupAdd(value);
    if (lane == 0u) {
        partial[sg] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < nsg; i = i + 1u) {
        total = total + partial[i];
    }
    workgroupBarrier();
    return total;
}
#else
// Sums `value` across the workgroup through a tree in `partial`; every invocation gets the total.
fn workgroup_sum(li: u32, value: f32) -> f32 {
    partial[li] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (li < stride) {
            partial[li] = partial[li] + partial[li + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
#end

#if SUBGROUPS
#entry 256 subgroups
#else
#entry 256
#end
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    let ng = flat_workgroup(wg, nwg);
    if (ng >= p.batch * p.groups) {
        return;
    }
    let g = ng % p.groups;
    let cpg = p.c / p.groups;
    // Per channel and per group, in units of V.
    let hw_v = p.hw / LANES;
    let count_v = cpg * hw_v;
    let base = ng * count_v;
    let count = f32(count_v * LANES);

    let first = V(x[base]);
#if LANES == 4
    let shift = first.x;
#else
    let shift = first;
#end
    var s = V(0.0);
    for (var i = li; i < count_v; i = i + WG) {
        s = s + (V(x[base + i]) - shift);
    }
    // The mean of the group is shift + mean_shifted.
#if SUBGROUPS
    let mean_shifted = workgroup_sum(sg, nsg, lane, lane_sum(s)) / count;
#else
    let mean_shifted = workgroup_sum(li, lane_sum(s)) / count;
#end

    var d2 = V(0.0);
    for (var i = li; i < count_v; i = i + WG) {
        let d = (V(x[base + i]) - shift) - mean_shifted;
        d2 = d2 + d * d;
    }
#if SUBGROUPS
    let rstd = inverseSqrt(workgroup_sum(sg, nsg, lane, lane_sum(d2)) / count + p.eps);
#else
    let rstd = inverseSqrt(workgroup_sum(li, lane_sum(d2)) / count + p.eps);
#end

#if STATS
    for (var i = li; i < cpg; i = i + WG) {
        let ch = g * cpg + i;
        let gamma_beta = vec2<f32>(f32(gamma[ch]), f32(beta[ch]));
        affine[ng * cpg + i] = vec4<f32>(shift, mean_shifted, rstd * gamma_beta.x, gamma_beta.y);
    }
#else
    for (var i = li; i < count_v; i = i + WG) {
        let ch = g * cpg + i / hw_v;
        var v = ((V(x[base + i]) - shift) - mean_shifted) * (rstd * f32(gamma[ch])) + f32(beta[ch]);
        if (p.silu != 0u) {
            v = v / (V(1.0) + exp(-v));
        }
        out[base + i] = S(v);
    }
#end
}
