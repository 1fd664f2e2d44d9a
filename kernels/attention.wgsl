// attention: multi-head softmax(q k^T * scale) v over the tokens of a feature map, with an online softmax.
//
// Layouts (row-major f32), C = heads * head_dim, T = tokens (h * w):
//   q, k, v, out  [batch, C, T]: element (n, head, d, t) at (n * C + head * head_dim + d) * T + t
// This is the NCHW layout the q/k/v projections (ops::linear over feature maps) write, so no transposes.
//
// Grid: one invocation per (n, head, block of QB = 8 consecutive query tokens), query block fastest, over the
// flattened 2-D workgroup grid. Keys are visited in blocks of KB = 8: the 8 x 8 scores live in registers (two
// vec4s of 4 queries per key), the running maxima and denominators are rescaled once per block (the online
// softmax of Milakov & Gimelshein 2018), and the invocation's output rows out[n, head, :, t0..t0+7] double as
// its accumulators. Each key and value element read serves 8 queries, each query element 8 keys. No T x T
// score matrix exists at any point, so memory is O(C * T) whatever T is, and head_dim has no upper bound.
// Invariants: out aliases none of q, k, v; every count > 0. Query slots past T compute on the last query and
// store nothing; keys past T reread the last key and are masked out of the softmax.

struct Params {
    batch: u32,
    heads: u32,
    head_dim: u32,
    tokens: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings q k v out

const KB: u32 = 8u;

#entry 64 id
    let T = p.tokens;
    let qblocks = (T + 7u) / 8u;
    let t0 = (id % qblocks) * 8u;
    let t1 = min(t0 + 4u, T - 1u);
    let nh = id / qblocks;
    if (nh >= p.batch * p.heads) {
        return;
    }
    let base = nh * p.head_dim * T;
    let has1 = t0 + 4u < T;

    for (var d = 0u; d < p.head_dim; d = d + 1u) {
        store4(base + d * T, t0, T, vec4<f32>(0.0));
        if (has1) {
            store4(base + d * T, t1, T, vec4<f32>(0.0));
        }
    }

    var max0 = vec4<f32>(-3.0e38);
    var max1 = vec4<f32>(-3.0e38);
    var den0 = vec4<f32>(0.0);
    var den1 = vec4<f32>(0.0);
    for (var kb = 0u; kb < T; kb = kb + KB) {
        var s0: array<vec4<f32>, KB>;
        var s1: array<vec4<f32>, KB>;
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            let row = base + d * T;
            let qa = q4(row, t0, T) * p.scale;
            let qb = q4(row, t1, T) * p.scale;
            for (var j = 0u; j < KB; j = j + 1u) {
                let kv = k[row + min(kb + j, T - 1u)];
                s0[j] = s0[j] + qa * kv;
                s1[j] = s1[j] + qb * kv;
            }
        }
        var bm0 = vec4<f32>(-3.0e38);
        var bm1 = vec4<f32>(-3.0e38);
        for (var j = 0u; j < KB; j = j + 1u) {
            if (kb + j < T) {
                bm0 = max(bm0, s0[j]);
                bm1 = max(bm1, s1[j]);
            }
        }
        let nm0 = max(max0, bm0);
        let nm1 = max(max1, bm1);
        let cor0 = exp(max0 - nm0);
        let cor1 = exp(max1 - nm1);
        den0 = den0 * cor0;
        den1 = den1 * cor1;
        for (var j = 0u; j < KB; j = j + 1u) {
            s0[j] = select(vec4<f32>(0.0), exp(s0[j] - nm0), kb + j < T);
            s1[j] = select(vec4<f32>(0.0), exp(s1[j] - nm1), kb + j < T);
            den0 = den0 + s0[j];
            den1 = den1 + s1[j];
        }
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            let row = base + d * T;
            var acc0 = out4(row, t0, T) * cor0;
            var acc1 = out4(row, t1, T) * cor1;
            for (var j = 0u; j < KB; j = j + 1u) {
                let vv = v[row + min(kb + j, T - 1u)];
                acc0 = acc0 + s0[j] * vv;
                acc1 = acc1 + s1[j] * vv;
            }
            store4(row, t0, T, acc0);
            if (has1) {
                store4(row, t1, T, acc1);
            }
        }
        max0 = nm0;
        max1 = nm1;
    }

    let inv0 = 1.0 / den0;
    let inv1 = 1.0 / den1;
    for (var d = 0u; d < p.head_dim; d = d + 1u) {
        let row = base + d * T;
        store4(row, t0, T, out4(row, t0, T) * inv0);
        if (has1) {
            store4(row, t1, T, out4(row, t1, T) * inv1);
        }
    }
}
