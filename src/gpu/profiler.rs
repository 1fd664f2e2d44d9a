//! GPU timestamps around every dispatch, and the reports made from them: a per-kernel table against the
//! measured roofline, and a Chrome trace (Perfetto, chrome://tracing) with a slice per dispatch nested under
//! UNet blocks and sampling steps.
//!
//! Timestamps are written inside one compute pass where the adapter allows it
//! (`TIMESTAMP_QUERY_INSIDE_PASSES`), and otherwise with one pass per dispatch (pass timestamp writes), as on
//! Metal and in browsers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Dispatch;
use super::Gpu;
use super::roofline::Roof;
use crate::error::{Error, Result};

/// How timestamps are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TimestampMode {
    /// `write_timestamp` before and after each dispatch inside one pass.
    InsidePasses,
    /// One pass per dispatch, timestamped at its beginning and end.
    PerPass,
}

/// One timed dispatch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DispatchTiming {
    /// The sampling step it belongs to (0-based).
    pub step: usize,
    /// The dispatch's label (the graph node's name, e.g. `down_blocks.1.attentions.0.to_q`).
    pub label: String,
    /// The kernel it ran.
    pub kernel: &'static str,
    /// Start, nanoseconds from the first timestamp of the run.
    pub start_ns: f64,
    /// End, nanoseconds from the first timestamp of the run.
    pub end_ns: f64,
    /// Floating-point operations.
    pub flops: u64,
    /// Compulsory bytes moved.
    pub bytes: u64,
}

impl DispatchTiming {
    /// Duration in nanoseconds.
    pub fn ns(&self) -> f64 {
        (self.end_ns - self.start_ns).max(0.0)
    }
}

struct Pending {
    step: usize,
    label: String,
    kernel: &'static str,
    flops: u64,
    bytes: u64,
}

/// Collects timestamps over a run of steps; resolved into [`DispatchTiming`]s at the end.
pub struct Profiler {
    mode: TimestampMode,
    query_set: wgpu::QuerySet,
    per_step: u32,
    resolve: wgpu::Buffer,
    stride: u64,
    steps: usize,
    pending: Vec<Vec<Pending>>,
}

impl Profiler {
    /// A profiler for `steps` steps of at most `max_dispatches` dispatches each, or an error when the adapter
    /// has no timestamp queries.
    pub fn new(gpu: &Gpu, max_dispatches: usize, steps: usize) -> Result<Self> {
        let features = gpu.features();
        let mode = if features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
            TimestampMode::InsidePasses
        } else if features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            TimestampMode::PerPass
        } else {
            return Err(Error::param(
                "profiler",
                format!("adapter `{}` has no timestamp queries", gpu.info().name),
            ));
        };
        let per_step = u32::try_from(2 * max_dispatches.max(1))
            .ok()
            .filter(|&q| q <= wgpu::QUERY_SET_MAX_QUERIES)
            .ok_or_else(|| {
                Error::param(
                    "profiler",
                    format!("{max_dispatches} dispatches per step exceed one query set"),
                )
            })?;
        let stride = (per_step as u64 * 8).next_multiple_of(wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT);
        let (query_set, resolve) = gpu.scoped("profiler setup", || {
            let query_set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("dispatch timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: per_step,
            });
            let resolve = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved timestamps"),
                size: stride * steps.max(1) as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (query_set, resolve)
        })?;
        Ok(Profiler { mode, query_set, per_step, resolve, stride, steps, pending: Vec::new() })
    }

    /// How timestamps are taken on this adapter.
    pub fn mode(&self) -> TimestampMode {
        self.mode
    }

    /// Records `dispatches` as step `step` into `encoder`, timestamped, and resolves the step's queries.
    pub fn record_step(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        step: usize,
        dispatches: &[&Dispatch],
    ) -> Result<()> {
        if step >= self.steps || 2 * dispatches.len() > self.per_step as usize {
            return Err(Error::param(
                "profiler",
                format!(
                    "step {step} with {} dispatches exceeds the profiler's capacity",
                    dispatches.len()
                ),
            ));
        }
        let qs = &self.query_set;
        match self.mode {
            TimestampMode::InsidePasses => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("profiled step"),
                    timestamp_writes: None,
                });
                for (k, d) in dispatches.iter().enumerate() {
                    pass.write_timestamp(qs, 2 * k as u32);
                    d.record(&mut pass);
                    pass.write_timestamp(qs, 2 * k as u32 + 1);
                }
            }
            TimestampMode::PerPass => {
                for (k, d) in dispatches.iter().enumerate() {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(d.label()),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: qs,
                            beginning_of_pass_write_index: Some(2 * k as u32),
                            end_of_pass_write_index: Some(2 * k as u32 + 1),
                        }),
                    });
                    d.record(&mut pass);
                }
            }
        }
        let n = 2 * dispatches.len() as u32;
        encoder.resolve_query_set(qs, 0..n, &self.resolve, step as u64 * self.stride);
        if self.pending.len() <= step {
            self.pending.resize_with(step + 1, Vec::new);
        }
        self.pending[step] = dispatches
            .iter()
            .map(|d| Pending {
                step,
                label: d.label().to_string(),
                kernel: d.kernel().name,
                flops: d.cost().flops,
                bytes: d.cost().bytes,
            })
            .collect();
        Ok(())
    }

    /// Reads every step's timestamps back (after the last submit) and converts them to nanoseconds.
    pub async fn finish(self, gpu: &Gpu) -> Result<Vec<DispatchTiming>> {
        let bytes =
            gpu.download_bytes(&self.resolve, self.resolve.size(), "resolved timestamps").await?;
        let period = gpu.queue().get_timestamp_period() as f64;
        let mut raw = Vec::new();
        for (step, records) in self.pending.into_iter().enumerate() {
            let base = step * self.stride as usize;
            for (k, p) in records.into_iter().enumerate() {
                let at = |q: usize| {
                    u64::from_le_bytes(bytes[base + 8 * q..base + 8 * q + 8].try_into().unwrap())
                };
                raw.push((at(2 * k), at(2 * k + 1), p));
            }
        }
        let origin = raw.iter().map(|(s, _, _)| *s).min().unwrap_or(0);
        Ok(raw
            .into_iter()
            .map(|(s, e, p)| DispatchTiming {
                step: p.step,
                label: p.label,
                kernel: p.kernel,
                start_ns: s.saturating_sub(origin) as f64 * period,
                end_ns: e.saturating_sub(origin) as f64 * period,
                flops: p.flops,
                bytes: p.bytes,
            })
            .collect())
    }
}

