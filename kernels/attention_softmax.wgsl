// attention_softmax: the softmax of attention_scores.wgsl's scores over the keys, in place, normalisation
// deferred: e[pair, j, i] = exp(s[pair, j, i] - max_j s[pair, j, i]) and norm[pair, i] = 1 / sum_j e[pair, j, i],
// which attention_values.wgsl applies to its sums.
//
// Layouts (row-major f32):
//   scores  [pairs, T (key j), T (query i)] in, e out (the scores scratch)
//   norm    [pairs, T]
//
// Grid: one launch per group of pairs; one invocation per 4 consecutive queries of a pair, which walks down
// their 4 columns twice (the maximum, then the exponentials and their sum), over the flattened 2-D grid.
// Workgroups of 8: lavapipe runs one as one SIMD vector, and its 8 lanes read 32 consecutive floats per row.
// Invariants: T % 4 == 0; every key is a real key (no padding), so every sum is at least 1.

#bindings scores:vec4 norm:vec4

#entry 8
    let quads = p.tokens / 4u;
    let t = flat_index(wg, nwg, li, 8u);
    let pair = t / quads;
    if (pair >= p.pairs) {
        return;
    }
    let base = pair * p.tokens * quads + t % quads;
    var mx = vec4<f32>(-3.0e38);
    for (var j = 0u; j < p.tokens; j = j + 1u) {
        mx = max(mx, scores[base + j * quads]);
    }
    var sum = vec4<f32>(0.0);
    for (var j = 0u; j < p.tokens; j = j + 1u) {
        let e = exp(scores[base + j * quads] - mx);
        scores[base + j * quads] = e;
        sum = sum + e;
    }
    norm[t] = 1.0 / sum;
}
