// timestep_embedding: the sinusoidal embedding of diffusers' get_timestep_embedding (ARCHITECTURE.md, "The reference model").
//
// Layouts (row-major; timesteps and freqs f32, out `act`: f32, or f16 on a device at f16 precision):
//   timesteps [batch]        one (possibly fractional) timestep per image
//   freqs     [half]         freqs[i] = exp(-ln(max_period) * i / (half - freq_shift)), made by the host in f64
//   out       [batch, dim]   [sin(t f), cos(t f)], halves swapped when flip != 0, a zero column last when dim is odd
// The frequencies come from the host because WGSL's exp carries a few ulp of error, which t up to 1000 would
// magnify past 1e-4; t * f is rounded to f32 as in PyTorch, then reduced to (-pi, pi] in two steps
// (Cody-Waite) before common.wgsl's sin_cos (+ and * only), so that every backend agrees to a few ulp.
//
// Grid: one invocation per (n, i < half), i fastest, over the flattened 2-D workgroup grid.
// Invariants: half = dim / 2 > 0.

struct Params {
    batch: u32,
    dim: u32,
    half_dim: u32,
    flip: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#bindings timesteps freqs out:act

// 2 pi = TWO_PI_HI + TWO_PI_LO, TWO_PI_HI = 201 / 32 has 8 significant bits, so k * TWO_PI_HI is exact in f32.
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

#entry 64 id
    let i = id % p.half_dim;
    let n = id / p.half_dim;
    if (n >= p.batch) {
        return;
    }
    let arg = timesteps[n] * freqs[i];
    let turns = round(arg * INV_TWO_PI);
    let r = (arg - turns * TWO_PI_HI) - turns * TWO_PI_LO;
    let sc = sin_cos(r);
    let s = sc.x;
    let c = sc.y;
    let row = n * p.dim;
    if (p.flip != 0u) {
        out[row + i] = act(c);
        out[row + p.half_dim + i] = act(s);
    } else {
        out[row + i] = act(s);
        out[row + p.half_dim + i] = act(c);
    }
    if (i == 0u && p.dim % 2u == 1u) {
        out[row + p.dim - 1u] = act(0.0);
    }
}
