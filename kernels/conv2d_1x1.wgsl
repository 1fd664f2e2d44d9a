// conv2d_1x1: a 1x1 stride-1 unpadded convolution (a UNet's attention projections and channel-changing
// shortcuts) with both operands in 64 KiB uniform windows: out = (W x + bias + chan + residual) * out_scale,
// a matrix product [cout, cin] x [cin, hw] per image.
//
// Layouts (row-major f32):
//   xw0..xw3 64 KiB windows of x [batch, cin, hw], bound by the host at rows of hw floats (one channel of one
//            image): either the launch's images n0 .. n0 + images - 1 with all their channels, in xw0 alone (a
//            window holds whole images), or one image's channels ci0 .. ci0 + ci_count - 1, `rows` to a window
//            from xw0 (the windows past the last hold nothing the kernel reads)
//   wpack    one 64 KiB window of the packed weights (conv2d_pack.wgsl with 1 tap): for block b of 8 output
//            channels in the window and input channel c of its chunk, vec4 index (b * chunk + c) * 2 + half
//            holds channels 8 * (block0 + b) + 4 * half + 0..3
//   bias     [cout]
//   residual [batch, cout, hw]    read only when the last chunk runs with has_residual != 0
//   out      [batch, cout, hw], bound at a multiple of 16 bytes (read and written as vec4s)
//   chan     [batch, cout]         read only when has_channel != 0 (a per-image channel offset)
//
// Grid: one launch per (weight window, image group or image). Workgroup g takes output-channel block
// b = g / groups of the weight window and its 8 invocations 8 consecutive blocks of 8 pixels
// (groups = ceil(images * hw / 64)); each invocation keeps 8 channels x 8 pixels in 16 vec4 accumulators
// (conv2d_block.inc.wgsl). Its reads of x and of the weights are reads of uniform buffers, which lavapipe
// gathers with straight-line vector code; a storage buffer it reads one lane at a time (BENCHMARKS.md). Four x
// windows per launch let a launch sum 4 x rows channels (256 at 16 x 16), so that an image's channels run in
// one chunk where they can; when they do not, the chunks run in order: the first writes acc + bias (+ chan),
// later ones add to out, the last adds the residual and scales.
// Invariants: hw % 8 == 0; images * cin * hw <= 16384 when images > 1, ci_count <= 4 * rows and
// rows * hw <= 16384 (host-checked); channels past cout are computed from zero weights and not stored.

@group(0) @binding(1) var<uniform> xw0: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> xw1: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> xw2: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> xw3: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> wpack: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read> residual: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> chan: array<f32>;

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

    // One loop per x window (WGSL cannot index bindings), all alike: window k holds channels
    // [k rows, (k + 1) rows) of the launch; the windows past ci_count run no iterations.
    var acc: Acc;
    let base = (local * p.cin * p.hw + px0) / 4u;
    let step = p.hw / 4u;
    var wi = b * p.chunk * 2u;
    var xi = base;
    var c = 0u;
    for (; c < min(1u * p.rows, p.ci_count); c = c + 1u) {
        tap(&acc, wpack[wi], wpack[wi + 1u], xw0[xi], xw0[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < min(2u * p.rows, p.ci_count); c = c + 1u) {
        tap(&acc, wpack[wi], wpack[wi + 1u], xw1[xi], xw1[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < min(3u * p.rows, p.ci_count); c = c + 1u) {
        tap(&acc, wpack[wi], wpack[wi + 1u], xw2[xi], xw2[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
    xi = base;
    for (; c < min(4u * p.rows, p.ci_count); c = c + 1u) {
        tap(&acc, wpack[wi], wpack[wi + 1u], xw3[xi], xw3[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }

    store_block(acc, p.n0 + local, (p.block0 + b) * 8u, px0);
}
