// conv2d_tiled: 2-D convolution as an implicit GEMM over shared-memory tiles, for GPUs, with bias and the same
// epilogue as conv2d.wgsl: out = (conv(x, weight) + bias + chan + residual) * out_scale; or, split along K, the
// partial sums of K slices for conv2d_split_reduce.wgsl to add and finish.
//
// Layouts (row-major; `act` elements, f32 or f16 by the device's precision, except part and affine, f32), as in
// conv2d.wgsl:
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
// Variants (RM x RN outputs per invocation, K step TK): `conv2d_tiled` (4 x 4, 16), 64 x 64 output tiles;
// `conv2d_tiled_8x8` (8 x 8, 8), 128 x 128 tiles, twice the FMAs per workgroup-memory load and a quarter of
// the workgroups. TM = 16 RM, TN = 16 RN. With PROLOGUE (`conv2d_tiled_gn`, `conv2d_tiled_8x8_gn`) x is a
// group norm's input: every value gathered from x is normalised as it is loaded, from
//   affine   [batch, cin] of vec4 (shift, mean_shifted, scale, beta), group_norm.wgsl's STATS output:
//            ((x - shift) - mean_shifted) * scale + beta, then SiLU where p.silu != 0
// so the normalised tensor is never written; padding stays zero (the convolution pads the normalised map).
//
// Grid: one workgroup of 16 x 16 invocations per TM x TN output tile (TM output channels x TN pixels of the
// launch's pixels p_begin .. p_begin + p_count) and K slice (slice s covers k in [s * k_split, (s + 1) * k_split)
// of K), output-channel tile fastest, then pixel tile, then slice, over the flattened 2-D workgroup grid. K goes
// in steps of TK: the workgroup stages a TK x TM slice of the weights and a TK x TN slice of col in workgroup
// memory (TK x TM = TK x TN = 1,024 values each: each invocation loads 4 + 4, the pixel index fastest so
// neighbours read neighbouring addresses), waits at a barrier, and each invocation accumulates its RM x RN
// outputs (channels RM ty + i, pixels RN tx + j) from TK x (RM + RN) / 4 vector loads of workgroup memory
// (neighbours read neighbouring vectors): RM x RN FMAs per (RM + RN) / 4 loads (16 per 2 at 4 x 4, 64 per 4 at
// 8 x 8), against 1 per 2 from global memory. The next step's 4 + 4 values are loaded into registers before the
// current step's products, so their latency overlaps the arithmetic; an invocation gathers col for one pixel
// at every step, decomposed into image, row and column once. Splitting K (ops::conv2d::SplitK) multiplies the
// workgroups of a small map: one image of a 256-channel 8x8 map is 4 tiles of 64 x 64. This is the family for
// adapters where barriers and workgroup memory are cheap (GPUs); ops::conv2d::kernel_for picks it there. On
// lavapipe a barrier costs more than the arithmetic between two.
// Invariants: ho = (h + pad_top + pad_bottom - kh) / stride + 1 (same for wo); every count > 0; k_split is a
// multiple of TK; p_begin + p_count <= N; a workgroup past the last tile or slice returns before any barrier
// (the test is workgroup-uniform), and the staging branch depends only on uniforms and the loop counter.

// Params and the epilogue (`finish`): conv2d_tiled_params.inc.wgsl; with DDIM (conv2d_tiled_ddim), the DDIM
// update in place of the store.

@group(0) @binding(0) var<uniform> p: Params;
#if DDIM
#bindings x:act weight:act bias:act noise:act latent:act part
#else
#if PROLOGUE
#bindings x:act weight:act bias:act residual:act out:act chan:act part affine:vec4
#else
#bindings x:act weight:act bias:act residual:act out:act chan:act part
#end
#end

const RM: u32 = {{RM}}u;
const RN: u32 = {{RN}}u;
const TM: u32 = 16u * RM;
const TN: u32 = 16u * RN;
const TK: u32 = {{TK}}u;

