// conv2d_winograd_output: the output transform of the Winograd convolution F(4x4, 3x3) (ops::winograd) with
// the convolution's epilogue: out = (A^T M A + bias + chan + residual) * out_scale, per 4 x 4 output tile.
//
// Layouts (row-major f32):
//   m        [36, cout, tp]: m[(xi * cout + co) * tp + t], the products summed over input channels, for the
//            batch's tile t0 + t (0 <= t < count; tiles as in conv2d_winograd.inc.wgsl)
//   bias     [cout]
//   residual [batch, cout, ho, wo]   read only when has_residual != 0
//   out      [batch, cout, ho, wo]   only the pixels of tiles t0 .. t0 + count - 1 are written
//   chan     [batch, chan_stride]    read only when has_channel != 0: image n's per-channel offset at
//                                   chan[n * chan_stride + chan_offset + co]
//
// Grid: one invocation per (co, t), t fastest, over the flattened 2-D grid; those past the end return.
// Invariants: pixels of a tile past ho or wo are computed and not stored. A^T is Toom-Cook's at the points 0,
// -1, 1, 1/2, -2 and infinity (reference::winograd); every entry is exact in binary.

#bindings m bias residual out chan

// A^T times six values (a column of M, then a row of A^T M).
fn at(s: array<f32, 6>) -> array<f32, 4> {
    return array<f32, 4>(
        s[0] + s[1] + s[2] + s[3] + s[4],
        -s[1] + s[2] + 0.5 * s[3] - 2.0 * s[4],
        s[1] + s[2] + 0.25 * s[3] + 4.0 * s[4],
        -s[1] + s[2] + 0.125 * s[3] - 8.0 * s[4] + s[5],
    );
}

#entry 64
    let c = p.shape;
    let f = flat_index(wg, nwg, li, 64u);
    if (f >= p.count * c.cout) {
        return;
    }
    let t = f % p.count;
    let co = f / p.count;
    let tile = tile_at(t);

    // (A^T M)'s columns: am[col][r] = (A^T M)[r][col].
    let stride = c.cout * p.tp;
    var am: array<array<f32, 4>, 6>;
    for (var col = 0u; col < 6u; col = col + 1u) {
        var s: array<f32, 6>;
        var i = co * p.tp + t + col * stride;
        for (var r = 0u; r < 6u; r = r + 1u) {
            s[r] = m[i];
            i = i + 6u * stride;
        }
        am[col] = at(s);
    }

    var offset = bias[co];
    if (p.has_channel != 0u) {
        offset = offset + chan[tile.n * c.chan_stride + c.chan_offset + co];
    }
    let plane = (tile.n * c.cout + co) * c.ho * c.wo;
    for (var r = 0u; r < 4u; r = r + 1u) {
        let y = at(array<f32, 6>(am[0][r], am[1][r], am[2][r], am[3][r], am[4][r], am[5][r]));
        let oy = tile.ty * 4u + r;
        for (var s = 0u; s < 4u; s = s + 1u) {
            let ox = tile.tx * 4u + s;
            if (oy < c.ho && ox < c.wo) {
                let o = plane + oy * c.wo + ox;
                var value = y[s] + offset;
                if (p.has_residual != 0u) {
                    value = value + residual[o];
                }
                out[o] = value * p.out_scale;
            }
        }
    }
}
