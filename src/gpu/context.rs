//! The GPU context: instance, adapter choice, device with the adapter's real limits, and the error plumbing that
//! turns wgpu's validation errors, out-of-memory and device loss into our [`Error`] instead of a panic.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use super::kernel::{CachedPipeline, KernelChoice};
use super::lock;
use super::tensor::DType;
use crate::error::{Error, Result};

/// How to choose the adapter, and which kernel variants to run on it. Built from CLI flags or from the
/// environment (`DDIM_BACKEND`, `DDIM_ADAPTER`, `DDIM_KERNELS`, `DDIM_WINOGRAD`, `DDIM_INPUT_WINDOWS`,
/// `DDIM_SPLIT_K`, `DDIM_CONV_TILE`, `DDIM_SUBGROUPS`, `DDIM_PRECISION`, `DDIM_MAX_BINDING`,
/// `DDIM_MAX_STORAGE_BUFFERS`).
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    /// Restrict to one backend. `None` means `WGPU_BACKEND` if set, else every backend.
    pub backend: Option<wgpu::Backend>,
    /// Keep only adapters whose name contains this, ignoring case.
    pub adapter: Option<String>,
    /// Which kernel variants to run (`auto` or `baseline`).
    pub kernels: KernelChoice,
    /// Whether the CPU family may take the Winograd convolution for 3x3 stride-1 convolutions (`ops::winograd`;
    /// `DDIM_WINOGRAD=off` turns it off): on by default; off runs `conv2d_3x3` there, to compare the two.
    pub winograd: bool,
    /// Whether the CPU family's kernels may read activations through 64 KiB uniform windows as well as their
    /// weights (`conv2d_1x1`, the windowed Winograd products; `DDIM_INPUT_WINDOWS=off` turns it off): on by
    /// default; off runs the kernels that read activations from storage, to compare.
    pub input_windows: bool,
    /// Whether the GPU family's tiled kernels may split their reductions over several workgroups where an
    /// image has few tiles: a convolution's K (`ops::conv2d::SplitK`), an attention's keys
    /// (`ops::attention::KeySplit`); `DDIM_SPLIT_K=off` turns it off. On by default; off runs each in one
    /// workgroup per tile, to compare.
    pub split_k: bool,
    /// Whether the GPU family's tiled convolution computes 8 x 8 outputs per invocation over 128 x 128 tiles
    /// (`conv2d_tiled_8x8`) instead of 4 x 4 over 64 x 64 (`conv2d_tiled`); `DDIM_CONV_TILE=8x8` turns it on.
    /// Off by default, to compare.
    pub conv_tile_8x8: bool,
    /// Whether the device is opened with subgroup operations where the adapter offers them (the GPU family's
    /// `group_norm_subgroups`); `DDIM_SUBGROUPS=off` opens it without, to compare. On by default.
    pub subgroups: bool,
    /// The element type of activations and weights ([`Precision`]); `DDIM_PRECISION=f16` asks for f16.
    pub precision: Precision,
    /// Open the device with at most this `max_storage_buffer_binding_size` (bytes, a multiple of 4): what a
    /// smaller device would allow, to exercise batch splitting on a large one.
    pub max_binding: Option<u64>,
    /// Open the device with at most this `max_storage_buffers_per_shader_stage`: what a GLES adapter may allow,
    /// to see the kernels that need more refused on any device.
    pub max_storage_buffers: Option<u32>,
    /// A fault to inject, to test how GPU errors surface (`DDIM_INJECT_FAULT`); `None` in normal use.
    pub fault: Option<Fault>,
}

/// What activations and weights are stored as, and what the kernels that hold them load and store.
///
/// With [`Precision::F16`], every tensor the UNet and the sampler bind (the latent, the step noise, the
/// weights, every activation; not the timesteps, which may be fractional) holds f16 (`shader-f16`), and the
/// kernels compute in f32 between their loads and their stores: reductions (a norm's statistics, a softmax,
/// the sums over a convolution's K) accumulate in f32, and the few scratch values kept between launches
/// (split-K partial sums, norm statistics, attention's partial rows) stay f32. The exceptions are the GPU
/// family's 4 x 4 tiled convolution and flash attention, which sum 16-term chunks of their products in f16
/// (twice the f32 rate where a GPU pairs f16 lanes) before adding the chunks in f32. Only the GPU family's
/// kernels store f16, so `auto` takes the GPU family on any adapter and the CPU family and the baseline are
/// refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    F32,
    /// f16 storage; f32 arithmetic inside the kernels but for the f16 chunk sums named above.
    F16,
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => {
                Err(Error::param("device", format!("precision `{other}`: expected f32 or f16")))
            }
        }
    }
}

