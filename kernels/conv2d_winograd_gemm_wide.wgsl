// conv2d_winograd_gemm_wide: the products of the Winograd convolution F(4x4, 3x3) (ops::conv2d::winograd) on small
// maps, as conv2d_winograd_gemm_windowed.wgsl, with up to 8 weight windows per launch instead of one. On a
// 4 x 4 or 8 x 8 map a weight window's units are one or a few workgroups of work, less than lavapipe's cost
// to launch them, and one workgroup keeps one of its threads busy: 8 windows per launch take an eighth of the
// launches and give each 8 times the workgroups.
//
// Layouts (row-major f32, read and written as vec4):
//   vw        one 64 KiB window of V [36, cin, tp] (conv2d_winograd_input.wgsl), bound at V[xi0]: it holds
//             V[xi] for every position xi of the launch's units ((xi - xi0) cin tp + cin tp <= 16384)
//   u0..u7    the launch's weight windows (conv2d_winograd_pack.wgsl), per_window units each (the last may
//             hold fewer; windows past the launch's repeat the first and are never read): unit l of the launch
//             is unit per_window * w + l % per_window of window w = l / per_window, whose vec4 index
//             ((l % per_window) * cin + c) * 2 + half holds channels 8 * block + 4 * half + 0..3 of input
//             channel c (unit u = xi * blocks + block)
//   m         [36, cout, tp]
//
// Grid: as conv2d_winograd_gemm.wgsl, over the launch's units (conv2d_winograd_gemm.inc.wgsl's entry point):
// one invocation per (unit l, 8-tile column col), 8 channels x 8 tiles in 16 vec4 accumulators. One loop per
// weight window (WGSL cannot index bindings), all alike, of which an invocation's window runs cin iterations
// and the others none; where a workgroup's lanes straddle two windows each loop runs with its lanes, which
// costs what two half-idle workgroups cost. The sums are conv2d_winograd_gemm.wgsl's, in the same order, so
// the results are bit for bit the same.
// Invariants: tp % 8 == 0; cin <= 2048; every unit's V[xi] lies in vw (host-checked); channels past cout are
// computed from zero weights and not stored; columns t past the tiles in use hold whatever V holds there.

#bindings vw u0..8 m:vec4

// The block of unit l of the launch, 8-tile column col: its products over all input channels, stored to m
// (conv2d_winograd_gemm.inc.wgsl calls it).
fn unit_block(l: u32, col: u32) {
    let row = p.tp / 4u;
    let w = l / p.per_window;
    let xi = (p.u0 + l) / p.blocks;
    var acc: Acc;
    var wi = (l % p.per_window) * p.cin * 2u;
    var vi = ((xi - p.xi0) * p.cin * p.tp) / 4u + col * 2u;
#for u in 0..8
    for (var c = 0u; c < select(0u, p.cin, w == {u}u); c = c + 1u) {
        tap(&acc, u{u}[wi], u{u}[wi + 1u], vw[vi], vw[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
#end

    store_block(acc, l, col);
}
