use ddim_wgpu::diffusion::philox::{self, NoiseKey, Stream};
use ddim_wgpu::ops::randn;

use crate::common::{assert_close, run};
use crate::gpu_or_skip;

fn words(got: &[f32]) -> Vec<u32> {
    got.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn gpu_philox_matches_known_answer_vectors() {
    let gpu = gpu_or_skip!();
    // Random123's kat_vectors for philox4x32 with 10 rounds.
    let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        ([0; 4], [0; 2], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
        ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (counter, key, expected) in cases {
        let out = gpu.zeros("philox", &[1, 4]).unwrap();
        let d = randn::raw(gpu, "philox kat", counter, key, &out).unwrap();
        assert_eq!(words(&run(gpu, &[&d], &out)), expected, "counter {counter:x?}");
    }
}

#[test]
fn gpu_and_cpu_philox_streams_are_bit_identical() {
    let gpu = gpu_or_skip!();
    // 3 images of 203 words (not a multiple of 4) starting at counter [9, 5, 7, 1].
    let (batch, per) = (3usize, 203usize);
    let key = [0xdead_beef, 0x0123_4567];
    let out = gpu.zeros("philox", &[batch, per]).unwrap();
    let d = randn::raw(gpu, "philox stream", [9, 5, 7, 1], key, &out).unwrap();
    let got = words(&run(gpu, &[&d], &out));
    let mut want = Vec::new();
    for n in 0..batch as u32 {
        for e in 0..per as u32 {
            let block = philox::philox4x32_10([9 + e / 4, 5 + n, 7, 1], key);
            want.push(block[(e % 4) as usize]);
        }
    }
    assert_eq!(got, want);
}

/// [`philox::normal`] with the uniforms and the angle rounded to f32 as the kernel rounds them (`x >> 8` plus a half
/// is a tie from 2^23 up, rounded to even; then the f32 product of pi and 2u - 1), the rest in f64. f32 addition and
/// multiplication are correctly rounded on every backend, so what is left between this and the kernel is its
/// logarithm, square root, sine and cosine.
fn f32_rounded_normal(key: NoiseKey, image: u32, element: u32) -> f64 {
    let words = philox::philox4x32_10([element / 4, image, key.step, key.stream as u32], key.key());
    let pair = (element % 4) as usize / 2;
    let (a, b) = (words[2 * pair], words[2 * pair + 1]);
    let unit = |x: u32| ((x >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0);
    let r = (-2.0 * (unit(a) as f64).ln()).sqrt();
    let theta = (std::f32::consts::PI * (2.0 * unit(b) - 1.0)) as f64;
    [r * theta.cos(), r * theta.sin()][(element % 2) as usize]
}

#[test]
fn gpu_normals_match_cpu_and_do_not_depend_on_the_batch() {
    let gpu = gpu_or_skip!();
    let key = NoiseKey { seed: 0x1234_5678_9abc, step: 3, stream: Stream::StepNoise };
    let per = 3 * 5 * 7;
    // Images 0..4 in one batch.
    let all = gpu.zeros("z", &[4, 3, 5, 7]).unwrap();
    let d = randn::normal(gpu, "normals", key, 0, &all).unwrap();
    let got_all = run(gpu, &[&d], &all);
    // Box-Muller in f32 against f64: log, sqrt and cos/sin each carry a few ulp; |z| < 6 for 24-bit
    // uniforms, so 2e-6 absolute plus 2e-6 relative bounds the difference (measured: 35% of that bound).
    let want = philox::normals(key, 0, 4, per);
    assert_close("normals vs CPU", &got_all, &want, 2e-6, 2e-6);
    let twin: Vec<f64> = (0..4 * per as u32)
        .map(|e| f32_rounded_normal(key, e / per as u32, e % per as u32))
        .collect();
    // A few ulp on every backend: 4 ulp relative (2^-23 is an ulp's largest relative size) plus 2e-7 absolute
    // for the sine and cosine near their zeros (an ulp of their argument times |z| < 6 is more than the
    // relative bound there). Measured: 5.6e-7 at z = -3.93 on lavapipe (2.3 ulp), within 1e-7 + 1e-7 |z| on
    // SwiftShader; the builtins were 1.0e-4 off on SwiftShader.
    assert_close("normals vs the f32-rounded twin", &got_all, &twin, 2e-7, 4.0 / 8_388_608.0);
    // Images 2..4 drawn as their own batch: bit-identical to the same images in the big batch.
    let part = gpu.zeros("z part", &[2, 3, 5, 7]).unwrap();
    let d = randn::normal(gpu, "normals part", key, 2, &part).unwrap();
    let got_part = run(gpu, &[&d], &part);
    assert_eq!(words(&got_part), words(&got_all[2 * per..]));
}
