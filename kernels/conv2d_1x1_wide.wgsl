// conv2d_1x1_wide: conv2d_1x1.wgsl with four weight windows per launch instead of one: a launch computes four
// windows' blocks of output channels for its images and chunk, a quarter of the launches. Chosen where the
// weights of a chunk take at least four windows (256 and more output channels at 16 x 16 and smaller maps:
// the CIFAR-10 UNet's attention projections and shortcuts there).
//
// Layouts (row-major f32):
//   xw0..xw3  64 KiB windows of x [batch, cin, hw], as conv2d_1x1.wgsl's
//   w0..w3    the launch's weight windows (conv2d_pack.wgsl with 1 tap; windows past the launch's repeat the
//             first and are never read): block b of the launch is block b % per_window of window
//             b / per_window, whose vec4 index ((b % per_window) * chunk + c) * 2 + half holds channels
//             8 * (block0 + b) + 4 * half + 0..3 of input channel c of the chunk
//   bias, residual, out, chan  as conv2d_1x1.wgsl's
//
// Grid: one launch per (group of four weight windows of a chunk, image group or image). Workgroup g takes
// output-channel block b = g / groups of the launch and its 8 invocations 8 consecutive blocks of 8 pixels,
// each keeping 8 channels x 8 pixels in 16 vec4 accumulators (conv2d_block.inc.wgsl). One loop per (weight
// window, x window) (WGSL cannot index bindings), all alike: an invocation runs its block's window's four
// (the window comes from the workgroup, so the weight reads stay uniform), the others run no iterations. The
// sums are conv2d_1x1.wgsl's in the same order: the same bits.
// Invariants: those of conv2d_1x1.wgsl; blocks <= 4 per_window.

@group(0) @binding(1) var<uniform> xw0: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> xw1: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> xw2: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> xw3: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> w0: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> w1: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<uniform> w2: array<vec4<f32>, 4096>;
@group(0) @binding(8) var<uniform> w3: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<storage, read> bias: array<f32>;
@group(0) @binding(10) var<storage, read> residual: array<f32>;
@group(0) @binding(11) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> chan: array<f32>;

@compute @workgroup_size(8)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let job = job(wg, nwg, li);
    if (!job.live) {
        return;
    }
    let b = job.b;
    let local = job.local;
    let px0 = job.px0;
    let k = b / p.per_window;

    var acc: Acc;
    let base = (local * p.cin * p.hw + px0) / 4u;
    let step = p.hw / 4u;
    var wi = (b % p.per_window) * p.chunk * 2u;
    var xi = base;
    var c = 0u;
    xi = base;
    for (; c < select(0u, min(1u * p.rows, p.ci_count), k == 0u); c = c + 1u) {
        tap(&acc, w0[wi], w0[wi + 1u], xw0[xi], xw0[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(2u * p.rows, p.ci_count), k == 0u); c = c + 1u) {
        tap(&acc, w0[wi], w0[wi + 1u], xw1[xi], xw1[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(3u * p.rows, p.ci_count), k == 0u); c = c + 1u) {
        tap(&acc, w0[wi], w0[wi + 1u], xw2[xi], xw2[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(4u * p.rows, p.ci_count), k == 0u); c = c + 1u) {
        tap(&acc, w0[wi], w0[wi + 1u], xw3[xi], xw3[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(1u * p.rows, p.ci_count), k == 1u); c = c + 1u) {
        tap(&acc, w1[wi], w1[wi + 1u], xw0[xi], xw0[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(2u * p.rows, p.ci_count), k == 1u); c = c + 1u) {
        tap(&acc, w1[wi], w1[wi + 1u], xw1[xi], xw1[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(3u * p.rows, p.ci_count), k == 1u); c = c + 1u) {
        tap(&acc, w1[wi], w1[wi + 1u], xw2[xi], xw2[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(4u * p.rows, p.ci_count), k == 1u); c = c + 1u) {
        tap(&acc, w1[wi], w1[wi + 1u], xw3[xi], xw3[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(1u * p.rows, p.ci_count), k == 2u); c = c + 1u) {
        tap(&acc, w2[wi], w2[wi + 1u], xw0[xi], xw0[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(2u * p.rows, p.ci_count), k == 2u); c = c + 1u) {
        tap(&acc, w2[wi], w2[wi + 1u], xw1[xi], xw1[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(3u * p.rows, p.ci_count), k == 2u); c = c + 1u) {
        tap(&acc, w2[wi], w2[wi + 1u], xw2[xi], xw2[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(4u * p.rows, p.ci_count), k == 2u); c = c + 1u) {
        tap(&acc, w2[wi], w2[wi + 1u], xw3[xi], xw3[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(1u * p.rows, p.ci_count), k == 3u); c = c + 1u) {
        tap(&acc, w3[wi], w3[wi + 1u], xw0[xi], xw0[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(2u * p.rows, p.ci_count), k == 3u); c = c + 1u) {
        tap(&acc, w3[wi], w3[wi + 1u], xw1[xi], xw1[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(3u * p.rows, p.ci_count), k == 3u); c = c + 1u) {
        tap(&acc, w3[wi], w3[wi + 1u], xw2[xi], xw2[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < select(0u, min(4u * p.rows, p.ci_count), k == 3u); c = c + 1u) {
        tap(&acc, w3[wi], w3[wi + 1u], xw3[xi], xw3[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }

    store_block(acc, p.n0 + local, (p.block0 + b) * 8u, px0);
}