impl Precision {
    /// The element type of activations and weights.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }
}

/// A GPU fault injected on purpose, so tests can check that a real wgpu validation error or a real device loss
/// during sampling becomes an [`Error`] naming the node or step, and that nothing is written. Parsed from
/// `invalid-dispatch:<node>` or `lose-device:<submission>` (`DDIM_INJECT_FAULT`, the CLI's hidden
/// `--inject-fault`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every launch of the dispatches labelled `node` (graph nodes are labelled by name) gets a workgroup grid
    /// one past the device's limit: wgpu's validation refuses it when the pass is recorded.
    InvalidDispatch(String),
    /// The device is destroyed just before the first submission through [`Gpu::submit_and_wait`] whose
    /// description starts with this (`sampling step 2`, `unet`, ...).
    LoseDevice(String),
}

impl std::str::FromStr for Fault {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "device",
                format!(
                    "fault `{s}`: expected invalid-dispatch:<node> or lose-device:<submission>"
                ),
            )
        };
        match s.trim().split_once(':') {
            Some(("invalid-dispatch", node)) if !node.is_empty() => {
                Ok(Fault::InvalidDispatch(node.to_string()))
            }
            Some(("lose-device", what)) if !what.is_empty() => {
                Ok(Fault::LoseDevice(what.to_string()))
            }
            _ => Err(bad()),
        }
    }
}

impl DeviceOptions {
    /// Options from `DDIM_BACKEND`, `DDIM_ADAPTER`, `DDIM_KERNELS`, `DDIM_MAX_BINDING` and
    /// `DDIM_INJECT_FAULT`; unset or empty variables mean "no preference".
    pub fn from_env() -> Result<Self> {
        let max_binding = match std::env::var("DDIM_MAX_BINDING") {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().parse().map_err(|_| {
                Error::param("device", format!("DDIM_MAX_BINDING `{s}` is not a number of bytes"))
            })?),
            _ => None,
        };
        let max_storage_buffers = match std::env::var("DDIM_MAX_STORAGE_BUFFERS") {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().parse().map_err(|_| {
                Error::param(
                    "device",
                    format!("DDIM_MAX_STORAGE_BUFFERS `{s}` is not a number of buffers"),
                )
            })?),
            _ => None,
        };
        let kernels = match std::env::var("DDIM_KERNELS") {
            Ok(s) if !s.trim().is_empty() => s.parse()?,
            _ => KernelChoice::default(),
        };
        let winograd = match std::env::var("DDIM_WINOGRAD") {
            Ok(s) if !s.trim().is_empty() => parse_switch("DDIM_WINOGRAD", &s)?,
            _ => true,
        };
        let input_windows = match std::env::var("DDIM_INPUT_WINDOWS") {
            Ok(s) if !s.trim().is_empty() => parse_switch("DDIM_INPUT_WINDOWS", &s)?,
            _ => true,
        };
        let split_k = match std::env::var("DDIM_SPLIT_K") {
            Ok(s) if !s.trim().is_empty() => parse_switch("DDIM_SPLIT_K", &s)?,
            _ => true,
        };
        let conv_tile_8x8 = match std::env::var("DDIM_CONV_TILE") {
            Ok(s) if !s.trim().is_empty() => parse_conv_tile(&s)?,
            _ => false,
        };
        let subgroups = match std::env::var("DDIM_SUBGROUPS") {
            Ok(s) if !s.trim().is_empty() => parse_switch("DDIM_SUBGROUPS", &s)?,
            _ => true,
        };
        let precision = match std::env::var("DDIM_PRECISION") {
            Ok(s) if !s.trim().is_empty() => s.parse()?,
            _ => Precision::F32,
        };
        let backend = match std::env::var("DDIM_BACKEND") {
            Ok(s) if !s.trim().is_empty() => Some(parse_backend(&s)?),
            _ => None,
        };
        let adapter = std::env::var("DDIM_ADAPTER").ok().filter(|s| !s.trim().is_empty());
        let fault = match std::env::var("DDIM_INJECT_FAULT") {
            Ok(s) if !s.trim().is_empty() => Some(s.parse()?),
            _ => None,
        };
        Ok(DeviceOptions {
            backend,
            adapter,
            kernels,
            winograd,
            input_windows,
            split_k,
            conv_tile_8x8,
            subgroups,
            precision,
            max_binding,
            max_storage_buffers,
            fault,
        })
    }
}

