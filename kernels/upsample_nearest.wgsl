// upsample_nearest: nearest-neighbour 2x upsampling (PyTorch's F.interpolate(scale_factor=2, mode="nearest")).
//
// Layouts (row-major, `act` elements: f32, or f16 on a device at f16 precision; copied as they are):
//   x    [planes, h, w]       (planes = batch * channels)
//   out  [planes, 2h, 2w]     out[p, y, x] = x[p, y / 2, x / 2]
//
// Grid: one invocation per output element over the flattened 2-D workgroup grid.
// Invariants: out does not alias x; every count > 0.

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x:act out:act

#entry 64
    let i = flat_index(wg, nwg, li, 64u);
    let wo = 2u * p.w;
    let ho = 2u * p.h;
    if (i >= p.planes * ho * wo) {
        return;
    }
    let ox = i % wo;
    let rest = i / wo;
    let oy = rest % ho;
    let plane = rest / ho;
    out[i] = x[(plane * p.h + oy / 2u) * p.w + ox / 2u];
}
