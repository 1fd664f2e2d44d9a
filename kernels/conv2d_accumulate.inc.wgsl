// conv2d_accumulate.inc.wgsl: the convolution loop shared by conv2d.wgsl's two variants, included after
// common.wgsl. The including kernel declares `x` (the input, [batch, cin, h, w]) and `weight` ([cout, cin, kh,
// kw]) as read-only storage of `act` (read as f32), and carries a ConvShape (conv2d_shape.inc.wgsl) in its Params.
//
// One invocation computes a 4 x 4 register block: 4 output channels x 4 consecutive output columns, numbered
// (n, channel block, row, column block), column block fastest. Registers only, no barriers (what lavapipe
// rewards). Input taps outside the image read as zero, so padding may differ per side:
// pad_top/pad_left shift the window, and ho/wo (computed by the host from all four pads) decide how far it runs.

// The block of invocation `id`: (n, first output channel, output row, first output column). n >= batch: none.
fn conv_block(c: ConvShape, id: u32) -> vec4<u32> {
    let col_blocks = (c.wo + 3u) / 4u;
    let co_blocks = (c.cout + 3u) / 4u;
    let cb = id % col_blocks;
    var rest = id / col_blocks;
    let oy = rest % c.ho;
    rest = rest / c.ho;
    let cob = rest % co_blocks;
    let n = rest / co_blocks;
    return vec4<u32>(n, cob * 4u, oy, cb * 4u);
}

// acc[k][j] = sum over ci, ky, kx of weight[co0 + k, ci, ky, kx] * x[n, ci, oy * stride + ky - pad_top,
// (ox0 + j) * stride + kx - pad_left], zero outside the image. Rows past cout are computed on a clamped channel
// and must not be stored.
fn conv_accumulate(c: ConvShape, n: u32, co0: u32, oy: u32, ox0: u32) -> array<vec4<f32>, 4> {
    let taps = c.kh * c.kw;
    let wstride = c.cin * taps;
    var wrow: array<u32, 4>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        wrow[k] = min(co0 + k, c.cout - 1u) * wstride;
    }
    var acc: array<vec4<f32>, 4>;
    // The stored input plane (smaller than h x w when the input is read upsampled).
    let sw = c.w >> c.up;
    let plane = (c.h >> c.up) * sw;
    let xbase = n * c.cin * plane;
    for (var ky = 0u; ky < c.kh; ky = ky + 1u) {
        let iy = i32(oy * c.stride + ky) - i32(c.pad_top);
        if (iy < 0 || iy >= i32(c.h)) {
            continue;
        }
        for (var kx = 0u; kx < c.kw; kx = kx + 1u) {
            // The four input columns this tap reads, and which of them are inside the image.
            var col: vec4<i32>;
            var inside: vec4<f32>;
            for (var j = 0u; j < 4u; j = j + 1u) {
                let ix = i32((ox0 + j) * c.stride + kx) - i32(c.pad_left);
                let ok = ix >= 0 && ix < i32(c.w);
                col[j] = select(0, ix, ok) >> c.up;
                inside[j] = select(0.0, 1.0, ok);
            }
            let tap = ky * c.kw + kx;
            var xoff = xbase + (u32(iy) >> c.up) * sw;
            for (var ci = 0u; ci < c.cin; ci = ci + 1u) {
                let xv = vec4<f32>(
                    f32(x[xoff + u32(col.x)]),
                    f32(x[xoff + u32(col.y)]),
                    f32(x[xoff + u32(col.z)]),
                    f32(x[xoff + u32(col.w)]),
                ) * inside;
                let wi = ci * taps + tap;
                acc[0] = acc[0] + f32(weight[wrow[0] + wi]) * xv;
                acc[1] = acc[1] + f32(weight[wrow[1] + wi]) * xv;
                acc[2] = acc[2] + f32(weight[wrow[2] + wi]) * xv;
                acc[3] = acc[3] + f32(weight[wrow[3] + wi]) * xv;
                xoff = xoff + plane;
            }
        }
    }
    return acc;
}
