// conv2d: 2-D convolution with bias and a fused epilogue. Two variants from this source:
// - `conv2d`: out = (conv(x, weight) + bias + chan + residual) * out_scale;
// - `conv2d_ddim` (DDIM 1): the UNet's final convolution with the DDIM update as its epilogue. The model output
//   (epsilon, v or x0) is never stored: each output element goes straight into ddim_update (common.wgsl) with
//   the matching latent element, which is updated in place.
// The loop is conv_accumulate (conv2d_accumulate.inc.wgsl).
//
// Layouts (row-major, `act` elements: f32, or f16 on a device at f16 precision; the arithmetic is f32):
//   x        [batch, cin, h, w]        (conv2d_ddim: the final convolution's input, conv_norm_out's output)
//   weight   [cout, cin, kh, kw]
//   bias     [cout]
// conv2d:
//   residual [batch, cout, ho, wo]   read only when has_residual != 0 (otherwise any read-only buffer)
//   out      [batch, cout, ho, wo]
//   chan     [batch, chan_stride]    read only when has_channel != 0: image n's per-channel offset (the UNet's
//                                   time embedding, added after conv1 of every ResNet block) at
//                                   chan[n * chan_stride + chan_offset + co] (ConvShape)
// conv2d_ddim:
//   noise    [batch, cout, ho, wo]    read only with NOISE_TENSOR (otherwise any read-only buffer)
//   latent   [batch, cout, ho, wo]    x_t in, x_prev out
// Element e = (co * ho + oy) * wo + ox of image n takes Philox word e % 4 of counter (e / 4, image_offset + n,
// step, STREAM_STEP_NOISE), exactly as in ddim_step.wgsl, so both update paths draw the same noise.
//
// Grid: one invocation per 4 x 4 block (4 output channels x 4 consecutive output columns), numbered by
// conv_block over the flattened 2-D workgroup grid of common.wgsl; those past the end return.
// Invariants: ho = (h + pad_top + pad_bottom - kh) / stride + 1 (same for wo); every count > 0. conv2d_ddim:
// the latent has the convolution's output shape; no thresholding (it needs a per-image reduction before any
// element can be updated, so the host falls back to ddim_step).

#if DDIM
struct Params {
    shape: ConvShape,
    d: DdimStep,
}
#else
struct Params {
    shape: ConvShape,
    has_residual: u32,
    out_scale: f32,
    has_channel: u32,
    _pad1: u32,
}
#end

@group(0) @binding(0) var<uniform> p: Params;
#if DDIM
#bindings x:act weight:act bias:act noise:act latent:act
#else
#bindings x:act weight:act bias:act residual:act out:act chan:act
#end

#entry 64
    let c = p.shape;
    let block = conv_block(c, flat_index(wg, nwg, li, 64u));
    let n = block.x;
    if (n >= c.batch) {
        return;
    }
    let co0 = block.y;
    let oy = block.z;
    let ox0 = block.w;
    let acc = conv_accumulate(c, n, co0, oy, ox0);
#if DDIM
    let d = p.d;
    let per_image = c.cout * c.ho * c.wo;
#end
    for (var k = 0u; k < 4u; k = k + 1u) {
        let co = co0 + k;
        if (co >= c.cout) {
            break;
        }
#if DDIM
        let b = f32(bias[co]);
#else
        var b = f32(bias[co]);
        if (p.has_channel != 0u) {
            b = b + f32(chan[n * c.chan_stride + c.chan_offset + co]);
        }
        let obase = (n * c.cout + co) * c.ho * c.wo + oy * c.wo;
#end
        for (var j = 0u; j < 4u; j = j + 1u) {
            let ox = ox0 + j;
            if (ox >= c.wo) {
                break;
            }
#if DDIM
            let e = (co * c.ho + oy) * c.wo + ox;
            let i = n * per_image + e;
            var z = 0.0;
            if (d.noise_mode == NOISE_PHILOX) {
                z = step_noise_at(d, e, n);
            } else if (d.noise_mode == NOISE_TENSOR) {
                z = f32(noise[i]);
            }
            latent[i] = act(ddim_update(d, f32(latent[i]), acc[k][j] + b, 1.0, z));
#else
            var v = acc[k][j] + b;
            if (p.has_residual != 0u) {
                v = v + f32(residual[obase + ox]);
            }
            out[obase + ox] = act(v * p.out_scale);
#end
        }
    }
}
