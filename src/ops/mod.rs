//! One module per WGSL kernel. Each mirrors its kernel's `Params` struct (`#[repr(C)]`, bytemuck), validates
//! shapes, and builds a [`Dispatch`]: pipeline, uniform buffer and bind group made once, recorded many times.
//!
//! Pipelines are compiled on first use and cached in the [`Gpu`] by kernel name. Every bind-group layout is
//! explicit (from [`Kernel::bindings`]), never inferred, so one layout serves every dispatch of a kernel.

pub mod attention;
pub mod concat;
pub mod conv2d;
pub mod ddim;
pub mod elementwise;
pub mod group_norm;
pub mod linear;
pub mod randn;
pub mod roofline;
pub mod timestep_embedding;
pub mod upsample;
pub mod winograd;

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::{CachedPipeline, Fault, Gpu, Tensor};

/// The helpers prepended to every kernel.
pub const COMMON_WGSL: &str = include_str!("../../kernels/common.wgsl");

/// Which kernel variant each operation runs, where it has more than one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChoice {
    /// The variants for the adapter's kind: [`KernelChoice::Cpu`]'s on a CPU adapter (lavapipe, llvmpipe,
    /// WARP), [`KernelChoice::Gpu`]'s on any other.
    #[default]
    Auto,
    /// One portable kernel per operation (`conv2d`, `group_norm`): the baseline the others are measured
    /// against, and a fallback.
    Baseline,
    /// The variants for CPU adapters, on any adapter: no barriers, weights in uniform windows
    /// (`conv2d_3x3`, `conv2d_packed`, `group_norm_serial`). On a GPU, for comparing the two families.
    Cpu,
    /// The variants for GPUs, on any adapter: shared-memory tiles and workgroup reductions (`conv2d_tiled`,
    /// `group_norm`). On a CPU adapter, for testing them where no GPU is.
    Gpu,
}

impl std::str::FromStr for KernelChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(KernelChoice::Auto),
            "baseline" => Ok(KernelChoice::Baseline),
            "cpu" => Ok(KernelChoice::Cpu),
            "gpu" => Ok(KernelChoice::Gpu),
            other => Err(Error::param(
                "kernels",
                format!("unknown kernel choice `{other}` (expected auto, baseline, cpu or gpu)"),
            )),
        }
    }
}

impl KernelChoice {
    /// What this choice means on an adapter of type `device`: `Auto` becomes `Cpu` or `Gpu`.
    pub fn resolve(self, device: wgpu::DeviceType) -> KernelChoice {
        match (self, device) {
            (KernelChoice::Auto, wgpu::DeviceType::Cpu) => KernelChoice::Cpu,
            (KernelChoice::Auto, _) => KernelChoice::Gpu,
            (other, _) => other,
        }
    }
}

/// How a kernel uses one binding (binding 0 is always the `Params` uniform and is not listed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    /// `var<uniform>` over one [`UNIFORM_WINDOW`]-byte window of a buffer (`array<vec4<f32>, 4096>`).
    UniformWindow,
}

/// A kernel's bindings (after the Params): `windows` uniform windows, then `tail`. `T` is the total, checked
/// when the constant is evaluated.
pub(crate) const fn windows_then<const T: usize>(windows: usize, tail: &[Access]) -> [Access; T] {
    assert!(windows + tail.len() == T, "binding count");
    let mut bindings = [Access::UniformWindow; T];
    let mut i = 0;
    while i < tail.len() {
        bindings[windows + i] = tail[i];
        i += 1;
    }
    bindings
}

/// The starts, in rows, of the `N` windows of a launch that reads `count` rows from row `first`, `rows` to a
/// window: the windows past the last it needs hold nothing read and repeat the first (every binding must be
/// bound).
pub(crate) fn window_starts<const N: usize>(first: u64, count: usize, rows: usize) -> [u64; N] {
    std::array::from_fn(|w| {
        if w * rows < count {
            first + (w * rows) as u64
        } else {
            first
        }
    })
}

/// Bytes in one uniform window: WebGPU's default `max_uniform_buffer_binding_size`, which Vulkan, Metal and
/// DX12 adapters all meet.
pub const UNIFORM_WINDOW: u64 = 65536;

/// f32 values in one uniform window.
pub(crate) const WINDOW_FLOATS: usize = (UNIFORM_WINDOW / 4) as usize;

