//! Every kernel against its CPU reference (src/reference) on awkward shapes and on real CIFAR-10 UNet shapes.
//! Runs on any adapter; in CI on lavapipe with DDIM_REQUIRE_GPU=1 so a missing adapter fails instead of skipping.

mod common;
#[path = "../support/mod.rs"]
mod support;

mod attention;
mod conv2d;
mod ddim;
mod elementwise;
mod errors;
mod finite;
mod group_norm;
mod half;
mod linear;
mod randn;
mod resample;
mod roofline;
mod timestep_embedding;
mod winograd;
