// group_norm: GroupNorm over [batch, c, hw] with affine and an optional fused SiLU.
//
// Layouts (row-major f32):
//   x, out  [batch, c, hw]   (hw = h * w; a group's channels are contiguous, so a group is one contiguous run)
//   gamma   [c]
//   beta    [c]
// out = silu?((x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c]), biased variance as in PyTorch.
//
// Grid: one workgroup of 256 invocations per (n, group), numbered n * groups + g over the flattened 2-D
// workgroup grid. Statistics take two passes over the group (mean, then the mean of squared deviations), each
// a per-invocation partial sum followed by a tree reduction in workgroup memory: stable where E[x^2] - E[x]^2
// in f32 would cancel. Both passes work on x - x[first element of the group] (shifted data): for a group
// sitting far from zero (1000 +- 1, say) the differences are exact and small, so the statistics keep the
// precision that an f32 mean near 1000, quantised to half an ulp of 1000, would lose.
// Invariants: groups divides c; every count > 0.

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
#bindings x gamma beta out

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

// Sums `partial` across the workgroup; every invocation gets the total.
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

#entry 256
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    let ng = flat_workgroup(wg, nwg);
    if (ng >= p.batch * p.groups) {
        return;
    }
    let g = ng % p.groups;
    let cpg = p.c / p.groups;
    let count = cpg * p.hw;
    let base = ng * count;

    let shift = x[base];
    var s = 0.0;
    for (var i = li; i < count; i = i + WG) {
        s = s + (x[base + i] - shift);
    }
    // The mean of the group is shift + mean_shifted.
    let mean_shifted = workgroup_sum(li, s) / f32(count);

    var d2 = 0.0;
    for (var i = li; i < count; i = i + WG) {
        let d = (x[base + i] - shift) - mean_shifted;
        d2 = d2 + d * d;
    }
    let rstd = inverseSqrt(workgroup_sum(li, d2) / f32(count) + p.eps);

    for (var i = li; i < count; i = i + WG) {
        let ch = g * cpg + i / p.hw;
        var v = ((x[base + i] - shift) - mean_shifted) * rstd * gamma[ch] + beta[ch];
        if (p.silu != 0u) {
            v = silu(v);
        }
        out[base + i] = v;
    }
}
