// elementwise: one op per dispatch over flat f32 tensors, chosen by `op` (uniform across the dispatch).
//
// Layouts (`act` elements, f32 or f16 by the device's precision; computed in f32): a and out [len]; b depends on
// the op:
//   0 ADD          out = a + b                      b [len]
//   1 SCALE        out = alpha * a                  b unused
//   2 SILU         out = a * sigmoid(a)             b unused
//   3 ADD_CHANNEL  out = a + b[i / inner]           b [len / inner]: a per-(n, c) vector onto [n, c, inner]
//   4 AXPBY        out = alpha * a + beta * b       b [len]
//   5 CLAMP        out = clamp(a, lo, hi)           b unused
//   6 THRESHOLD    out = clamp(a, -s, s) / s, s = b[i / inner]   b [len / inner]: one s per image
// Unused bindings take any read-only buffer.
//
// Grid: one invocation per 4 consecutive elements over the flattened 2-D workgroup grid.
// Invariants: out aliases neither a nor b; inner > 0 for ops 3 and 6.

struct Params {
    len: u32,
    op: u32,
    inner: u32,
    _pad0: u32,
    alpha: f32,
    beta: f32,
    lo: f32,
    hi: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings a:act b:act out:act

fn apply(i: u32) -> f32 {
    let av = f32(a[i]);
    switch p.op {
        case 0u: { return av + f32(b[i]); }
        case 1u: { return p.alpha * av; }
        case 2u: { return silu(av); }
        case 3u: { return av + f32(b[i / p.inner]); }
        case 4u: { return p.alpha * av + p.beta * f32(b[i]); }
        case 5u: { return clamp(av, p.lo, p.hi); }
        case 6u: {
            let s = f32(b[i / p.inner]);
            return clamp(av, -s, s) / s;
        }
        default: { return av; }
    }
}

#entry 64
    let base = flat_index(wg, nwg, li, 64u) * 4u;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let i = base + j;
        if (i >= p.len) {
            return;
        }
        out[i] = act(apply(i));
    }
}
