//! The UNet: its validated configuration ([`config`], diffusers' `UNet2DModel` fields and defaults) and the one
//! builder that knows its architecture ([`builder`]: config to graph IR, node and parameter names as
//! diffusers' state-dict keys).

pub mod builder;
pub mod config;

pub use builder::build;
pub use config::UNetConfig;
