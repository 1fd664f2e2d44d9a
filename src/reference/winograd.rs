//! The Winograd convolution F(4x4, 3x3) (Lavin and Gray 2016), for the tests of `ops::winograd`'s kernels.
//!
//! The transform matrices are derived here by Toom-Cook (Lagrange interpolation at the points
//! [`POINTS`] and infinity), in f64, rather than copied from the kernels: a wrong constant in a kernel then
//! disagrees with this module instead of being shared with it. For output tile side m = 4 and kernel side
//! r = 3, an input tile d (6 x 6) and a kernel g (3 x 3) give the 4 x 4 correlation
//! `Y = A^T [(G g G^T) ⊙ (B^T d B)] A`, and over input channels the products add up in the transformed space,
//! so a convolution is 36 matrix products `M[xi] = U[xi] V[xi]` (`U` the transformed weights `[cout, cin]`,
//! `V` the transformed input tiles `[cin, tiles]`) between the two transforms.

/// The finite interpolation points. Lavin's are 0, -1, 1, 2, -2; 1/2 in place of 2 gives every matrix entry
/// exactly in binary except G's, and a 3.5x smaller f32 error on random data (Barabasz et al. 2018 study the
/// choice).
pub const POINTS: [f64; 5] = [0.0, -1.0, 1.0, 0.5, -2.0];

/// Output tile side.
pub const M: usize = 4;
/// Kernel side.
pub const R: usize = 3;
/// Input tile side.
pub const N: usize = M + R - 1;

/// A matrix as rows.
pub type Matrix = Vec<Vec<f64>>;

/// `(A^T [M x N], G [N x R], B^T [N x N])`.
pub fn matrices() -> (Matrix, Matrix, Matrix) {
    let a = POINTS;
    // A^T: output i gathers each point's product times point^i; the point at infinity feeds the last only.
    let mut at = vec![vec![0.0; N]; M];
    for (i, row) in at.iter_mut().enumerate() {
        for (j, &p) in a.iter().enumerate() {
            row[j] = p.powi(i as i32);
        }
    }
    at[M - 1][N - 1] = 1.0;
    // G: the kernel polynomial evaluated at each point, divided by the Lagrange denominator.
    let mut g = vec![vec![0.0; R]; N];
    for (j, &p) in a.iter().enumerate() {
        let den: f64 = a.iter().enumerate().filter(|&(k, _)| k != j).map(|(_, &q)| p - q).product();
        for (i, v) in g[j].iter_mut().enumerate() {
            *v = p.powi(i as i32) / den;
        }
    }
    g[N - 1][R - 1] = 1.0;
    // B^T: row j holds the coefficients of prod_{k != j} (x - a_k); the last row those of prod_k (x - a_k).
    let mut bt = vec![vec![0.0; N]; N];
    for (j, row) in bt.iter_mut().enumerate() {
        let mut poly = vec![1.0];
        for (k, &q) in a.iter().enumerate() {
            if k != j {
                poly = times_x_minus(&poly, q);
            }
        }
        row[..poly.len()].copy_from_slice(&poly);
    }
    (at, g, bt)
}

/// The coefficients (lowest power first) of `poly * (x - q)`.
fn times_x_minus(poly: &[f64], q: f64) -> Vec<f64> {
    let mut out = vec![0.0; poly.len() + 1];
    for (i, &c) in poly.iter().enumerate() {
        out[i + 1] += c;
        out[i] -= q * c;
    }
    out
}

/// `left * x * right^T`: `left` `[p, q]`, `x` `[q, q']`, `right` `[p', q']`.
fn sandwich(left: &[Vec<f64>], x: &[Vec<f64>], right: &[Vec<f64>]) -> Matrix {
    let tmp: Vec<Vec<f64>> = left
        .iter()
        .map(|l| {
            (0..x[0].len()).map(|j| l.iter().zip(x).map(|(a, row)| a * row[j]).sum()).collect()
        })
        .collect();
    tmp.iter()
        .map(|row| right.iter().map(|r| row.iter().zip(r).map(|(a, b)| a * b).sum()).collect())
        .collect()
}