/// Parses `on`/`off` (also `1`/`0`, `true`/`false`), case-insensitively; `what` names the setting in errors.
pub fn parse_switch(what: &str, s: &str) -> Result<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        _ => Err(Error::param("device", format!("{what} `{s}`: expected on or off"))),
    }
}

/// Parses the tiled convolution's tile, `4x4` or `8x8` (outputs per invocation): whether it is 8 x 8
/// ([`DeviceOptions::conv_tile_8x8`]).
pub fn parse_conv_tile(s: &str) -> Result<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "4x4" => Ok(false),
        "8x8" => Ok(true),
        _ => Err(Error::param("device", format!("conv tile `{s}`: expected 4x4 or 8x8"))),
    }
}

/// Parses `vulkan`, `metal`, `dx12` or `gl` (also `gles`, `opengl`), case-insensitively.
pub fn parse_backend(name: &str) -> Result<wgpu::Backend> {
    match name.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backend::Vulkan),
        "metal" | "mtl" => Ok(wgpu::Backend::Metal),
        "dx12" | "d3d12" => Ok(wgpu::Backend::Dx12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backend::Gl),
        other => Err(Error::UnknownBackend(other.to_string())),
    }
}

fn backend_bits(backend: wgpu::Backend) -> wgpu::Backends {
    match backend {
        wgpu::Backend::Vulkan => wgpu::Backends::VULKAN,
        wgpu::Backend::Metal => wgpu::Backends::METAL,
        wgpu::Backend::Dx12 => wgpu::Backends::DX12,
        wgpu::Backend::Gl => wgpu::Backends::GL,
        wgpu::Backend::BrowserWebGpu => wgpu::Backends::BROWSER_WEBGPU,
        wgpu::Backend::Noop => wgpu::Backends::NOOP,
    }
}

/// How long one wait on a GL device may hold the adapter's context (see `Gpu::poll_until_idle`): well under the
/// 1 s after which wgpu gives up on a lock.
#[cfg(not(target_arch = "wasm32"))]
const GL_WAIT_SLICE_MS: u64 = 50;

/// Device features we use when the adapter has them (GPU timestamps for the profiler; subgroups unless
/// [`DeviceOptions::subgroups`] is off). None is required; `shader-f16` is asked for by
/// [`Precision::F16`] alone, which requires it.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::SUBGROUP);

/// Ranks adapter types: a discrete GPU first, a software rasteriser last.
fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// A one-line description of an adapter: `name (backend, type, driver)`; browsers may withhold the name.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    let name = if info.name.is_empty() { "unnamed adapter" } else { info.name.as_str() };
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{name} ({:?}, {:?}{})",
        info.backend,
        info.device_type,
        if driver.is_empty() { String::new() } else { format!(", {driver}") }
    )
}

