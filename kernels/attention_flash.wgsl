// attention_flash: multi-head softmax(q k^T * scale) v over the tokens of a feature map, flash attention (Dao
// et al. 2022) with a workgroup per 64 queries, for GPUs whose workgroups hold 28.5 KiB of workgroup memory (the
// GPU family's kernel there; attention_tiled.wgsl elsewhere); with the keys split over several workgroups where
// an image has few query blocks, each writing its partial softmax state for attention_combine.wgsl to merge.
//
// Layouts (row-major; q, k, v, out of `act`, f32 or f16 by the device's precision, part f32; the arithmetic is
// f32), C = heads * head_dim, T = tokens (h * w), pair = n * heads + head, as attention_tiled.wgsl (the same
// Params and partial state):
//   q, k, v, out  [batch, C, T]: element (n, head, d, t) at (pair * head_dim + d) * T + t; out is written only
//                 when key_splits = 1
//   part          key_splits > 1: [key_splits, pairs, head_dim, T] unnormalised sums (split s, pair pair0 + i
//                 at slot s * pairs + i), then [key_splits, pairs, T] x (running maximum, denominator)
//
// Grid: one workgroup of 256 invocations per (block of BQ = 64 consecutive query tokens, pair of the launch's
// pair0 .. pair0 + pairs, key split), in that order fastest first, over the flattened 2-D workgroup grid; split
// s takes keys [s * keys_per_split, (s + 1) * keys_per_split) of T, in blocks of BK = 64. For each block:
//   1. scores, a 64 x 64 x head_dim product: the workgroup stages the queries (pre-scaled) and the keys 16 dims
//      at a time (16 x 64 values each, read along t: coalesced) and invocation (sq, sk) = (li / 16, li % 16)
//      accumulates the 4 x 4 scores of queries 4 sq .. 4 sq + 3 with keys 4 sk .. 4 sk + 3: 16 FMAs per two
//      vec4 loads of workgroup memory.
//   2. online softmax (Milakov & Gimelshein 2018): each invocation writes its 4 queries' maxima over its 4 keys;
//      invocation li < 64 reduces query li's partial maxima, keeps its running maximum m and denominator l, and
//      publishes (m, alpha = exp(m_old - m)); every invocation turns its scores into probabilities exp(s - m),
//      stores them key-major and writes their partial row sums, which invocation li < 64 adds to l. One exp per
//      score.
//   3. weighted sum, 64 queries x head_dim x 64 keys: invocation (oq, od) = (li % 16, li / 16) rescales its
//      accumulators by its queries' alpha, then, for each 64-dim chunk of the pass, stages v 16 keys x 64 dims
//      at a time and accumulates queries 4 oq .. 4 oq + 3 x dims 4 od .. 4 od + 3: 16 FMAs per two vec4 loads.
// An invocation holds 4 queries x 16 output dims (OD = 256 dims a pass, 64 accumulators); heads wider than 256
// run the key loop once per 256 dims, recomputing the scores, as attention_tiled.wgsl does. The row reductions
// of step 2 go through workgroup memory, 16 values per query and block; with SUBGROUPS
// (`attention_flash_subgroups`, on devices opened with subgroups) the lanes of a subgroup first combine theirs
// with subgroupShuffleXor, leaving 16 / min(16, subgroup size) per query. No T x T matrix exists: memory is O(C * T) whatever T is. Workgroup memory: 1,536 vec4s
// (query and key tiles, aliased by the value tile, and the 64 x 64 probabilities), 1,024 floats of row
// reductions and 64 vec2s of row statistics: 29,184 bytes (16,896 at f16 precision, whose vec4s are f16).
// Invariants: out and part alias none of q, k, v; every count > 0; keys_per_split is a multiple of BK. Padding
// (queries past T, keys past the split, dims past head_dim) is staged as zeros and masked out of the softmax;
// every barrier is in workgroup-uniform control flow (loop bounds come from the uniforms and the workgroup
// index; a workgroup past the last block returns before any barrier; the branches on li hold no barrier).

// Params: attention_tiled_params.inc.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
#bindings q:act k:act v:act out:act part

const BQ: u32 = 64u;
const BK: u32 = 64u;
const DC: u32 = 16u;
const KC: u32 = 16u;
const OD: u32 = 256u;
// Regions of `pool`, in vec4s: QS[d * 16 + q / 4] and KS[d * 16 + key / 4] (16 dims x 64) during the scores,
// VS[key * 16 + d / 4] (16 keys x 64 dims) during the weighted sum, over the same bytes as QS; PS[key * 16 +
// q / 4], the block's probabilities.
const QS: u32 = 0u;
const KS: u32 = 256u;
const VS: u32 = 0u;
const PS: u32 = 512u;
// Elem4 is pool's element: f32, or at f16 precision f16 (half the workgroup memory and its traffic), where each
// 16-deep chunk of the two products (dims of the scores, keys of the weighted sum) sums in f16 and is then added
// to f32 accumulators, as conv2d_tiled.wgsl's 4 x 4 kernel does.
#if F16
alias Elem = f16;
alias Elem4 = vec4<f16>;
#else
alias Elem = f32;
alias Elem4 = vec4<f32>;
#end
var<workgroup> pool: array<Elem4, 1536>;
// red[q * 16 + g]: invocation column g's maximum (then sum) for query q of the block.
var<workgroup> red: array<f32, 1024>;
// stat[q]: (running maximum, this block's rescale), then at the end (running maximum, denominator).
var<workgroup> stat: array<vec2<f32>, 64>;

