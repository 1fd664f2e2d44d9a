// attention_products_params.inc.wgsl: the Params of the CPU family's attention as two matrix products
// (attention_scores.wgsl, attention_softmax.wgsl, attention_values.wgsl; src/ops/attention.rs `Products`).
// T = tokens, D = head_dim; a pair is (image, head), its q, k, v and out rows at (pair * D + d) * T.

struct Params {
    tokens: u32,     // T, a multiple of 8
    head_dim: u32,   // D
    rows: u32,       // rows of T floats one window of the launch's per-lane operand holds (q or the scores)
    count: u32,      // terms this launch sums: channels (scores) or keys (values)
    pairs: u32,      // pairs this launch takes, side by side in its windows
    blocks: u32,     // blocks of 8 output rows per pair: keys (scores) or channels of the value window (values)
    pair0: u32,      // the launch's first pair, counted in the scores scratch (from the group's first pair)
    out_pair0: u32,  // the same pair, counted in out (values)
    c0: u32,         // the first channel of the value window (values)
    j0: u32,         // the first key this launch sums (values)
    first: u32,      // 1: write; 0: add to what an earlier launch of the same outputs wrote
    scale: f32,      // 1 / sqrt(D) (scores)
}

@group(0) @binding(0) var<uniform> p: Params;
