//! `conv2d_3x3.wgsl` and `conv2d_packed.wgsl`: the CPU family's convolutions over weights packed once
//! (`conv2d_pack.wgsl`) into 64 KiB uniform windows, 8 output channels x 8 columns per invocation.

use super::shape::{BLOCK, ConvShape, EPILOGUE, OP, Operands, SHAPE};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{check_bindings, dim, dims};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::windows::{pack_into_windows, window_binding};
use crate::gpu::{
    Access, Dispatch, Gpu, Kernel, LaunchSpec, Tensor, UNIFORM_WINDOW, WINDOW_FLOATS,
    workgroups_for,
};

/// What the packed-weight kernels share: Params, bindings, the store of the 8 x 8 block.
pub const PACKED_COMMON: &str = include_str!("../../../kernels/conv2d_packed.inc.wgsl");

/// x, the packed weight window, bias, residual, out, channel offset (conv2d_packed.inc.wgsl).
const PACKED_BINDINGS: &[Access] = &[
    Access::Read,
    Access::UniformWindow,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::Read,
];

/// The 3x3 stride-1 kernel over packed weights.
pub const KERNEL_3X3: Kernel = kernel!("conv2d_3x3",
    includes: [SHAPE, BLOCK, EPILOGUE, PACKED_COMMON], workgroup: 32, params: PackedParams,
    bindings: PACKED_BINDINGS);

/// Any kernel size and stride over packed weights (1x1 shortcuts, stride-2 downsamplers).
pub const KERNEL_PACKED: Kernel = kernel!("conv2d_packed",
    includes: [SHAPE, BLOCK, EPILOGUE, PACKED_COMMON], workgroup: 32, params: PackedParams,
    bindings: PACKED_BINDINGS);

/// Lays weights out in uniform windows for [`KERNEL_3X3`] and [`KERNEL_PACKED`].
pub const PACK_KERNEL: Kernel = kernel!("conv2d_pack", includes: [], workgroup: 256,
    params: PackParams, bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in conv2d_packed.inc.wgsl (conv2d_3x3.wgsl and conv2d_packed.wgsl).
    pub struct PackedParams {
        pub shape: ConvShape, pub ci0: u32, pub ci_count: u32, pub block0: u32, pub blocks: u32,
        pub chunk: u32, pub first: u32, pub last: u32, pub has_residual: u32, pub out_scale: f32,
        pub has_channel: u32, pub _pad: [u32; 2],
    }
}

params! {
    /// Mirrors `Params` in conv2d_pack.wgsl.
    pub struct PackParams {
        pub cout: u32, pub cin: u32, pub chunk: u32, pub chunks: u32, pub blocks_per_window: u32,
        pub window: u32, pub taps: u32, pub _pad: u32,
    }
}

/// How weights `[cout, cin, kh, kw]` are cut into uniform windows: blocks of 8 output channels, input channels
/// in `chunks` chunks of `chunk` (the last may be shorter), `blocks_per_window` blocks per window. Window `w`
/// holds block group `w / chunks` and chunk `w % chunks`; one input channel of one block is `taps * 8` floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackGeometry {
    pub taps: usize,
    pub blocks: usize,
    pub chunk: usize,
    pub chunks: usize,
    pub blocks_per_window: usize,
    pub windows: usize,
}

impl PackGeometry {
    /// The cut for `cout` output and `cin` input channels and `taps` = kh * kw: the fewest chunks whose
    /// blocks fit a window, then as many blocks per window as fit. `None` when one input channel of one block
    /// does not fit a window (more than 2048 taps).
    pub fn new(cout: usize, cin: usize, taps: usize) -> Option<Self> {
        Self::with_max_chunk(cout, cin, taps, usize::MAX)
    }

    /// [`PackGeometry::new`] with chunks of at most `max_chunk` input channels.
    pub fn with_max_chunk(cout: usize, cin: usize, taps: usize, max_chunk: usize) -> Option<Self> {
        let per_channel = 8 * taps;
        let max_chunk = (WINDOW_FLOATS / per_channel).min(max_chunk);
        if max_chunk == 0 || cout == 0 || cin == 0 {
            return None;
        }
        let blocks = cout.div_ceil(8);
        let chunks = cin.div_ceil(max_chunk);
        let chunk = cin.div_ceil(chunks);
        let blocks_per_window = (WINDOW_FLOATS / (per_channel * chunk)).min(blocks);
        let windows = blocks.div_ceil(blocks_per_window) * chunks;
        Some(PackGeometry { taps, blocks, chunk, chunks, blocks_per_window, windows })
    }

    /// Bytes of the packed weights.
    pub fn bytes(&self) -> u64 {
        self.windows as u64 * UNIFORM_WINDOW
    }
}

