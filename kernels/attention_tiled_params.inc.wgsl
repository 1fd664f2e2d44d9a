// attention_tiled_params.inc.wgsl: the Params of attention_tiled.wgsl and attention_combine.wgsl
// (ops::attention::TiledParams): the launch's pairs pair0 .. pair0 + pairs of head_dim x tokens, the softmax
// scale, and the key split: key_splits ranges of keys_per_split keys.

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
