// conv2d_winograd_pack: the weight transform of the Winograd convolution F(4x4, 3x3) (ops::winograd),
// U = G g G^T per (output, input) channel pair, laid out in 64 KiB uniform windows for
// conv2d_winograd_gemm.wgsl, once, when the convolution is prepared.
//
// Layouts (row-major f32):
//   weight  [cout, cin, 3, 3]
//   packed  one window, [16384] (the launch for window w binds bytes 65536 w ..). The weights come in units,
//           one per (position xi, block of 8 output channels), numbered u = xi * blocks + block, each cin x 8
//           floats; window w holds units w * units_per_window .. (+ units_per_window). Inside it, float
//           (l * cin + c) * 8 + k of unit l is U[xi][8 * block + k][c] with U[i * 6 + j] = (G g G^T)[i][j];
//           zero where the channel runs past cout or the unit past the last (36 * blocks).
//
// Grid: one launch per window, one invocation per float of the window, over the flattened 2-D grid; those past
// the end return.
// Invariants: units_per_window * cin * 8 <= 16384. G is Toom-Cook's at the points 0, -1, 1, 1/2, -2 and
// infinity (reference::winograd derives it); its thirds and fifteenths round to f32 here, in the weights only.

struct Params {
    cout: u32,
    cin: u32,
    blocks: u32,
    units_per_window: u32,
    window: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings weight packed

const WINDOW: u32 = 16384u;

// Row i of G.
fn g_row(i: u32) -> vec3<f32> {
    switch i {
        case 0u: { return vec3<f32>(1.0, 0.0, 0.0); }
        case 1u: { return vec3<f32>(-1.0, 1.0, -1.0) / 3.0; }
        case 2u: { return vec3<f32>(1.0, 1.0, 1.0) / 3.0; }
        case 3u: { return vec3<f32>(-16.0, -8.0, -4.0) / 15.0; }
        case 4u: { return vec3<f32>(1.0, -2.0, 4.0) / 15.0; }
        default: { return vec3<f32>(0.0, 0.0, 1.0); }
    }
}

#entry 256
    let f = flat_index(wg, nwg, li, 256u);
    if (f >= WINDOW) {
        return;
    }
    let k = f % 8u;
    let c = (f / 8u) % p.cin;
    let l = f / (8u * p.cin);
    let unit = p.window * p.units_per_window + l;
    let xi = unit / p.blocks;
    let co = (unit % p.blocks) * 8u + k;
    var u = 0.0;
    if (l < p.units_per_window && xi < 36u && co < p.cout) {
        let gi = g_row(xi / 6u);
        let gj = g_row(xi % 6u);
        let w = (co * p.cin + c) * 9u;
        for (var ky = 0u; ky < 3u; ky = ky + 1u) {
            let taps = vec3<f32>(weight[w + ky * 3u], weight[w + ky * 3u + 1u], weight[w + ky * 3u + 2u]);
            u = u + gi[ky] * dot(taps, gj);
        }
    }
    packed[f] = u;
}
