// conv2d_winograd_gemm: the products of the Winograd convolution F(4x4, 3x3) (ops::winograd): for one of the
// 36 transformed positions xi, M[xi] = U[xi] V[xi], [cout, cin] x [cin, tp], summed over all input channels.
//
// Layouts (row-major f32, read and written as vec4):
//   v      [36, cin, tp]  (conv2d_winograd_input.wgsl)
//   upack  one 64 KiB window of the transformed weights (conv2d_winograd_pack.wgsl): units u0 .. u0 + units - 1,
//          unit u = xi * blocks + block holding position xi of output channels 8 * block .. + 7; for unit l of
//          the window and input channel c, vec4 index (l * cin + c) * 2 + half holds channels
//          8 * block + 4 * half + 0..3
//   m      [36, cout, tp]
//
// Grid: one launch per weight window. Workgroup g takes unit l = g / groups of the window and its 8 invocations
// the 8 consecutive 8-tile columns of group g % groups (groups = ceil(tp / 64)); each invocation keeps 8
// channels x 8 tiles in 16 vec4 accumulators (conv2d_block.inc.wgsl). The unit comes from the workgroup alone,
// so the weight reads have uniform addresses (lavapipe reads them once for all lanes); the two vec4 reads of v
// per input channel are the only per-lane loads: 64 FMAs per 8 gathered floats. Small channel counts put
// several positions in one window, so one launch serves them (lavapipe's cost per launch is some 90 us).
// Workgroups of 8, one lavapipe SIMD vector: a 16 x 16 image has only 16 tiles.
// Invariants: tp % 8 == 0; cin <= 2048 (one window holds all input channels of a unit); channels past cout
// are computed from zero weights and not stored; columns t past the tiles in use hold whatever v holds there.

struct Params {
    cin: u32,
    cout: u32,
    tp: u32,
    blocks: u32,
    u0: u32,
    units: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> upack: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;

@compute @workgroup_size(8)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let columns = p.tp / 8u;
    let groups = (columns + 7u) / 8u;
    let g = flat_workgroup(wg, nwg);
    let l = g / groups;
    if (l >= p.units) {
        return;
    }
    let xi = (p.u0 + l) / p.blocks;
    let block = (p.u0 + l) % p.blocks;
    let column = (g % groups) * 8u + li;
    // Past the last column: compute on the last one, store nothing (no divergent exit before the loop).
    let valid = column < columns;
    let col = min(column, columns - 1u);
    let row = p.tp / 4u;

    var acc: Acc;
    var vi = xi * p.cin * row + col * 2u;
    var wi = l * p.cin * 2u;
    for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
        tap(&acc, upack[wi], upack[wi + 1u], v[vi], v[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }

    if (!valid) {
        return;
    }
    let co0 = block * 8u;
    var o = (xi * p.cout + co0) * row + col * 2u;
    var res = rows(acc);
    for (var k = 0u; k < 8u; k = k + 1u) {
        if (co0 + k >= p.cout) {
            break;
        }
        m[o] = res[k][0];
        m[o + 1u] = res[k][1];
        o = o + row;
    }
}
