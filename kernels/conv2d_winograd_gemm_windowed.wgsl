// conv2d_winograd_gemm_windowed: the products of the Winograd convolution F(4x4, 3x3) (ops::winograd), as
// conv2d_winograd_gemm.wgsl, with V read from 64 KiB uniform windows instead of storage: for one of the 36
// transformed positions xi, M[xi] = U[xi] V[xi], [cout, cin] x [cin, tp], summed over all input channels.
//
// Layouts (row-major f32, read and written as vec4):
//   vw0..vw3  V[xi] [cin, tp] of the launch's position xi (conv2d_winograd_input.wgsl writes V [36, cin, tp]),
//             in windows of `rows` = 16384 / tp input channels: window k holds channels k rows .. (k + 1) rows
//             - 1 (the host binds window k at float (xi cin + k rows) tp of V; the windows past cin hold
//             nothing the kernel reads)
//   upack     one 64 KiB window of the transformed weights (conv2d_winograd_pack.wgsl), all of whose units
//             u0 .. u0 + units - 1 (unit u = xi * blocks + block) have the same position xi; for unit l and
//             input channel c, vec4 index (l * cin + c) * 2 + half holds channels 8 * block + 4 * half + 0..3
//   m         [36, cout, tp]
//
// Grid: as conv2d_winograd_gemm.wgsl: one launch per weight window; one invocation per (unit l, 8-tile column
// col), each keeping 8 channels x 8 tiles in 16 vec4 accumulators. The two vec4 reads of V per input channel
// are per-lane reads of a uniform buffer, which lavapipe gathers with straight-line vector code, where it
// reads a storage buffer lane by lane (BENCHMARKS.md); the weights are read at workgroup-uniform addresses
// where a unit has whole workgroups, gathered from the uniform buffer otherwise.
// Invariants: tp % 8 == 0 and tp divides 16384; cin <= 4 rows (V[xi] in four windows); every unit of the
// weight window has position xi (host-checked); channels past cout are computed from zero weights and not
// stored; columns t past the tiles in use hold whatever V holds there.

@group(0) @binding(1) var<uniform> vw0: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> vw1: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> vw2: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> vw3: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> upack: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<storage, read_write> m: array<vec4<f32>>;

// The block of unit l of the window, 8-tile column col: its products over all input channels, stored to m
// (conv2d_winograd_gemm.inc.wgsl calls it).
fn unit_block(l: u32, col: u32) {
    let row = p.tp / 4u;

    // One loop per V window (WGSL cannot index bindings), all alike: window k holds channels
    // [k rows, (k + 1) rows); the windows past cin run no iterations.
    var acc: Acc;
    let start = col * 2u;
    var wi = l * p.cin * 2u;
    var vi = start;
    var ci = 0u;
    for (; ci < min(1u * p.rows, p.cin); ci = ci + 1u) {
        tap(&acc, upack[wi], upack[wi + 1u], vw0[vi], vw0[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < min(2u * p.rows, p.cin); ci = ci + 1u) {
        tap(&acc, upack[wi], upack[wi + 1u], vw1[vi], vw1[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < min(3u * p.rows, p.cin); ci = ci + 1u) {
        tap(&acc, upack[wi], upack[wi + 1u], vw2[vi], vw2[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < min(4u * p.rows, p.cin); ci = ci + 1u) {
        tap(&acc, upack[wi], upack[wi + 1u], vw3[vi], vw3[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }

    store_block(acc, l, col);
}
