// attention_tiled_params.inc.wgsl: the Params of attention_flash.wgsl, attention_tiled.wgsl and attention_combine.wgsl
// (ops::attention::TiledParams): the launch's pairs pair0 .. pair0 + pairs of head_dim x tokens, the softmax
// scale, and the key split: key_splits ranges of keys_per_split keys. Also `block_of`, the workgroup's share,
// which both kernels take the same way.

struct Params {
    pairs: u32,
    head_dim: u32,
    tokens: u32,
    scale: f32,
    key_splits: u32,
    keys_per_split: u32,
    pair0: u32,
    _pad0: u32,
}

// A workgroup's share of the launch: the query block starting at token t0 of pair pair0 + lp, whose elements
// start at base, and split `split`'s keys k_begin .. k_end. Workgroups are numbered query block fastest, then
// pair, then split; `valid` is false past the last (uniform across the workgroup, so the caller may return
// before its first barrier).
struct Block {
    valid: bool,
    t0: u32,
    base: u32,
    lp: u32,
    split: u32,
    k_begin: u32,
    k_end: u32,
}

fn block_of(g: u32, bq: u32) -> Block {
    let T = p.tokens;
    let qblocks = (T + bq - 1u) / bq;
    let rest = g / qblocks;
    let lp = rest % p.pairs;
    let split = rest / p.pairs;
    let k_begin = split * p.keys_per_split;
    return Block(
        split < p.key_splits,
        (g % qblocks) * bq,
        (p.pair0 + lp) * p.head_dim * T,
        lp,
        split,
        k_begin,
        min(T, k_begin + p.keys_per_split),
    );
}
