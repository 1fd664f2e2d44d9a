// conv2d_winograd.inc.wgsl: what the Winograd convolution's two transforms (conv2d_winograd_input.wgsl,
// conv2d_winograd_output.wgsl) share, included after conv2d_shape.inc.wgsl: their Params and where a tile lies.
// A transform works on the group of tiles t0 .. t0 + count - 1 of the batch; tile (n * tiles_h + ty) *
// tiles_w + tx covers output rows 4 ty .. 4 ty + 3 and columns 4 tx .. 4 tx + 3 of image n, and its
// transformed values go to column t - t0 of V and M ([36, channels, tp]).

struct Params {
    shape: ConvShape,
    t0: u32,
    count: u32,
    tiles_h: u32,
    tiles_w: u32,
    tp: u32,
    // The epilogue, read by the output transform only.
    has_residual: u32,
    has_channel: u32,
    out_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

struct Tile {
    n: u32,
    ty: u32,
    tx: u32,
}

// Where tile t0 + t of the batch lies.
fn tile_at(t: u32) -> Tile {
    let tile = p.t0 + t;
    return Tile(tile / (p.tiles_w * p.tiles_h), (tile / p.tiles_w) % p.tiles_h, tile % p.tiles_w);
}
