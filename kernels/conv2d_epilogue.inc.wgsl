// conv2d_epilogue.inc.wgsl: the epilogue of the convolutions whose input channels may come in chunks, one
// launch each (conv2d_packed.inc.wgsl's store_block, conv2d_1x1.wgsl), included by kernels whose Params have
// `first`, `last`, `has_residual` and `out_scale` and whose bindings have `out` and `residual`: the first chunk
// adds the bias (and channel offset) `bk` to its sum, later ones what `out` holds at `o`; the last adds the
// residual there and scales.
fn epilogue(sum: f32, o: u32, bk: f32) -> f32 {
    var v = sum;
    if (p.first != 0u) {
        v = v + bk;
    } else {
        v = v + out[o];
    }
    if (p.last != 0u) {
        if (p.has_residual != 0u) {
            v = v + residual[o];
        }
        v = v * p.out_scale;
    }
    return v;
}
