// attention_tiled: multi-head softmax(q k^T * scale) v over the tokens of a feature map, flash-attention style
// over shared-memory tiles, for GPUs (the GPU family's kernel; ops::attention::kernel_for picks it); with the
// keys split over several workgroups (flash-decoding), each writes its partial softmax state and
// attention_combine.wgsl merges them.
//
// Layouts (row-major; q, k, v, out of `act`, f32 or f16 by the device's precision, part f32; the arithmetic is
// f32), C = heads * head_dim, T = tokens (h * w), pair = n * heads + head:
//   q, k, v, out  [batch, C, T]: element (n, head, d, t) at (pair * head_dim + d) * T + t (as attention.wgsl);
//                 out is written only when key_splits = 1
//   part          key_splits > 1: [key_splits, pairs, head_dim, T] unnormalised sums (split s, pair pair0 + i
//                 at slot s * pairs + i), then [key_splits, pairs, T] x (running maximum, denominator)
//
// Grid: one workgroup of 64 invocations per (block of BQ = 8 consecutive query tokens, pair of the launch's
// pair0 .. pair0 + pairs, key split), in that order fastest first, over the flattened 2-D workgroup grid; split
// s takes keys [s * keys_per_split, (s + 1) * keys_per_split) of T. Invocation li serves query qi = li / 8 with
// its 8 neighbours g = li % 8 (so a query's invocations share a SIMD group on every GPU).
// Keys go in blocks of BK = 32. For each block:
//   1. scores: the workgroup stages q (8 queries x 32 dims, pre-scaled) and k (32 keys x 32 dims) in workgroup
//      memory, 32 dims at a time; invocation (qi, g) accumulates the scores of query qi with keys 4g .. 4g + 3
//      (one vec4: 4 FMAs per scalar and vec4 shared load). Reads along t, the contiguous axis: coalesced.
//   2. online softmax (Milakov & Gimelshein 2018): the 8 x 32 scores go through workgroup memory; each of a
//      query's 8 invocations reads the query's 32 scores, finds the block maximum, rescales its accumulators
//      and keeps the 32 probabilities in registers (the 8 compute the same running maximum and denominator:
//      8 x 32 exps per block against 8 x 32 x head_dim FMAs, and no second barrier).
//   3. weighted sum: v is staged 64 dims x 32 keys at a time (rows padded to 68 floats: vec4-aligned, and the
//      transposing stores hit 8 banks, not 1); invocation (qi, g) accumulates dims 8g .. 8g + 7 of each 64-dim
//      chunk, two vec4s per key.
// An invocation holds at most 256 output dims (8 vec4 accumulators); heads wider than 256 run the key loop
// once per 256 dims, recomputing the scores (documented cost: only such heads pay it). No T x T matrix exists:
// memory is O(C * T) whatever T is (plus the splits' partial sums, bounded by the host). Workgroup memory:
// 3,720 floats (14.5 KiB, under WebGPU's 16 KiB minimum).
// Invariants: out and part alias none of q, k, v; every count > 0; keys_per_split is a multiple of BK. Padding
// (queries past T, keys past the split, dims past head_dim) is staged as zeros and masked out of the softmax;
// every barrier is in workgroup-uniform control flow (loop bounds come from the uniforms; a workgroup past the
// last block returns before any barrier).

// Params: attention_tiled_params.inc.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
#bindings q:act k:act v:act out:act part

const BQ: u32 = 8u;
const BK: u32 = 32u;
const DC: u32 = 32u;
const VC: u32 = 64u;
const OD: u32 = 256u;
const SROW: u32 = 33u;
const VROW4: u32 = 17u;

// qs[d * BQ + qi], ks4[d * 8 + g] (keys 4g .. 4g + 3 of dim d), ss[qi * SROW + key], vs4[key * VROW4 + dim / 4].
var<workgroup> qs: array<f32, 256>;
var<workgroup> ks4: array<vec4<f32>, 256>;
var<workgroup> ss: array<f32, 264>;
var<workgroup> vs4: array<vec4<f32>, 544>;

