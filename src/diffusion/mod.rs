//! The diffusion maths, device-free: noise schedules ([`schedule`]), timestep sequences ([`timesteps`]), one
//! step's coefficients, prediction types and thresholding rules ([`step`]), and the counter-based random-number
//! generator shared bit for bit with the kernels ([`philox`]). Everything here is plain f64/u32 arithmetic: the
//! GPU operations and the sampler take their numbers from it, never the reverse.

pub mod philox;
pub mod schedule;
pub mod step;
pub mod timesteps;
