// group_norm_serial: GroupNorm with affine and optional SiLU, without workgroup barriers, for CPU-like adapters
// (lavapipe), where a barrier costs more than the arithmetic around it. Same result as group_norm.wgsl.
//
// Layouts (row-major f32, read as vec4):
//   x, out  [batch, c, hw]   hw a multiple of 4, so no vec4 straddles two channels
//   gamma   [c]
//   beta    [c]
//   stats   [batch * groups] vec4: (shift, mean of x - shift, 1 / sqrt(var + eps), unused)
// out = silu?((x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c]), biased variance as in PyTorch.
//
// Grid: two launches of the same pipeline, in order, over the flattened 2-D workgroup grid.
//   phase 0: one invocation per (n, group): two serial passes over the group's contiguous run, as in
//            group_norm.wgsl (the mean, then the mean of squared deviations, both on x - x[first element]),
//            written to stats. No invocation talks to another.
//   phase 1: one invocation per vec4 of x: normalise with its group's stats, scale, shift, SiLU.
// Invariants: groups divides c; hw % 4 == 0; every count > 0; stats is not read before phase 0 wrote it
// (the two launches are recorded in one pass, and wgpu orders them).

struct Params {
    batch: u32,
    c: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    silu: u32,
    phase: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

fn silu4(v: vec4<f32>) -> vec4<f32> {
    return v / (vec4<f32>(1.0) + exp(-v));
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_index(wg, nwg, li, 64u);
    let cpg = p.c / p.groups;
    let count4 = cpg * p.hw / 4u;
    if (p.phase == 0u) {
        if (i >= p.batch * p.groups) {
            return;
        }
        let base = i * count4;
        let shift = x[base].x;
        var s = vec4<f32>(0.0);
        for (var k = 0u; k < count4; k = k + 1u) {
            s = s + (x[base + k] - shift);
        }
        let count = f32(count4 * 4u);
        let mean_shifted = (s.x + s.y + s.z + s.w) / count;
        var d2 = vec4<f32>(0.0);
        for (var k = 0u; k < count4; k = k + 1u) {
            let d = (x[base + k] - shift) - mean_shifted;
            d2 = d2 + d * d;
        }
        let rstd = inverseSqrt((d2.x + d2.y + d2.z + d2.w) / count + p.eps);
        stats[i] = vec4<f32>(shift, mean_shifted, rstd, 0.0);
        return;
    }
    if (i >= p.batch * p.c * p.hw / 4u) {
        return;
    }
    let st = stats[i / count4];
    let ch = (i * 4u / p.hw) % p.c;
    var v = ((x[i] - st.x) - st.y) * (st.z * gamma[ch]) + beta[ch];
    if (p.silu != 0u) {
        v = silu4(v);
    }
    out[i] = v;
}
