// conv2d_1x1: a 1x1 stride-1 unpadded convolution (a UNet's attention projections and channel-changing
// shortcuts) with both operands in 64 KiB uniform windows: out = (W x + bias + chan + residual) * out_scale,
// a matrix product [cout, cin] x [cin, hw] per image. Two variants: one weight window per launch
// (`conv2d_1x1`, WEIGHT_WINDOWS 1) and four (`conv2d_1x1_wide`, WEIGHT_WINDOWS 4: a launch computes four
// windows' blocks of output channels for its images and chunk, a quarter of the launches; chosen where the
// weights of a chunk take at least four windows).
//
// Layouts (row-major f32):
//   xw0..xw3 64 KiB windows of x [batch, cin, hw], bound by the host at rows of hw floats (one channel of one
//            image): either the launch's images n0 .. n0 + images - 1 with all their channels, in xw0 alone (a
//            window holds whole images), or one image's channels ci0 .. ci0 + ci_count - 1, `rows` to a window
//            from xw0 (the windows past the last hold nothing the kernel reads)
//   w0..     the launch's weight windows (conv2d_pack.wgsl with 1 tap; windows past the launch's repeat the
//            first and are never read): with one window, for block b of 8 output channels and input channel c
//            of the chunk, vec4 index (b * chunk + c) * 2 + half holds channels 8 * (block0 + b) + 4 * half +
//            0..3; with four, block b of the launch is block b % per_window of window b / per_window, at vec4
//            index ((b % per_window) * chunk + c) * 2 + half
//   bias     [cout]
//   residual [batch, cout, hw]    read only when the last chunk runs with has_residual != 0
//   out      [batch, cout, hw], bound at a multiple of 16 bytes (read and written as vec4s)
//   chan     [batch, cout]         read only when has_channel != 0 (a per-image channel offset)
//
// Grid: one launch per (weight window or group of four, image group or image). Workgroup g takes
// output-channel block b = g / groups of the launch and its 8 invocations 8 consecutive blocks of 8 pixels
// (groups = ceil(images * hw / 64)); each invocation keeps 8 channels x 8 pixels in 16 vec4 accumulators
// (conv2d_block.inc.wgsl). Its reads of x and of the weights are reads of uniform buffers, which lavapipe
// gathers with straight-line vector code; a storage buffer it reads one lane at a time. One loop per (weight
// window, x window) (WGSL cannot index bindings), all alike: an invocation runs its block's window's, the
// others run no iterations; the two variants make the same sums in the same order. Four x
// windows per launch let a launch sum 4 x rows channels (256 at 16 x 16), so that an image's channels run in
// one chunk where they can; when they do not, the chunks run in order: the first writes acc + bias (+ chan),
// later ones add to out, the last adds the residual and scales.
// Invariants: hw % 8 == 0; images * cin * hw <= 16384 when images > 1, ci_count <= 4 * rows and
// rows * hw <= 16384 (host-checked); channels past cout are computed from zero weights and not stored;
// blocks <= 4 per_window with four weight windows.

#bindings xw0..4 w0..{{WEIGHT_WINDOWS}} bias residual out:vec4 chan

#entry 8
    let job = job(wg, nwg, li);
    if (!job.live) {
        return;
    }
    let b = job.b;
    let local = job.local;
    let px0 = job.px0;

    // x window k holds channels [k rows, (k + 1) rows) of the launch; the windows past ci_count, and the
    // loops of the other weight windows, run no iterations.
    var acc: Acc;
    let base = (local * p.cin * p.hw + px0) / 4u;
    let step = p.hw / 4u;
#if WEIGHT_WINDOWS == 1
    var wi = b * p.chunk * 2u;
#else
    let k = b / p.per_window;
    var wi = (b % p.per_window) * p.chunk * 2u;
#end
    var xi = base;
    var c = 0u;
#for u in 0..{{WEIGHT_WINDOWS}}
#for x in 0..4
    xi = base;
#if WEIGHT_WINDOWS == 1
    for (; c < min({x+1}u * p.rows, p.ci_count); c = c + 1u) {
#else
    for (; c < select(0u, min({x+1}u * p.rows, p.ci_count), k == {u}u); c = c + 1u) {
#end
        tap(&acc, w{u}[wi], w{u}[wi + 1u], xw{x}[xi], xw{x}[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }
#end
#end

    store_block(acc, p.n0 + local, (p.block0 + b) * 8u, px0);
}
