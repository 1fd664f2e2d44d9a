// conv2d_split_reduce: finishes a convolution that conv2d_tiled.wgsl ran split along K: adds the slices' partial
// sums in slice order and applies conv2d.wgsl's epilogue, out = (sum + bias + chan + residual) * out_scale.
//
// Layouts (row-major; part f32, the others `act`, f32 or f16 by the device's precision):
//   part     [splits, cout, p_count]   part[s, m, i]: slice s's sum for output channel m at pixel p_begin + i
//   bias     [cout]
//   chan     [batch, chan_stride]      read only when has_channel != 0 (at n * chan_stride + chan_offset + m)
//   residual [batch, cout, ho, wo]     read only when has_residual != 0
//   out      [batch, cout, ho, wo]     pixel pix = (n * ho + oy) * wo + ox of channel m at (n * cout + m) * ho * wo
//                                      + pix % (ho * wo)
//
// Grid: one invocation per (m, i) of the launch's cout x p_count outputs, i fastest (consecutive invocations read
// consecutive partial sums and write consecutive outputs within an image), over the flattened 2-D grid.
// Invariants: the slices are added in order 0, 1, ..., whatever the grid, so a result does not depend on the
// batch or on how the pixels were grouped into launches; out aliases nothing else bound.

// Params and the epilogue (`finish`): conv2d_tiled_params.inc.wgsl; with DDIM (conv2d_split_reduce_ddim), the
// DDIM update in place of the store.

@group(0) @binding(0) var<uniform> p: Params;
#if DDIM
#bindings part bias:act noise:act latent:act
#else
#bindings part bias:act chan:act residual:act out:act
#end

#entry 256
    let c = p.shape;
    let id = flat_index(wg, nwg, li, 256u);
    if (id >= c.cout * p.p_count) {
        return;
    }
    let m = id / p.p_count;
    let i = id % p.p_count;
    let stride = c.cout * p.p_count;
    var v = 0.0;
    for (var s = 0u; s < p.splits; s = s + 1u) {
        v = v + part[s * stride + id];
    }
    finish(v, m, p.p_begin + i);
}