/// A WGSL kernel: its source, entry point `main`, storage bindings 1.., and workgroup size.
#[derive(Debug)]
pub struct Kernel {
    /// The file stem in `kernels/`, also the pipeline-cache key and the profiler label.
    pub name: &'static str,
    /// The kernel's own WGSL, without `common.wgsl`.
    pub source: &'static str,
    /// Shared WGSL (`kernels/*.inc.wgsl`) placed between `common.wgsl` and the kernel.
    pub includes: &'static [&'static str],
    /// Storage bindings 1, 2, ... in order.
    pub bindings: &'static [Access],
    /// Invocations per workgroup (`@workgroup_size`, x only). A test checks it against the shader.
    pub workgroup_size: u32,
    /// `size_of` the Rust mirror of the kernel's `Params`. A test checks it against the shader.
    pub params_size: usize,
}

impl Kernel {
    /// The full source that is compiled: `common.wgsl`, the includes, then the kernel.
    pub fn full_source(&self) -> String {
        let mut s = String::from(COMMON_WGSL);
        for part in self.includes.iter().chain([&self.source]) {
            s.push('\n');
            s.push_str(part);
        }
        s
    }
}

/// Every kernel in `kernels/`, for the validation tests and for warming the pipeline cache.
pub const KERNELS: &[&Kernel] = &[
    &attention::KERNEL,
    &attention::PACK_KERNEL,
    &attention::WINDOWED_KERNEL,
    &attention::TILED_KERNEL,
    &attention::COMBINE_KERNEL,
    &attention::SCORES_KERNEL,
    &attention::SOFTMAX_KERNEL,
    &attention::VALUES_KERNEL,
    &concat::KERNEL,
    &conv2d::KERNEL,
    &conv2d::KERNEL_1X1,
    &conv2d::KERNEL_1X1_WIDE,
    &conv2d::KERNEL_IM2COL,
    &conv2d::KERNEL_3X3,
    &conv2d::KERNEL_PACKED,
    &conv2d::KERNEL_TILED,
    &conv2d::KERNEL_SPLIT_REDUCE,
    &conv2d::PACK_KERNEL,
    &ddim::CONV_KERNEL,
    &ddim::STEP_KERNEL,
    &ddim::THRESHOLD_KERNEL,
    &elementwise::KERNEL,
    &group_norm::KERNEL,
    &group_norm::SERIAL_KERNEL,
    &linear::KERNEL,
    &linear::REDUCE_KERNEL,
    &randn::KERNEL,
    &roofline::COPY_KERNEL,
    &roofline::FMA_KERNEL,
    &timestep_embedding::KERNEL,
    &upsample::KERNEL,
    &winograd::GEMM_KERNEL,
    &winograd::GEMM_WINDOWED_KERNEL,
    &winograd::GEMM_WIDE_KERNEL,
    &winograd::GEMM_WINDOWED_WIDE_KERNEL,
    &winograd::INPUT_KERNEL,
    &winograd::OUTPUT_KERNEL,
    &winograd::PACK_KERNEL,
];

