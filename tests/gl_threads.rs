//! Two devices used from two threads at once: one waits on a long dispatch while the other creates buffers and
//! reads them back, and both finish with the right values. On wgpu's GL backend a wait holds the adapter's
//! context, and a call that waits 1 s for a held context panics inside wgpu, so the library waits in slices
//! there. (CI runs this under `WGPU_BACKEND=gl` as well as on Vulkan.)

mod support;
use pollster::FutureExt as _;
use support::gpu;

use ddim_wgpu::gpu::roofline;

#[test]
fn two_devices_in_two_threads_while_one_waits_long() {
    let (Some(a), Some(b)) = (gpu(), gpu()) else { return };
    let out = a.zeros("long fma out", &[1 << 16]).unwrap();
    // About 2^16 x 4096 x 64 = 1.7e10 flops: seconds on a software adapter, so the wait outlasts wgpu's 1 s lock
    // timeout there.
    let long = roofline::fma(&a, &out, 4096).unwrap();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| a.run("a long dispatch", &[&long]).block_on());
        let busy = s.spawn(|| {
            for i in 0..40 {
                let values: Vec<f32> = (0..256).map(|v| (v + i) as f32).collect();
                let t = b.upload("small", &[256], &values).unwrap();
                assert_eq!(b.download(&t).block_on().unwrap(), values);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        busy.join().expect("the second device's thread");
        waiting.join().expect("the waiting thread").unwrap();
    });
}