/// Tiles of one image: `(tiles_h, tiles_w)` for an output of `ho x wo`.
pub fn tiles(ho: usize, wo: usize) -> (usize, usize) {
    (ho.div_ceil(M), wo.div_ceil(M))
}

/// The transformed weights `U [36, cout, cin]` of `weight [cout, cin, 3, 3]`: `U[i * 6 + j][co][ci] =
/// (G g G^T)[i][j]`.
pub fn weight_transform(weight: &[f32], cout: usize, cin: usize) -> Vec<f64> {
    let (_, g, _) = matrices();
    let mut u = vec![0.0; N * N * cout * cin];
    for co in 0..cout {
        for ci in 0..cin {
            let k = &weight[(co * cin + ci) * R * R..][..R * R];
            let k: Vec<Vec<f64>> =
                (0..R).map(|y| (0..R).map(|x| k[y * R + x] as f64).collect()).collect();
            let t = sandwich(&g, &k, &g);
            for (xi, v) in t.concat().into_iter().enumerate() {
                u[(xi * cout + co) * cin + ci] = v;
            }
        }
    }
    u
}

/// The transformed input tiles `V [36, cin, tp]` of the batch's tiles `t0 .. t0 + count` of `x [n, cin, h, w]`
/// under a 3x3 stride-1 convolution with padding `top` and `left` (the output `ho x wo`), read upsampled 2x by
/// nearest neighbour when `up` (then `h` and `w` are the upsampled size). Tile `t = (n * tiles_h + ty) *
/// tiles_w + tx` goes to column `t - t0`; columns from `count` on are zero.
#[allow(clippy::too_many_arguments)] // the geometry of one convolution
pub fn input_transform(
    x: &[f32],
    [cin, h, w]: [usize; 3],
    (top, left): (usize, usize),
    (ho, wo): (usize, usize),
    up: bool,
    (t0, count): (usize, usize),
    tp: usize,
) -> Vec<f64> {
    let (_, _, bt) = matrices();
    let (th, tw) = tiles(ho, wo);
    let s = up as usize;
    let (sh, sw) = (h >> s, w >> s);
    let mut v = vec![0.0; N * N * cin * tp];
    for tile in t0..t0 + count {
        let (n, ty, tx) = (tile / (th * tw), tile / tw % th, tile % tw);
        for ci in 0..cin {
            let d: Vec<Vec<f64>> = (0..N)
                .map(|r| {
                    (0..N)
                        .map(|c| {
                            let iy = (M * ty + r) as isize - top as isize;
                            let ix = (M * tx + c) as isize - left as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                return 0.0;
                            }
                            let (iy, ix) = (iy as usize >> s, ix as usize >> s);
                            x[((n * cin + ci) * sh + iy) * sw + ix] as f64
                        })
                        .collect()
                })
                .collect();
            for (xi, val) in sandwich(&bt, &d, &bt).concat().into_iter().enumerate() {
                v[(xi * cin + ci) * tp + tile - t0] = val;
            }
        }
    }
    v
}

/// `M[xi] = U[xi] V[xi]`: `u [36, cout, cin]` (from [`weight_transform`]), `v [36, cin, tp]` (f32, what the
/// GPU holds), out `[36, cout, tp]`.
pub fn products(u: &[f64], v: &[f32], cout: usize, cin: usize, tp: usize) -> Vec<f64> {
    let mut m = vec![0.0; N * N * cout * tp];
    for xi in 0..N * N {
        for co in 0..cout {
            for ci in 0..cin {
                let a = u[(xi * cout + co) * cin + ci];
                for t in 0..tp {
                    m[(xi * cout + co) * tp + t] += a * v[(xi * cin + ci) * tp + t] as f64;
                }
            }
        }
    }
    m
}

