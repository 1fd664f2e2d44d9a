//! The one random-number generator of the project: Philox4x32-10 (Salmon, Moraes, Dror, Shaw 2011), counter
//! based, so any value can be computed on its own from (seed, image, step, stream, element). The same functions
//! are in `kernels/common.wgsl`; the tests check the two agree bit for bit on the u32 stream.
//!
//! Counter layout for the sampler's normals: `[element / 4, image, step, stream]`, key = the 64-bit seed.
//! Element e takes word `e % 4`; words (0, 1) and (2, 3) each feed one Box-Muller transform.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for _ in 0..10 {
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// What a stream of normals is for; the fourth counter word, so the uses never share numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stream {
    /// The starting latent x_T.
    Latent = 0,
    /// The noise z added by a step with sigma > 0.
    StepNoise = 1,
}

/// Identifies a stream of normals: which seed, which sampling step, which use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseKey {
    /// The user's seed.
    pub seed: u64,
    /// The step index (0 for the latent).
    pub step: u32,
    /// What the numbers are for.
    pub stream: Stream,
}

impl NoiseKey {
    /// The 64-bit seed as Philox's two key words, low word first.
    pub fn key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }
}

/// A u32 to a uniform in (0, 1): the top 24 bits, centred; never 0 or 1. Exact here in f64; the kernel's f32
/// rounds the half to even from 2^23 up.
pub fn unit_open(x: u32) -> f64 {
    ((x >> 8) as f64 + 0.5) / 16_777_216.0
}

/// Box-Muller with the angle in (-pi, pi), as the WGSL twin computes it (there in f32).
pub fn box_muller(a: u32, b: u32) -> [f64; 2] {
    let r = (-2.0 * unit_open(a).ln()).sqrt();
    let theta = std::f64::consts::PI * (2.0 * unit_open(b) - 1.0);
    [r * theta.cos(), r * theta.sin()]
}

/// The standard normal for `element` of global image `image` under `key`.
pub fn normal(key: NoiseKey, image: u32, element: u32) -> f64 {
    let words = philox4x32_10([element / 4, image, key.step, key.stream as u32], key.key());
    let pair = (element % 4) as usize / 2;
    box_muller(words[2 * pair], words[2 * pair + 1])[(element % 2) as usize]
}

/// Normals for images `first_image .. first_image + batch`, `per_image` each, row-major.
pub fn normals(key: NoiseKey, first_image: u32, batch: usize, per_image: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(batch * per_image);
    for n in 0..batch {
        for e in 0..per_image {
            out.push(normal(key, first_image + n as u32, e as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn normals_have_unit_moments() {
        let key = NoiseKey { seed: 7, step: 0, stream: Stream::Latent };
        let z = normals(key, 0, 4, 25_000);
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        // 100k samples: the standard error of the mean is 0.0032 and of the variance 0.0045; 5 sigma each.
        assert!(mean.abs() < 0.016, "mean {mean}");
        assert!((var - 1.0).abs() < 0.023, "variance {var}");
    }

    #[test]
    fn streams_and_images_differ() {
        let key = NoiseKey { seed: 1, step: 3, stream: Stream::StepNoise };
        let other = NoiseKey { stream: Stream::Latent, ..key };
        assert_ne!(normal(key, 0, 0), normal(other, 0, 0));
        assert_ne!(normal(key, 0, 0), normal(key, 1, 0));
        assert_ne!(normal(key, 0, 0), normal(key, 0, 4));
    }
}
