// conv2d_block.inc.wgsl: the 8 x 8 accumulator block of the packed-weight convolutions (conv2d_3x3.wgsl,
// conv2d_packed.wgsl) and of the Winograd convolution's products (conv2d_winograd_gemm.wgsl): 8 output
// channels x 8 columns (pixels, or Winograd tiles) in 16 vec4 registers, and its rank-1 update. Written out
// field by field: lavapipe spills arrays that are indexed in loops.

// 8 channels x 8 columns: a[channel][column half].
struct Acc {
    c0: array<vec4<f32>, 2>,
    c1: array<vec4<f32>, 2>,
    c2: array<vec4<f32>, 2>,
    c3: array<vec4<f32>, 2>,
    c4: array<vec4<f32>, 2>,
    c5: array<vec4<f32>, 2>,
    c6: array<vec4<f32>, 2>,
    c7: array<vec4<f32>, 2>,
}

// Adds one tap: weights w0 (channels 0-3) and w1 (4-7) times the 8 input columns l (0-3) and r (4-7).
fn tap(acc: ptr<function, Acc>, w0: vec4<f32>, w1: vec4<f32>, l: vec4<f32>, r: vec4<f32>) {
    (*acc).c0[0] = (*acc).c0[0] + w0.x * l;
    (*acc).c0[1] = (*acc).c0[1] + w0.x * r;
    (*acc).c1[0] = (*acc).c1[0] + w0.y * l;
    (*acc).c1[1] = (*acc).c1[1] + w0.y * r;
    (*acc).c2[0] = (*acc).c2[0] + w0.z * l;
    (*acc).c2[1] = (*acc).c2[1] + w0.z * r;
    (*acc).c3[0] = (*acc).c3[0] + w0.w * l;
    (*acc).c3[1] = (*acc).c3[1] + w0.w * r;
    (*acc).c4[0] = (*acc).c4[0] + w1.x * l;
    (*acc).c4[1] = (*acc).c4[1] + w1.x * r;
    (*acc).c5[0] = (*acc).c5[0] + w1.y * l;
    (*acc).c5[1] = (*acc).c5[1] + w1.y * r;
    (*acc).c6[0] = (*acc).c6[0] + w1.z * l;
    (*acc).c6[1] = (*acc).c6[1] + w1.z * r;
    (*acc).c7[0] = (*acc).c7[0] + w1.w * l;
    (*acc).c7[1] = (*acc).c7[1] + w1.w * r;
}

// The block as rows: rows(acc)[channel][column half].
fn rows(acc: Acc) -> array<array<vec4<f32>, 2>, 8> {
    return array<array<vec4<f32>, 2>, 8>(acc.c0, acc.c1, acc.c2, acc.c3, acc.c4, acc.c5, acc.c6, acc.c7);
}
