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
// Grid: one launch per weight window; one invocation per (unit l, 8-tile column col) of the window, col
// fastest, each keeping 8 channels x 8 tiles in 16 vec4 accumulators (conv2d_block.inc.wgsl). Where a unit has
// a whole number of workgroups (columns = tp / 8 a multiple of 8), l comes from the workgroup alone, so the
// weight reads have uniform addresses, which lavapipe reads once for all lanes. Otherwise (a 4 x 4 or 8 x 8 map
// at batch 8: 1 or 4 columns per unit) invocation k takes l = k / columns and col = k % columns, so no lane
// idles, and lavapipe gathers the weights from the uniform buffer with straight-line vector code, cheap beside
// the rest (BENCHMARKS.md). The two vec4 reads of v per input channel are per-lane loads from storage, which
// lavapipe makes one lane at a time: 64 FMAs per 8 gathered floats. Small channel counts put several positions
// in one window, so one launch serves them (lavapipe's cost per launch is tens of microseconds).
// Invariants: tp % 8 == 0; cin <= 2048 (one window holds all input channels of a unit); channels past cout
// are computed from zero weights and not stored; columns t past the tiles in use hold whatever v holds there.

#bindings v:vec4 upack m:vec4

// The block of unit l of the window, 8-tile column col: its products over all input channels, stored to m
// (conv2d_winograd_gemm.inc.wgsl calls it).
fn unit_block(l: u32, col: u32) {
    let xi = (p.u0 + l) / p.blocks;
    let row = p.tp / 4u;

    var acc: Acc;
    var vi = xi * p.cin * row + col * 2u;
    var wi = l * p.cin * 2u;
    for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
        tap(&acc, upack[wi], upack[wi + 1u], v[vi], v[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }

    store_block(acc, l, col);
}
