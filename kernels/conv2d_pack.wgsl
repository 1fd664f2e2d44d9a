// conv2d_pack: lays out convolution weights for conv2d_3x3.wgsl and conv2d_packed.wgsl, once, when a
// convolution is prepared.
//
// Layouts (row-major f32):
//   weight  [cout, cin, kh, kw], taps = kh * kw
//   packed  one window of the packed weights, [16384] (the launch for window w binds bytes 65536 w ..):
//           window w holds output-channel blocks group * blocks_per_window .. (+ blocks_per
//           _window) and input channels chunk_index * chunk .. (+ chunk), group = w / chunks, chunk_index = w %
//           chunks. Inside a window, float ((b * chunk + c) * taps + tap) * 8 + k is weight[8 * block + k, ci, tap]
//           for block = group * blocks_per_window + b and ci = chunk_index * chunk + c; zero where block, ci or
//           the channel run past the tensor, so the convolution may read whole blocks and chunks.
//
// Grid: one launch per window (so the whole packed buffer is never one binding), one invocation per float of
// the window, over the flattened 2-D workgroup grid; those past the end return.
// Invariants: blocks_per_window * chunk * taps * 8 <= 16384 (one 64 KiB uniform window); every count > 0.

struct Params {
    cout: u32,
    cin: u32,
    chunk: u32,
    chunks: u32,
    blocks_per_window: u32,
    window: u32,
    taps: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings weight packed

const WINDOW: u32 = 16384u;

#entry 256
    let f = flat_index(wg, nwg, li, 256u);
    if (f >= WINDOW) {
        return;
    }
    let w = p.window;
    let k = f % 8u;
    let tap = (f / 8u) % p.taps;
    let c = (f / (8u * p.taps)) % p.chunk;
    let b = f / (8u * p.taps * p.chunk);
    let co = ((w / p.chunks) * p.blocks_per_window + b) * 8u + k;
    let ci = (w % p.chunks) * p.chunk + c;
    var v = 0.0;
    if (b < p.blocks_per_window && co < p.cout && c < p.chunk && ci < p.cin) {
        v = weight[(co * p.cin + ci) * p.taps + tap];
    }
    packed[f] = v;
}