// [TK][TM] weights and [TK][TN] input columns of the current K step.
// Read as vectors: ws4[kk * WROW + q] holds channels 4q .. 4q + 3 of step row kk (rows padded by one vector, so
// the staging stores of the TK rows spread over the banks), xs4[kk * XROW + q] pixels 4q .. 4q + 3.
const WROW: u32 = TM / 4u + 1u;
const XROW: u32 = TN / 4u;
// TK * WROW and TK * XROW vectors: 16 x 17 and 16 x 16 at 4 x 4, 8 x 33 and 8 x 32 at 8 x 8. T4 is their
// element: f32, or at f16 precision in the 4 x 4 variants f16 (HALF), which halves the workgroup memory and its
// traffic and takes the products in f16 (see the main loop).
#if F16 && RM == 4
alias T4 = vec4<f16>;
#else
alias T4 = vec4<f32>;
#end
var<workgroup> ws4: array<T4, {{WS4}}>;
var<workgroup> xs4: array<T4, {{XS4}}>;

// The output pixel an invocation gathers col for: the same pixel p0 + li % TN at every K step, so its
// decomposition (two divisions) happens once per workgroup tile, not once per element.
struct Pixel {
    valid: bool,
    // The image, and the first element of its input planes.
    n: u32,
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
        n,
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
    let v = f32(x[px.image + (ci * sh + (u32(iy) >> c.up)) * sw + (u32(ix) >> c.up)]);
#if PROLOGUE
    let a = affine[px.n * c.cin + ci];
    let y = ((v - a.x) - a.y) * a.z + a.w;
    if (p.silu != 0u) {
        return silu(y);
    }
    return y;
#else
    return v;
#end
}

// Element e of a step's TK x TM weight slice: k fastest (a row of TK consecutive floats per TK invocations);
// zero outside cout and the K slice.
fn weight_at(c: ConvShape, m0: u32, k0: u32, k_end: u32, e: u32) -> f32 {
    let kk = e % TK;
    let mm = e / TK;
    if (m0 + mm < c.cout && k0 + kk < k_end) {
        return f32(weight[(m0 + mm) * c.cin * c.kh * c.kw + k0 + kk]);
    }
    return 0.0;
}

// Row kx of a step's TK x TN slice of col at the invocation's pixel (column li % TN of the slice); zero
// outside the launch's pixels and the K slice.
fn column_at(c: ConvShape, px: Pixel, k0: u32, k_end: u32, kx: u32) -> f32 {
    if (px.valid && k0 + kx < k_end) {
        return column(c, px, k0 + kx);
    }
    return 0.0;
}

// One step's share of invocation li: elements li + 256 r (r = 0..3) of both slices (for col: rows
// li / TN + (256 / TN) r of column li % TN), built as vectors with
// constant components (a loop writing st.w[r] would index a vector dynamically, which GPU compilers may
// place in local memory).
struct Staged {
    w: vec4<f32>,
    x: vec4<f32>,
}

fn stage(c: ConvShape, m0: u32, px: Pixel, k0: u32, k_end: u32, li: u32) -> Staged {
    let kx = li / TN;
    let rows = 256u / TN;
    return Staged(
        vec4<f32>(
            weight_at(c, m0, k0, k_end, li),
            weight_at(c, m0, k0, k_end, li + 256u),
            weight_at(c, m0, k0, k_end, li + 512u),
            weight_at(c, m0, k0, k_end, li + 768u),
        ),
        vec4<f32>(
            column_at(c, px, k0, k_end, kx),
            column_at(c, px, k0, k_end, kx + rows),
            column_at(c, px, k0, k_end, kx + 2u * rows),
            column_at(c, px, k0, k_end, kx + 3u * rows),
        ),
    );
}

