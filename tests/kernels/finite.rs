use ddim_wgpu::ops::finite::{self, UNSET};
use ddim_wgpu::reference::ddim::finite_watch;

use crate::common::{data, run};
use crate::gpu_or_skip;

/// The watch against the CPU reference over three steps, on images of 1, 7 and 33 * 5 values (not multiples
/// of the 4 values an invocation checks, nor of the workgroup), with NaN, both infinities, the largest finite
/// value and a subnormal (the last two finite) placed at the ends of images and of an invocation's group.
#[test]
fn marks_the_first_non_finite_step_of_each_image() {
    let gpu = gpu_or_skip!();
    for per in [1, 7, 33 * 5] {
        let batch = 5;
        let first = finite::watch_buffer(gpu, "first", batch).unwrap();
        let mut want = vec![UNSET; batch];
        let mut x = data(per as u64, batch * per, -3.0, 3.0);
        // (step, image, position in the image, value) placed before that step's watch.
        let plants = [
            (0, 1, per - 1, f32::NAN),
            (0, 3, 0, f32::MAX),
            (1, 2, per / 2, f32::INFINITY),
            (1, 3, per - 1, f32::from_bits(1)),
            (2, 1, 0, f32::NEG_INFINITY),
            (2, 4, per - 1, f32::NEG_INFINITY),
        ];
        for step in 0..3u32 {
            for &(s, n, at, v) in &plants {
                if s == step {
                    x[n * per + at] = v;
                }
            }
            let xt = gpu.upload("x", &[batch, per], &x).unwrap();
            let d = finite::finite_watch(gpu, "watch", &xt, &first, step).unwrap();
            let got: Vec<u32> = run(gpu, &[&d], &first).iter().map(|w| w.to_bits()).collect();
            finite_watch(&x, &mut want, step);
            assert_eq!(got, want, "{per} values per image, step {step}");
        }
        // Image 1 went NaN at step 0 and stays marked 0; 2 at step 1; 4 at step 2; 0 and 3 stayed finite.
        assert_eq!(want, [UNSET, 0, 1, UNSET, 2]);
    }
}

#[test]
fn a_watch_buffer_of_the_wrong_size_is_refused() {
    let gpu = gpu_or_skip!();
    let x = gpu.zeros("x", &[3, 4]).unwrap();
    let first = finite::watch_buffer(gpu, "first", 2).unwrap();
    let e = finite::finite_watch(gpu, "watch", &x, &first, 0).err().expect("refused").to_string();
    assert!(e.contains("needs [3]"), "{e}");
}
