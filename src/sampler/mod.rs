//! The sampler. For now its random-number generator, which the kernels share; the DDIM loop, schedules and
//! timesteps build on it.

pub mod rng;
pub mod schedule;
pub mod timesteps;
