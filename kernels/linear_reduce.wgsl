// linear_reduce: y = act(x) W^T + bias (+ residual) * out_scale, as linear.wgsl, for layers with few tokens (the
// time-embedding path: a handful of rows of 512 features) on GPUs: the 64 invocations of a workgroup split the
// input features and sum their partial dot products in workgroup memory, so a layer of 8 rows x 256 outputs runs
// as 256 workgroups of 64 invocations with 8 loads each, instead of 128 invocations with 512 dependent loads.
//
// Layouts: as linear.wgsl (the same Params; x, residual and y through strides, weight [n_out, k] row-major).
// act is SiLU when silu_input != 0, identity otherwise.
//
// Grid: one workgroup of 64 invocations per (b, block of MB = 8 tokens, output feature), output feature
// fastest, over the flattened 2-D workgroup grid. Invocation li accumulates input features li, li + 64, ... for
// the block's tokens (consecutive invocations read consecutive weights, and consecutive x where x_sk = 1);
// a tree over workgroup memory (8 x 64 floats) sums the 64 partials of each token; invocation i < 8 writes
// token m0 + i.
// Invariants: every count > 0; y does not alias x, weight, bias or residual; a workgroup past the last output
// returns before any barrier (the test is workgroup-uniform), and every barrier is in uniform control flow.

// Params and bindings: linear_params.inc.wgsl.

const MB: u32 = 8u;

var<workgroup> part: array<f32, 512>;

#entry 64
    let id = flat_workgroup(wg, nwg);
    let m_blocks = (p.m + MB - 1u) / MB;
    let n = id % p.n_out;
    let rest = id / p.n_out;
    let m0 = (rest % m_blocks) * MB;
    let b = rest / m_blocks;
    if (b >= p.batch) {
        return;
    }
    let rows = min(MB, p.m - m0);
    let xb = b * p.x_sb + m0 * p.x_sm;

    var acc: array<f32, MB>;
    for (var kk = li; kk < p.k; kk = kk + 64u) {
        let w = f32(weight[n * p.k + kk]);
        let xo = xb + kk * p.x_sk;
        // A constant trip count, so that compilers can unroll it and keep acc in registers.
        for (var i = 0u; i < MB; i = i + 1u) {
            if (i < rows) {
                var xv = f32(x[xo + i * p.x_sm]);
                if (p.silu_input != 0u) {
                    xv = silu(xv);
                }
                acc[i] = acc[i] + xv * w;
            }
        }
    }
    for (var i = 0u; i < MB; i = i + 1u) {
        part[i * 64u + li] = acc[i];
    }
    for (var s = 32u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (li < s) {
            for (var i = 0u; i < MB; i = i + 1u) {
                part[i * 64u + li] = part[i * 64u + li] + part[i * 64u + li + s];
            }
        }
    }
    workgroupBarrier();
    if (li < rows) {
        let o = b * p.y_sb + (m0 + li) * p.y_sm + n * p.y_sn;
        var v = part[li * 64u] + f32(bias[n]);
        if (p.has_residual != 0u) {
            v = v + f32(residual[o]);
        }
        y[o] = act(v * p.out_scale);
    }
}
