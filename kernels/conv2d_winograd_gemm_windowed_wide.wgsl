// conv2d_winograd_gemm_windowed_wide: the products of the Winograd convolution F(4x4, 3x3) (ops::winograd), as
// conv2d_winograd_gemm_windowed.wgsl (V from four 64 KiB uniform windows), with four weight windows of the
// same position per launch instead of one: a quarter of the launches. Chosen where a position's units fill a
// multiple of four weight windows (256 and 512 input channels into 256 output channels: 16 x 16 maps of the
// CIFAR-10 UNet, 14-18% faster than one window per launch); with fewer, the 16 loops cost more than the
// launches they save (128 -> 128 @ 32, one window per position: 15% slower), so the one-window kernel runs.
//
// Layouts (row-major f32, read and written as vec4):
//   vw0..vw3  V[xi] [cin, tp] of the launch's position xi, in windows of `rows` = 16384 / tp input channels,
//             as conv2d_winograd_gemm_windowed.wgsl's
//   u0..u3    the launch's weight windows (conv2d_winograd_pack.wgsl), per_window units each, all of position
//             xi: unit l of the launch is unit l % per_window of window l / per_window, whose vec4 index
//             ((l % per_window) * cin + c) * 2 + half holds channels 8 * block + 4 * half + 0..3 of input
//             channel c
//   m         [36, cout, tp]
//
// Grid: as conv2d_winograd_gemm.wgsl, over the launch's units (conv2d_winograd_gemm.inc.wgsl's entry point),
// each invocation keeping 8 channels x 8 tiles in 16 vec4 accumulators. One loop per (weight window, V window)
// (WGSL cannot index bindings), all alike; an invocation runs its weight window's four, the others run no
// iterations. The sums are conv2d_winograd_gemm.wgsl's, in the same order, so the results are bit for bit the
// same.
// Invariants: tp % 8 == 0 and tp divides 16384; cin <= 4 rows; every unit of the launch has position xi
// (host-checked); channels past cout are computed from zero weights and not stored.

@group(0) @binding(1) var<uniform> vw0: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> vw1: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> vw2: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> vw3: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> u0: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> u1: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<uniform> u2: array<vec4<f32>, 4096>;
@group(0) @binding(8) var<uniform> u3: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<storage, read_write> m: array<vec4<f32>>;

// The block of unit l of the launch, 8-tile column col: its products over all input channels, stored to m
// (conv2d_winograd_gemm.inc.wgsl calls it).
fn unit_block(l: u32, col: u32) {
    let row = p.tp / 4u;
    let w = l / p.per_window;
    let start = col * 2u;
    let wbase = (l % p.per_window) * p.cin * 2u;

    // One loop per (weight window, V window) (WGSL cannot index bindings), all alike: V window k holds
    // channels [k rows, (k + 1) rows); the loops of the other weight windows, and past cin, run no
    // iterations.
    var acc: Acc;
    var ci = 0u;
    var wi = wbase;
    var vi = start;
    vi = start;
    for (; ci < select(0u, min(1u * p.rows, p.cin), w == 0u); ci = ci + 1u) {
        tap(&acc, u0[wi], u0[wi + 1u], vw0[vi], vw0[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(2u * p.rows, p.cin), w == 0u); ci = ci + 1u) {
        tap(&acc, u0[wi], u0[wi + 1u], vw1[vi], vw1[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(3u * p.rows, p.cin), w == 0u); ci = ci + 1u) {
        tap(&acc, u0[wi], u0[wi + 1u], vw2[vi], vw2[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(4u * p.rows, p.cin), w == 0u); ci = ci + 1u) {
        tap(&acc, u0[wi], u0[wi + 1u], vw3[vi], vw3[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(1u * p.rows, p.cin), w == 1u); ci = ci + 1u) {
        tap(&acc, u1[wi], u1[wi + 1u], vw0[vi], vw0[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(2u * p.rows, p.cin), w == 1u); ci = ci + 1u) {
        tap(&acc, u1[wi], u1[wi + 1u], vw1[vi], vw1[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(3u * p.rows, p.cin), w == 1u); ci = ci + 1u) {
        tap(&acc, u1[wi], u1[wi + 1u], vw2[vi], vw2[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(4u * p.rows, p.cin), w == 1u); ci = ci + 1u) {
        tap(&acc, u1[wi], u1[wi + 1u], vw3[vi], vw3[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(1u * p.rows, p.cin), w == 2u); ci = ci + 1u) {
        tap(&acc, u2[wi], u2[wi + 1u], vw0[vi], vw0[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(2u * p.rows, p.cin), w == 2u); ci = ci + 1u) {
        tap(&acc, u2[wi], u2[wi + 1u], vw1[vi], vw1[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(3u * p.rows, p.cin), w == 2u); ci = ci + 1u) {
        tap(&acc, u2[wi], u2[wi + 1u], vw2[vi], vw2[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(4u * p.rows, p.cin), w == 2u); ci = ci + 1u) {
        tap(&acc, u2[wi], u2[wi + 1u], vw3[vi], vw3[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(1u * p.rows, p.cin), w == 3u); ci = ci + 1u) {
        tap(&acc, u3[wi], u3[wi + 1u], vw0[vi], vw0[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(2u * p.rows, p.cin), w == 3u); ci = ci + 1u) {
        tap(&acc, u3[wi], u3[wi + 1u], vw1[vi], vw1[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(3u * p.rows, p.cin), w == 3u); ci = ci + 1u) {
        tap(&acc, u3[wi], u3[wi + 1u], vw2[vi], vw2[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }
    vi = start;
    for (; ci < select(0u, min(4u * p.rows, p.cin), w == 3u); ci = ci + 1u) {
        tap(&acc, u3[wi], u3[wi + 1u], vw3[vi], vw3[vi + 1u]);
        vi = vi + row;
        wi = wi + 2u;
    }

    store_block(acc, l, col);
}
