//! Models: the configuration, our weights file, and the converters from diffusers and the original DDPM/DDIM
//! checkpoints.

pub mod config;
pub mod convert;
pub mod torch;
pub mod weights;
