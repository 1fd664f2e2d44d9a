// conv2d_im2col: lays a convolution's input out as the columns of a matrix product (im2col), so that a strided
// convolution runs as a 1x1 convolution over kh * kw times the channels (conv2d_1x1.wgsl's two variants)
// with both operands in uniform windows, rather than as conv2d_packed.wgsl's gathers.
//
// Layouts (row-major f32):
//   x     [batch, cin, h, w], stored at (h >> up) x (w >> up) when the convolution reads it upsampled
//         (conv2d_shape.inc.wgsl)
//   cols  [images, cin * kh * kw, ho * wo] for images n0 .., written as vec4s: cols[n - n0, (ci * kh + ky) * kw
//         + kx, oy * wo + ox] = x[n, ci, oy * stride + ky - pad_top, ox * stride + kx - pad_left], zero outside
//         the image; row (ci, ky, kx) matches the weight [cout, cin, kh, kw] read as [cout, cin * kh * kw]
//
// Grid: one launch per group of images; one invocation per (image, row, output row oy), which writes the wo / 4 vec4s of that output row, over
// the flattened 2-D grid; those past the end return. (One invocation per vec4 made 4 times the invocations,
// and lavapipe's cost per workgroup grows with them.)
// Invariants: wo % 4 == 0 and cols bound at a multiple of 16 bytes (host-checked).

struct Params {
    shape: ConvShape,
    // The launch's images: n0 .. n0 + images of x, to cols' 0 .. images.
    n0: u32,
    images: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x cols:vec4

// Input value (iy, ix) of plane `base`: zero outside the image.
fn at(base: u32, iy: i32, ix: i32) -> f32 {
    let c = p.shape;
    let sy = u32(clamp(iy, 0, i32(c.h) - 1)) >> c.up;
    let sx = u32(clamp(ix, 0, i32(c.w) - 1)) >> c.up;
    let value = x[base + sy * (c.w >> c.up) + sx];
    return select(0.0, value, iy >= 0 && iy < i32(c.h) && ix >= 0 && ix < i32(c.w));
}

#entry 64
    let c = p.shape;
    let taps = c.kh * c.kw;
    let rows = c.cin * taps;
    let f = flat_index(wg, nwg, li, 64u);
    if (f >= p.images * rows * c.ho) {
        return;
    }
    let oy = f % c.ho;
    let row = (f / c.ho) % rows;
    let n = f / (c.ho * rows);
    let ci = row / taps;
    let ky = (row % taps) / c.kw;
    let kx = row % c.kw;
    let base = ((p.n0 + n) * c.cin + ci) * (c.h >> c.up) * (c.w >> c.up);
    let iy = i32(oy * c.stride + ky) - i32(c.pad_top);
    let ix0 = i32(kx) - i32(c.pad_left);
    let step = i32(c.stride);
    var o = ((n * rows + row) * c.ho + oy) * c.wo / 4u;
    for (var q = 0u; q < c.wo / 4u; q = q + 1u) {
        let ix = ix0 + i32(4u * q) * step;
        cols[o] = vec4<f32>(
            at(base, iy, ix),
            at(base, iy, ix + step),
            at(base, iy, ix + 2 * step),
            at(base, iy, ix + 3 * step),
        );
        o = o + 1u;
    }
}
