// conv2d_epilogue.inc.wgsl: the epilogue of the convolutions whose input channels may come in chunks, one
// launch each (conv2d_packed.inc.wgsl's store_block), included by kernels whose Params have
// `first`, `last`, `has_residual`, `out_scale` and `has_channel` and whose bindings have `out`, `residual`, `bias`
// and `chan`: the first chunk adds the bias (and channel offset) `bk` to its sum, later ones what `out` holds at
// `o`; the last adds the residual there and scales.

// Output channel co's bias for image n, with the image's channel offset where there is one.
fn bias_of(n: u32, co: u32, c: ConvShape) -> f32 {
    var bk = bias[co];
    if (p.has_channel != 0u) {
        bk = bk + chan[n * c.chan_stride + c.chan_offset + co];
    }
    return bk;
}

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
