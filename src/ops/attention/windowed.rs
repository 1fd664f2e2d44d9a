//! `attention_windowed.wgsl`: the CPU family's attention where the products do not apply: keys and values
//! laid out in uniform windows by `attention_pack.wgsl`, one launch per window, the softmax's running state
//! carried between a pair's key windows.

use super::portable::{OP, ROWS};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite, UniformWindow};
use crate::gpu::check::{check_bindings, dim};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::windows::window_binding;
use crate::gpu::{
    Dispatch, Gpu, Kernel, LaunchSpec, Tensor, UNIFORM_WINDOW, WINDOW_FLOATS, workgroups_for,
};

/// The CPU family's kernel: keys and values from uniform windows.
pub const WINDOWED_KERNEL: Kernel = kernel!("attention_windowed", includes: [ROWS], workgroup: 8,
    params: WindowedParams, bindings: &[Read, UniformWindow, UniformWindow, ReadWrite, ReadWrite]);

/// Lays keys or values out in windows for [`WINDOWED_KERNEL`].
pub const PACK_KERNEL: Kernel = kernel!("attention_pack", includes: [], workgroup: 64,
    params: PackParams, bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in attention_windowed.wgsl.
    pub struct WindowedParams {
        pub pairs: u32, pub head_dim: u32, pub tokens: u32, pub kw: u32, pub per_window: u32,
        pub pair0: u32, pub key0: u32, pub first: u32, pub last: u32, pub scale: f32,
        pub _pad: [u32; 2],
    }
}

params! {
    /// Mirrors `Params` in attention_pack.wgsl.
    pub struct PackParams {
        pub pairs: u32, pub head_dim: u32, pub tokens: u32, pub kw: u32, pub per_window: u32,
        pub key_windows: u32, pub windows: u32, pub window0: u32,
    }
}

/// Keys per block of `attention_windowed.wgsl` (its `KB`): a window's keys come in multiples of it.
const KEY_BLOCK: usize = 16;

/// How (image, head) pairs and their keys are laid out in windows: each window holds `per_window` pairs with
/// `kw` keys each; a pair's keys take `key_windows` windows, consecutive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowGeometry {
    pub kw: usize,
    pub per_window: usize,
    pub key_windows: usize,
    pub windows: usize,
}

impl WindowGeometry {
    /// The layout for `pairs` pairs of `head_dim` x `tokens`, or `None` when one key block of a head does not
    /// fit a window (head_dim over 1,024).
    pub fn new(pairs: usize, head_dim: usize, tokens: usize) -> Option<Self> {
        let padded = tokens.div_ceil(KEY_BLOCK) * KEY_BLOCK;
        let (kw, per_window, key_windows) = if head_dim * padded <= WINDOW_FLOATS {
            (padded, (WINDOW_FLOATS / (head_dim * padded)).min(pairs), 1)
        } else {
            let kw = WINDOW_FLOATS / head_dim / KEY_BLOCK * KEY_BLOCK;
            (kw, 1, tokens.div_ceil(kw.max(1)))
        };
        (kw > 0 && pairs > 0).then(|| WindowGeometry {
            kw,
            per_window,
            key_windows,
            windows: pairs.div_ceil(per_window) * key_windows,
        })
    }
}

