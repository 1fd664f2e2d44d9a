// concat: channel concatenation [a, b] of two NCHW maps with the same batch and spatial size (the UNet's skip
// connections: torch.cat([h, skip], dim=1), h first), as two strided block copies.
//
// Layouts (row-major, `act` elements: f32, or f16 on a device at f16 precision; copied as they are):
//   a    [batch, ca, hw]        each image's ca * hw floats are one contiguous run
//   b    [batch, cb, hw]
//   out  [batch, ca + cb, hw]   image n's run of a lands at n * (ca + cb) * hw, its run of b ca * hw after it
//
// Grid: two launches of the same pipeline over the flattened 2-D workgroup grid, the first with src = a
// (len = ca * hw, offset 0), the second with src = b (len = cb * hw, offset ca * hw); one invocation per 4
// consecutive floats of one image's run: out[n * out_len + offset + j] = src[n * len + j]. No branch on which
// input an element comes from (the old one-kernel version evaluated both sides under masks on lavapipe) and one
// division per 4 floats.
// Invariants: out aliases neither input; every count > 0; offset + len <= out_len.

struct Params {
    batch: u32,
    len: u32,
    out_len: u32,
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings src:act out:act

#entry 64
    let i = flat_index(wg, nwg, li, 64u);
    let quads = (p.len + 3u) / 4u;
    if (i >= p.batch * quads) {
        return;
    }
    let n = i / quads;
    let j = (i % quads) * 4u;
    let src_at = n * p.len + j;
    let out_at = n * p.out_len + p.offset + j;
    let count = min(4u, p.len - j);
    for (var e = 0u; e < count; e = e + 1u) {
        out[out_at + e] = src[src_at + e];
    }
}
