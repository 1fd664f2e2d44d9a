// attention_pack: lays the keys (or the values) of attention_windowed.wgsl out in 64 KiB uniform windows.
//
// Layouts (row-major f32):
//   src     [pairs, head_dim, T]   k or v as the projections write them ([batch, heads * head_dim, T]; pair =
//                                  image * heads + head)
//   packed  windows of 16,384 floats (window0 + w is window w of this buffer). Window group * key_windows + kwi
//           holds pairs group * per_window ..
//           (per_window of them) and, of each, keys kwi * kw .. + kw: element (pair p, row d, key j) at
//           w * 16384 + (p % per_window) * head_dim * kw + d * kw + j, keys past T as zeros.
// So the attention kernel finds any 8 consecutive keys of a row as two vec4s of its window, at addresses that
// depend only on its workgroup and loop counters.
//
// Grid: one launch per packed buffer (each at most one storage binding), holding windows window0 ..
// window0 + windows; one invocation per row (window, pair, d) of every window, copying the row's kw keys, over
// the flattened 2-D workgroup grid. (One invocation per float had 64 times the workgroups, and lavapipe's cost
// per workgroup made packing CIFAR-10's keys and values take longer than a third of the attention.)
// Invariants: per_window * head_dim * kw <= 16384; kw % 8 == 0; the windows together cover every pair and key.

struct Params {
    pairs: u32,
    head_dim: u32,
    tokens: u32,
    kw: u32,
    per_window: u32,
    key_windows: u32,
    windows: u32,
    window0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings src packed

#entry 64
    let rows = p.per_window * p.head_dim;
    let e = flat_index(wg, nwg, li, 64u);
    let w = e / rows;
    if (w >= p.windows) {
        return;
    }
    let gw = p.window0 + w;
    let r = e % rows;
    let pair = (gw / p.key_windows) * p.per_window + r / p.head_dim;
    if (pair >= p.pairs) {
        return;
    }
    let d = r % p.head_dim;
    let key0 = (gw % p.key_windows) * p.kw;
    let from_row = (pair * p.head_dim + d) * p.tokens;
    let to_row = w * 16384u + r * p.kw;
    for (var j = 0u; j < p.kw; j = j + 1u) {
        var value = 0.0;
        if (key0 + j < p.tokens) {
            value = src[from_row + key0 + j];
        }
        packed[to_row + j] = value;
    }
}
