//! Fuzz target `image`: see `ddim_wgpu::fuzz::image` for what it feeds and checks.
#![no_main]

#[global_allocator]
static ALLOCATOR: ddim_wgpu::fuzz::CappedAllocator<{ 320 << 20 }> =
    ddim_wgpu::fuzz::CappedAllocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ddim_wgpu::fuzz::image(data));
