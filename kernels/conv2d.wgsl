// conv2d: 2-D convolution with bias and an optional fused epilogue (residual add, output scale).
//
// Layouts (row-major f32):
//   x        [batch, cin, h, w]
//   weight   [cout, cin, kh, kw]
//   bias     [cout]
//   residual [batch, cout, ho, wo]   read only when has_residual != 0 (otherwise any read-only buffer)
//   out      [batch, cout, ho, wo]
// out = (conv(x, weight) + bias + residual) * out_scale; input taps outside the image read as zero, so padding
// may differ per side: pad_top/pad_left shift the window, and ho/wo (computed by the host from all four pads)
// decide how far it runs past the bottom/right edge.
//
// Grid: one invocation computes a 4 x 4 register block: 4 output channels x 4 consecutive output columns.
// Invocations are numbered (n, channel block, row, column block), column block fastest, over the flattened
// 2-D workgroup grid of common.wgsl; those past the end return.
// Invariants: ho = (h + pad_top + pad_bottom - kh) / stride + 1 (same for wo); every count > 0.

struct Params {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    has_residual: u32,
    out_scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let id = flat_index(wg, nwg, li, 64u);
    let col_blocks = (p.wo + 3u) / 4u;
    let co_blocks = (p.cout + 3u) / 4u;
    let cb = id % col_blocks;
    var rest = id / col_blocks;
    let oy = rest % p.ho;
    rest = rest / p.ho;
    let cob = rest % co_blocks;
    let n = rest / co_blocks;
    if (n >= p.batch) {
        return;
    }
    let ox0 = cb * 4u;
    let co0 = cob * 4u;
    let taps = p.kh * p.kw;
    let wstride = p.cin * taps;

    // Clamp channel indices so the weight loads stay in bounds; results for co >= cout are never written.
    var wrow: array<u32, 4>;
    for (var c = 0u; c < 4u; c = c + 1u) {
        wrow[c] = min(co0 + c, p.cout - 1u) * wstride;
    }

    var acc: array<vec4<f32>, 4>;
    let plane = p.h * p.w;
    let xbase = n * p.cin * plane;
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        let iy = i32(oy * p.stride + ky) - i32(p.pad_top);
        if (iy < 0 || iy >= i32(p.h)) {
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            // The four input columns this tap reads, and which of them are inside the image.
            var col: vec4<i32>;
            var inside: vec4<f32>;
            for (var j = 0u; j < 4u; j = j + 1u) {
                let ix = i32((ox0 + j) * p.stride + kx) - i32(p.pad_left);
                let ok = ix >= 0 && ix < i32(p.w);
                col[j] = select(0, ix, ok);
                inside[j] = select(0.0, 1.0, ok);
            }
            let tap = ky * p.kw + kx;
            var xoff = xbase + u32(iy) * p.w;
            for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
                let xv = vec4<f32>(
                    x[xoff + u32(col.x)],
                    x[xoff + u32(col.y)],
                    x[xoff + u32(col.z)],
                    x[xoff + u32(col.w)],
                ) * inside;
                let wi = ci * taps + tap;
                acc[0] = acc[0] + weight[wrow[0] + wi] * xv;
                acc[1] = acc[1] + weight[wrow[1] + wi] * xv;
                acc[2] = acc[2] + weight[wrow[2] + wi] * xv;
                acc[3] = acc[3] + weight[wrow[3] + wi] * xv;
                xoff = xoff + plane;
            }
        }
    }

    let oplane = p.ho * p.wo;
    for (var c = 0u; c < 4u; c = c + 1u) {
        let co = co0 + c;
        if (co >= p.cout) {
            break;
        }
        let b = bias[co];
        let obase = (n * p.cout + co) * oplane + oy * p.wo;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let ox = ox0 + j;
            if (ox >= p.wo) {
                break;
            }
            var v = acc[c][j] + b;
            if (p.has_residual != 0u) {
                v = v + residual[obase + ox];
            }
            out[obase + ox] = v * p.out_scale;
        }
    }
}