impl Gpu {
    /// The compiled pipeline for `kernel`, compiling it on first use.
    pub(crate) fn pipeline(&self, kernel: &'static Kernel) -> Result<Arc<CachedPipeline>> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(kernel.name) {
            return Ok(p.clone());
        }
        let compiled = self.scoped(&format!("compiling kernel `{}`", kernel.name), || {
            let device = self.device();
            // Bounds checks stay on (they cost little even on lavapipe and keep a kernel bug from reading
            // outside its bindings). naga's loop bounding is turned off: it adds a counter to every loop, which
            // keeps Mesa from unrolling the convolution's inner loops (about 10% of conv2d_3x3 on lavapipe).
            let checks = wgpu::ShaderRuntimeChecks {
                bounds_checks: true,
                force_loop_bounding: false,
                ..wgpu::ShaderRuntimeChecks::checked()
            };
            let descriptor = wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name),
                source: wgpu::ShaderSource::Wgsl(kernel.full_source().into()),
            };
            // SAFETY: `force_loop_bounding: false` asks us to guarantee that no loop runs forever. Every kernel
            // is ours, compiled into the binary (never user-supplied WGSL), and every loop in kernels/ counts up
            // to a bound read from its Params or a constant; tests/wgsl.rs validates each kernel with naga.
            let module = unsafe { device.create_shader_module_trusted(descriptor, checks) };
            let mut entries = vec![wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: wgpu::BufferSize::new(kernel.params_size as u64),
                },
                count: None,
            }];
            for (i, access) in kernel.bindings.iter().enumerate() {
                entries.push(wgpu::BindGroupLayoutEntry {
                    binding: i as u32 + 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match access {
                            Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                            Access::ReadWrite => {
                                wgpu::BufferBindingType::Storage { read_only: false }
                            }
                            Access::UniformWindow => wgpu::BufferBindingType::Uniform,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: (*access == Access::UniformWindow)
                            .then(|| wgpu::BufferSize::new(UNIFORM_WINDOW))
                            .flatten(),
                    },
                    count: None,
                });
            }
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.name),
                entries: &entries,
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            CachedPipeline { pipeline, layout }
        })?;
        let compiled = Arc::new(compiled);
        cache.insert(kernel.name, compiled.clone());
        Ok(compiled)
    }

    /// Records `dispatches` into one compute pass, submits, and waits. Errors name `what`, and a validation
    /// error also the dispatch that caused it ([`Gpu::locate_fault`]).
    pub fn run(&self, what: &str, dispatches: &[&Dispatch]) -> Result<()> {
        self.run_unlocated(what, dispatches)
            .map_err(|e| self.locate_fault(e, dispatches.iter().copied()))
    }

    fn run_unlocated(&self, what: &str, dispatches: &[&Dispatch]) -> Result<()> {
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
        self.submit_and_wait(what, encoder)
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
                    self.device()
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
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

impl Cost {
    /// `flops` operations over `floats` f32 values moved.
    pub fn new(flops: u64, floats: u64) -> Self {
        Cost {
            flops,
            bytes: 4 * floats,
        }
    }
}

/// One operation's kernel launches, fully prepared: recording them costs a few calls and no allocation. Most
/// operations are one launch; a convolution whose weights span several uniform windows is one per window, and an
/// operation may begin with another kernel's launches that lay its operands out (`Dispatch::after`).
pub struct Dispatch {
    label: String,
    kernel: &'static Kernel,
    cost: Cost,
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
                let params = gpu
                    .device()
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(label),
                        contents: spec.params,
                        usage: wgpu::BufferUsages::UNIFORM,
                    });
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                }];
                for (i, resource) in spec.resources.into_iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource,
                    });
                }
                let bind_group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(label),
                    layout: &pipeline.layout,
                    entries: &entries,
                });
                (bind_group, params)
            })?;
            launches.push(Launch {
                pipeline: pipeline.clone(),
                bind_group,
                grid,
                _params: params,
            });
        }
        Ok(Dispatch {
            label: label.to_string(),
            kernel,
            cost: Cost::default(),
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
    /// recorded before its own, and `first`'s owned buffers kept with it. Label, kernel and cost stay this
    /// dispatch's: a profile counts `first`'s time as part of this operation.
    pub(crate) fn after(mut self, first: Dispatch) -> Self {
        let mut launches = first.launches;
        launches.append(&mut self.launches);
        self.launches = launches;
        self.owned.extend(first.owned);
        self
    }

    /// This dispatch with `next`'s launches recorded after its own, and `next`'s owned buffers kept with it.
    /// Label, kernel and cost stay this dispatch's (a Winograd convolution's output transform).
    pub(crate) fn then(mut self, next: Dispatch) -> Self {
        self.launches.extend(next.launches);
        self.owned.extend(next.owned);
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

    /// Declares the dispatch's work (each op does, for the profiler).
    pub(crate) fn with_cost(mut self, cost: Cost) -> Self {
        self.cost = cost;
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

/// The most bytes of partial results one launch of a split reduction writes (`conv2d::SplitK`,
/// `attention::KeySplit`): the work runs in launches that fit, and within the device's binding limit.
pub const SPLIT_SCRATCH_BYTES: u64 = 32 << 20;

/// Splits a reduction of `len` terms (a convolution's K, an attention's keys) for a kernel that makes `blocks`
/// workgroups per image: as many slices as bring an image to `target` workgroups, each of at least `min` terms,
/// balanced, in multiples of `step` (the last slice may be shorter). Returns `(slices, terms per slice)`:
/// `(1, len rounded up to step)` where that is one slice. Depends on one image's geometry only, never the batch.
pub(crate) fn split_reduction(
    len: usize,
    blocks: usize,
    target: usize,
    min: usize,
    step: usize,
) -> (usize, usize) {
    let want = target.div_ceil(blocks.max(1)).min(len.div_ceil(min)).max(1);
    let chunk = len.div_ceil(want).div_ceil(step) * step;
    (len.div_ceil(chunk), chunk)
}

/// Floats of partial results one launch of a split reduction may write on this device: [`SPLIT_SCRATCH_BYTES`]
/// within the binding and buffer limits, or none where the device was opened with split reductions off
/// ([`crate::gpu::DeviceOptions::split_k`]), which makes every reduction one slice.
pub(crate) fn split_scratch_floats(gpu: &Gpu) -> usize {
    if !gpu.split_k() {
        return 0;
    }
    let limits = gpu.limits();
    let bytes = SPLIT_SCRATCH_BYTES
        .min(limits.max_storage_buffer_binding_size)
        .min(limits.max_buffer_size);
    (bytes / 4) as usize
}

/// Whether the device binds 64 KiB uniform windows and 64 KiB storage buffers: what the CPU family's
/// window-reading kernels need.
pub(crate) fn has_uniform_windows(gpu: &Gpu) -> bool {
    let limits = gpu.limits();
    limits.max_uniform_buffer_binding_size >= UNIFORM_WINDOW
        && limits.max_storage_buffer_binding_size >= UNIFORM_WINDOW
}

/// The uniform window of `buffer` that starts at byte `offset`, as a binding.
pub(crate) fn window_at(buffer: &wgpu::Buffer, offset: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: wgpu::BufferSize::new(UNIFORM_WINDOW),
    })
}

/// Window `w` of a buffer of uniform windows, as a binding.
pub(crate) fn window_binding(buffer: &wgpu::Buffer, w: usize) -> wgpu::BindingResource<'_> {
    window_at(buffer, w as u64 * UNIFORM_WINDOW)
}

/// Whether uniform windows starting at the byte offsets `starts` of `buffer` can be bound: each at a multiple
/// of the device's uniform offset alignment and ending within the buffer. An activation's windows may reach
/// past its last value, into the slack its arena carries (`graph::plan`).
pub(crate) fn windows_fit(
    gpu: &Gpu,
    buffer: &wgpu::Buffer,
    starts: impl IntoIterator<Item = u64>,
) -> bool {
    let align = gpu.limits().min_uniform_buffer_offset_alignment as u64;
    starts.into_iter().all(|start| {
        align > 0 && start.is_multiple_of(align) && start + UNIFORM_WINDOW <= buffer.size()
    })
}

/// Lays weights out in uniform windows, once, when a convolution is prepared: a new buffer of `params.len()`
/// windows, then one launch of `kernel` per window `w` with `params[w]`, reading `weight` (binding 1) and
/// writing the window (binding 2), 256 invocations per workgroup, one per float; and waits. `what` names the
/// work in errors.
pub(crate) fn pack_into_windows<P: bytemuck::Pod>(
    gpu: &Gpu,
    op: &'static str,
    what: &str,
    kernel: &'static Kernel,
    weight: &Tensor,
    params: &[P],
) -> Result<wgpu::Buffer> {
    let bytes = params.len() as u64 * UNIFORM_WINDOW;
    if bytes > gpu.limits().max_buffer_size {
        return Err(Error::shape(
            op,
            format!("{what}: {bytes} bytes exceed the device's buffer limit"),
        ));
    }
    check_bindings(gpu, op, &[weight])?;
    let packed = gpu.scoped(what, || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        })
    })?;
    let launches = params
        .iter()
        .enumerate()
        .map(|(w, p)| LaunchSpec {
            params: bytemuck::bytes_of(p),
            resources: vec![weight.binding(), window_binding(&packed, w)],
            workgroups: workgroups_for(WINDOW_FLOATS as u64, kernel.workgroup_size),
        })
        .collect();
    let pack = Dispatch::launches(gpu, kernel, op, what, launches)?;
    gpu.run(what, &[&pack])?;
    Ok(packed)
}

