// finite_watch: marks each image of a batch whose values are not all finite with the step at which that was
// first seen, so that a sampling run can name the image and the step of a NaN or infinity without reading the
// images back after every step.
//
// Layouts (row-major): x [batch, per_image] `act` (f32, or f16 widened to f32 exactly); first [batch] u32, 0xffffffff (unset) before the first step.
// Grid: one invocation per 4 consecutive values of one image, over the flattened 2-D workgroup grid.
// A value is NaN or infinite when its exponent bits are all ones, tested on the bits: WGSL lets an
// implementation assume floats are finite, so `v != v` may be folded away. An invocation that finds one writes
// p.step to first[n] if it is still unset. Every invocation of one dispatch that writes, writes the same value,
// and the steps' dispatches run in order, so first[n] ends as the earliest step without atomics.
// Invariants: every count > 0.

struct Params {
    per_image: u32,
    batch: u32,
    step: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x:act first:u32

#entry 64 id
    let groups = (p.per_image + 3u) / 4u;
    let g = id % groups;
    let n = id / groups;
    if (n >= p.batch) {
        return;
    }
    let base = n * p.per_image + g * 4u;
    let count = min(4u, p.per_image - g * 4u);
    var bad = false;
    for (var e = 0u; e < count; e = e + 1u) {
        bad = bad || (bitcast<u32>(f32(x[base + e])) & 0x7f800000u) == 0x7f800000u;
    }
    if (bad && first[n] == 0xffffffffu) {
        first[n] = p.step;
    }
}
