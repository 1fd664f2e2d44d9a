// conv2d_winograd_input: the input transform of the Winograd convolution F(4x4, 3x3) (ops::winograd): each
// 6 x 6 tile d of the (zero-padded) input becomes V = B^T d B.
//
// Layouts (row-major f32):
//   x  [batch, cin, h, w], stored at (h >> up) x (w >> up) when the convolution reads it upsampled
//      (conv2d_shape.inc.wgsl)
//   v  [36, cin, tp]: v[(xi * cin + ci) * tp + t] = (B^T d B)[xi / 6][xi % 6] for input channel ci of the
//      batch's tile t0 + t (0 <= t < count; tiles as in conv2d_winograd.inc.wgsl), whose input tile starts at
//      (4 ty - pad_top, 4 tx - pad_left).
//
// Grid: one invocation per (ci, t), t fastest (neighbouring lanes write neighbouring floats of v), over the
// flattened 2-D grid; those past the end return.
// Invariants: 3x3 kernel, stride 1 (host-checked); count <= tp, and columns t >= count are not written; input values outside the image read as zero. B^T is Toom-Cook's at the points 0, -1, 1, 1/2, -2
// and infinity (derived independently in reference::winograd); every entry is exact in binary.

#bindings x v

// B^T times six values (a column of d, then a row of B^T d).
fn bt(d: array<f32, 6>) -> array<f32, 6> {
    return array<f32, 6>(
        d[0] - 1.5 * d[1] - 2.0 * d[2] + 1.5 * d[3] + d[4],
        d[1] - 2.5 * d[2] + 0.5 * d[3] + d[4],
        -d[1] + 0.5 * d[2] + 2.5 * d[3] + d[4],
        -2.0 * d[1] - d[2] + 2.0 * d[3] + d[4],
        0.5 * d[1] - d[2] - 0.5 * d[3] + d[4],
        d[1] - 1.5 * d[2] - 2.0 * d[3] + 1.5 * d[4] + d[5],
    );
}

#entry 64
    let c = p.shape;
    let f = flat_index(wg, nwg, li, 64u);
    if (f >= p.count * c.cin) {
        return;
    }
    let t = f % p.count;
    let ci = f / p.count;
    let tile = tile_at(t);
    let sw = c.w >> c.up;
    let base = (tile.n * c.cin + ci) * (c.h >> c.up) * sw;
    let y0 = i32(tile.ty * 4u) - i32(c.pad_top);
    let x0 = i32(tile.tx * 4u) - i32(c.pad_left);

    // (B^T d)'s columns: bd[col][i] = (B^T d)[i][col].
    var bd: array<array<f32, 6>, 6>;
    for (var col = 0u; col < 6u; col = col + 1u) {
        let ix = x0 + i32(col);
        let col_in = ix >= 0 && ix < i32(c.w);
        let sx = u32(clamp(ix, 0, i32(c.w) - 1)) >> c.up;
        var d: array<f32, 6>;
        for (var r = 0u; r < 6u; r = r + 1u) {
            let iy = y0 + i32(r);
            let sy = u32(clamp(iy, 0, i32(c.h) - 1)) >> c.up;
            let value = x[base + sy * sw + sx];
            d[r] = select(0.0, value, col_in && iy >= 0 && iy < i32(c.h));
        }
        bd[col] = bt(d);
    }
    let stride = c.cin * p.tp;
    var o = ci * p.tp + t;
    for (var i = 0u; i < 6u; i = i + 1u) {
        let row = bt(array<f32, 6>(bd[0][i], bd[1][i], bd[2][i], bd[3][i], bd[4][i], bd[5][i]));
        for (var j = 0u; j < 6u; j = j + 1u) {
            v[o] = row[j];
            o = o + stride;
        }
    }
}
