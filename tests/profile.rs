//! The profiler: one timed slice per dispatch, per-kernel totals that add up to the GPU total, and a Chrome
//! trace that is valid JSON with one slice per dispatch nested under blocks and steps.

mod support;

use pollster::FutureExt as _;
use std::path::Path;

use ddim_wgpu::gpu::profiler::{block_of, chrome_trace, kernel_table};
use ddim_wgpu::gpu::roofline::Roof;
use ddim_wgpu::model::convert::from_diffusers_dir;
use ddim_wgpu::ops::ddim::UpdateMode;
use ddim_wgpu::sampler::ddim::{
    BatchRecord, BatchWatch, Sampler, SamplerSettings, StepNoise, latents,
};
use ddim_wgpu::unet;

#[test]
fn profile_counts_every_dispatch_and_adds_up() {
    let Some(gpu) = support::gpu() else { return };
    if !gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        eprintln!("skipping: no timestamp queries on this adapter");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unet/pad0_onehead_safetensors/model");
    let w = from_diffusers_dir(&dir).unwrap();
    let graph = unet::build(&w.config).unwrap();
    let uploaded = w.upload(&gpu).unwrap();
    // (mode, dispatches of a noisy update, of the last update): unfused = x0, x_prev, noise, add noise.
    for (mode, noisy, last) in [(UpdateMode::Fused, 1, 1), (UpdateMode::Unfused, 4, 2)] {
        let settings = SamplerSettings { steps: 3, eta: 1.0, mode, ..Default::default() };
        let sampler = Sampler::new(&gpu, &graph, &uploaded, settings).unwrap();
        let x_t = latents(0, 0, 2, 3 * 8 * 8);
        let watch = BatchWatch { timings: true, x0: None };
        let BatchRecord { x0: x, timings, step_walls: walls } = sampler
            .sample_watched(&x_t, 2, 0, StepNoise::Philox(0), &mut |_| {}, watch)
            .block_on()
            .unwrap();
        // Profiling does not change the result.
        let plain =
            sampler.sample(&x_t, 2, 0, StepNoise::Philox(0), &mut |_| {}).block_on().unwrap();
        assert_eq!(x, plain);
        // Steps 1 and 2 add noise; the last step (to a_p = 1) has sigma = 0 and a shorter unfused chain. Every
        // step ends with the finiteness watch.
        let per_step = graph.nodes.len() + 1;
        let expected = 3 * per_step + 2 * noisy + last;
        assert_eq!(timings.len(), expected, "{mode:?}: one timing per dispatch");
        assert_eq!(walls.len(), 3);
        assert!(timings.iter().all(|t| t.end_ns >= t.start_ns && t.start_ns >= 0.0));

        let roof = Roof { gflops: 100.0, gbps: 10.0 };
        let rows = kernel_table(&timings, &roof);
        let table_total: f64 = rows.iter().map(|r| r.total_ms).sum();
        let gpu_total: f64 = timings.iter().map(|t| t.ns()).sum::<f64>() / 1e6;
        assert!(
            (table_total - gpu_total).abs() <= 1e-9 * gpu_total.max(1.0),
            "{table_total} vs {gpu_total}"
        );
        let shares: f64 = rows.iter().map(|r| r.share).sum();
        assert!((shares - 1.0).abs() < 1e-9);
        assert_eq!(rows.iter().map(|r| r.calls).sum::<usize>(), timings.len());

        let names: Vec<String> = (0..3).map(|i| format!("step {i}")).collect();
        let text = serde_json::to_string(&chrome_trace(&timings, &names)).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let events = doc["traceEvents"].as_array().unwrap();
        let dispatch_slices =
            events.iter().filter(|e| e["cat"] != "step" && e["cat"] != "block").count();
        assert_eq!(dispatch_slices, timings.len(), "one slice per dispatch");
        assert_eq!(events.iter().filter(|e| e["cat"] == "step").count(), 3);
        for e in events {
            assert_eq!(e["ph"], "X");
            assert!(e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() >= 0.0);
        }
        // Every dispatch slice lies inside its block slice, which lies inside its step slice.
        let blocks: Vec<&serde_json::Value> =
            events.iter().filter(|e| e["cat"] == "block").collect();
        for t in &timings {
            let (s, e) = (t.start_ns / 1e3, t.end_ns / 1e3);
            assert!(
                blocks.iter().any(|b| b["name"] == block_of(&t.label).as_str()
                    && b["ts"].as_f64().unwrap() <= s + 1e-6
                    && b["ts"].as_f64().unwrap() + b["dur"].as_f64().unwrap() >= e - 1e-6),
                "{} is in no block slice",
                t.label
            );
        }
    }
}

#[test]
fn labels_map_to_blocks() {
    assert_eq!(block_of("down_blocks.1.attentions.0.to_q"), "down_blocks.1");
    assert_eq!(block_of("up_blocks.3.resnets.2.conv2"), "up_blocks.3");
    assert_eq!(block_of("mid_block.resnets.0.norm1"), "mid_block");
    assert_eq!(block_of("time_embedding.linear_1"), "time_embedding");
    assert_eq!(block_of("time_proj"), "time_embedding");
    assert_eq!(block_of("ddim step 3 (t = 700)/x0"), "ddim_update");
    assert_eq!(block_of("conv_out"), "conv_out");
}