#if SUBGROUPS
// Reduces x over the w consecutive lanes of its part of a subgroup (w a power of two dividing the subgroup):
// every lane of the part ends with the part's maximum (or sum).
fn part_max(x: f32, w: u32) -> f32 {
    var y = x;
    for (var m = 1u; m < w; m = m * 2u) {
        y = max(y, subgroupShuffleXor(y, m));
    }
    return y;
}

fn part_sum(x: f32, w: u32) -> f32 {
    var y = x;
    for (var m = 1u; m < w; m = m * 2u) {
        y = y + subgroupShuffleXor(y, m);
    }
    return y;
}

#entry 256 subgroups
#else
#entry 256
#end
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
#if SUBGROUPS
    // With full subgroups of at least 4 lanes (a workgroup-uniform test), the scores' invocation is numbered
    // vi = sg * sgsize + lane, so that the 16 invocations of a query group are consecutive lanes: w = min(16,
    // sgsize) of them share a subgroup, which reduces their row maxima and sums with subgroupShuffleXor, and
    // 16 / w partial values per query go through workgroup memory (one where a subgroup holds all 16).
    // Otherwise vi = li and w = 1, as without subgroups.
    let full = nsg * sgsize == 256u && sgsize >= 4u;
    let vi = select(li, sg * sgsize + lane, full);
    let w = select(1u, min(16u, sgsize), full);
#else
    let vi = li;
    let w = 1u;
