//! [`Dispatch`]: one operation's kernel launches, prepared once (pipeline, Params uniform, bind group) and
//! recorded many times; [`Gpu::run`] records dispatches into one pass and submits them; the 2-D grid folding
//! every kernel flattens back.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::check::check_bindings;
use super::kernel::{CachedPipeline, Kernel};
use super::{DType, Fault, Gpu, Tensor};
use crate::error::{Error, Result};

impl Gpu {
    /// Records `dispatches` into one compute pass, submits, and waits. Errors name `what`, and a validation
    /// error also the dispatch that caused it ([`Gpu::locate_fault`]).
    pub async fn run(&self, what: &str, dispatches: &[&Dispatch]) -> Result<()> {
        let submitted = self.submit_pass(what, dispatches);
        let result = match submitted {
            Ok(()) => self.wait(what).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| self.locate_fault(e, dispatches.iter().copied()))
    }

    /// Records `dispatches` into one compute pass and submits it without waiting: later submissions see its
    /// results. Errors name `what`.
    pub fn submit_pass(&self, what: &str, dispatches: &[&Dispatch]) -> Result<()> {
        let encoder = self.scoped(what, || {
            let mut encoder = self
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(what),
                    timestamp_writes: None,
                });
                for d in dispatches {
                    d.record(&mut pass);
                }
            }
            encoder
        })?;
        self.submit(what, encoder)
    }

    /// Given the error of a pass that recorded `dispatches`, finds the dispatch wgpu refuses: each is recorded
    /// alone into a pass of its own, under its own error scope, and finished but not submitted. A
    /// [`Error::Gpu`] then names that dispatch's node and kernel beside the pass; other errors (a lost
    /// device, which no single dispatch explains) come back unchanged. Runs only on the error path.
    pub fn locate_fault<'d>(
        &self,
        error: Error,
        dispatches: impl IntoIterator<Item = &'d Dispatch>,
    ) -> Error {
        let Error::Gpu { what, message } = error else {
            return error;
        };
        for d in dispatches {
            let refused = self.scoped(&d.label, || {
                let mut encoder =
                    self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some(&d.label),
                    });
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&d.label),
                        timestamp_writes: None,
                    });
                    d.record(&mut pass);
                }
                encoder.finish()
            });
            if refused.is_err() {
                return Error::Gpu {
                    what: format!("{what}, node `{}` (kernel `{}`)", d.label, d.kernel.name),
                    message,
                };
            }
        }
        Error::Gpu { what, message }
    }
}

/// The work of one dispatch, for the profiler's achieved rates: floating-point operations, and the bytes the
/// algorithm must move at least (each input read once, each output written once), not what a kernel's caching
/// happens to cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Floating-point operations (a fused multiply-add counts 2).
    pub flops: u64,
    /// Compulsory memory traffic in bytes.
    pub bytes: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;

    fn add(self, other: Cost) -> Cost {
        Cost { flops: self.flops + other.flops, bytes: self.bytes + other.bytes }
    }
}

impl Cost {
    /// `flops` operations over `floats` values moved, 4 bytes each (a dispatch counts 2 where the
    /// values are f16 activations).
    pub fn new(flops: u64, floats: u64) -> Self {
        Cost { flops, bytes: 4 * floats }
    }
}

/// One operation's kernel launches, fully prepared: recording them costs a few calls and no allocation. Most
/// operations are one launch; a convolution whose weights span several uniform windows is one per window, and an
/// operation may begin with another kernel's launches that lay its operands out (`Dispatch::after`).
pub struct Dispatch {
    label: String,
    kernel: &'static Kernel,
    cost: Cost,
    // Bytes of one value its kernel moves: the device's activation type where the kernel stores activations,
    // else 4.
    value_bytes: u64,
    launches: Vec<Launch>,
    // Buffers only this dispatch binds (a convolution's packed weights), kept as long as it lives.
    owned: Vec<wgpu::Buffer>,
}

/// One `dispatch_workgroups` of a [`Dispatch`].
struct Launch {
    pipeline: Arc<CachedPipeline>,
    bind_group: wgpu::BindGroup,
    grid: [u32; 3],
    // Keeps the Params uniform alive as long as the bind group that points at it.
    _params: wgpu::Buffer,
}

