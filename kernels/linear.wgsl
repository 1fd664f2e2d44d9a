// linear: y = act(x) W^T + bias (+ residual) * out_scale, over a batch of token matrices with arbitrary strides.
//
// Layouts (`act` elements, f32 or f16 by the device's precision, read as f32; element offsets given by strides so NCHW feature maps are read as tokens without a transpose):
//   x        element (b, m, k) at b * x_sb + m * x_sm + k * x_sk      (m: token, k: input feature)
//   weight   [n_out, k] row-major (PyTorch's Linear layout)
//   bias     [n_out]
//   residual element (b, m, j) at b * y_sb + m * y_sm + j * y_sn       read only when has_residual != 0
//   y        element (b, m, j) at b * y_sb + m * y_sm + j * y_sn
// act is SiLU when silu_input != 0 (the time-embedding path), identity otherwise.
// For an NCHW map [N, C, HW] as tokens: x_sb = C*HW, x_sm = 1, x_sk = HW; the same for y with the output C.
//
// Grid: one invocation computes a 4 x 4 register block (4 tokens x 4 output features), numbered
// (b, token block, feature block), feature block fastest, over the flattened 2-D workgroup grid.
// Invariants: every count > 0; y does not alias x, weight, bias or residual.

// Params and bindings: linear_params.inc.wgsl.

#entry 64 id
    let n_blocks = (p.n_out + 3u) / 4u;
    let m_blocks = (p.m + 3u) / 4u;
    let nb = id % n_blocks;
    let rest = id / n_blocks;
    let mb = rest % m_blocks;
    let b = rest / m_blocks;
    if (b >= p.batch) {
        return;
    }
    let m0 = mb * 4u;
    let n0 = nb * 4u;

    // Clamped rows keep every load in bounds; the results of clamped rows are never written.
    var xrow: array<u32, 4>;
    var wrow: array<u32, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        xrow[i] = b * p.x_sb + min(m0 + i, p.m - 1u) * p.x_sm;
        wrow[i] = min(n0 + i, p.n_out - 1u) * p.k;
    }

    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < p.k; kk = kk + 1u) {
        let w4 = vec4<f32>(
            f32(weight[wrow[0] + kk]),
            f32(weight[wrow[1] + kk]),
            f32(weight[wrow[2] + kk]),
            f32(weight[wrow[3] + kk]),
        );
        let xo = kk * p.x_sk;
        for (var i = 0u; i < 4u; i = i + 1u) {
            var xv = f32(x[xrow[i] + xo]);
            if (p.silu_input != 0u) {
                xv = silu(xv);
            }
            acc[i] = acc[i] + xv * w4;
        }
    }

    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + i;
        if (m >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + j;
            if (n >= p.n_out) {
                break;
            }
            let o = b * p.y_sb + m * p.y_sm + n * p.y_sn;
            var v = acc[i][j] + f32(bias[n]);
            if (p.has_residual != 0u) {
                v = v + f32(residual[o]);
            }
            y[o] = act(v * p.out_scale);
        }
    }
}