#end
    let parts = 16u / w;
    let sq = vi / 16u;
    let sk = vi % 16u;
    let oq = li % 16u;
    let od = li / 16u;
    for (var o0 = 0u; o0 < hd; o0 = o0 + OD) {
        // acc{c}[i]: query 4 oq + i, dims o0 + 64 c + 4 od .. + 3.
#for c in 0..4
        var acc{c}: array<vec4<f32>, 4>;
#end
        // Invocation li < 64: query t0 + li's running maximum and denominator.
        var m = -3.0e38;
        var l = 0.0;
        for (var kb = k_begin; kb < k_end; kb = kb + BK) {
            let keys = min(BK, k_end - kb);
            // 1. s[i][j]: query 4 sq + i with key kb + 4 sk + j.
            var s: array<vec4<f32>, 4>;
            for (var d0 = 0u; d0 < hd; d0 = d0 + DC) {
                workgroupBarrier();
                for (var r = 0u; r < 4u; r = r + 1u) {
                    let idx = li + 256u * r;
                    let d = idx / 64u;
                    let t = idx % 64u;
                    var x = 0.0;
                    if (d0 + d < hd && t0 + t < T) {
                        x = f32(q[base + (d0 + d) * T + t0 + t]) * p.scale;
                    }
                    pool[QS + d * 16u + t / 4u][t % 4u] = Elem(x);
                    var y = 0.0;
                    if (d0 + d < hd && t < keys) {
                        y = f32(k[base + (d0 + d) * T + kb + t]);
                    }
                    pool[KS + d * 16u + t / 4u][t % 4u] = Elem(y);
                }
                workgroupBarrier();
#if F16
                var s16: array<Elem4, 4>;
#end
                for (var d = 0u; d < DC; d = d + 1u) {
                    let a = pool[QS + d * 16u + sq];
                    let b = pool[KS + d * 16u + sk];
#if F16
                    s16[0] = s16[0] + a.x * b;
                    s16[1] = s16[1] + a.y * b;
                    s16[2] = s16[2] + a.z * b;
                    s16[3] = s16[3] + a.w * b;
#else
                    s[0] = s[0] + a.x * b;
                    s[1] = s[1] + a.y * b;
                    s[2] = s[2] + a.z * b;
                    s[3] = s[3] + a.w * b;
#end
                }
#if F16
#for i in 0..4
                s[{i}] = s[{i}] + vec4<f32>(s16[{i}]);
#end
#end
            }
            // 2. The block's maximum per query, over the keys inside the split.
#for i in 0..4
            var mx{i} = -3.0e38;
            for (var j = 0u; j < 4u; j = j + 1u) {
                if (4u * sk + j < keys) {
                    mx{i} = max(mx{i}, s[{i}][j]);
                }
            }
#if SUBGROUPS
            mx{i} = part_max(mx{i}, w);
#end
            if (sk % w == 0u) {
                red[(4u * sq + {i}u) * 16u + sk / w] = mx{i};
            }
#end
            workgroupBarrier();
            if (li < 64u) {
                var bm = m;
                for (var g = 0u; g < parts; g = g + 1u) {
                    bm = max(bm, red[li * 16u + g]);
                }
                stat[li] = vec2<f32>(bm, exp(m - bm));
                m = bm;
            }
            workgroupBarrier();
            // Probabilities, key-major: PS[key * 16 + sq] holds the 4 queries of this invocation.
            var e: array<vec4<f32>, 4>;
#for i in 0..4
            let mq{i} = stat[4u * sq + {i}u].x;
            for (var j = 0u; j < 4u; j = j + 1u) {
                if (4u * sk + j < keys) {
                    e[{i}][j] = exp(s[{i}][j] - mq{i});
                }
            }
            var rs{i} = (e[{i}].x + e[{i}].y) + (e[{i}].z + e[{i}].w);
#if SUBGROUPS
            rs{i} = part_sum(rs{i}, w);
#end
            if (sk % w == 0u) {
                red[(4u * sq + {i}u) * 16u + sk / w] = rs{i};
            }
#end
            pool[PS + (4u * sk) * 16u + sq] = Elem4(vec4<f32>(e[0].x, e[1].x, e[2].x, e[3].x));
            pool[PS + (4u * sk + 1u) * 16u + sq] = Elem4(vec4<f32>(e[0].y, e[1].y, e[2].y, e[3].y));
            pool[PS + (4u * sk + 2u) * 16u + sq] = Elem4(vec4<f32>(e[0].z, e[1].z, e[2].z, e[3].z));
            pool[PS + (4u * sk + 3u) * 16u + sq] = Elem4(vec4<f32>(e[0].w, e[1].w, e[2].w, e[3].w));
            workgroupBarrier();
            if (li < 64u) {
                var rs = 0.0;
                for (var g = 0u; g < parts; g = g + 1u) {
                    rs = rs + red[li * 16u + g];
                }
                l = l * stat[li].y + rs;
            }
            // 3. acc = alpha acc + p v, over this pass's dims.
#for i in 0..4
            let alpha{i} = stat[4u * oq + {i}u].y;
#end
#for c in 0..4
            if (o0 + 64u * {c}u < hd) {
#for i in 0..4
                acc{c}[{i}] = acc{c}[{i}] * alpha{i};
#end
                for (var kc = 0u; kc < BK; kc = kc + KC) {
                    workgroupBarrier();
                    for (var r = 0u; r < 4u; r = r + 1u) {
                        let idx = li + 256u * r;
                        let key = idx % KC;
                        let d = idx / KC;
                        let dim = o0 + 64u * {c}u + d;
                        var x = 0.0;
                        if (dim < hd && kc + key < keys) {
                            x = f32(v[base + dim * T + kb + kc + key]);
                        }
                        pool[VS + key * 16u + d / 4u][d % 4u] = Elem(x);
                    }
                    workgroupBarrier();
#if F16
                    var o16: array<Elem4, 4>;
#end
                    for (var key = 0u; key < KC; key = key + 1u) {
                        let pv = pool[PS + (kc + key) * 16u + oq];
                        let vv = pool[VS + key * 16u + od];
#if F16
                        o16[0] = o16[0] + pv.x * vv;
                        o16[1] = o16[1] + pv.y * vv;
                        o16[2] = o16[2] + pv.z * vv;
                        o16[3] = o16[3] + pv.w * vv;
#else
                        acc{c}[0] = acc{c}[0] + pv.x * vv;
                        acc{c}[1] = acc{c}[1] + pv.y * vv;
                        acc{c}[2] = acc{c}[2] + pv.z * vv;
                        acc{c}[3] = acc{c}[3] + pv.w * vv;
#end
                    }
#if F16
#for i in 0..4
                    acc{c}[{i}] = acc{c}[{i}] + vec4<f32>(o16[{i}]);
#end
#end
                }
            }
#end
        }
        // Every query's final maximum and denominator, for the invocations that store its outputs.
        workgroupBarrier();
        if (li < 64u) {
            stat[li] = vec2<f32>(m, l);
        }
        workgroupBarrier();
        let whole = p.key_splits == 1u;
        let slot = split * p.pairs + lp;
#for i in 0..4
        let tq{i} = t0 + 4u * oq + {i}u;
        if (tq{i} < T) {
            let ml = stat[4u * oq + {i}u];
            var inv = 1.0;
            if (whole) {
                inv = 1.0 / ml.y;
            } else if (o0 == 0u && od == 0u) {
                let at = p.key_splits * p.pairs * hd * T + 2u * (slot * T + tq{i});
                part[at] = ml.x;
                part[at + 1u] = ml.y;
            }
#for c in 0..4
            for (var j = 0u; j < 4u; j = j + 1u) {
                let d = o0 + 64u * {c}u + 4u * od + j;
                if (d < hd) {
                    let a = acc{c}[{i}][j] * inv;
                    if (whole) {
                        out[base + d * T + tq{i}] = act(a);
                    } else {
                        part[(slot * hd + d) * T + tq{i}] = a;
                    }
                }
            }
#end
        }
#end
    }
}
