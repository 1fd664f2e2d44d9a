// ddim_threshold: the per-image scale of dynamic thresholding (Saharia et al. 2022; diffusers' _threshold_sample):
//   s_n = clamp(quantile(|x0_n|, ratio), 1, max_value)
// with x0 predicted from (x_t, model_out) as in ddim_step.wgsl, and torch.quantile's linear interpolation
// between the order statistics of rank floor(ratio * (len - 1)) and the next.
//
// Layouts (row-major; x and model_out `act`, f32 or f16 by the device's precision, read as f32; thresh f32):
//   x, model_out  [batch, per_image]
//   thresh        [batch]            the output, read by ddim_step.wgsl (FLAG_THRESHOLD) and elementwise op 6
//
// Grid: one workgroup of 64 per image over the flattened 2-D workgroup grid. Each order statistic is found
// exactly by bisection on the bit pattern of |x0| (for non-negative floats the u32 order is the float order):
// 32 rounds, each counting the elements <= the midpoint with workgroup atomics. No sort, no scratch memory.
// Invariants: per_image > 0; 0 <= ratio <= 1; x0 finite.

struct Params {
    per_image: u32,
    batch: u32,
    prediction: u32,
    _pad0: u32,
    sqrt_a_t: f32,
    sqrt_1m_a_t: f32,
    ratio: f32,
    max_value: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings x:act model_out:act thresh

const WG: u32 = 64u;
var<workgroup> below: array<atomic<u32>, 2>;

fn abs_x0_bits(i: u32) -> u32 {
    return bitcast<u32>(abs(predict_x0(f32(x[i]), f32(model_out[i]), p.prediction, p.sqrt_a_t, p.sqrt_1m_a_t)));
}

#entry 64
    // Uniform across the workgroup, so returning keeps the barriers below in uniform control flow.
    let n = flat_workgroup(wg, nwg);
    if (n >= p.batch) {
        return;
    }
    let base = n * p.per_image;
    let position = p.ratio * f32(p.per_image - 1u);
    let rank_lo = min(u32(floor(position)), p.per_image - 1u);
    let rank_hi = min(rank_lo + 1u, p.per_image - 1u);
    let frac = position - f32(rank_lo);

    // For each rank r, the smallest bit pattern b with #{|x0| <= b} > r lies in [lo[r], hi[r]].
    var lo = vec2<u32>(0u, 0u);
    var hi = vec2<u32>(0x7F800000u, 0x7F800000u);
    let rank = vec2<u32>(rank_lo, rank_hi);
    for (var round = 0u; round < 32u; round = round + 1u) {
        if (li < 2u) {
            atomicStore(&below[li], 0u);
        }
        workgroupBarrier();
        let mid = lo + (hi - lo) / 2u;
        var count = vec2<u32>(0u, 0u);
        for (var e = li; e < p.per_image; e = e + WG) {
            let b = abs_x0_bits(base + e);
            count = count + select(vec2<u32>(0u), vec2<u32>(1u), vec2<u32>(b) <= mid);
        }
        atomicAdd(&below[0], count.x);
        atomicAdd(&below[1], count.y);
        workgroupBarrier();
        let total = vec2<u32>(atomicLoad(&below[0]), atomicLoad(&below[1]));
        let enough = total > rank;
        hi = select(hi, mid, enough);
        lo = select(mid + 1u, lo, enough);
        workgroupBarrier();
    }
    if (li == 0u) {
        let v_lo = bitcast<f32>(lo.x);
        let v_hi = bitcast<f32>(lo.y);
        let q = v_lo + frac * (v_hi - v_lo);
        thresh[n] = clamp(q, 1.0, p.max_value);
    }
}
