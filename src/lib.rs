//! # ddim-wgpu
//!
//! DDIM sampling (Song, Meng, Ermon 2020) of DDPM-family UNets on any GPU that wgpu reaches (Vulkan, Metal,
//! DX12, GL), with hand-written WGSL compute kernels and no ML framework.
//!
//! - [`gpu`]: the device context (adapter choice, real limits, errors as values) and tensors.
//! - [`ops`]: one module per kernel in `kernels/`; each prepares a [`ops::Dispatch`] once, to record many times.
//! - [`reference`](mod@reference): CPU implementations of every kernel in f64, the tests' ground truth.
//! - [`sampler`]: the Philox random-number generator shared by the CPU and the kernels.
//! - [`fuzz`]: the fuzz targets' entry points (one per parser of outside input), shared with the regression
//!   tests that replay their corpora.
//!
//! ```no_run
//! use ddim_wgpu::gpu::{DeviceOptions, Gpu};
//! use ddim_wgpu::ops::elementwise::{unary, Unary};
//!
//! let gpu = Gpu::new(&DeviceOptions::default())?;
//! let x = gpu.upload("x", &[2, 3], &[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])?;
//! let y = gpu.zeros("y", &[2, 3])?;
//! let silu = unary(&gpu, "silu", Unary::Silu, &x, &y)?;
//! gpu.run("example", &[&silu])?;
//! println!("{:?}", gpu.download(&y)?);
//! # Ok::<(), ddim_wgpu::Error>(())
//! ```

pub mod error;
pub mod fuzz;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod model;
pub mod ops;
pub mod reference;
pub mod sampler;

pub use error::{Error, Result};
