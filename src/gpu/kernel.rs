//! Kernels and their pipelines: a [`Kernel`] describes one WGSL compute kernel (its source, bindings,
//! workgroup size and Params size); [`Gpu::pipeline`] compiles it on first use and caches it by name, with an
//! explicit bind-group layout built from [`Kernel::bindings`], never inferred, so one layout serves every
//! dispatch of a kernel. This module knows no operation: the operations declare their kernels in `ops`.

use std::sync::Arc;

use super::lock;
use super::{DType, Gpu, template};
use crate::error::{Error, Result};

/// A compiled compute pipeline and its bind-group layout, cached per kernel.
pub(crate) struct CachedPipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    /// Whether each binding after the Params holds activations (`:act`), in order: a tensor bound there must
    /// have the device's activation type, one bound elsewhere f32.
    pub(crate) activations: Vec<bool>,
}

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

/// Bytes in one uniform window: WebGPU's default `max_uniform_buffer_binding_size`, which Vulkan, Metal and
/// DX12 adapters all meet.
pub const UNIFORM_WINDOW: u64 = 65536;

/// f32 values in one uniform window.
pub(crate) const WINDOW_FLOATS: usize = (UNIFORM_WINDOW / 4) as usize;

/// A WGSL kernel: its source, entry point `main`, storage bindings 1.., and workgroup size. Several kernels
/// may share one source file as variants, each with its own name and defines (`gpu::template`).
#[derive(Debug)]
pub struct Kernel {
    /// The variant's name: the pipeline-cache key and the profiler label. The file stem where the kernel is
    /// its file's only variant.
    pub name: &'static str,
    /// The file stem in `kernels/` the source comes from.
    pub file: &'static str,
    /// The file's WGSL, directives and all, without `common.wgsl`.
    pub source: &'static str,
    /// Shared WGSL (`kernels/*.inc.wgsl`) placed between `common.wgsl` and the kernel.
    pub includes: &'static [&'static str],
    /// The values this variant gives the source's `{{NAME}}`s and `#if`s.
    pub defines: &'static [(&'static str, &'static str)],
    /// Storage bindings 1, 2, ... in order.
    pub bindings: &'static [Access],
    /// Invocations per workgroup (`@workgroup_size`, x only). A test checks it against the shader.
    pub workgroup_size: u32,
    /// `size_of` the Rust mirror of the kernel's `Params`. A test checks it against the shader.
    pub params_size: usize,
}

impl Kernel {
    /// The WGSL that is compiled on a device whose activations are `act`: the precision header
    /// ([`template::precision_header`]), `common.wgsl`, the includes, then the kernel, with the variant's
    /// directives applied (and the define `F16` at f16 precision). An error names the kernel and the line (of
    /// the three joined, after the header).
    pub fn full_source(&self, act: DType) -> Result<String> {
        let mut s = String::from(COMMON_WGSL);
        for part in self.includes.iter().chain([&self.source]) {
            s.push('\n');
            s.push_str(part);
        }
        let slots: Vec<template::Slot> = self
            .bindings
            .iter()
            .map(|a| match a {
                Access::Read => template::Slot::Read,
                Access::ReadWrite => template::Slot::ReadWrite,
                Access::UniformWindow => template::Slot::Window,
            })
            .collect();
        // At f16 precision a kernel also sees `F16`, for what it does differently there.
        let mut defines = self.defines.to_vec();
        if act == DType::F16 {
            defines.push(("F16", "1"));
        }
        let body = template::expand(&s, &defines, &slots).map_err(|message| Error::Gpu {
            what: format!("expanding kernel `{}`", self.name),
            message,
        })?;
        Ok(template::precision_header(act) + &body)
    }

    /// Whether the kernel declares any binding of activations (`:act`, `:act4`): whether it runs at f16
    /// precision.
    pub fn stores_activations(&self) -> bool {
        self.includes.iter().chain([&self.source]).any(|s| s.contains(":act"))
    }
}

