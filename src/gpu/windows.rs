//! Uniform windows: the CPU family's kernels read weights and activations through 64 KiB uniform bindings
//! placed over a buffer (lavapipe reads a uniform address shared by a workgroup once per SIMD vector). These
//! helpers place the windows, check they fit, and lay weights out in them.

use super::check::check_bindings;
use super::dispatch::{Dispatch, LaunchSpec, workgroups_for};
use super::kernel::{Kernel, UNIFORM_WINDOW, WINDOW_FLOATS};
use super::{Gpu, Tensor};
use crate::error::{Error, Result};

/// The starts, in rows, of the `N` windows of a launch that reads `count` rows from row `first`, `rows` to a
/// window: the windows past the last it needs hold nothing read and repeat the first (every binding must be
/// bound).
pub(crate) fn window_starts<const N: usize>(first: u64, count: usize, rows: usize) -> [u64; N] {
    std::array::from_fn(|w| if w * rows < count { first + (w * rows) as u64 } else { first })
}

/// Whether the device binds 64 KiB uniform windows and 64 KiB storage buffers: what the CPU family's
/// window-reading kernels need.
pub(crate) fn has_uniform_windows(gpu: &Gpu) -> bool {
    let limits = gpu.limits();
    limits.max_uniform_buffer_binding_size >= UNIFORM_WINDOW
        && limits.max_storage_buffer_binding_size >= UNIFORM_WINDOW
}

/// The uniform window of `buffer` that starts at byte `offset`, as a binding.
pub(crate) fn window_at(buffer: &wgpu::Buffer, offset: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: wgpu::BufferSize::new(UNIFORM_WINDOW),
    })
}

/// Window `w` of a buffer of uniform windows, as a binding.
pub(crate) fn window_binding(buffer: &wgpu::Buffer, w: usize) -> wgpu::BindingResource<'_> {
    window_at(buffer, w as u64 * UNIFORM_WINDOW)
}

/// Whether uniform windows starting at the byte offsets `starts` of `buffer` can be bound: each at a multiple
/// of the device's uniform offset alignment and ending within the buffer. An activation's windows may reach
/// past its last value, into the slack its arena carries (`graph::plan`).
pub(crate) fn windows_fit(
    gpu: &Gpu,
    buffer: &wgpu::Buffer,
    starts: impl IntoIterator<Item = u64>,
) -> bool {
    let align = gpu.limits().min_uniform_buffer_offset_alignment as u64;
    starts.into_iter().all(|start| {
        align > 0 && start.is_multiple_of(align) && start + UNIFORM_WINDOW <= buffer.size()
    })
}

/// Lays weights out in uniform windows, once, when a convolution is prepared: a new buffer of `params.len()`
/// windows, then one launch of `kernel` per window `w` with `params[w]`, reading `weight` (binding 1) and
/// writing the window (binding 2), 256 invocations per workgroup, one per float, submitted at once (every later
/// submission sees the packed weights). `what` names the
/// work in errors.
pub(crate) fn pack_into_windows<P: bytemuck::Pod>(
    gpu: &Gpu,
    op: &'static str,
    what: &str,
    kernel: &'static Kernel,
    weight: &Tensor,
    params: &[P],
) -> Result<wgpu::Buffer> {
    let bytes = params.len() as u64 * UNIFORM_WINDOW;
    if bytes > gpu.limits().max_buffer_size {
        return Err(Error::shape(
            op,
            format!("{what}: {bytes} bytes exceed the device's buffer limit"),
        ));
    }
    check_bindings(gpu, op, &[weight])?;
    let packed = gpu.scoped(what, || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        })
    })?;
    let launches = params
        .iter()
        .enumerate()
        .map(|(w, p)| LaunchSpec {
            params: bytemuck::bytes_of(p),
            resources: vec![weight.binding(), window_binding(&packed, w)],
            workgroups: workgroups_for(WINDOW_FLOATS as u64, kernel.workgroup_size),
        })
        .collect();
    let pack = Dispatch::launches(gpu, kernel, op, what, launches)?;
    gpu.submit_pass(what, &[&pack]).map_err(|e| gpu.locate_fault(e, [&pack]))?;
    Ok(packed)
}
