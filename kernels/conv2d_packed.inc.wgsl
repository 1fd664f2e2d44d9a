// conv2d_packed.inc.wgsl: what the two packed-weight convolutions (conv2d_3x3.wgsl, conv2d_packed.wgsl) share,
// included after common.wgsl, conv2d_shape.inc.wgsl, conv2d_block.inc.wgsl and conv2d_epilogue.inc.wgsl: their
// Params, bindings and the store of the 8 x 8 accumulator block.
//
// Layouts (row-major f32):
//   x        [batch, cin, h, w]
//   wpack    one 64 KiB window of the packed weights (conv2d_pack.wgsl): for each block b of 8 output channels
//            in the window and each input channel c of its chunk, kh * kw taps x 8 channels, i.e. vec4 index
//            ((b * chunk + c) * taps + tap) * 2 + half, channel = 8 * block + 4 * half + component
//   bias     [cout]
//   residual [batch, cout, ho, wo]   read only when the last chunk runs with has_residual != 0
//   out      [batch, cout, ho, wo]
//   chan     [batch, chan_stride]    read only when has_channel != 0: image n's per-channel offset at
//                                   chan[n * chan_stride + chan_offset + co], added with the bias (the UNet's
//                                   time embedding after a ResNet block's conv1)
// Input channels come in chunks of `ci_count` from `ci0` (one window each) when taps x 8 x cin floats exceed
// a window: the first chunk writes acc + bias, later ones add to out, the last applies residual and scale.
//
// The DDIM variant (DDIM 1; conv2d_3x3_ddim) is the UNet's final convolution with the DDIM update as its
// epilogue, as conv2d.wgsl's conv2d_ddim: each output element goes straight into ddim_update (common.wgsl) with
// the matching latent element, updated in place; the model output is never stored. Its bindings:
//   x, wpack, bias  as above
//   noise    [batch, cout, ho, wo]    read only with NOISE_TENSOR (otherwise any read-only buffer)
//   latent   [batch, cout, ho, wo]    x_t in, x_prev out
// It runs only where the input channels take one chunk (the host checks), so every sum is whole at the store.
// Element e = (co * ho + oy) * wo + ox of image n takes Philox word e % 4 of counter (e / 4, image_offset + n,
// step, STREAM_STEP_NOISE), as in ddim_step.wgsl.

#if DDIM
struct Params {
    shape: ConvShape,
    ci0: u32,
    ci_count: u32,
    block0: u32,
    blocks: u32,
    chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    d: DdimStep,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x wpack bias noise latent
#else
struct Params {
    shape: ConvShape,
    ci0: u32,
    ci_count: u32,
    block0: u32,
    blocks: u32,
    chunk: u32,
    first: u32,
    last: u32,
    has_residual: u32,
    out_scale: f32,
    has_channel: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x wpack bias residual out chan
#end

// Where invocation `li` of workgroup `g` works (the Grid of conv2d_3x3.wgsl and conv2d_packed.wgsl): x = the
// output-channel block within the window (from the workgroup alone, so weight reads are uniform; >= p.blocks:
// nothing to do), y = image, z = output row, w = first of 8 output columns. Past the last pixel block the
// image is clamped to 0 and `valid` is false: compute, store nothing, so no divergent exit precedes the loop.
struct BlockPosition {
    b: u32,
    n: u32,
    oy: u32,
    ox0: u32,
    valid: bool,
}

fn block_position(g: u32, li: u32) -> BlockPosition {
    let c = p.shape;
    let col_blocks = (c.wo + 7u) / 8u;
    let tiles = (c.batch * c.ho * col_blocks + 31u) / 32u;
    let pb = (g % tiles) * 32u + li;
    let n = pb / (col_blocks * c.ho);
    return BlockPosition(
        g / tiles,
        min(n, c.batch - 1u),
        (pb / col_blocks) % c.ho,
        (pb % col_blocks) * 8u,
        n < c.batch,
    );
}

#if DDIM
// Updates the latent under the invocation's block: channels (block0 + b) * 8 + 0..7 (those below cout) x columns
// ox0 + 0..7 (those below wo) of row oy of image n, from the block's sums plus the bias.
fn store_block(acc: Acc, n: u32, b: u32, oy: u32, ox0: u32) {
    let c = p.shape;
    let d = p.d;
    let co0 = (p.block0 + b) * 8u;
    let per_image = c.cout * c.ho * c.wo;
    var res = rows(acc);
    for (var k = 0u; k < 8u; k = k + 1u) {
        let co = co0 + k;
        if (co >= c.cout) {
            break;
        }
        let bk = bias[co];
        for (var j = 0u; j < 8u; j = j + 1u) {
            let ox = ox0 + j;
            if (ox >= c.wo) {
                break;
            }
            let e = (co * c.ho + oy) * c.wo + ox;
            let i = n * per_image + e;
            var z = 0.0;
            if (d.noise_mode == NOISE_PHILOX) {
                z = step_noise_at(d, e, n);
            } else if (d.noise_mode == NOISE_TENSOR) {
                z = noise[i];
            }
            latent[i] = ddim_update(d, latent[i], res[k][j / 4u][j % 4u] + bk, 1.0, z);
        }
    }
}
#else
// Writes invocation's block: channels (block0 + b) * 8 + 0..7 (those below cout) x columns ox0 + 0..7 (those
// below wo) of row oy of image n. The first chunk adds the bias, later ones what is already in out; the last
// applies the residual and the scale.
fn store_block(acc: Acc, n: u32, b: u32, oy: u32, ox0: u32) {
    let c = p.shape;
    let co0 = (p.block0 + b) * 8u;
    var res = rows(acc);
    for (var k = 0u; k < 8u; k = k + 1u) {
        let co = co0 + k;
        if (co >= c.cout) {
            break;
        }
        let obase = (n * c.cout + co) * c.ho * c.wo + oy * c.wo;
        let bk = bias_of(n, co, c);
        for (var j = 0u; j < 8u; j = j + 1u) {
            let ox = ox0 + j;
            if (ox >= c.wo) {
                break;
            }
            out[obase + ox] = epilogue(res[k][j / 4u][j % 4u], obase + ox, bk);
        }
    }
}
#end
