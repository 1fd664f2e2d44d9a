// conv2d_ddim: the UNet's final convolution with the DDIM update fused into its epilogue. The model output
// (epsilon, v or x0) is never stored: each output element goes straight into ddim_update (common.wgsl) with the
// matching latent element, which is updated in place.
//
// Layouts (row-major f32):
//   x        [batch, cin, h, w]       the final convolution's input (conv_norm_out's output)
//   weight   [cout, cin, kh, kw]
//   bias     [cout]
//   noise    [batch, cout, ho, wo]    read only with NOISE_TENSOR (otherwise any read-only buffer)
//   latent   [batch, cout, ho, wo]    x_t in, x_prev out
// Element e = (co * ho + oy) * wo + ox of image n takes Philox word e % 4 of counter (e / 4, image_offset + n,
// step, STREAM_STEP_NOISE), exactly as in ddim_step.wgsl, so both paths draw the same noise.
//
// Grid: conv_block's 4 x 4 blocks (conv2d_accumulate.inc.wgsl) over the flattened 2-D workgroup grid.
// Invariants: the latent has the convolution's output shape; no thresholding (it needs a per-image reduction
// before any element can be updated, so the host falls back to ddim_step); every count > 0.

struct Params {
    shape: ConvShape,
    d: DdimStep,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> noise: array<f32>;
@group(0) @binding(5) var<storage, read_write> latent: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = p.shape;
    let d = p.d;
    let block = conv_block(c, flat_index(wg, nwg, li, 64u));
    let n = block.x;
    if (n >= c.batch) {
        return;
    }
    let co0 = block.y;
    let oy = block.z;
    let ox0 = block.w;
    let acc = conv_accumulate(c, n, co0, oy, ox0);
    let per_image = c.cout * c.ho * c.wo;
    let key = vec2<u32>(d.seed_lo, d.seed_hi);
    for (var k = 0u; k < 4u; k = k + 1u) {
        let co = co0 + k;
        if (co >= c.cout) {
            break;
        }
        let b = bias[co];
        for (var j = 0u; j < 4u; j = j + 1u) {
            let ox = ox0 + j;
            if (ox >= c.wo) {
                break;
            }
            let e = (co * c.ho + oy) * c.wo + ox;
            let i = n * per_image + e;
            var z = 0.0;
            if (d.noise_mode == NOISE_PHILOX) {
                // The block's columns need not align with Philox's groups of 4: draw the element's own group.
                z = philox_normal4(e / 4u, d.image_offset + n, d.step, STREAM_STEP_NOISE, key)[e % 4u];
            } else if (d.noise_mode == NOISE_TENSOR) {
                z = noise[i];
            }
            latent[i] = ddim_update(d, latent[i], acc[k][j] + b, 1.0, z);
        }
    }
}
