// conv2d_tiled: 2-D convolution as an implicit GEMM over shared-memory tiles, for GPUs, with bias and the same
// epilogue as conv2d.wgsl: out = (conv(x, weight) + bias + chan + residual) * out_scale; or, split along K, the
// partial sums of K slices for conv2d_split_reduce.wgsl to add and finish.
//
// Layouts (row-major f32), as in conv2d.wgsl:
//   x        [batch, cin, h >> up, w >> up]   (read upsampled 2x when up = 1; conv2d_shape.inc.wgsl)
//   weight   [cout, cin, kh, kw]              = the GEMM's A, M = cout rows of K = cin * kh * kw
//   bias     [cout]
//   residual [batch, cout, ho, wo]            read only when has_residual != 0
//   out      [batch, cout, ho, wo]            written only when splits = 1
//   chan     [batch, chan_stride]             read only when has_channel != 0 (at n * chan_stride + chan_offset + m)
//   part     [splits, cout, p_count]          written only when splits > 1: part[s, m, i] is the sum over K
//                                             slice s of output channel m at pixel p_begin + i
// The GEMM: out[m, pix] = sum over k of weight[m, k] * col[k, pix], with N = batch * ho * wo output pixels and
// col[(ci, ky, kx), (n, oy, ox)] = x[n, ci, oy * stride + ky - pad_top, ox * stride + kx - pad_left] (zero
// outside the image), gathered on the fly: no im2col buffer exists.
//
// Grid: one workgroup of 16 x 16 invocations per 64 x 64 output tile (64 output channels x 64 pixels of the
// launch's pixels p_begin .. p_begin + p_count) and K slice (slice s covers k in [s * k_split, (s + 1) * k_split)
// of K), output-channel tile fastest, then pixel tile, then slice, over the flattened 2-D workgroup grid. K goes
// in steps of 16: the workgroup stages a 16 x 64 slice of the weights and of col in workgroup memory (8.25 KiB;
// each invocation loads 4 + 4 values, the pixel index fastest so neighbours read neighbouring addresses), waits
// at a barrier, and each invocation accumulates its 4 x 4 outputs (channels 4 ty + i, pixels 4 tx + j) from
// 16 x 2 vector loads of workgroup memory (neighbours read neighbouring vectors): 16 FMAs per 2 loads, against
// 1 per 2 from global memory. The next step's 4 + 4 values are loaded into registers
// before the current step's products, so their latency overlaps the arithmetic; an invocation gathers col for
// one pixel at every step, decomposed into image, row and column once. Splitting K (ops::conv2d::
// SplitK) multiplies the workgroups of a small map: one image of a 256-channel 8x8 map is 4 tiles. This is the
// variant for adapters where barriers and workgroup memory are cheap (GPUs); ops::conv2d::kernel_for picks it
// there. On lavapipe a barrier costs more than the arithmetic between two.
// Invariants: ho = (h + pad_top + pad_bottom - kh) / stride + 1 (same for wo); every count > 0; k_split is a
// multiple of 16; p_begin + p_count <= N; a workgroup past the last tile or slice returns before any barrier
// (the test is workgroup-uniform), and the staging branch depends only on uniforms and the loop counter.

// Params and the epilogue (`finish`): conv2d_tiled_params.inc.wgsl; with DDIM (conv2d_tiled_ddim), the DDIM
// update in place of the store.

@group(0) @binding(0) var<uniform> p: Params;
#if DDIM
#bindings x weight bias noise latent part
#else
#bindings x weight bias residual out chan part
#end

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// [TK][TM] weights and [TK][TN] input columns of the current K step.
// Read as vectors: ws4[kk * WROW + q] holds channels 4q .. 4q + 3 of step row kk (rows padded to 17 vectors, so
// the staging stores of 16 rows fall in 8 banks, not 1), xs4[kk * 16 + q] pixels 4q .. 4q + 3.
const WROW: u32 = 17u;
var<workgroup> ws4: array<vec4<f32>, 272>;
var<workgroup> xs4: array<vec4<f32>, 256>;

// The output pixel an invocation gathers col for: the same pixel p0 + li % 64 at every K step, so its
// decomposition (two divisions) happens once per workgroup tile, not once per element.
struct Pixel {
    valid: bool,
    // First element of image n's input planes.
    image: u32,
    // Top-left input row and column of the pixel's window (may be negative: padding).
    iy0: i32,
    ix0: i32,
}

fn pixel_of(c: ConvShape, pix: u32, p_end: u32) -> Pixel {
    let plane = c.ho * c.wo;
    let n = pix / plane;
    let r = pix % plane;
    let sh = c.h >> c.up;
    let sw = c.w >> c.up;
    return Pixel(
        pix < p_end,
        n * c.cin * sh * sw,
        i32((r / c.wo) * c.stride) - i32(c.pad_top),
        i32((r % c.wo) * c.stride) - i32(c.pad_left),
    );
}

