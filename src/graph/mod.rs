//! The executor: a graph IR of tensors and ops with shape inference ([`ir`]), a pass that runs sibling
//! linear layers as one over stacked weights ([`stack`]), one that folds group norms into the convolutions
//! that read them where the device can ([`prologue`]), and the memory plan that binds every node to buffers
//! once and runs the graph as one compute pass ([`plan`]). It knows ops and tensors, not UNets.

pub mod ir;
pub mod plan;
pub mod prologue;
pub mod stack;