/// What one launch binds: its Params and the resources of bindings 1.., in order.
pub(crate) struct LaunchSpec<'a> {
    pub params: &'a [u8],
    pub resources: Vec<wgpu::BindingResource<'a>>,
    pub workgroups: u64,
}

impl Dispatch {
    /// Prepares `kernel` with `params` over `tensors` (bindings 1.., in order) for `workgroups` workgroups.
    /// `op` names the operation in errors; `label` names this dispatch in profiles and GPU errors.
    pub(crate) fn new<P: bytemuck::Pod>(
        gpu: &Gpu,
        kernel: &'static Kernel,
        op: &'static str,
        label: &str,
        params: &P,
        tensors: &[&Tensor],
        workgroups: u64,
    ) -> Result<Self> {
        debug_assert_eq!(tensors.len(), kernel.bindings.len());
        check_bindings(gpu, op, tensors)?;
        let pipeline = gpu.pipeline(kernel)?;
        for (i, (t, &holds)) in tensors.iter().zip(&pipeline.activations).enumerate() {
            let expected = if holds { gpu.act() } else { DType::F32 };
            if t.dtype() != expected {
                return Err(Error::param(
                    op,
                    format!(
                        "tensor `{}` holds {}, and binding {} of kernel `{}` takes {} on this device",
                        t.label(),
                        t.dtype().wgsl(),
                        i + 1,
                        kernel.name,
                        expected.wgsl()
                    ),
                ));
            }
        }
        Self::launches(
            gpu,
            kernel,
            op,
            label,
            vec![LaunchSpec {
                params: bytemuck::bytes_of(params),
                resources: tensors.iter().map(|t| t.binding()).collect(),
                workgroups,
            }],
        )
    }

    /// [`Dispatch::new`] for `invocations` invocations of `kernel`: as many workgroups as hold them.
    pub(crate) fn for_invocations<P: bytemuck::Pod>(
        gpu: &Gpu,
        kernel: &'static Kernel,
        op: &'static str,
        label: &str,
        params: &P,
        tensors: &[&Tensor],
        invocations: u64,
    ) -> Result<Self> {
        let workgroups = workgroups_for(invocations, kernel.workgroup_size);
        Self::new(gpu, kernel, op, label, params, tensors, workgroups)
    }