/// Declares a [`Kernel`] from `kernels/<name>.wgsl`, or as a variant of another file:
/// `kernel!("conv2d_1x1_wide" from "conv2d_1x1" where [("WEIGHT_WINDOWS", "4")], includes: [..],
/// workgroup: 8, params: Params, bindings: &[..])`.
macro_rules! kernel {
    ($name:literal from $file:literal where [$($define:expr),* $(,)?], includes: [$($inc:expr),* $(,)?],
     workgroup: $wg:expr, params: $params:ty, bindings: $bindings:expr $(,)?) => {
        $crate::gpu::Kernel {
            name: $name,
            file: $file,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/kernels/", $file, ".wgsl")),
            includes: &[$($inc),*],
            defines: &[$($define),*],
            bindings: $bindings,
            workgroup_size: $wg,
            params_size: std::mem::size_of::<$params>(),
        }
    };
    ($name:literal, includes: [$($inc:expr),* $(,)?], workgroup: $wg:expr, params: $params:ty,
     bindings: $bindings:expr $(,)?) => {
        $crate::gpu::kernel::kernel!($name from $name where [], includes: [$($inc),*], workgroup: $wg,
            params: $params, bindings: $bindings)
    };
}
pub(crate) use kernel;

/// Declares the Rust mirror of a kernel's `Params` uniform (or of a struct inside it): `#[repr(C)]`, plain old
/// data for `bytemuck`, fields in the WGSL struct's order. A test checks each size against the shader.
macro_rules! params {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }
    };
}
pub(crate) use params;

impl Gpu {
    /// Refuses `kernel` where it binds more storage buffers, or uniform buffers (its Params and windows), than
    /// the device allows in one shader stage (a GLES 3.1 adapter may allow 4 storage buffers; some kernels
    /// bind 7), naming the kernel, both counts and the limit.
    fn check_binding_counts(&self, kernel: &'static Kernel) -> Result<()> {
        let limits = self.limits();
        let storage =
            kernel.bindings.iter().filter(|a| !matches!(a, Access::UniformWindow)).count();
        let uniform = 1 + kernel.bindings.len() - storage;
        for (count, limit, what) in [
            (
                storage,
                limits.max_storage_buffers_per_shader_stage,
                "max_storage_buffers_per_shader_stage",
            ),
            (
                uniform,
                limits.max_uniform_buffers_per_shader_stage,
                "max_uniform_buffers_per_shader_stage",
            ),
        ] {
            if count as u64 > limit as u64 {
                return Err(Error::TooManyBindings {
                    kernel: kernel.name,
                    count,
                    limit: limit as u64,
                    what,
                });
            }
        }
        Ok(())
    }

    /// The compiled pipeline for `kernel`, compiling it on first use.
    pub(crate) fn pipeline(&self, kernel: &'static Kernel) -> Result<Arc<CachedPipeline>> {
        let mut cache = lock(&self.pipelines);
        if let Some(p) = cache.get(kernel.name) {
            return Ok(p.clone());
        }
        self.check_binding_counts(kernel)?;
        let source = kernel.full_source(self.act())?;
        let mut activations = vec![false; kernel.bindings.len()];
        for (binding, holds) in template::activation_bindings(&source) {
            if let Some(a) = activations.get_mut(binding as usize - 1) {
                *a = holds;
            }
        }
        if template::uses_subgroups(&source) && !self.subgroups() {
            return Err(Error::Gpu {
                what: format!("compiling kernel `{}`", kernel.name),
                message: "it uses subgroup operations, and the device was opened without subgroups"
                    .to_string(),
            });
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
                source: wgpu::ShaderSource::Wgsl(source.into()),
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
            CachedPipeline { pipeline, layout, activations }
        })?;
        let compiled = Arc::new(compiled);
        cache.insert(kernel.name, compiled.clone());
        Ok(compiled)
    }
}
