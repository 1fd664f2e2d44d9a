// attention_windowed: multi-head softmax(q k^T * scale) v with the keys and values read from 64 KiB uniform
// windows (attention_pack.wgsl lays them out), for CPU-like adapters (lavapipe). Same result as attention.wgsl.
//
// Layouts (row-major f32), C = heads * head_dim, T = tokens, pair = image * heads + head:
//   q, out        [batch, C, T]: row d of a pair at (pair * head_dim + d) * T
//   kwin, vwin    the window of this launch (attention_pack.wgsl): per_window pairs from pair0, each with
//                 keys key0 .. key0 + kw: row d of local pair l at l * head_dim * kw + d * kw
//   state         [2, pairs, T] running maximum and denominator of every query, between the launches of one
//                 pair's key windows (unused when a pair's keys fit one window)
//
// Grid: one launch per window, recorded in order (a pair's key windows one after another). Workgroup g of a
// launch takes local pair g / groups and, through its 8 invocations (one lavapipe SIMD vector), 8 consecutive
// blocks of 4 query tokens. Everything that names a key (the pair, the key block, the row) comes from the
// workgroup id and loop counters, so every k and v read has a workgroup-uniform address in a uniform buffer,
// which lavapipe reads once for all 8 lanes; a storage read, even at a uniform address, costs a load per lane
// inside a loop. Queries and the output rows stay per lane. Keys go in blocks of KB = 16: the online softmax
// (Milakov & Gimelshein 2018) rescales once per block, and each query gather and output-row update serves 16
// keys (examples/attention_study.rs: 18.8% of the FMA roof at 256 x 256; blocks of 32 keys, 11.3%).
// Invariants: kw % KB == 0; keys past T are zeros in the window and masked out of the softmax; query slots
// past T compute on the last query and store nothing; out aliases none of q, k, v.

struct Params {
    pairs: u32,
    head_dim: u32,
    tokens: u32,
    kw: u32,
    per_window: u32,
    pair0: u32,
    key0: u32,
    first: u32,
    last: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings q kwin vwin out state

const KB: u32 = 16u;
const WG: u32 = 8u;

// The state's values of 4 queries, as attention_rows.inc.wgsl reads q and out.
fn state4(i: u32, t0: u32, T: u32) -> vec4<f32> {
    return vec4<f32>(
        state[i + t0],
        state[i + min(t0 + 1u, T - 1u)],
        state[i + min(t0 + 2u, T - 1u)],
        state[i + min(t0 + 3u, T - 1u)],
    );
}

fn store_state4(i: u32, t0: u32, T: u32, value: vec4<f32>) {
    state[i + t0] = value.x;
    if (t0 + 1u < T) {
        state[i + t0 + 1u] = value.y;
    }
    if (t0 + 2u < T) {
        state[i + t0 + 2u] = value.z;
    }
    if (t0 + 3u < T) {
        state[i + t0 + 3u] = value.w;
    }
}

#entry 8
    let T = p.tokens;
    let qblocks = (T + 3u) / 4u;
    let groups = (qblocks + WG - 1u) / WG;
    let g = flat_workgroup(wg, nwg);
    let local = g / groups;
    let pair = p.pair0 + local;
    let qb = (g % groups) * WG + li;
    if (local >= p.per_window || pair >= p.pairs || qb >= qblocks) {
        return;
    }
    let base = pair * p.head_dim * T;
    // vec4 index of row 0 of this pair in the windows.
    let wbase = local * p.head_dim * p.kw / 4u;
    let row_vec4s = p.kw / 4u;
    let keys = min(p.kw, T - p.key0);
    let t0 = qb * 4u;
    let smax = pair * T;
    let sden = (p.pairs + pair) * T;

    var mx = vec4<f32>(-3.0e38);
    var den = vec4<f32>(0.0);
    if (p.first != 0u) {
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            store4(base + d * T, t0, T, vec4<f32>(0.0));
        }
    } else {
        mx = state4(smax, t0, T);
        den = state4(sden, t0, T);
    }

    for (var kb = 0u; kb < keys; kb = kb + KB) {
        var s: array<vec4<f32>, KB>;
        let kv4 = kb / 4u;
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            let qa = q4(base + d * T, t0, T) * p.scale;
            let wi = wbase + d * row_vec4s + kv4;
            for (var j = 0u; j < KB; j = j + 1u) {
                s[j] = s[j] + qa * kwin[wi + j / 4u][j % 4u];
            }
        }
        var bm = vec4<f32>(-3.0e38);
        for (var j = 0u; j < KB; j = j + 1u) {
            if (kb + j < keys) {
                bm = max(bm, s[j]);
            }
        }
        let nm = max(mx, bm);
        let cor = exp(mx - nm);
        den = den * cor;
        for (var j = 0u; j < KB; j = j + 1u) {
            s[j] = select(vec4<f32>(0.0), exp(s[j] - nm), kb + j < keys);
            den = den + s[j];
        }
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            let row = base + d * T;
            let wi = wbase + d * row_vec4s + kv4;
            var acc = out4(row, t0, T) * cor;
            for (var j = 0u; j < KB; j = j + 1u) {
                acc = acc + s[j] * vwin[wi + j / 4u][j % 4u];
            }
            store4(row, t0, T, acc);
        }
        mx = nm;
    }

    if (p.last != 0u) {
        let inv = 1.0 / den;
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            let row = base + d * T;
            store4(row, t0, T, out4(row, t0, T) * inv);
        }
    } else {
        store_state4(smax, t0, T, mx);
        store_state4(sden, t0, T, den);
    }
}
