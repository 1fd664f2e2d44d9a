// linear_params.inc.wgsl: the Params and bindings of linear.wgsl and linear_reduce.wgsl (ops::linear::Params):
// token matrices through (batch, token, feature) strides, weight [n_out, k] row-major, an optional residual and
// input SiLU; the layouts are in linear.wgsl's header. Every binding holds `act` (f32, or f16 on a device at f16
// precision), read as f32.

struct Params {
    batch: u32,
    m: u32,
    k: u32,
    n_out: u32,
    x_sb: u32,
    x_sm: u32,
    x_sk: u32,
    y_sb: u32,
    y_sm: u32,
    y_sn: u32,
    silu_input: u32,
    has_residual: u32,
    out_scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x:act weight:act bias:act residual:act y:act