/// The windowed path: pack k and v into windows (in buffers of at most one storage binding each), then one
/// launch per window, a pair's key windows in order.
#[allow(clippy::too_many_arguments)] // the four operands and the geometry of one attention
pub(super) fn windowed(
    gpu: &Gpu,
    label: &str,
    [q, k, v, out]: [&Tensor; 4],
    pairs: usize,
    head_dim: usize,
    tokens: usize,
    scale: f32,
) -> Result<Dispatch> {
    check_bindings(gpu, OP, &[q, k, v, out])?;
    let geo = WindowGeometry::new(pairs, head_dim, tokens).ok_or_else(|| {
        Error::shape(OP, format!("`{label}`: heads of {head_dim} do not fit a window"))
    })?;
    let limits = gpu.limits();
    let per_buffer = (limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)
        / UNIFORM_WINDOW) as usize;
    let buffers = geo.windows.div_ceil(per_buffer);
    let pack_params = PackParams {
        pairs: dim(OP, "pairs", pairs)?,
        head_dim: dim(OP, "head_dim", head_dim)?,
        tokens: dim(OP, "tokens", tokens)?,
        kw: dim(OP, "keys per window", geo.kw)?,
        per_window: dim(OP, "pairs per window", geo.per_window)?,
        key_windows: dim(OP, "key windows", geo.key_windows)?,
        windows: 0,
        window0: 0,
    };
    // Buffer b holds windows b * per_buffer ..; each gets one pack launch per operand.
    let mut packed: Vec<[wgpu::Buffer; 2]> = Vec::with_capacity(buffers);
    let mut buffer_params = Vec::with_capacity(buffers);
    for b in 0..buffers {
        let count = per_buffer.min(geo.windows - b * per_buffer);
        let make = |what: &str| {
            let name = format!("{what} windows of `{label}`");
            gpu.scoped(&name, || {
                gpu.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&name),
                    size: count as u64 * UNIFORM_WINDOW,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
                    mapped_at_creation: false,
                })
            })
        };
        packed.push([make("key")?, make("value")?]);
        buffer_params.push(PackParams {
            windows: dim(OP, "windows", count)?,
            window0: dim(OP, "window", b * per_buffer)?,
            ..pack_params
        });
    }
    let rows = (geo.per_window * head_dim) as u64;
    let mut pack_specs = Vec::with_capacity(2 * buffers);
    for (b, params) in buffer_params.iter().enumerate() {
        for (t, src) in [k, v].into_iter().enumerate() {
            pack_specs.push(LaunchSpec {
                params: bytemuck::bytes_of(params),
                resources: vec![src.binding(), packed[b][t].as_entire_binding()],
                workgroups: workgroups_for(
                    params.windows as u64 * rows,
                    PACK_KERNEL.workgroup_size,
                ),
            });
        }
    }
    let pack = Dispatch::launches(gpu, &PACK_KERNEL, OP, label, pack_specs)?;

    // The running maximum and denominator of every query, between a pair's key windows.
    let state = gpu.scoped(&format!("softmax state of `{label}`"), || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: if geo.key_windows > 1 { 8 * (pairs * tokens) as u64 } else { 4 },
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    })?;
    let groups = tokens.div_ceil(4).div_ceil(WINDOWED_KERNEL.workgroup_size as usize);
    let mut params = Vec::with_capacity(geo.windows);
    for w in 0..geo.windows {
        let (group, kwi) = (w / geo.key_windows, w % geo.key_windows);
        params.push(WindowedParams {
            pairs: pack_params.pairs,
            head_dim: pack_params.head_dim,
            tokens: pack_params.tokens,
            kw: pack_params.kw,
            per_window: pack_params.per_window,
            pair0: dim(OP, "pair", group * geo.per_window)?,
            key0: dim(OP, "key", kwi * geo.kw)?,
            first: (kwi == 0) as u32,
            last: (kwi + 1 == geo.key_windows) as u32,
            scale,
            _pad: [0; 2],
        });
    }
    let specs = params
        .iter()
        .enumerate()
        .map(|(w, p)| {
            let [kb, vb] = &packed[w / per_buffer];
            LaunchSpec {
                params: bytemuck::bytes_of(p),
                resources: vec![
                    q.binding(),
                    window_binding(kb, w % per_buffer),
                    window_binding(vb, w % per_buffer),
                    out.binding(),
                    state.as_entire_binding(),
                ],
                workgroups: (geo.per_window.min(pairs - p.pair0 as usize) * groups) as u64,
            }
        })
        .collect();
    let mut d = Dispatch::launches(gpu, &WINDOWED_KERNEL, OP, label, specs)?.after(pack);
    for pair in packed {
        for b in pair {
            d = d.owning(b);
        }
    }
    Ok(d.owning(state))
}
