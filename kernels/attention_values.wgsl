// attention_values: the second product of the CPU family's attention, out[pair, c, i] = norm[pair, i] *
// sum_j v[pair, c, j] e[pair, j, i], with the exponentials e (attention_softmax.wgsl) and the values read from
// 64 KiB uniform windows, the values' bound straight onto the v activation (no copies).
//
// Layouts (row-major f32), C = heads * D, pair = image * heads + head:
//   ew0..ew3  windows of the scores scratch [group pairs, T (key j), T (query i)], bound at rows of T floats:
//             either the launch's pairs side by side in ew0 (pairs * T * T <= 16384), or one pair's keys
//             j0 + k * rows .. in ew_k (windows past `count` keys hold nothing read)
//   vw        one window of v [batch, C, T]: the launch's pairs side by side (pairs * D * T <= 16384), or one
//             pair's channels c0 .. c0 + 8 * blocks (rows of T floats, whole rows)
//   norm      [group pairs, T]
//   out       [batch, C, T]
//
// Grid: one launch per group of whole pairs, or per (pair, value window, chunk of 4 * rows keys), a pair's
// chunks in order. Workgroup g takes pair g / (blocks * qgroups), channel block (g / qgroups) % blocks of 8
// channels, and through its 8 invocations 8 consecutive blocks of 8 queries (qgroups = ceil(T / 64)). An
// invocation keeps 8 channels x 8 queries in 16 vec4 accumulators (conv2d_block.inc.wgsl) and takes keys 4 at
// a time: one vec4 of each of its 8 value rows (workgroup-uniform addresses, read once for all lanes), then
// per key two vec4s of its row of e and a rank-1 update. (The value reads made per key and component, or all 4
// keys' reads of e made before the 4 updates, are much slower on lavapipe: keep the reads where they are.)
// Invariants: T % 8 == 0; rows % 4 == 0 and rows * T <= 16384; count % 4 == 0 and count <= 4 * rows, count ==
// T with all pairs in ew0 when pairs > 1; channel rows past D (a last block of fewer than 8) are read from
// wherever the window holds and never stored.

#bindings ew0..4 vw norm out

#entry 8
    let T = p.tokens;
    let block = block_of(wg, nwg, li);
    if (!block.live) {
        return;
    }
    let local = block.local;
    let b = block.rb;
    let i0 = block.i0;

    var acc: Acc;
    let step = T / 4u;
    // vec4 index of (channel row 8 b, key j0) in the value window, and of (key row 0, query i0) in ew0.
    var vi = (local * p.head_dim * T + b * 8u * T + p.j0) / 4u;
    let ebase = (local * T * T + i0) / 4u;
    var ei = ebase;
    var j = 0u;
    // One loop per scores window (WGSL cannot index bindings), all alike: window k holds keys
    // [k rows, (k + 1) rows) of the launch; the windows past `count` run no iterations.
#for w in 0..4
    ei = ebase;
    for (; j < min({w+1}u * p.rows, p.count); j = j + 4u) {
        let v0 = vw[vi];
#for q in 1..8
        let v{q} = vw[vi + {q}u * step];
#end
        tap(&acc, vec4<f32>(v0.x, v1.x, v2.x, v3.x), vec4<f32>(v4.x, v5.x, v6.x, v7.x),
            ew{w}[ei], ew{w}[ei + 1u]);
        tap(&acc, vec4<f32>(v0.y, v1.y, v2.y, v3.y), vec4<f32>(v4.y, v5.y, v6.y, v7.y),
            ew{w}[ei + step], ew{w}[ei + step + 1u]);
        tap(&acc, vec4<f32>(v0.z, v1.z, v2.z, v3.z), vec4<f32>(v4.z, v5.z, v6.z, v7.z),
            ew{w}[ei + 2u * step], ew{w}[ei + 2u * step + 1u]);
        tap(&acc, vec4<f32>(v0.w, v1.w, v2.w, v3.w), vec4<f32>(v4.w, v5.w, v6.w, v7.w),
            ew{w}[ei + 3u * step], ew{w}[ei + 3u * step + 1u]);
        vi = vi + 1u;
        ei = ei + 4u * step;
    }
#end

    let res = rows(acc);
    let nbase = (p.pair0 + local) * T + i0;
    for (var k = 0u; k < 8u; k = k + 1u) {
        let c = p.c0 + b * 8u + k;
        if (c >= p.head_dim) {
            break;
        }
        let o = ((p.out_pair0 + local) * p.head_dim + c) * T + i0;
        for (var col = 0u; col < 8u; col = col + 1u) {
            var v = res[k][col / 4u][col % 4u] * norm[nbase + col];
            if (p.first == 0u) {
                v = v + out[o + col];
            }
            out[o + col] = v;
        }
    }
}
