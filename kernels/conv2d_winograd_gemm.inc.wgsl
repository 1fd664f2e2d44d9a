// conv2d_winograd_gemm.inc.wgsl: what the Winograd convolution's products kernels (conv2d_winograd_gemm.wgsl,
// V from storage; conv2d_winograd_gemm_windowed.wgsl, V from uniform windows; conv2d_winograd_gemm_wide.wgsl,
// several weight windows per launch) share, included after
// conv2d_block.inc.wgsl: their Params, the entry point that maps invocations to (unit, 8-tile column) pairs,
// and the store of a unit's block to M. Each kernel declares its bindings (`upack`, V, `m`) and
// `fn unit_block(l: u32, col: u32)`, which sums the block of unit l, column col, and calls `store_block`.

struct Params {
    cin: u32,
    cout: u32,
    tp: u32,
    blocks: u32,
    u0: u32,
    units: u32,
    // Input channels per V window (the windowed kernel's; the others ignore it).
    rows: u32,
    // Units per weight window, and the first position of the V window (the wide kernel's).
    per_window: u32,
    xi0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Stores the block of unit l, column col: channels 8 block .. 8 block + 7 (those below cout) x tiles
// 8 col .. 8 col + 7 of M[xi] [cout, tp].
fn store_block(acc: Acc, l: u32, col: u32) {
    let xi = (p.u0 + l) / p.blocks;
    let co0 = ((p.u0 + l) % p.blocks) * 8u;
    let row = p.tp / 4u;
    var o = (xi * p.cout + co0) * row + col * 2u;
    var res = rows(acc);
    for (var k = 0u; k < 8u; k = k + 1u) {
        if (co0 + k >= p.cout) {
            break;
        }
        m[o] = res[k][0];
        m[o + 1u] = res[k][1];
        o = o + row;
    }
}

#entry 8
    let columns = p.tp / 8u;
    if (columns % 8u == 0u) {
        // Whole workgroups per unit: l from the workgroup alone, so the weight reads stay uniform.
        let g = flat_workgroup(wg, nwg);
        let l = g / (columns / 8u);
        if (l < p.units) {
            unit_block(l, (g % (columns / 8u)) * 8u + li);
        }
        return;
    }
    let k = flat_index(wg, nwg, li, 8u);
    let l = k / columns;
    if (l < p.units) {
        unit_block(l, k % columns);
    }
}
