// roofline_copy: the attainable memory bandwidth of a shader, as a vec4 copy.
//
// Layouts: src, dst [len4] vec4<f32>; dst[i] = src[i].
// Grid: one invocation per vec4 over the flattened 2-D workgroup grid.
// Invariants: dst does not alias src; 32 bytes move per invocation (16 read, 16 written).

struct Params {
    len4: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings src:vec4 dst:vec4

#entry 256
    let i = flat_index(wg, nwg, li, 256u);
    if (i >= p.len4) {
        return;
    }
    dst[i] = src[i];
}