/// The output transform of the batch's tiles `t0 .. t0 + count` (columns `0 .. count` of `m`) into
/// `out [n, cout, ho, wo]`, only their pixels: `out = (A^T M A + bias + channel + residual) * out_scale`, where
/// `channel [n, cout]` and `residual [n, cout, ho, wo]` are optional.
#[allow(clippy::too_many_arguments)] // the epilogue of one convolution
pub fn output_transform(
    m: &[f32],
    [cout, ho, wo]: [usize; 3],
    tp: usize,
    (t0, count): (usize, usize),
    bias: &[f32],
    channel: Option<&[f32]>,
    residual: Option<&[f32]>,
    out_scale: f64,
    out: &mut [f64],
) {
    let (at, _, _) = matrices();
    let (th, tw) = tiles(ho, wo);
    for tile in t0..t0 + count {
        let (n, ty, tx) = (tile / (th * tw), tile / tw % th, tile % tw);
        for co in 0..cout {
            let t = tile - t0;
            let mm: Vec<Vec<f64>> = (0..N)
                .map(|i| (0..N).map(|j| m[((i * N + j) * cout + co) * tp + t] as f64).collect())
                .collect();
            for (r, row) in sandwich(&at, &mm, &at).iter().enumerate() {
                for (c, &val) in row.iter().enumerate() {
                    let (oy, ox) = (M * ty + r, M * tx + c);
                    if oy >= ho || ox >= wo {
                        continue;
                    }
                    let o = ((n * cout + co) * ho + oy) * wo + ox;
                    let mut acc = val + bias[co] as f64;
                    acc += channel.map_or(0.0, |ch| ch[n * cout + co] as f64);
                    acc += residual.map_or(0.0, |res| res[o] as f64);
                    out[o] = acc * out_scale;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::nn;

    /// The three transforms composed, in f64, equal the direct convolution: the matrices are right.
    #[test]
    fn transforms_compose_to_the_direct_convolution() {
        let (n, cin, h, w, cout) = (2, 3, 7, 10, 5);
        let x: Vec<f32> =
            (0..n * cin * h * w).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let wt: Vec<f32> =
            (0..cout * cin * 9).map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0).collect();
        let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.25 - 0.5).collect();
        for (top, left) in [(1, 1), (0, 2), (2, 0)] {
            let ho = h + 2 * top - 2;
            let wo = w + 2 * left - 2;
            let (th, tw) = tiles(ho, wo);
            let tp = (n * th * tw).next_multiple_of(8);
            let v: Vec<f32> = input_transform(
                &x,
                [cin, h, w],
                (top, left),
                (ho, wo),
                false,
                (0, n * th * tw),
                tp,
            )
            .into_iter()
            .map(|v| v as f32)
            .collect();
            let u = weight_transform(&wt, cout, cin);
            let m: Vec<f32> =
                products(&u, &v, cout, cin, tp).into_iter().map(|v| v as f32).collect();
            let mut got = vec![0.0; n * cout * ho * wo];
            output_transform(
                &m,
                [cout, ho, wo],
                tp,
                (0, n * th * tw),
                &bias,
                None,
                None,
                1.0,
                &mut got,
            );
            let (want, _) = nn::conv2d(
                &x,
                [n, cin, h, w],
                &wt,
                [cout, cin, 3, 3],
                &bias,
                None,
                1,
                (top, top, left, left),
                1.0,
            );
            let max = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let err = got.iter().zip(&want).fold(0.0f64, |a, (g, w)| a.max((g - w).abs()));
            // Rounded to f32 between stages: errors of a few f32 ulps of the transformed values.
            assert!(err < 1e-5 * max, "padding ({top}, {left}): error {err} of max {max}");
        }
    }

    #[test]
    fn matrices_are_lavins_construction_at_these_points() {
        let (at, g, bt) = matrices();
        assert_eq!(at[1], vec![0.0, -1.0, 1.0, 0.5, -2.0, 0.0]);
        assert_eq!(at[3], vec![0.0, -1.0, 1.0, 0.125, -8.0, 1.0]);
        assert_eq!(bt[0], vec![1.0, -1.5, -2.0, 1.5, 1.0, 0.0]);
        assert_eq!(bt[5], vec![0.0, 1.0, -1.5, -2.0, 1.5, 1.0]);
        assert!((g[3][0] + 16.0 / 15.0).abs() < 1e-15 && g[5] == vec![0.0, 0.0, 1.0]);
    }
}
