// conv2d_1x1.inc.wgsl: what the 1x1 convolutions over uniform windows (conv2d_1x1.wgsl, one weight window per
// launch; conv2d_1x1_wide, four) share: their Params, how an invocation finds its work, and the epilogue
// that stores an invocation's block,
// in vec4s (out's rows start at multiples of 8 floats). Each kernel declares `bias`, `residual` (f32), `out`
// (vec4) and `chan` (f32).

struct Params {
    cin: u32,
    cout: u32,
    hw: u32,
    ci_count: u32,
    rows: u32,
    chunk: u32,
    block0: u32,
    blocks: u32,
    n0: u32,
    images: u32,
    first: u32,
    last: u32,
    has_residual: u32,
    out_scale: f32,
    has_channel: u32,
    // Blocks of 8 output channels per weight window (conv2d_1x1_wide's).
    per_window: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// One invocation's work: output-channel block b of the launch, image `local` of the launch and its pixels px0
// .. px0 + 7. Workgroup g takes block g / groups and its 8 invocations 8 consecutive blocks of 8 pixels
// (groups = ceil(images * hw / 64)); `live` is false past the launch's work.
struct Job {
    b: u32,
    local: u32,
    px0: u32,
    live: bool,
}

fn job(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> Job {
    let per_image = p.hw / 8u;
    let pixel_blocks = p.images * per_image;
    let groups = (pixel_blocks + 7u) / 8u;
    let g = flat_workgroup(wg, nwg);
    let b = g / groups;
    let pb = (g % groups) * 8u + li;
    return Job(b, pb / per_image, (pb % per_image) * 8u, b < p.blocks && pb < pixel_blocks);
}

// Stores the block acc of 8 output channels from co0 (those below cout) x 8 pixels from px0 of image n: the
// first chunk adds the bias and channel offset, later ones what out holds; the last adds the residual and
// scales. (Stored float by float, lavapipe's per-lane stores and loads took 10-18% of the kernel.)
fn store_block(acc: Acc, n: u32, co0: u32, px0: u32) {
    let res = rows(acc);
    for (var k = 0u; k < 8u; k = k + 1u) {
        let co = co0 + k;
        if (co >= p.cout) {
            break;
        }
        let o = (n * p.cout + co) * p.hw + px0;
        var bk = bias[co];
        if (p.has_channel != 0u) {
            bk = bk + chan[n * p.cout + co];
        }
        for (var h = 0u; h < 2u; h = h + 1u) {
            let o4 = o / 4u + h;
            var v = res[k][h];
            if (p.first != 0u) {
                v = v + bk;
            } else {
                v = v + out[o4];
            }
            if (p.last != 0u) {
                if (p.has_residual != 0u) {
                    let r = o + 4u * h;
                    v = v + vec4<f32>(residual[r], residual[r + 1u], residual[r + 2u], residual[r + 3u]);
                }
                v = v * p.out_scale;
            }
            out[o4] = v;
        }
    }
}
