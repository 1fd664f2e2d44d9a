// conv2d: 2-D convolution with bias and an optional fused epilogue (residual add, output scale).
//
// Layouts (row-major f32):
//   x        [batch, cin, h, w]
//   weight   [cout, cin, kh, kw]
//   bias     [cout]
//   residual [batch, cout, ho, wo]   read only when has_residual != 0 (otherwise any read-only buffer)
//   out      [batch, cout, ho, wo]
//   chan     [batch, cout]            read only when has_channel != 0: a per-image channel offset (the UNet's
//                                     time embedding, added after conv1 of every ResNet block)
// out = (conv(x, weight) + bias + chan + residual) * out_scale. The loop is conv_accumulate
// (conv2d_accumulate.inc.wgsl), shared with conv2d_ddim.wgsl.
//
// Grid: one invocation per 4 x 4 block (4 output channels x 4 consecutive output columns), numbered by
// conv_block over the flattened 2-D workgroup grid of common.wgsl; those past the end return.
// Invariants: ho = (h + pad_top + pad_bottom - kh) / stride + 1 (same for wo); every count > 0.

struct Params {
    shape: ConvShape,
    has_residual: u32,
    out_scale: f32,
    has_channel: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> chan: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
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
    for (var k = 0u; k < 4u; k = k + 1u) {
        let co = co0 + k;
        if (co >= c.cout) {
            break;
        }
        var b = bias[co];
        if (p.has_channel != 0u) {
            b = b + chan[n * c.cout + co];
        }
        let obase = (n * c.cout + co) * c.ho * c.wo + oy * c.wo;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let ox = ox0 + j;
            if (ox >= c.wo) {
                break;
            }
            var v = acc[k][j] + b;
            if (p.has_residual != 0u) {
                v = v + residual[obase + ox];
            }
            out[obase + ox] = v * p.out_scale;
        }
    }
}