/// The packed-weight path: packs the weights, then one launch per window, chunks of a block group in order.
pub(super) fn packed(
    gpu: &Gpu,
    kernel: &'static Kernel,
    label: &str,
    o: &Operands<'_>,
) -> Result<Dispatch> {
    let shape = &o.shape;
    let (x, weight, bias, out) = (o.x, o.weight, o.bias, o.out);
    let (channel, residual, cfg) = (o.channel, o.residual, o.cfg);
    let (cout, cin) = (shape.cout as usize, shape.cin as usize);
    let taps = (shape.kh * shape.kw) as usize;
    let geo = PackGeometry::new(cout, cin, taps).ok_or_else(|| {
        Error::shape(OP, format!("`{label}`: {taps} taps do not fit a weight window"))
    })?;
    check_bindings(gpu, OP, &[x, weight, bias, out])?;
    let packed = pack_weights(gpu, label, weight, &geo)?;

    let [n, _, ho, wo] = shape.output_shape();
    let tiles = workgroups_for((n * ho * wo.div_ceil(8)) as u64, kernel.workgroup_size);
    let mut params = Vec::with_capacity(geo.windows);
    for w in 0..geo.windows {
        let (group, q) = (w / geo.chunks, w % geo.chunks);
        let block0 = group * geo.blocks_per_window;
        let ci0 = q * geo.chunk;
        params.push(PackedParams {
            shape: *shape,
            ci0: ci0 as u32,
            ci_count: geo.chunk.min(cin - ci0) as u32,
            block0: block0 as u32,
            blocks: geo.blocks_per_window.min(geo.blocks - block0) as u32,
            chunk: geo.chunk as u32,
            first: (q == 0) as u32,
            last: (q + 1 == geo.chunks) as u32,
            has_residual: residual.is_some() as u32,
            out_scale: cfg.out_scale,
            has_channel: channel.is_some() as u32,
            _pad: [0; 2],
        });
    }
    let blocks: Vec<u32> = params.iter().map(|p| p.blocks).collect();
    let after = [bias, residual.unwrap_or(x), out, channel.unwrap_or(bias)];
    window_launches(gpu, kernel, label, &params, &blocks, tiles, x, &after, packed)
}

/// One launch of `kernel` per weight window of `packed`: launch `w` takes `params[w]`, binds `x`, window `w`,
/// then `after`, and runs `blocks[w]` output-channel blocks of `tiles` workgroups each.
#[allow(clippy::too_many_arguments)] // the launches' operands
pub fn window_launches<P: bytemuck::Pod>(
    gpu: &Gpu,
    kernel: &'static Kernel,
    label: &str,
    params: &[P],
    blocks: &[u32],
    tiles: u64,
    x: &Tensor,
    after: &[&Tensor],
    packed: wgpu::Buffer,
) -> Result<Dispatch> {
    let specs = params
        .iter()
        .zip(blocks)
        .enumerate()
        .map(|(w, (p, &b))| LaunchSpec {
            params: bytemuck::bytes_of(p),
            resources: [x.binding(), window_binding(&packed, w)]
                .into_iter()
                .chain(after.iter().map(|t| t.binding()))
                .collect(),
            workgroups: b as u64 * tiles,
        })
        .collect();
    Ok(Dispatch::launches(gpu, kernel, OP, label, specs)?.owning(packed))
}

/// Packs `weight` `[cout, cin, kh, kw]` into `geo.windows` uniform windows (conv2d_pack.wgsl), and waits.
pub fn pack_weights(
    gpu: &Gpu,
    label: &str,
    weight: &Tensor,
    geo: &PackGeometry,
) -> Result<wgpu::Buffer> {
    let [cout, cin, _, _] = dims::<4>(OP, weight)?;
    let params = (0..geo.windows)
        .map(|w| {
            Ok(PackParams {
                cout: dim(OP, "cout", cout)?,
                cin: dim(OP, "cin", cin)?,
                chunk: dim(OP, "chunk", geo.chunk)?,
                chunks: dim(OP, "chunks", geo.chunks)?,
                blocks_per_window: dim(OP, "blocks per window", geo.blocks_per_window)?,
                window: dim(OP, "window", w)?,
                taps: dim(OP, "taps", geo.taps)?,
                _pad: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let what = format!("packing the weights of `{label}`");
    pack_into_windows(gpu, OP, &what, &PACK_KERNEL, weight, &params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_geometry_fills_windows_and_never_overflows_one() {
        let g = PackGeometry::new(256, 256, 9).unwrap();
        assert_eq!(
            (g.blocks, g.chunk, g.chunks, g.blocks_per_window, g.windows),
            (32, 128, 2, 1, 64)
        );
        let g = PackGeometry::new(100, 20, 9).unwrap();
        assert_eq!(
            (g.blocks, g.chunk, g.chunks, g.blocks_per_window, g.windows),
            (13, 20, 1, 11, 2)
        );
        let g = PackGeometry::new(256, 512, 1).unwrap();
        assert_eq!((g.chunk, g.chunks, g.blocks_per_window, g.windows), (512, 1, 4, 8));
        assert_eq!(PackGeometry::new(8, 1, 2049), None);
        for cin in 1..2000 {
            for (cout, taps) in [(1, 9), (7, 1), (8, 9), (9, 4), (128, 9), (1000, 25)] {
                let g = PackGeometry::new(cout, cin, taps).unwrap();
                assert!(g.blocks_per_window * g.chunk * taps * 8 <= WINDOW_FLOATS);
                assert!(g.chunk * g.chunks >= cin && g.chunk * (g.chunks - 1) < cin);
                assert!(g.blocks_per_window >= 1 && g.blocks_per_window <= g.blocks);
                assert_eq!(g.windows, g.blocks.div_ceil(g.blocks_per_window) * g.chunks);
            }
        }
    }
}