// Stores a staged share: weight element li + 256 r is channel m = li / TK + (256 / TK) r of row li % TK (vector
// m / 4 of the row: li / (4 TK) + (64 / TK) r), col element li + 256 r pixel li % TN of row li / TN + (256 / TN) r
// (vector li / 4 + 64 r of xs4 in both variants).
fn put(st: Staged, li: u32) {
    let wv = (li % TK) * WROW + li / (4u * TK);
    let wc = (li / TK) % 4u;
    let wstep = 64u / TK;
    let w = T4(st.w);
    let x = T4(st.x);
    ws4[wv][wc] = w.x;
    ws4[wv + wstep][wc] = w.y;
    ws4[wv + 2u * wstep][wc] = w.z;
    ws4[wv + 3u * wstep][wc] = w.w;
    let xv = li / 4u;
    let xc = li % 4u;
    xs4[xv][xc] = x.x;
    xs4[xv + 64u][xc] = x.y;
    xs4[xv + 128u][xc] = x.z;
    xs4[xv + 192u][xc] = x.w;
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

    // acc[h][c][q]: channel RM ty + 4h + c, pixels RN tx + 4q .. RN tx + 4q + 3.
    var acc: array<array<array<vec4<f32>, {{RN4}}>, 4>, {{RM4}}>;
#if F16 && RM == 4
    // HALF: one K step's TK products go into f16 sums (step[h][c][q], as acc), added to acc after the step: f16
    // multiply-adds (two per instruction where a GPU pairs f16 lanes) and f32 accumulation over K. A step's sum
    // carries at most TK + 1 f16 roundings of its products' magnitudes; acc adds the steps in f32.
    var step: array<array<array<T4, {{RN4}}>, 4>, {{RM4}}>;
#end
    let px = pixel_of(c, p0 + li % TN, p_end);
    var st = stage(c, m0, px, k_begin, k_end, li);
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + TK) {
        put(st, li);
        workgroupBarrier();
        if (k0 + TK < k_end) {
            st = stage(c, m0, px, k0 + TK, k_end, li);
        }
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
#for h in 0..{{RM4}}
            let a{h} = ws4[kk * WROW + ty * {{RM4}}u + {h}u];
#end
#for q in 0..{{RN4}}
            let b{q} = xs4[kk * XROW + tx * {{RN4}}u + {q}u];
#end
#if F16 && RM == 4
#for h in 0..{{RM4}}
#for q in 0..{{RN4}}
            step[{h}][0][{q}] = step[{h}][0][{q}] + a{h}.x * b{q};
            step[{h}][1][{q}] = step[{h}][1][{q}] + a{h}.y * b{q};
            step[{h}][2][{q}] = step[{h}][2][{q}] + a{h}.z * b{q};
            step[{h}][3][{q}] = step[{h}][3][{q}] + a{h}.w * b{q};
#end
#end
#else
#for h in 0..{{RM4}}
#for q in 0..{{RN4}}
            acc[{h}][0][{q}] = acc[{h}][0][{q}] + a{h}.x * b{q};
            acc[{h}][1][{q}] = acc[{h}][1][{q}] + a{h}.y * b{q};
            acc[{h}][2][{q}] = acc[{h}][2][{q}] + a{h}.z * b{q};
            acc[{h}][3][{q}] = acc[{h}][3][{q}] + a{h}.w * b{q};
#end
#end
#end
        }
        workgroupBarrier();
#if F16 && RM == 4
#for h in 0..{{RM4}}
#for q in 0..{{RN4}}
#for c in 0..4
        acc[{h}][{c}][{q}] = acc[{h}][{c}][{q}] + vec4<f32>(step[{h}][{c}][{q}]);
        step[{h}][{c}][{q}] = T4(0.0);
#end
#end
#end
#end
    }

    for (var i = 0u; i < RM; i = i + 1u) {
        let m = m0 + RM * ty + i;
        if (m >= c.cout) {
            break;
        }
        for (var j = 0u; j < RN; j = j + 1u) {
            let pix = p0 + RN * tx + j;
            if (pix >= p_end) {
                break;
            }
            let v = acc[i / 4u][i % 4u][j / 4u][j % 4u];
            if (p.splits > 1u) {
                part[(s * c.cout + m) * p.p_count + pix - p.p_begin] = v;
            } else {
                finish(v, m, pix);
            }
        }
    }
}
