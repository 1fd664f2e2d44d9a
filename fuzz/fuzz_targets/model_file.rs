//! Fuzz target `model_file`: see `ddim_wgpu::fuzz::model_file` for what it generates and checks.
#![no_main]

#[global_allocator]
static ALLOCATOR: ddim_wgpu::fuzz::CappedAllocator<{ 64 << 20 }> = ddim_wgpu::fuzz::CappedAllocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ddim_wgpu::fuzz::model_file(data));
