// conv2d_tiled_params.inc.wgsl: the Params of conv2d_tiled.wgsl and conv2d_split_reduce.wgsl
// (ops::conv2d::TiledParams): the geometry, the epilogue's switches, and the split: `splits` K slices of
// `k_split`, over the launch's output pixels p_begin .. p_begin + p_count. Also their epilogue, `finish`, which
// reads the `bias`, `chan` and `residual` bindings both kernels declare and writes `out`.

#if DDIM
// The DDIM variants (conv2d_tiled_ddim, conv2d_split_reduce_ddim): the UNet's final convolution with the DDIM
// update as its epilogue, as conv2d.wgsl's conv2d_ddim. `finish` updates latent (x_t in, x_prev out, the
// output's shape) in place from the finished sum plus the bias; noise is read only with NOISE_TENSOR. Element
// e = (m * ho + oy) * wo + ox of image n takes Philox word e % 4 of counter (e / 4, image_offset + n, step,
// STREAM_STEP_NOISE), as in ddim_step.wgsl.
struct Params {
    shape: ConvShape,
    splits: u32,
    k_split: u32,
    p_begin: u32,
    p_count: u32,
    d: DdimStep,
}

fn finish(sum: f32, m: u32, pix: u32) {
    let c = p.shape;
    let d = p.d;
    let plane = c.ho * c.wo;
    let n = pix / plane;
    let e = m * plane + pix % plane;
    let i = n * c.cout * plane + e;
    var z = 0.0;
    if (d.noise_mode == NOISE_PHILOX) {
        z = step_noise_at(d, e, n);
    } else if (d.noise_mode == NOISE_TENSOR) {
        z = f32(noise[i]);
    }
    latent[i] = act(ddim_update(d, f32(latent[i]), sum + f32(bias[m]), 1.0, z));
}
#else
struct Params {
    shape: ConvShape,
    has_residual: u32,
    out_scale: f32,
    has_channel: u32,
    splits: u32,
    k_split: u32,
    p_begin: u32,
    p_count: u32,
    // SiLU after the prologue's normalisation (the PROLOGUE variants; 0 in the others).
    silu: u32,
}

// Stores output channel m at output pixel pix (pixel (n * ho + oy) * wo + ox) from its finished sum: conv2d.wgsl's
// epilogue, out = (sum + bias + chan + residual) * out_scale.
fn finish(sum: f32, m: u32, pix: u32) {
    let c = p.shape;
    let plane = c.ho * c.wo;
    let n = pix / plane;
    var v = sum + f32(bias[m]);
    if (p.has_channel != 0u) {
        v = v + f32(chan[n * c.chan_stride + c.chan_offset + m]);
    }
    let o = (n * c.cout + m) * plane + pix % plane;
    if (p.has_residual != 0u) {
        v = v + f32(residual[o]);
    }
    out[o] = act(v * p.out_scale);
}
#end
