//! The sampler: schedules, timestep sequences, the DDIM loop with inversion and interpolation, and the
//! random-number generator shared with the kernels.

pub mod ddim;
pub mod rng;
pub mod schedule;
pub mod timesteps;