/// One row of the per-kernel table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelRow {
    /// The kernel.
    pub label: String,
    /// Dispatches.
    pub calls: usize,
    /// Total GPU time, ms.
    pub total_ms: f64,
    /// Mean time per dispatch, microseconds.
    pub mean_us: f64,
    /// Share of all GPU time.
    pub share: f64,
    /// Achieved GFLOP/s.
    pub gflops: f64,
    /// Achieved GB/s (compulsory traffic).
    pub gbps: f64,
    /// Fraction of the roofline at this kernel's arithmetic intensity.
    pub roof_fraction: f64,
}

/// Per-kernel totals, largest first.
pub fn kernel_table(timings: &[DispatchTiming], roof: &Roof) -> Vec<KernelRow> {
    let mut by: BTreeMap<&str, (usize, f64, u64, u64)> = BTreeMap::new();
    for t in timings {
        let e = by.entry(t.kernel).or_default();
        e.0 += 1;
        e.1 += t.ns();
        e.2 += t.flops;
        e.3 += t.bytes;
    }
    let total: f64 = by.values().map(|v| v.1).sum::<f64>().max(1e-9);
    let mut rows: Vec<KernelRow> = by
        .into_iter()
        .map(|(k, (calls, ns, flops, bytes))| {
            let secs = ns / 1e9;
            KernelRow {
                label: k.to_string(),
                calls,
                total_ms: ns / 1e6,
                mean_us: ns / 1e3 / calls as f64,
                share: ns / total,
                gflops: if secs > 0.0 { flops as f64 / secs / 1e9 } else { 0.0 },
                gbps: if secs > 0.0 { bytes as f64 / secs / 1e9 } else { 0.0 },
                roof_fraction: roof.fraction(flops, bytes, secs),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    rows
}

/// The UNet block a dispatch belongs to, from its label (`down_blocks.1.resnets.0.conv1` -> `down_blocks.1`).
pub fn block_of(label: &str) -> String {
    let parts: Vec<&str> = label.split('.').collect();
    match parts.as_slice() {
        ["down_blocks" | "up_blocks", i, ..] => format!("{}.{i}", parts[0]),
        ["mid_block", ..] => "mid_block".into(),
        ["time_proj"] | ["time_embedding", ..] => "time_embedding".into(),
        [first, ..] if first.starts_with("ddim") => "ddim_update".into(),
        [first, ..] => first.split(' ').next().unwrap_or(first).to_string(),
        [] => String::new(),
    }
}

/// A Chrome trace (JSON object format): one complete ("X") slice per dispatch, inside one per UNet block, inside
/// one per sampling step, all on one track so that the viewers nest them by time.
pub fn chrome_trace(timings: &[DispatchTiming], step_names: &[String]) -> serde_json::Value {
    let us = |ns: f64| ns / 1e3;
    let mut events = Vec::new();
    let slice = |name: String, cat: &str, start: f64, end: f64, args: serde_json::Value| {
        serde_json::json!({
            "name": name, "cat": cat, "ph": "X", "pid": 1, "tid": 1,
            "ts": us(start), "dur": us((end - start).max(0.0)), "args": args,
        })
    };
    let mut i = 0;
    while i < timings.len() {
        let step = timings[i].step;
        let j = timings[i..].iter().position(|t| t.step != step).map_or(timings.len(), |p| i + p);
        let group = &timings[i..j];
        let name = step_names.get(step).cloned().unwrap_or_else(|| format!("step {}", step + 1));
        events.push(slice(
            name,
            "step",
            group[0].start_ns,
            group[group.len() - 1].end_ns,
            serde_json::json!({"dispatches": group.len()}),
        ));
        let mut b = 0;
        while b < group.len() {
            let block = block_of(&group[b].label);
            let e = group[b..]
                .iter()
                .position(|t| block_of(&t.label) != block)
                .map_or(group.len(), |p| b + p);
            events.push(slice(
                block,
                "block",
                group[b].start_ns,
                group[e - 1].end_ns,
                serde_json::json!({}),
            ));
            for t in &group[b..e] {
                events.push(slice(
                    t.label.clone(),
                    t.kernel,
                    t.start_ns,
                    t.end_ns,
                    serde_json::json!({"kernel": t.kernel, "flops": t.flops, "bytes": t.bytes}),
                ));
            }
            b = e;
        }
        i = j;
    }
    serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}
