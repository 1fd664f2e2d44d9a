// conv2d_packed: convolution of any kernel size and stride over packed weights (the 1x1 shortcuts and stride-2
// downsamplers of a UNet), with bias and the epilogue of conv2d.wgsl: out = (conv(x, weight) + bias +
// residual) * out_scale. conv2d_3x3.wgsl is the same scheme specialised to 3x3 stride 1.
//
// Layouts: as in conv2d_packed.inc.wgsl (x, the packed weight window, bias, residual, out), taps = kh * kw.
//
// Grid: one dispatch per weight window, as conv2d_3x3.wgsl: workgroup g takes output-channel block block0 +
// g / tiles (so weight reads are uniform across it) and its 32 invocations take 32 consecutive (n, row,
// 8-column) pixel blocks of tile g % tiles. Per tap and input channel an invocation gathers 8 input values
// and adds 8 channels x 8 columns (64 FMAs per 8 gathers). No shared memory, no barriers.
// Invariants: ho = (h + pad_top + pad_bottom - kh) / stride + 1 and wo likewise (host-checked); taps outside
// the image read as zero; channels past cout are computed from zero weights and not stored.

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
    let taps = c.kh * c.kw;

    var acc: Acc;
    for (var ky = 0u; ky < c.kh; ky = ky + 1u) {
        let iy = i32(oy * c.stride + ky) - i32(c.pad_top);
        let row_ok = iy >= 0 && iy < i32(c.h);
        let row = xbase + (u32(select(0, iy, row_ok)) >> c.up) * sw;
        for (var kx = 0u; kx < c.kw; kx = kx + 1u) {
            // The 8 input columns of this tap, clamped into the image, with 0/1 masks for those outside.
            var col: array<u32, 8>;
            var inside: array<f32, 8>;
            for (var j = 0u; j < 8u; j = j + 1u) {
                let ix = i32((ox0 + j) * c.stride + kx) - i32(c.pad_left);
                let ok = ix >= 0 && ix < i32(c.w) && row_ok;
                col[j] = row + (u32(select(0, ix, ok)) >> c.up);
                inside[j] = select(0.0, 1.0, ok);
            }
            let m_lo = vec4<f32>(inside[0], inside[1], inside[2], inside[3]);
            let m_hi = vec4<f32>(inside[4], inside[5], inside[6], inside[7]);
#for j in 0..8
            let i{j} = col[{j}];
#end
            var wi = (b * p.chunk * taps + ky * c.kw + kx) * 2u;
            var off = 0u;
            for (var ci = 0u; ci < p.ci_count; ci = ci + 1u) {
                let lo = vec4<f32>(x[off + i0], x[off + i1], x[off + i2], x[off + i3]) * m_lo;
                let hi = vec4<f32>(x[off + i4], x[off + i5], x[off + i6], x[off + i7]) * m_hi;
                tap(&acc, wpack[wi], wpack[wi + 1u], lo, hi);
                wi = wi + taps * 2u;
                off = off + plane;
            }
        }
    }
    if (at.valid) {
        store_block(acc, n, b, oy, ox0);
    }
}