    /// Prepares several launches of `kernel`, recorded in order as one dispatch. The caller has checked the
    /// storage tensors against the binding limit ([`check_bindings`]).
    pub(crate) fn launches(
        gpu: &Gpu,
        kernel: &'static Kernel,
        op: &'static str,
        label: &str,
        specs: Vec<LaunchSpec<'_>>,
    ) -> Result<Self> {
        let max_per_dim = gpu.limits().max_compute_workgroups_per_dimension;
        let pipeline = gpu.pipeline(kernel)?;
        let mut launches = Vec::with_capacity(specs.len());
        for spec in specs {
            debug_assert_eq!(spec.params.len(), kernel.params_size);
            debug_assert_eq!(spec.resources.len(), kernel.bindings.len());
            let workgroups = spec.workgroups;
            let mut grid = grid(workgroups, max_per_dim).ok_or_else(|| {
                Error::shape(
                    op,
                    format!("`{label}` needs {workgroups} workgroups, more than a 2-D grid of this device holds"),
                )
            })?;
            if matches!(gpu.injected_fault(), Some(Fault::InvalidDispatch(node)) if node == label) {
                grid = [max_per_dim.saturating_add(1), 1, 1];
            }
            let (bind_group, params) = gpu.scoped(&format!("binding `{label}` ({op})"), || {
                let params = gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: spec.params,
                    usage: wgpu::BufferUsages::UNIFORM,
                });
                let mut entries =
                    vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
                for (i, resource) in spec.resources.into_iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource });
                }
                let bind_group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(label),
                    layout: &pipeline.layout,
                    entries: &entries,
                });
                (bind_group, params)
            })?;
            launches.push(Launch { pipeline: pipeline.clone(), bind_group, grid, _params: params });
        }
        let value_bytes =
            if pipeline.activations.contains(&true) { gpu.act().size() as u64 } else { 4 };
        Ok(Dispatch {
            label: label.to_string(),
            kernel,
            cost: Cost::default(),
            value_bytes,
            launches,
            owned: Vec::new(),
        })
    }

    /// Records the dispatch (all its launches) into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        let mut current: Option<&Arc<CachedPipeline>> = None;
        for l in &self.launches {
            if !current.is_some_and(|p| Arc::ptr_eq(p, &l.pipeline)) {
                pass.set_pipeline(&l.pipeline.pipeline);
                current = Some(&l.pipeline);
            }
            pass.set_bind_group(0, &l.bind_group, &[]);
            pass.dispatch_workgroups(l.grid[0], l.grid[1], l.grid[2]);
        }
    }

    /// This dispatch with `first`'s launches (of another kernel, say one that lays out this one's operands)
    /// recorded before its own, `first`'s owned buffers kept with it and its declared work added to this one's
    /// (each counted at its own kernel's value width). Label and kernel stay this dispatch's: a profile counts
    /// `first`'s time as part of this operation.
    pub(crate) fn after(mut self, first: Dispatch) -> Self {
        let mut launches = first.launches;
        launches.append(&mut self.launches);
        self.launches = launches;
        self.owned.extend(first.owned);
        self.cost = self.cost + first.cost;
        self
    }

    /// This dispatch with `next`'s launches recorded after its own, `next`'s owned buffers kept with it and its
    /// declared work added. Label and kernel stay this dispatch's (a Winograd convolution's output transform).
    pub(crate) fn then(mut self, next: Dispatch) -> Self {
        self.launches.extend(next.launches);
        self.owned.extend(next.owned);
        self.cost = self.cost + next.cost;
        self
    }

    /// `parts` recorded one after another as one dispatch, with the first's label, kernel and cost (an
    /// operation run in groups: tiles, pixels, pairs); the first error of a part, or an error naming `label`
    /// where there are no parts.
    pub(crate) fn sequence(
        op: &'static str,
        label: &str,
        parts: impl IntoIterator<Item = Result<Dispatch>>,
    ) -> Result<Dispatch> {
        let mut all: Option<Dispatch> = None;
        for part in parts {
            let part = part?;
            all = Some(match all {
                None => part,
                Some(d) => d.then(part),
            });
        }
        all.ok_or_else(|| Error::shape(op, format!("`{label}`: nothing to run")))
    }

    /// Hands the dispatch a buffer that only it binds, to keep alive with it.
    pub(crate) fn owning(mut self, buffer: wgpu::Buffer) -> Self {
        self.owned.push(buffer);
        self
    }

    /// Bytes of the buffers this dispatch owns (packed weights), beyond the tensors it was given.
    pub fn owned_bytes(&self) -> u64 {
        self.owned.iter().map(|b| b.size()).sum()
    }

    /// Declares the dispatch's work (each op does, for the profiler), its bytes counted at the width of the
    /// values its kernel moves (half of [`Cost::new`]'s where they are f16 activations). Replaces what
    /// [`Dispatch::after`] and [`Dispatch::then`] added: call it before joining a dispatch that declares its own.
    pub(crate) fn with_cost(mut self, cost: Cost) -> Self {
        self.cost = Cost { flops: cost.flops, bytes: cost.bytes / 4 * self.value_bytes };
        self
    }

    /// The work this dispatch does.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// This dispatch's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The kernel it runs.
    pub fn kernel(&self) -> &'static Kernel {
        self.kernel
    }

    /// The workgroup grid of its first launch.
    pub fn grid(&self) -> [u32; 3] {
        self.launches[0].grid
    }

    /// How many `dispatch_workgroups` it records (one, or one per weight window).
    pub fn launch_count(&self) -> usize {
        self.launches.len()
    }
}

/// Folds a workgroup count into a 2-D grid whose sides stay within `max_per_dim`; kernels flatten it back
/// (`flat_workgroup` in common.wgsl) and drop the overshoot. `None` if even a 2-D grid cannot hold it.
pub fn grid(workgroups: u64, max_per_dim: u32) -> Option<[u32; 3]> {
    let max = max_per_dim as u64;
    let workgroups = workgroups.max(1);
    if workgroups <= max {
        return Some([workgroups as u32, 1, 1]);
    }
    let rows = workgroups.div_ceil(max);
    (rows <= max).then_some([max_per_dim, rows as u32, 1])
}

/// Workgroups needed for `invocations` at `workgroup_size` each.
pub(crate) fn workgroups_for(invocations: u64, workgroup_size: u32) -> u64 {
    invocations.div_ceil(workgroup_size as u64)
}
