//! The DDIM update on the GPU (the maths is `diffusion::step`), three ways:
//!
//! - [`UpdateMode::Fused`]: `kernels/ddim_step.wgsl`, one pass over x with the noise generated in registers
//!   (plus `kernels/ddim_threshold.wgsl` first when dynamic thresholding is on);
//! - [`UpdateMode::Epilogue`]: the update as the epilogue of the UNet's final convolution ([`conv_ddim_update`]);
//! - [`UpdateMode::Unfused`]: the same maths as a chain of `elementwise` and `randn` dispatches with
//!   temporaries, the way a framework without fusion runs it.
//!
//! Comparing the two is a feature (the profiler and benches report the difference), not dead code.
//!
//! One file per form: [`fused`], [`epilogue`], [`unfused`]; what they share in [`spec`]; the choice in
//! [`strategy`].

pub mod epilogue;
pub mod fused;
pub mod spec;
pub mod strategy;
pub mod unfused;

pub use epilogue::{
    CONV_3X3_KERNEL, CONV_KERNEL, CONV_TILED_8X8_KERNEL, CONV_TILED_KERNEL, ConvStepParams,
    PackedStepParams, SPLIT_REDUCE_KERNEL, TiledStepParams, conv_ddim_update,
    epilogue_keeps_kernel, epilogue_kernel_for,
};
pub use fused::{STEP_KERNEL, StepParams, THRESHOLD_KERNEL, ThresholdParams};
pub use spec::{DdimScratch, DdimStepParams, Noise, StepSpec, UpdateMode};
pub use strategy::ddim_update;
pub use unfused::predicted_x0;
