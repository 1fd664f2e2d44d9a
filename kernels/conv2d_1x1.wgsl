// conv2d_1x1: a 1x1 stride-1 unpadded convolution (a UNet's attention projections and channel-changing
// shortcuts) with both operands in 64 KiB uniform windows: out = (W x + bias + chan + residual) * out_scale,
// a matrix product [cout, cin] x [cin, hw] per image.
//
// Layouts (row-major f32):
//   xw       one 64 KiB window of x [batch, cin, hw] (the host binds it at row n0 * cin + ci0 of x's rows of
//            hw floats): the launch's images n0 .. n0 + images - 1 with all their channels when a window holds
//            whole images (ci0 = 0, ci_count = cin), else one image's channels ci0 .. ci0 + ci_count - 1
//   wpack    one 64 KiB window of the packed weights (conv2d_pack.wgsl with 1 tap): for block b of 8 output
//            channels in the window and input channel c of its chunk, vec4 index (b * chunk + c) * 2 + half
//            holds channels 8 * (block0 + b) + 4 * half + 0..3
//   bias     [cout]
//   residual [batch, cout, hw]    read only when the last chunk runs with has_residual != 0
//   out      [batch, cout, hw]
//   chan     [batch, cout]         read only when has_channel != 0 (a per-image channel offset)
//
// Grid: one launch per (weight window, x window). Workgroup g takes output-channel block b = g / groups of
// the weight window (so the weight reads have uniform addresses) and its 8 invocations 8 consecutive blocks
// of 8 pixels (groups = ceil(images * hw / 64)); each invocation keeps 8 channels x 8 pixels in 16 vec4
// accumulators (conv2d_block.inc.wgsl). Its two vec4 reads of x per input channel are per-lane reads of a
// uniform buffer, which lavapipe gathers with straight-line vector code; a storage buffer it reads one lane at
// a time (BENCHMARKS.md). When a window holds fewer than cin channels, the chunks of one image run in order:
// the first writes acc + bias (+ chan), later ones add to out, the last adds the residual and scales.
// Invariants: hw % 8 == 0; images * cin * hw <= 16384 when ci_count = cin, ci_count * hw <= 16384 otherwise
// (host-checked); channels past cout are computed from zero weights and not stored.

struct Params {
    cin: u32,
    cout: u32,
    hw: u32,
    ci_count: u32,
    chunk: u32,
    block0: u32,
    blocks: u32,
    n0: u32,
    images: u32,
    first: u32,
    last: u32,
    has_residual: u32,
    out_scale: f32,
    has_channel: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> xw: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> wpack: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> chan: array<f32>;

@compute @workgroup_size(8)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let per_image = p.hw / 8u;
    let pixel_blocks = p.images * per_image;
    let groups = (pixel_blocks + 7u) / 8u;
    let g = flat_workgroup(wg, nwg);
    let b = g / groups;
    let pb = (g % groups) * 8u + li;
    if (b >= p.blocks || pb >= pixel_blocks) {
        return;
    }
    let local = pb / per_image;
    let px0 = (pb % per_image) * 8u;

    var acc: Acc;
    var xi = (local * p.cin * p.hw + px0) / 4u;
    let step = p.hw / 4u;
    var wi = b * p.chunk * 2u;
    for (var c = 0u; c < p.ci_count; c = c + 1u) {
        tap(&acc, wpack[wi], wpack[wi + 1u], xw[xi], xw[xi + 1u]);
        xi = xi + step;
        wi = wi + 2u;
    }

    let n = p.n0 + local;
    let co0 = (p.block0 + b) * 8u;
    var res = rows(acc);
    for (var k = 0u; k < 8u; k = k + 1u) {
        let co = co0 + k;
        if (co >= p.cout) {
            break;
        }
        let o = (n * p.cout + co) * p.hw + px0;
        var bk = bias[co];
        if (p.has_channel != 0u) {
            bk = bk + chan[n * p.cout + co];
        }
        for (var j = 0u; j < 8u; j = j + 1u) {
            var v = res[k][j / 4u][j % 4u];
            if (p.first != 0u) {
                v = v + bk;
            } else {
                v = v + out[o + j];
            }
            if (p.last != 0u) {
                if (p.has_residual != 0u) {
                    v = v + residual[o + j];
                }
                v = v * p.out_scale;
            }
            out[o + j] = v;
        }
    }
}
