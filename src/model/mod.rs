//! Model files: our weights file ([`weights`]), the PyTorch container and its restricted pickle reader
//! ([`torch`]), and the converters from diffusers directories and original DDPM/DDIM checkpoints
//! ([`convert`]). File formats only: the configuration and the graph live in `unet`.

pub mod convert;
pub mod torch;
pub mod weights;