/// Refuses a tensor larger than the device's storage-binding limit, naming it.
pub(crate) fn check_bindings(gpu: &Gpu, op: &'static str, tensors: &[&Tensor]) -> Result<()> {
    let limit = gpu.limits().max_storage_buffer_binding_size;
    for t in tensors {
        if t.bytes() > limit {
            return Err(Error::TooLarge {
                op,
                tensor: t.label().to_string(),
                bytes: t.bytes(),
                limit,
            });
        }
    }
    Ok(())
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

/// Checks that a tensor has exactly `expected` shape.
pub(crate) fn expect_shape(op: &'static str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.shape() != expected {
        return Err(Error::shape(
            op,
            format!(
                "tensor `{}` has shape {:?}, expected {:?}",
                t.label(),
                t.shape(),
                expected
            ),
        ));
    }
    Ok(())
}

/// Returns a tensor's shape as `R` dimensions, or an error naming the tensor if it has another rank.
pub(crate) fn dims<const R: usize>(op: &'static str, t: &Tensor) -> Result<[usize; R]> {
    t.shape().try_into().map_err(|_| {
        Error::shape(
            op,
            format!(
                "tensor `{}` has shape {:?}, expected {R} dimensions",
                t.label(),
                t.shape()
            ),
        )
    })
}

/// Converts a dimension to the u32 a uniform carries, refusing what does not fit.
pub(crate) fn dim(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(op, format!("{what} = {v} does not fit in 32 bits")))
}

/// Refuses empty work: zero-sized dimensions make no sense for any kernel here.
pub(crate) fn nonzero(op: &'static str, what: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::shape(op, format!("{what} is 0")));
    }
    Ok(())
}
