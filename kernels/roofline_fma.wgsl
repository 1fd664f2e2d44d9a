// roofline_fma: the attainable f32 FMA rate. Each invocation runs 8 independent vec4 FMA chains (enough
// parallel work to hide FMA latency), `iterations` times, and writes one sum so the compiler cannot drop them.
//
// Layouts: out [invocations] f32: out[i] = sum over chains and lanes of the final accumulators.
// Chain c, lane l of invocation i starts at a = 0.001 * f32(i % 97 + c + l) and iterates a = a * m + k with
// m = 0.999 and k = 0.001 (a contraction toward 1: values stay finite for any iteration count).
//
// Grid: one invocation per output over the flattened 2-D workgroup grid.
// Invariants: 8 * 4 * 2 = 64 flops per iteration per invocation.

struct Params {
    invocations: u32,
    iterations: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings out

#entry 64
    let i = flat_index(wg, nwg, li, 64u);
    if (i >= p.invocations) {
        return;
    }
    let base = f32(i % 97u);
    let lanes = vec4<f32>(0.0, 1.0, 2.0, 3.0);
    var a0 = 0.001 * (base + 0.0 + lanes);
    var a1 = 0.001 * (base + 1.0 + lanes);
    var a2 = 0.001 * (base + 2.0 + lanes);
    var a3 = 0.001 * (base + 3.0 + lanes);
    var a4 = 0.001 * (base + 4.0 + lanes);
    var a5 = 0.001 * (base + 5.0 + lanes);
    var a6 = 0.001 * (base + 6.0 + lanes);
    var a7 = 0.001 * (base + 7.0 + lanes);
    let m = vec4<f32>(0.999);
    let k = vec4<f32>(0.001);
    for (var it = 0u; it < p.iterations; it = it + 1u) {
        a0 = fma(a0, m, k);
        a1 = fma(a1, m, k);
        a2 = fma(a2, m, k);
        a3 = fma(a3, m, k);
        a4 = fma(a4, m, k);
        a5 = fma(a5, m, k);
        a6 = fma(a6, m, k);
        a7 = fma(a7, m, k);
    }
    let s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    out[i] = s.x + s.y + s.z + s.w;
}
