// conv2d_3x3: 3x3 stride-1 convolution for CPU-like adapters (lavapipe), with bias and the same epilogue as
// conv2d.wgsl: out = (conv(x, weight) + bias + residual) * out_scale. Chosen by ops::conv2d where it applies
// (3x3 kernel, stride 1, 64 KiB uniform bindings); conv2d_packed.wgsl does other geometries the same
// way, conv2d.wgsl everything.
//
// Layouts: as in conv2d_packed.inc.wgsl (x, the packed weight window, bias, residual, out), with 9 taps.
//
// Grid: one dispatch per weight window (ops::conv2d records them in order, as one Dispatch). Workgroup g of a
// dispatch takes output-channel block block0 + g / tiles and, through its 32 invocations, 32 consecutive
// (n, row, 8-column) pixel blocks of tile g % tiles; each invocation keeps 8 channels x 8 columns in 16 vec4
// accumulators. The channel block depends on the workgroup alone, so every weight read has a uniform address:
// lavapipe reads it once for all lanes, where a storage read costs one gather per lane. Only x is gathered: 10
// values per input row serve its 3 taps and 8 columns (96 FMAs per 10 gathers). No shared memory, no barriers;
// the body is written out (no arrays indexed in loops), since lavapipe spills dynamically indexed arrays.
//
// Input channels come in chunks when 9 x 8 x cin floats exceed a window (conv2d_packed.inc.wgsl).
// Invariants: ho = h + pad_top + pad_bottom - 2 and wo likewise (host-checked); taps outside the image read as
// zero; channels past cout are computed from zero weights and not stored.

// The three taps of one input row: v0..v9 are the row's values at columns ox0 - pad_left + 0..9; `wi` is the
// vec4 index of tap (ky, 0).
fn row(acc: ptr<function, Acc>, wi: u32, lo: vec4<f32>, mid: vec4<f32>, hi: vec2<f32>) {
    tap(acc, wpack[wi], wpack[wi + 1u], lo, mid);
    tap(acc, wpack[wi + 2u], wpack[wi + 3u], vec4<f32>(lo.yzw, mid.x), vec4<f32>(mid.yzw, hi.x));
    tap(acc, wpack[wi + 4u], wpack[wi + 5u], vec4<f32>(lo.zw, mid.xy), vec4<f32>(mid.zw, hi));
}

#entry 32
    let c = p.shape;
    let at = block_position(flat_workgroup(wg, nwg), li);
    if (at.b >= p.blocks) {
        return;
    }
    let b = at.b;
    let n = at.n;
    let oy = at.oy;
    let ox0 = at.ox0;
    // The stored input plane (smaller than h x w when the input is read upsampled; conv2d_shape.inc.wgsl).
    let sw = c.w >> c.up;
    let plane = (c.h >> c.up) * sw;
    let xbase = (n * c.cin + p.ci0) * plane;

    // Columns ox0 - pad_left + j, clamped into the image, with 0/1 masks for the taps outside it.
    var col: array<u32, 10>;
    var inside: array<f32, 10>;
    for (var j = 0u; j < 10u; j = j + 1u) {
        let ix = i32(ox0 + j) - i32(c.pad_left);
        let ok = ix >= 0 && ix < i32(c.w);
        col[j] = u32(select(0, ix, ok)) >> c.up;
        inside[j] = select(0.0, 1.0, ok);
    }
    let m_lo = vec4<f32>(inside[0], inside[1], inside[2], inside[3]);
    let m_mid = vec4<f32>(inside[4], inside[5], inside[6], inside[7]);
    let m_hi = vec2<f32>(inside[8], inside[9]);
#for j in 0..10
    let c{j} = col[{j}];
#end
    // The three input rows, clamped, with their masks.
    var rows: array<u32, 3>;
    var rmask: array<f32, 3>;
    for (var ky = 0u; ky < 3u; ky = ky + 1u) {
        let iy = i32(oy + ky) - i32(c.pad_top);
        let ok = iy >= 0 && iy < i32(c.h);
        rows[ky] = xbase + (u32(select(0, iy, ok)) >> c.up) * sw;
        rmask[ky] = select(0.0, 1.0, ok);
    }
#for r in 0..3
    let r{r} = rows[{r}];
    let k{r} = rmask[{r}];
#end

    var acc: Acc;
    var wi = b * p.chunk * 18u;
    var off = 0u;
    for (var ci = 0u; ci < p.ci_count; ci = ci + 1u) {
#for r in 0..3
        {
            let o = r{r} + off;
            let lo = vec4<f32>(x[o + c0], x[o + c1], x[o + c2], x[o + c3]) * (m_lo * k{r});
            let mid = vec4<f32>(x[o + c4], x[o + c5], x[o + c6], x[o + c7]) * (m_mid * k{r});
            let hi = vec2<f32>(x[o + c8], x[o + c9]) * (m_hi * k{r});
            row(&acc, wi + {r*6}u, lo, mid, hi);
        }
#end
        wi = wi + 18u;
        off = off + plane;
    }

    if (at.valid) {
        store_block(acc, n, b, oy, ox0);
    }
}
