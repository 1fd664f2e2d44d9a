// attention_scores: the first product of the CPU family's attention, the scaled scores of every (key, query)
// pair of a head, transposed: s[pair, j, i] = scale * sum_d k[pair, d, j] q[pair, d, i], with both operands
// read from 64 KiB uniform windows bound straight onto the q and k activations (no copies).
//
// Layouts (row-major f32), C = heads * D, pair = image * heads + head:
//   qw0..qw3  windows of q [batch, C, T], bound at rows of T floats: either the launch's pairs side by side
//             in qw0 (a pair's D rows fit a window: pairs * D * T <= 16384), or one pair's channels
//             c0 + k * rows .. in qw_k (windows past `count` channels hold nothing read)
//   kw0..kw3  the same windows of k
//   scores    [group pairs, T (key j), T (query i)] scratch: row j of pair l holds key j's score against
//             every query, so that the softmax runs down columns and attention_values reads rows
//
// Grid: one launch per (group of whole pairs) or per (pair, chunk of 4 * rows channels), the chunks in order.
// Workgroup g takes pair g / (blocks * qgroups), key block (g / qgroups) % blocks of 8 keys, and through its
// 8 invocations (one lavapipe SIMD vector) 8 consecutive blocks of 8 queries (qgroups = ceil(T / 64)). An
// invocation keeps 8 keys x 8 queries in 16 vec4 accumulators (conv2d_block.inc.wgsl): the keys' values are
// at workgroup-uniform addresses of a uniform buffer, which lavapipe reads once for all lanes, as
// conv2d_1x1.wgsl reads its weights.
// Invariants: T % 8 == 0; rows * T <= 16384; count <= 4 * rows, and count == D with all pairs in qw0 when
// pairs > 1; blocks == T / 8.

#bindings qw0..4 kw0..4 scores:vec4

#entry 8
    let T = p.tokens;
    let block = block_of(wg, nwg, li);
    if (!block.live) {
        return;
    }
    let local = block.local;
    let kb = block.rb;
    let i0 = block.i0;

    // One loop per window pair (WGSL cannot index bindings), all alike: window k holds channels
    // [k rows, (k + 1) rows) of the launch; the windows past `count` run no iterations.
    var acc: Acc;
    let step = T / 4u;
    let qbase = (local * p.head_dim * T + i0) / 4u;
    let kbase = (local * p.head_dim * T) / 4u + kb * 2u;
    var qi = qbase;
    var ki = kbase;
    var c = 0u;
#for w in 0..4
    qi = qbase;
    ki = kbase;
    for (; c < min({w+1}u * p.rows, p.count); c = c + 1u) {
        tap(&acc, kw{w}[ki], kw{w}[ki + 1u], qw{w}[qi], qw{w}[qi + 1u]);
        qi = qi + step;
        ki = ki + step;
    }
#end

    let res = rows(acc);
    for (var k = 0u; k < 8u; k = k + 1u) {
        let o = ((p.pair0 + local) * T + kb * 8u + k) * step + i0 / 4u;
        for (var h = 0u; h < 2u; h = h + 1u) {
            var v = res[k][h] * p.scale;
            if (p.first == 0u) {
                v = v + scores[o + h];
            }
            scores[o + h] = v;
        }
    }
}
