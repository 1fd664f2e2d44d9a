// conv2d_winograd_gemm_windowed: the products of the Winograd convolution F(4x4, 3x3) (ops::conv2d::winograd),
// as conv2d_winograd_gemm.wgsl, with V read from 64 KiB uniform windows instead of storage: for one of the 36
// transformed positions xi, M[xi] = U[xi] V[xi], [cout, cin] x [cin, tp], summed over all input channels.
// Two variants: one weight window per launch (`conv2d_winograd_gemm_windowed`, WEIGHT_WINDOWS 1), and four
// weight windows of the same position per launch (`conv2d_winograd_gemm_windowed_wide`, WEIGHT_WINDOWS 4: a
// quarter of the launches, chosen where a position's units fill a multiple of four weight windows).
//
// Layouts (row-major f32, read and written as vec4):
//   vw0..vw3  V[xi] [cin, tp] of the launch's position xi (conv2d_winograd_input.wgsl writes V [36, cin, tp]),
//             in windows of `rows` = 16384 / tp input channels: window k holds channels k rows .. (k + 1) rows
//             - 1 (the host binds window k at float (xi cin + k rows) tp of V; the windows past cin hold
//             nothing the kernel reads)
//   u0..      the launch's weight windows (conv2d_winograd_pack.wgsl), all of whose units (unit u = xi * blocks
//             + block) have position xi; with one window unit l is its unit l, with several (per_window units
//             each) unit l % per_window of window l / per_window; for that unit and input channel c, vec4
//             index (unit * cin + c) * 2 + half holds channels 8 * block + 4 * half + 0..3
//   m         [36, cout, tp]
//
// Grid: as conv2d_winograd_gemm.wgsl, over the launch's units (conv2d_winograd_gemm.inc.wgsl's entry point):
// one invocation per (unit l, 8-tile column col), each keeping 8 channels x 8 tiles in 16 vec4 accumulators.
// One loop per (weight window, V window), all alike (WGSL cannot index bindings); an invocation runs its weight
// window's four, the others run no iterations. The two vec4 reads of V per input channel are per-lane reads of
// a uniform buffer, which lavapipe gathers with straight-line vector code where it reads a storage buffer lane
// by lane; the weights are read at workgroup-uniform addresses where a unit has whole workgroups. The sums are
// conv2d_winograd_gemm.wgsl's, in the same order, so the results are bit for bit the same.
// Invariants: tp % 8 == 0 and tp divides 16384; cin <= 4 rows (V[xi] in four windows); every unit of the
// launch has position xi (host-checked); channels past cout are computed from zero weights and not stored;
// columns t past the tiles in use hold whatever V holds there.

#bindings vw0..4 u0..{{WEIGHT_WINDOWS}} m:vec4

// The block of unit l of the launch, 8-tile column col: its products over all input channels, stored to m
// (conv2d_winograd_gemm.inc.wgsl calls it).
fn unit_block(l: u32, col: u32) {
    let row = p.tp / 4u;
    let start = col * 2u;
#if WEIGHT_WINDOWS == 1
    var wi = l * p.cin * 2u;
#else
    let w = l / p.per_window;
    var wi = (l % p.per_window) * p.cin * 2u;
#end

    // V window k holds channels [k rows, (k + 1) rows); the loops of the other weight windows, and past cin,
    // run no iterations.
    var acc: Acc;
    var ci = 0u;
    var vi = start;
#for u in 0..{{WEIGHT_WINDOWS}}
#for k in 0..4
    vi = start;
#if WEIGHT_WINDOWS == 1
    for (; ci < min({k+1}u * p.rows, p.cin); ci = ci + 1u) {
#else
    for (; ci < select(0u, min({k+1}u * p.rows, p.cin), w == {u}u); ci = ci + 1u) {
#end
        tap(&acc, u{u}[wi], u{u}[wi + 1u], vw{k}[vi], vw{k}[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
#end
#end

    store_block(acc, l, col);
}
