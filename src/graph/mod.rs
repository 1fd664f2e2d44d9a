//! The UNet as a graph: the IR ([`ir`]), the one module that knows the architecture ([`unet`]), the memory plan
//! that binds every node to buffers once ([`plan`]), and its execution.

pub mod ir;
pub mod plan;
pub mod unet;
