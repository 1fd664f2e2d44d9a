// concat: channel concatenation [a, b] of two NCHW maps with the same batch and spatial size
// (the UNet's skip connections: torch.cat([h, skip], dim=1), h first).
//
// Layouts (row-major f32):
//   a    [batch, ca, hw]
//   b    [batch, cb, hw]
//   out  [batch, ca + cb, hw]
//
// Grid: one invocation per output element over the flattened 2-D workgroup grid.
// Invariants: out aliases neither input; every count > 0.

struct Params {
    batch: u32,
    ca: u32,
    cb: u32,
    hw: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_index(wg, nwg, li, 64u);
    let c = p.ca + p.cb;
    if (i >= p.batch * c * p.hw) {
        return;
    }
    let s = i % p.hw;
    let rest = i / p.hw;
    let ch = rest % c;
    let n = rest / c;
    if (ch < p.ca) {
        out[i] = a[(n * p.ca + ch) * p.hw + s];
    } else {
        out[i] = b[(n * p.cb + ch - p.ca) * p.hw + s];
    }
}
