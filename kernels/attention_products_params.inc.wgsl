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

// One invocation's block of a product: pair `local` of the launch, row block `rb` of 8 rows (keys for the
// scores, channels for the values) and queries i0 .. i0 + 7. Workgroup g takes pair g / (blocks * qgroups),
// row block (g / qgroups) % blocks and, through its 8 invocations, 8 consecutive blocks of 8 queries (qgroups
// = ceil(T / 64)); `live` is false past the launch's work.
struct Block {
    local: u32,
    rb: u32,
    i0: u32,
    live: bool,
}

fn block_of(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> Block {
    let qgroups = (p.tokens + 63u) / 64u;
    let g = flat_workgroup(wg, nwg);
    let local = g / (p.blocks * qgroups);
    let i0 = ((g % qgroups) * 8u + li) * 8u;
    return Block(local, (g / qgroups) % p.blocks, i0, local < p.pairs && i0 < p.tokens);
}