/// Every adapter visible to the backends that `options` allows (the adapter filter is not applied).
pub async fn enumerate_adapters(options: &DeviceOptions) -> Vec<wgpu::Adapter> {
    // Our own choice first, then wgpu's `WGPU_BACKEND`, then every backend compiled in.
    let backends = options
        .backend
        .map(backend_bits)
        .or_else(wgpu::Backends::from_env)
        .unwrap_or(wgpu::Backends::all());
    let instance = new_instance(backends);
    instance.enumerate_adapters(backends).await
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Errors reported by wgpu outside any error scope, and device loss, recorded instead of panicking.
#[derive(Default)]
struct Faults {
    uncaptured: Option<String>,
    lost: Option<String>,
}

/// An open device on the chosen adapter, with a pipeline cache. Cheap to share by reference across threads.
pub struct Gpu {
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    faults: Arc<Mutex<Faults>>,
    kernels: KernelChoice,
    winograd: bool,
    input_windows: bool,
    split_k: bool,
    conv_tile_8x8: bool,
    precision: Precision,
    injected: Option<Fault>,
    /// The storage-binding cap the options set, if any.
    max_binding: Option<u64>,
    /// The storage-buffers-per-stage cap the options set, if any.
    max_storage_buffers: Option<u32>,
    pub(crate) pipelines: Mutex<HashMap<&'static str, Arc<CachedPipeline>>>,
    // Working buffers shared by every dispatch that names them (`Gpu::scratch`).
    pub(crate) scratch: Mutex<HashMap<&'static str, wgpu::Buffer>>,
    // Error scopes the browser has not answered yet (`Gpu::scoped`), with what each named.
    open_scopes: Mutex<Vec<(String, ScopeFuture)>>,
}

/// A popped error scope that may not have answered yet.
#[cfg(not(target_arch = "wasm32"))]
type ScopeFuture = Pin<Box<dyn Future<Output = Option<wgpu::Error>> + Send>>;
/// A popped error scope that may not have answered yet (the browser's are not `Send`).
#[cfg(target_arch = "wasm32")]
type ScopeFuture = Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>;

impl Gpu {
    /// Opens the best adapter that `options` allows, with the adapter's own limits (not wgpu's lower defaults).
    pub async fn new(options: &DeviceOptions) -> Result<Self> {
        if options.precision == Precision::F16
            && matches!(options.kernels, KernelChoice::Cpu | KernelChoice::Baseline)
        {
            return Err(Error::param(
                "device",
                "f16 precision runs the GPU family's kernels; the CPU family and the baseline store \
                 f32 only (use --kernels auto or gpu)",
            ));
        }
        let adapter = choose_adapter(options).await?;
        let info = adapter.get_info();
        let mut features = adapter.features() & WANTED_FEATURES;
        if !options.subgroups {
            features.remove(wgpu::Features::SUBGROUP);
        }
        if options.precision == Precision::F16 {
            if !adapter.features().contains(wgpu::Features::SHADER_F16) {
                return Err(Error::param(
                    "device",
                    format!(
                        "f16 precision needs the adapter's shader-f16 feature, which {} lacks \
                         (run with --precision f32)",
                        describe(&info)
                    ),
                ));
            }
            features |= wgpu::Features::SHADER_F16;
        }
        let mut limits = adapter.limits();
        if let Some(cap) = options.max_binding {
            if cap < 4 || cap % 4 != 0 {
                return Err(Error::param(
                    "device",
                    format!("a storage-binding cap of {cap} bytes: need a positive multiple of 4"),
                ));
            }
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        if let Some(cap) = options.max_storage_buffers {
            limits.max_storage_buffers_per_shader_stage =
                limits.max_storage_buffers_per_shader_stage.min(cap);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ddim-wgpu"),
                required_features: features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                message: one_line(&e.to_string()),
            })?;

        let faults = Arc::new(Mutex::new(Faults::default()));
        {
            let faults = faults.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut f = lock(&faults);
                f.uncaptured.get_or_insert_with(|| one_line(&e.to_string()));
            }));
        }
        {
            let faults = faults.clone();
            device.set_device_lost_callback(move |reason, message| {
                let mut f = lock(&faults);
                f.lost.get_or_insert_with(|| format!("{reason:?}: {message}"));
            });
        }
        Ok(Gpu {
            adapter,
            device,
            queue,
            faults,
            kernels: options.kernels,
            winograd: options.winograd,
            input_windows: options.input_windows,
            split_k: options.split_k,
            conv_tile_8x8: options.conv_tile_8x8,
            precision: options.precision,
            injected: options.fault.clone(),
            max_binding: options.max_binding,
            max_storage_buffers: options.max_storage_buffers,
            pipelines: Mutex::new(HashMap::new()),
            scratch: Mutex::new(HashMap::new()),
            open_scopes: Mutex::new(Vec::new()),
        })
    }

    /// The fault this device was opened to inject, if any.
    pub fn injected_fault(&self) -> Option<&Fault> {
        self.injected.as_ref()
    }

    /// The kernel variants this device was opened with.
    pub fn kernel_choice(&self) -> KernelChoice {
        self.kernels
    }

    /// The kernel family the operations pick from on this device: the choice it was opened with, with
    /// `Auto` resolved by the adapter's type (`Cpu`, `Gpu` or `Baseline`; never `Auto`), and to `Gpu` at f16
    /// precision, which the CPU family does not store.
    pub fn kernel_family(&self) -> KernelChoice {
        match (self.kernels, self.precision) {
            (KernelChoice::Auto, Precision::F16) => KernelChoice::Gpu,
            (choice, _) => choice.resolve(self.info().device_type),
        }
    }

    /// What activations and weights are stored as on this device ([`DeviceOptions::precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The element type of activations and weights: [`Precision::dtype`] of the device's precision.
    pub fn act(&self) -> DType {
        self.precision.dtype()
    }

    /// Whether the CPU family may take the Winograd convolution ([`DeviceOptions::winograd`]).
    pub fn winograd(&self) -> bool {
        self.winograd
    }

    /// Whether the CPU family's kernels may read activations through uniform windows
    /// ([`DeviceOptions::input_windows`]).
    pub fn input_windows(&self) -> bool {
        self.input_windows
    }

    /// Whether the GPU family's tiled convolution runs 8 x 8 outputs per invocation
    /// ([`DeviceOptions::conv_tile_8x8`]).
    pub fn conv_tile_8x8(&self) -> bool {
        self.conv_tile_8x8
    }

    /// Whether the GPU family's tiled kernels may split their reductions ([`DeviceOptions::split_k`]).
    pub fn split_k(&self) -> bool {
        self.split_k
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter's description.
    pub fn info(&self) -> wgpu::AdapterInfo {
        self.adapter.get_info()
    }

    /// The device's limits: the adapter's, with the caps of [`DeviceOptions::max_binding`] and
    /// [`DeviceOptions::max_storage_buffers`] (kept here too: a browser may report more than was asked for).
    pub fn limits(&self) -> wgpu::Limits {
        let mut limits = self.device.limits();
        if let Some(cap) = self.max_binding {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        if let Some(cap) = self.max_storage_buffers {
            limits.max_storage_buffers_per_shader_stage =
                limits.max_storage_buffers_per_shader_stage.min(cap);
        }
        limits
    }

    /// Whether the device was opened with subgroup operations (kernels whose entry point takes the subgroup
    /// builtins can run).
    pub fn subgroups(&self) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
    }

    /// The features the device was opened with.
    pub fn features(&self) -> wgpu::Features {
        self.device.features()
    }

    /// The features the adapter offers (a superset of [`Gpu::features`]).
    pub fn adapter_features(&self) -> wgpu::Features {
        self.adapter.features()
    }

    /// Runs `f` inside validation, out-of-memory and internal error scopes; any error they catch, an uncaptured
    /// error or a device loss becomes an [`Error`] naming `what`.
    ///
    /// Native backends answer a popped scope at once, and so does this. The browser answers later: a scope
    /// still open is kept and its error returned by the next wait on the GPU ([`Gpu::wait`]), still naming
    /// `what`.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        self.check_lost(what)?;
        // Scopes pop innermost first.
        for scope in [internal.pop(), oom.pop(), validation.pop()] {
            let mut scope: ScopeFuture = Box::pin(scope);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match scope.as_mut().poll(&mut cx) {
                Poll::Ready(Some(e)) => {
                    return Err(Error::Gpu {
                        what: what.to_string(),
                        message: one_line(&e.to_string()),
                    });
                }
                Poll::Ready(None) => {}
                Poll::Pending => lock(&self.open_scopes).push((what.to_string(), scope)),
            }
        }
        self.check_faults(what)?;
        Ok(value)
    }

    /// The first error of the scopes [`Gpu::scoped`] left open, once they have all answered.
    async fn settle_scopes(&self) -> Result<()> {
        let open = std::mem::take(&mut *lock(&self.open_scopes));
        let mut first = None;
        for (what, scope) in open {
            if let Some(e) = scope.await {
                first.get_or_insert(Error::Gpu { what, message: one_line(&e.to_string()) });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Returns an error if the device was lost.
    fn check_lost(&self, what: &str) -> Result<()> {
        let f = lock(&self.faults);
        match f.lost.clone() {
            Some(message) => Err(Error::DeviceLost { what: what.to_string(), message }),
            None => Ok(()),
        }
    }

    /// Returns an error if the device was lost or an uncaptured error was reported since the last check.
    pub fn check_faults(&self, what: &str) -> Result<()> {
        self.check_lost(what)?;
        let mut f = lock(&self.faults);
        if let Some(message) = f.uncaptured.take() {
            return Err(Error::Gpu { what: what.to_string(), message });
        }
        Ok(())
    }

    /// Submits `encoder` without waiting, reporting a refused submission as an error naming `what`. Later
    /// submissions see its results (a queue runs in order).
    pub fn submit(&self, what: &str, encoder: wgpu::CommandEncoder) -> Result<()> {
        if matches!(&self.injected, Some(Fault::LoseDevice(at)) if what.starts_with(at.as_str())) {
            self.device.destroy();
        }
        self.scoped(what, || self.queue.submit([encoder.finish()]))?;
        Ok(())
    }

    /// Submits `encoder` and waits for the GPU to finish it, reporting any error as one naming `what`.
    pub async fn submit_and_wait(&self, what: &str, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.submit(what, encoder)?;
        self.wait(what).await
    }

    /// Waits until all submitted work is done, then reports what went wrong meanwhile: a device loss, an error
    /// outside any scope, or one of a scope that answered late.
    pub async fn wait(&self, what: &str) -> Result<()> {
        let (done, finished) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            // The receiver is awaited below; a failed send only means nobody waits any more.
            let _ = done.send(());
        });
        self.poll_until_idle(what)?;
        // A lost device drops the callback unrun; the checks below then say why.
        let _ = finished.await;
        self.settle_scopes().await?;
        self.check_faults(what)
    }

    /// Drives the native device until its queue is empty, running the callbacks that completes. The browser
    /// drives its own device; there this returns at once.
    pub(crate) fn poll_until_idle(&self, what: &str) -> Result<()> {
        // wgpu's GL backend holds the adapter's context for the whole of a wait, and any GL call from another
        // thread of the process that waits 1 s for the context panics inside wgpu: on GL, wait in short slices,
        // so that other devices' calls get the context between them.
        #[cfg(not(target_arch = "wasm32"))]
        let slice = (self.adapter.get_info().backend == wgpu::Backend::Gl)
            .then(|| core::time::Duration::from_millis(GL_WAIT_SLICE_MS));
        #[cfg(not(target_arch = "wasm32"))]
        loop {
            match self.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: slice })
            {
                Ok(_) => break,
                Err(wgpu::PollError::Timeout) if slice.is_some() => continue,
                Err(e) => {
                    // A lost device fails the wait too; say that, not the symptom. wgpu runs the device-lost
                    // callback from a poll, so give it one before looking.
                    let _ = self.device.poll(wgpu::PollType::Poll);
                    return Err(self.check_lost(what).err().unwrap_or_else(|| Error::Gpu {
                        what: what.to_string(),
                        message: one_line(&e.to_string()),
                    }));
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        let _ = what;
        Ok(())
    }
}

async fn choose_adapter(options: &DeviceOptions) -> Result<wgpu::Adapter> {
    let mut candidates = enumerate_adapters(options).await;
    let seen = if candidates.is_empty() {
        "none".to_string()
    } else {
        candidates.iter().map(|a| describe(&a.get_info())).collect::<Vec<_>>().join("; ")
    };
    if let Some(needle) = &options.adapter {
        let needle = needle.to_lowercase();
        candidates.retain(|a| a.get_info().name.to_lowercase().contains(&needle));
    }
    // Prefer the most capable device type; among equals, prefer a non-GL backend (GL lacks f16 and subgroups).
    candidates.sort_by_key(|a| {
        let info = a.get_info();
        (type_rank(info.device_type), info.backend == wgpu::Backend::Gl)
    });
    candidates.into_iter().next().ok_or_else(|| {
        let mut filter = String::new();
        if let Some(b) = options.backend {
            filter.push_str(&format!(" for backend {b:?}"));
        }
        if let Some(a) = &options.adapter {
            filter.push_str(&format!(" matching `{a}`"));
        }
        Error::NoAdapter { filter, seen }
    })
}

/// wgpu's messages span many lines; our errors are one line, so the lines are joined with ` | `.
fn one_line(s: &str) -> String {
    let joined: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    joined.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!(parse_backend("Vulkan").unwrap(), wgpu::Backend::Vulkan);
        assert_eq!(parse_backend(" gl ").unwrap(), wgpu::Backend::Gl);
        assert_eq!(parse_backend("d3d12").unwrap(), wgpu::Backend::Dx12);
        assert_eq!(parse_backend("metal").unwrap(), wgpu::Backend::Metal);
        assert!(matches!(parse_backend("cuda"), Err(Error::UnknownBackend(s)) if s == "cuda"));
    }

    #[test]
    fn wgpu_messages_become_one_line() {
        assert_eq!(
            one_line("Validation Error\n\nCaused by:\n  bad\n"),
            "Validation Error | Caused by: | bad"
        );
    }
}
