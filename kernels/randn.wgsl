// randn: Philox4x32-10 random numbers, as standard normals (Box-Muller) or as the raw u32 stream.
//
// Layout: out [batch, per_image] as u32 words: the bits of an f32 normal (mode 0) or a raw Philox word (mode 1).
// Element e of image n is word e % 4 of philox4x32_10(counter, key) with
//   counter = (c0_base + e / 4, image_offset + n, c2, c3),  key = (key_lo, key_hi).
// In mode 0 the words pair up as Box-Muller inputs (0, 1) and (2, 3) (common.wgsl). The sampler uses
// key = seed, c2 = step, c3 = stream, c0_base = 0, so a value depends on (seed, image index, step, element)
// alone, never on the batch it was drawn in. src/sampler/rng.rs computes the same stream on the CPU.
//
// Grid: one invocation per (n, group of 4 elements), group fastest, over the flattened 2-D workgroup grid.
// Invariants: every count > 0.

struct Params {
    per_image: u32,
    batch: u32,
    image_offset: u32,
    mode: u32,
    key_lo: u32,
    key_hi: u32,
    c0_base: u32,
    c2: u32,
    c3: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings out:u32

#entry 64 id
    let groups = (p.per_image + 3u) / 4u;
    let g = id % groups;
    let n = id / groups;
    if (n >= p.batch) {
        return;
    }
    let key = vec2<u32>(p.key_lo, p.key_hi);
    let raw = philox4x32_10(vec4<u32>(p.c0_base + g, p.image_offset + n, p.c2, p.c3), key);
    var words = raw;
    if (p.mode == 0u) {
        let z = vec4<f32>(box_muller(raw.x, raw.y), box_muller(raw.z, raw.w));
        words = bitcast<vec4<u32>>(z);
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        let e = g * 4u + j;
        if (e >= p.per_image) {
            break;
        }
        out[n * p.per_image + e] = words[j];
    }
}
