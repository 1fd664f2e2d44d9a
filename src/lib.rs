//! # ddim-wgpu
//!
//! DDIM sampling (Song, Meng, Ermon 2020) of DDPM-family UNets on any GPU that wgpu reaches (Vulkan, Metal,
//! DX12, GL), with hand-written WGSL compute kernels and no ML framework.
//!
//! The layers, lowest first; each uses only those below it (a test holds this):
//!
//! - [`error`]: the typed [`Error`], every variant naming the op, kernel, tensor, node or path.
//! - [`diffusion`]: device-free maths: schedules, timesteps, one step's coefficients, Philox.
//! - [`gpu`]: the device, tensors, kernels and their pipeline cache, [`gpu::Dispatch`], the roofline and the
//!   profiler; every wait on the GPU is `async`.
//! - [`ops`]: the operations, one folder or file per family (algorithms and the choice between them), each
//!   preparing a [`gpu::Dispatch`] once, to record many times.
//! - [`graph`]: the IR and the memory plan that runs it as one pass.
//! - [`unet`]: the UNet's configuration and the builder that turns it into IR.
//! - [`reference`](mod@reference): CPU implementations of every kernel in f64, the tests' ground truth.
//! - [`io`]: files, `.npy`, PNG, outputs staged all-or-nothing.
//! - [`model`]: model files: ours, diffusers, PyTorch checkpoints.
//! - [`sampler`]: the DDIM loop over a planned UNet.
//! - [`pipeline`]: the sampling API: load, sample, invert, interpolate, evaluate.
//! - [`fuzz`]: the fuzz targets' entry points, shared with the tests that replay their corpora.
//!
//! A whole sampling (`examples/sample.rs`):
//!
//! ```no_run
//! use ddim_wgpu::gpu::{DeviceOptions, Gpu};
//! use ddim_wgpu::model::weights::Weights;
//! use ddim_wgpu::pipeline::{Pipeline, SampleRequest};
//!
//! # pollster::block_on(async {
//! let weights = Weights::load("weights/default.safetensors".as_ref())?;
//! let pipeline = Pipeline::new(Gpu::new(&DeviceOptions::default()).await?, &weights)?;
//! let request = SampleRequest::new(pipeline.default_settings(), 4, 0);
//! let images = pipeline.sample(&request, &mut |p| eprintln!("{}/{}", p.done, p.total)).await?;
//! println!("{:?}", images.shape);
//! # Ok::<(), ddim_wgpu::Error>(())
//! # }).unwrap();
//! ```
//!
//! One kernel on its own:
//!
//! ```no_run
//! use ddim_wgpu::gpu::{DeviceOptions, Gpu};
//! use ddim_wgpu::ops::elementwise::{unary, Unary};
//!
//! # pollster::block_on(async {
//! let gpu = Gpu::new(&DeviceOptions::default()).await?;
//! let x = gpu.upload("x", &[2, 3], &[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])?;
//! let y = gpu.zeros("y", &[2, 3])?;
//! let silu = unary(&gpu, "silu", Unary::Silu, &x, &y)?;
//! gpu.run("example", &[&silu]).await?;
//! println!("{:?}", gpu.download(&y).await?);
//! # Ok::<(), ddim_wgpu::Error>(())
//! # }).unwrap();
//! ```

pub mod diffusion;
pub mod error;
pub mod fuzz;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod limits;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod reference;
pub mod sampler;
pub mod unet;

pub use error::{Error, Result};
