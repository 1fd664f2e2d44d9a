// attention_rows.inc.wgsl: the per-lane row access attention.wgsl and attention_windowed.wgsl share. Each
// kernel declares `q: array<f32>` and `out: array<f32>` in its [batch, C, T] layout (row d of a pair at
// (pair * head_dim + d) * T); an invocation reads and writes the values of 4 consecutive query tokens t0 .. t0 + 3
// of a row as one vec4.

// The 4 queries' rows at element index `i` (q, k, v and out share the layout), as a vec4; slots past the end
// reread the last token.
fn q4(i: u32, t0: u32, T: u32) -> vec4<f32> {
    return vec4<f32>(q[i + t0], q[i + min(t0 + 1u, T - 1u)], q[i + min(t0 + 2u, T - 1u)], q[i + min(t0 + 3u, T - 1u)]);
}

fn out4(i: u32, t0: u32, T: u32) -> vec4<f32> {
    return vec4<f32>(
        out[i + t0],
        out[i + min(t0 + 1u, T - 1u)],
        out[i + min(t0 + 2u, T - 1u)],
        out[i + min(t0 + 3u, T - 1u)],
    );
}

// Stores the slots of `value` whose query exists.
fn store4(i: u32, t0: u32, T: u32, value: vec4<f32>) {
    out[i + t0] = value.x;
    if (t0 + 1u < T) {
        out[i + t0 + 1u] = value.y;
    }
    if (t0 + 2u < T) {
        out[i + t0 + 2u] = value.z;
    }
    if (t0 + 3u < T) {
        out[i + t0 + 3u] = value.w;
    }
}
