// conv2d_shape.inc.wgsl: the geometry every convolution kernel carries in its Params (conv2d, conv2d_ddim,
// conv2d_3x3, conv2d_packed), mirrored by ops::conv2d::ConvShape. ho and wo are computed by the host from all
// four pads, so padding may differ per side; pad_top and pad_left shift the window. With up = 1 the kernel
// reads its input upsampled 2x by nearest neighbour without it being stored: h and w are the upsampled size,
// the tensor holds (h >> up) x (w >> up) planes, and tap (iy, ix) reads element (iy >> up, ix >> up).

struct ConvShape {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    up: u32,
    // Where image n's channel vector (a per-image offset the epilogue adds per output channel, where the
    // kernel has one) starts in `chan`: n * chan_stride + chan_offset; cout and 0 unless it is a slice of a
    // longer per-image vector.
    chan_stride: u32,
    chan_offset: u32,
    _pad: u32,
}
