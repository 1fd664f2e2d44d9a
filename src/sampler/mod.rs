//! The sampler: the DDIM loop over a planned UNet (sampling, inversion), the starting latents, and slerp.

pub mod ddim;