// col[k, pix] for one k < K at the invocation's pixel.
fn column(c: ConvShape, px: Pixel, k: u32) -> f32 {
    let taps = c.kh * c.kw;
    let ci = k / taps;
    let t = k % taps;
    let iy = px.iy0 + i32(t / c.kw);
    let ix = px.ix0 + i32(t % c.kw);
    if (iy < 0 || ix < 0 || iy >= i32(c.h) || ix >= i32(c.w)) {
        return 0.0;
    }
    let sw = c.w >> c.up;
    let sh = c.h >> c.up;
    return x[px.image + (ci * sh + (u32(iy) >> c.up)) * sw + (u32(ix) >> c.up)];
}

// Element e of a step's 16 x 64 weight slice: k fastest (a row of 16 consecutive floats per 16 invocations);
// zero outside cout and the K slice.
fn weight_at(c: ConvShape, m0: u32, k0: u32, k_end: u32, e: u32) -> f32 {
    let kk = e % TK;
    let mm = e / TK;
    if (m0 + mm < c.cout && k0 + kk < k_end) {
        return weight[(m0 + mm) * c.cin * c.kh * c.kw + k0 + kk];
    }
    return 0.0;
}

// Row kx of a step's 16 x 64 slice of col at the invocation's pixel (column li % 64 of the slice); zero
// outside the launch's pixels and the K slice.
fn column_at(c: ConvShape, px: Pixel, k0: u32, k_end: u32, kx: u32) -> f32 {
    if (px.valid && k0 + kx < k_end) {
        return column(c, px, k0 + kx);
    }
    return 0.0;
}

// One step's share of invocation li: elements li + 256 r (r = 0..3) of both slices (for col: rows li / 64 + 4 r
// of column li % 64), built as vectors with
// constant components (a loop writing st.w[r] would index a vector dynamically, which GPU compilers may
// place in local memory).
struct Staged {
    w: vec4<f32>,
    x: vec4<f32>,
}

fn stage(c: ConvShape, m0: u32, px: Pixel, k0: u32, k_end: u32, li: u32) -> Staged {
    let kx = li / TN;
    return Staged(
        vec4<f32>(
            weight_at(c, m0, k0, k_end, li),
            weight_at(c, m0, k0, k_end, li + 256u),
            weight_at(c, m0, k0, k_end, li + 512u),
            weight_at(c, m0, k0, k_end, li + 768u),
        ),
        vec4<f32>(
            column_at(c, px, k0, k_end, kx),
            column_at(c, px, k0, k_end, kx + 4u),
            column_at(c, px, k0, k_end, kx + 8u),
            column_at(c, px, k0, k_end, kx + 12u),
        ),
    );
}

// Stores a staged share: weight element li + 256 r is channel m = li / 16 + 16 r of row li % 16, col element
// li + 256 r pixel li % 64 of row li / 64 + 4 r.
fn put(st: Staged, li: u32) {
    let wv = (li % TK) * WROW + li / 64u;
    let wc = (li / TK) % 4u;
    ws4[wv][wc] = st.w.x;
    ws4[wv + 4u][wc] = st.w.y;
    ws4[wv + 8u][wc] = st.w.z;
    ws4[wv + 12u][wc] = st.w.w;
    let xv = li / 4u;
    let xc = li % 4u;
    xs4[xv][xc] = st.x.x;
    xs4[xv + 64u][xc] = st.x.y;
    xs4[xv + 128u][xc] = st.x.z;
    xs4[xv + 192u][xc] = st.x.w;
}

#entry 256
    let c = p.shape;
    let K = c.cin * c.kh * c.kw;
    let mtiles = (c.cout + TM - 1u) / TM;
    let tiles = mtiles * ((p.p_count + TN - 1u) / TN);
    let g = flat_workgroup(wg, nwg);
    let s = g / tiles;
    if (s >= p.splits) {
        return;
    }
    let m0 = (g % mtiles) * TM;
    let p0 = p.p_begin + ((g % tiles) / mtiles) * TN;
    let p_end = p.p_begin + p.p_count;
    let k_begin = s * p.k_split;
    let k_end = min(K, k_begin + p.k_split);
    let tx = li % 16u;
    let ty = li / 16u;

    var acc: array<vec4<f32>, 4>;
    let px = pixel_of(c, p0 + li % TN, p_end);
    var st = stage(c, m0, px, k_begin, k_end, li);
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + TK) {
        put(st, li);
        workgroupBarrier();
        if (k0 + TK < k_end) {
            st = stage(c, m0, px, k0 + TK, k_end, li);
        }
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let a = ws4[kk * WROW + ty];
            let b = xs4[kk * 16u + tx];
            acc[0] = acc[0] + a.x * b;
            acc[1] = acc[1] + a.y * b;
            acc[2] = acc[2] + a.z * b;
            acc[3] = acc[3] + a.w * b;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + 4u * ty + i;
        if (m >= c.cout) {
            break;
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let pix = p0 + 4u * tx + j;
            if (pix >= p_end) {
                break;
            }
            if (p.splits > 1u) {
                part[(s * c.cout + m) * p.p_count + pix - p.p_begin] = acc[i][j];
            } else {
                finish(acc[i][j], m, pix);
            }
        }
    }
}
