//! Writes every kernel as it is compiled (`common.wgsl`, its includes, its source with the variant's directives
//! applied) to `DIR/<name>.wgsl`, so that a variant generated from a shared source can be read and diffed as
//! plain WGSL; a kernel that stores activations also at f16 precision, as `DIR/<name>_f16.wgsl`.
//!
//! `cargo run --example kernels -- DIR`

use ddim_wgpu::gpu::DType;
use ddim_wgpu::ops::KERNELS;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: cargo run --example kernels -- DIR")?;
    std::fs::create_dir_all(&dir)?;
    for kernel in KERNELS {
        let path = std::path::Path::new(&dir).join(format!("{}.wgsl", kernel.name));
        std::fs::write(&path, kernel.full_source(DType::F32)?)?;
        if kernel.stores_activations() {
            let path = std::path::Path::new(&dir).join(format!("{}_f16.wgsl", kernel.name));
            std::fs::write(&path, kernel.full_source(DType::F16)?)?;
        }
    }
    println!("wrote {} kernels to {dir}", KERNELS.len());
    Ok(())
}