#entry 64
    let T = p.tokens;
    let hd = p.head_dim;
    let b = block_of(flat_workgroup(wg, nwg), BQ);
    if (!b.valid) {
        return;
    }
    let t0 = b.t0;
    let base = b.base;
    let lp = b.lp;
    let split = b.split;
    let k_begin = b.k_begin;
    let k_end = b.k_end;
    let qi = li / 8u;
    let g = li % 8u;

    for (var o0 = 0u; o0 < hd; o0 = o0 + OD) {
        var acc: array<vec4<f32>, 8>;
        var m = -3.0e38;
        var l = 0.0;
        for (var kb = k_begin; kb < k_end; kb = kb + BK) {
            // 1. Scores of query qi with keys kb + 4g .. kb + 4g + 3.
            var s = vec4<f32>(0.0);
            for (var d0 = 0u; d0 < hd; d0 = d0 + DC) {
                workgroupBarrier();
                for (var i = 0u; i < 4u; i = i + 1u) {
                    let idx = li + 64u * i;
                    let d = d0 + idx / BQ;
                    let t = t0 + idx % BQ;
                    var x = 0.0;
                    if (d < hd && t < T) {
                        x = f32(q[base + d * T + t]) * p.scale;
                    }
                    qs[idx] = x;
                }
                for (var i = 0u; i < 4u; i = i + 1u) {
                    let idx = li + 64u * i;
                    let d = d0 + idx / 8u;
                    let t = kb + (idx % 8u) * 4u;
                    let row = base + d * T;
                    var x = vec4<f32>(0.0);
                    if (d < hd) {
                        for (var j = 0u; j < 4u; j = j + 1u) {
                            if (t + j < k_end) {
                                x[j] = f32(k[row + t + j]);
                            }
                        }
                    }
                    ks4[idx] = x;
                }
                workgroupBarrier();
                for (var d = 0u; d < DC; d = d + 1u) {
                    s = s + qs[d * BQ + qi] * ks4[d * 8u + g];
                }
            }
            // 2. Online softmax over the block's 32 scores of query qi.
            for (var j = 0u; j < 4u; j = j + 1u) {
                ss[qi * SROW + 4u * g + j] = s[j];
            }
            workgroupBarrier();
            let keys = min(BK, k_end - kb);
            var bm = m;
            for (var j = 0u; j < keys; j = j + 1u) {
                bm = max(bm, ss[qi * SROW + j]);
            }
            let alpha = exp(m - bm);
            m = bm;
            l = l * alpha;
            for (var i = 0u; i < 8u; i = i + 1u) {
                acc[i] = acc[i] * alpha;
            }
            var pr: array<f32, 32>;
            for (var j = 0u; j < BK; j = j + 1u) {
                var e = 0.0;
                if (j < keys) {
                    e = exp(ss[qi * SROW + j] - m);
                }
                pr[j] = e;
                l = l + e;
            }
            // 3. acc += p v over this O pass's dims, 64 at a time.
            for (var c = 0u; c < OD / VC; c = c + 1u) {
                let c0 = o0 + c * VC;
                if (c0 >= hd) {
                    break;
                }
                workgroupBarrier();
                for (var i = 0u; i < 32u; i = i + 1u) {
                    let idx = li + 64u * i;
                    let d = idx / BK;
                    let key = idx % BK;
                    var x = 0.0;
                    if (c0 + d < hd && kb + key < k_end) {
                        x = f32(v[base + (c0 + d) * T + kb + key]);
                    }
                    vs4[key * VROW4 + d / 4u][d % 4u] = x;
                }
                workgroupBarrier();
                var a0 = acc[2u * c];
                var a1 = acc[2u * c + 1u];
                for (var j = 0u; j < BK; j = j + 1u) {
                    a0 = a0 + pr[j] * vs4[j * VROW4 + 2u * g];
                    a1 = a1 + pr[j] * vs4[j * VROW4 + 2u * g + 1u];
                }
                acc[2u * c] = a0;
                acc[2u * c + 1u] = a1;
            }
        }
        let t = t0 + qi;
        if (t < T) {
            // One split: the normalised output. Several: this split's sums, maximum and denominator.
            let whole = p.key_splits == 1u;
            let slot = split * p.pairs + lp;
            var inv = 1.0;
            if (whole) {
                inv = 1.0 / l;
            } else if (o0 == 0u && g == 0u) {
                let ml = p.key_splits * p.pairs * hd * T + 2u * (slot * T + t);
                part[ml] = m;
                part[ml + 1u] = l;
            }
            for (var c = 0u; c < OD / VC; c = c + 1u) {
                for (var h = 0u; h < 2u; h = h + 1u) {
                    let a = acc[2u * c + h] * inv;
                    for (var j = 0u; j < 4u; j = j + 1u) {
                        let d = o0 + c * VC + 8u * g + 4u * h + j;
                        if (d < hd) {
                            if (whole) {
                                out[base + d * T + t] = act(a[j]);
                            } else {
                                part[(slot * hd + d) * T + t] = a[j];
                            }
                        }
                    }
                }
            }
        }
    }
}
