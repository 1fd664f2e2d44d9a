// attention: multi-head softmax(q k^T * scale) v over the tokens of a feature map, with an online softmax.
//
// Layouts (row-major f32), C = heads * head_dim, T = tokens (h * w):
//   q, k, v, out  [batch, C, T]: element (n, head, d, t) at (n * C + head * head_dim + d) * T + t
// This is the NCHW layout the q/k/v projections (linear.wgsl with token strides) write, so no transposes.
//
// Grid: one invocation per (n, head, query token), query fastest, over the flattened 2-D workgroup grid.
// Keys are visited in blocks of KB: scores for a block live in registers, the running maximum and denominator
// are rescaled once per block (the online softmax of Milakov & Gimelshein 2018), and the invocation's output
// row out[n, head, :, t] doubles as its accumulator. No T x T score matrix exists at any point, so memory is
// O(C * T) whatever T is, and head_dim has no upper bound.
// Invariants: out aliases none of q, k, v; every count > 0.

struct Params {
    batch: u32,
    heads: u32,
    head_dim: u32,
    tokens: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const KB: u32 = 16u;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let id = flat_index(wg, nwg, li, 64u);
    let t = id % p.tokens;
    let nh = id / p.tokens;
    if (nh >= p.batch * p.heads) {
        return;
    }
    let T = p.tokens;
    // (n * C + head * head_dim) * T == nh * head_dim * T
    let base = nh * p.head_dim * T;

    for (var d = 0u; d < p.head_dim; d = d + 1u) {
        out[base + d * T + t] = 0.0;
    }

    var running_max = -3.0e38;
    var denom = 0.0;
    for (var kb = 0u; kb < T; kb = kb + KB) {
        let count = min(KB, T - kb);
        var s: array<f32, KB>;
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            let row = base + d * T;
            let qd = q[row + t] * p.scale;
            for (var j = 0u; j < KB; j = j + 1u) {
                // Keys past the end reread the last key; their scores are masked below.
                s[j] = s[j] + qd * k[row + min(kb + j, T - 1u)];
            }
        }
        var block_max = -3.0e38;
        for (var j = 0u; j < count; j = j + 1u) {
            block_max = max(block_max, s[j]);
        }
        let new_max = max(running_max, block_max);
        let correction = exp(running_max - new_max);
        denom = denom * correction;
        for (var j = 0u; j < KB; j = j + 1u) {
            s[j] = select(0.0, exp(s[j] - new_max), j < count);
            denom = denom + s[j];
        }
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            let row = base + d * T;
            var acc = out[row + t] * correction;
            for (var j = 0u; j < KB; j = j + 1u) {
                acc = acc + s[j] * v[row + min(kb + j, T - 1u)];
            }
            out[row + t] = acc;
        }
        running_max = new_max;
    }

    let inv = 1.0 / denom;
    for (var d = 0u; d < p.head_dim; d = d + 1u) {
        out[base + d * T + t] = out[base + d * T + t] * inv;
    }
}
