// attention_combine: merges the key splits of attention_tiled.wgsl (flash-decoding): for each query, the splits'
// running maxima m_s, denominators l_s and unnormalised sums a_s give
//   out = sum_s exp(m_s - M) a_s / sum_s exp(m_s - M) l_s,   M = max_s m_s,
// the softmax over all keys, as one workgroup over every key would have computed it.
//
// Layouts (row-major; part f32, out `act`), as attention_tiled.wgsl (same Params):
//   part  [key_splits, pairs, head_dim, T] sums, then [key_splits, pairs, T] x (m, l)
//   out   [batch, C, T]: pair pair0 + i, dim d, token t at ((pair0 + i) * head_dim + d) * T + t
//
// Grid: one invocation per (t, d, pair of the launch), t fastest (consecutive invocations read consecutive sums
// and write consecutive outputs), over the flattened 2-D grid.
// Invariants: the splits are merged in order 0, 1, ..., so a result does not depend on the batch or on how the
// pairs were grouped into launches; every split saw at least one key, so each l_s > 0 and M is finite.

// Params: attention_tiled_params.inc.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
#bindings part out:act

#entry 256
    let T = p.tokens;
    let hd = p.head_dim;
    let id = flat_index(wg, nwg, li, 256u);
    if (id >= p.pairs * hd * T) {
        return;
    }
    let t = id % T;
    let d = (id / T) % hd;
    let i = id / (T * hd);
    let ml = p.key_splits * p.pairs * hd * T;
    var big = -3.0e38;
    for (var s = 0u; s < p.key_splits; s = s + 1u) {
        big = max(big, part[ml + 2u * ((s * p.pairs + i) * T + t)]);
    }
    var num = 0.0;
    var den = 0.0;
    for (var s = 0u; s < p.key_splits; s = s + 1u) {
        let slot = s * p.pairs + i;
        let o = ml + 2u * (slot * T + t);
        let w = exp(part[o] - big);
        num = num + w * part[(slot * hd + d) * T + t];
        den = den + w * part[o + 1u];
    }
    out[((p.pair0 + i) * hd + d) * T + t] = act(num / den);
}
