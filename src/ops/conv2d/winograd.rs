//! The Winograd convolution F(4x4, 3x3) (Lavin and Gray 2016) for CPU-like adapters: a 3x3 stride-1
//! convolution in 2.25 multiplications per output and input channel instead of 9.
//!
//! Each 4 x 4 output tile is computed from its 6 x 6 input tile d and each 3 x 3 kernel g as
//! `A^T [(G g G^T) ⊙ (B^T d B)] A`; summed over input channels in the transformed space, that is 36 matrix
//! products `M[xi] = U[xi] V[xi]` between an input transform and an output transform. Four kernels:
//! - `conv2d_winograd_pack.wgsl`: `U = G g G^T`, laid out in 64 KiB uniform windows, once, when the
//!   convolution is prepared ([`pack_weights`]);
//! - `conv2d_winograd_input.wgsl`: `V = B^T d B` for every tile and input channel ([`input_transform`]);
//! - `conv2d_winograd_gemm.wgsl`: the 36 products, 8 output channels x 8 tiles per invocation with the weights
//!   read from uniform windows, like `conv2d_3x3` ([`products`]); invocations map to (unit, 8-tile column)
//!   pairs, so that small maps (one or four columns) leave no lane idle; `conv2d_winograd_gemm_windowed.wgsl`
//!   the same with V read from uniform windows too, where a position's V fits four ([`windowed_rows`]);
//!   `conv2d_winograd_gemm_wide.wgsl` up to 8 weight windows per launch where the launch's positions' V fits
//!   one window ([`wide_windows`]: small maps, where a weight window is a workgroup or a few of work and the
//!   launches, not the arithmetic, set the time); `conv2d_winograd_gemm_windowed_wide` (a variant of the windowed file) 4 weight windows
//!   of one position per launch with V in four windows, where a position's fill a multiple of 4;
//! - `conv2d_winograd_output.wgsl`: `A^T M A` and the convolution's epilogue ([`output_transform`]).
//!
//! On lavapipe the products cost what a 1x1 convolution costs per multiply-add (8 gathered floats per 64
//! FMAs, against 30 per 576 for `conv2d_3x3`), so the 4x fewer multiply-adds are a net gain only where the
//! transforms stay small beside them (`conv2d::kernel_for` decides; BENCHMARKS.md has the measurements).
//!
//! V and M live in the device's scratch buffers ([`Gpu::scratch`]), shared by every Winograd convolution,
//! at most [`SCRATCH_BYTES`] each (or the device's storage-binding limit): a batch's tiles run in groups that
//! fit ([`Tiling`]). An output value is the same sum in the same order whatever the grouping, so an image's
//! bytes depend neither on its batch nor on the limit.
//!
//! The f32 error is larger than the direct convolution's: the transformed values are sums of up to 6 x 6
//! inputs with coefficients up to 2.5 (B) and 8 (A), rounded, then multiplied and summed. The interpolation
//! points 0, -1, 1, 1/2, -2 (instead of Lavin's 0, +-1, +-2) make every entry of A and B exact in binary and
//! the error 3.5x smaller (`reference::winograd`); `tests/kernels/winograd.rs` states the bound.

use super::shape::{BLOCK, ConvShape, Operands, SHAPE};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite, UniformWindow};
use crate::gpu::check::{check_bindings, dim, dims, expect_shape};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::windows::{pack_into_windows, window_at, window_binding, windows_fit};
use crate::gpu::{
    Dispatch, Gpu, Kernel, LaunchSpec, Tensor, UNIFORM_WINDOW, WINDOW_FLOATS, windows_then,
    workgroups_for,
};

const OP: &str = "conv2d_winograd";

/// Output tile side.
pub const TILE: usize = 4;

/// Transformed positions per tile (6 x 6).
pub const POSITIONS: usize = 36;

/// The most input channels one weight window holds for one block of 8 output channels.
pub const MAX_CIN: usize = WINDOW_FLOATS / 8;

/// The most bytes V or M takes in the scratch buffers (a batch's tiles run in groups that fit).
pub const SCRATCH_BYTES: u64 = 32 << 20;

/// What both transforms share: Params and where a tile lies.
pub const TILES: &str = include_str!("../../../kernels/conv2d_winograd.inc.wgsl");

/// What both products kernels share: Params, the entry point, the store of a block to M.
pub const GEMM_COMMON: &str = include_str!("../../../kernels/conv2d_winograd_gemm.inc.wgsl");

/// The input transform.
pub const INPUT_KERNEL: Kernel = kernel!("conv2d_winograd_input", includes: [SHAPE, TILES],
    workgroup: 64, params: TileParams, bindings: &[Read, ReadWrite]);

/// The 36 products over packed weights.
pub const GEMM_KERNEL: Kernel = kernel!("conv2d_winograd_gemm", includes: [BLOCK, GEMM_COMMON],
    workgroup: 8, params: GemmParams, bindings: &[Read, UniformWindow, ReadWrite]);

/// The 36 products with V read from uniform windows, where [`windowed_rows`] allows.
pub const GEMM_WINDOWED_KERNEL: Kernel = kernel!("conv2d_winograd_gemm_windowed"
    from "conv2d_winograd_gemm_windowed" where [("WEIGHT_WINDOWS", "1")], includes: [BLOCK, GEMM_COMMON],
    workgroup: 8, params: GemmParams, bindings: &windows_then::<6>(5, &[ReadWrite]));

/// [`GEMM_WINDOWED_KERNEL`] with four weight windows of one position per launch, where a position's units fill
/// a multiple of four windows.
pub const GEMM_WINDOWED_WIDE_KERNEL: Kernel = kernel!("conv2d_winograd_gemm_windowed_wide"
    from "conv2d_winograd_gemm_windowed" where [("WEIGHT_WINDOWS", "4")], includes: [BLOCK, GEMM_COMMON],
    workgroup: 8, params: GemmParams, bindings: &windows_then::<9>(8, &[ReadWrite]));

/// The products of small maps, several weight windows per launch, where [`wide_windows`] allows.
pub const GEMM_WIDE_KERNEL: Kernel = kernel!("conv2d_winograd_gemm_wide", includes: [BLOCK, GEMM_COMMON],
    workgroup: 8, params: GemmParams, bindings: &windows_then::<10>(9, &[ReadWrite]));

/// The most weight windows one launch of [`GEMM_WIDE_KERNEL`] binds (`u0` .. `u7`).
const WIDE_WINDOWS: usize = 8;

/// Weight windows (of one position) one launch of [`GEMM_WINDOWED_WIDE_KERNEL`] binds.
const WINDOWED_WEIGHTS: usize = 4;

/// V windows one launch of [`GEMM_WINDOWED_KERNEL`] binds. Eight (four more loops and bindings) slow the maps
/// where four suffice, so a position's V that needs more runs in smaller tile groups ([`Tiling::on`]) or from
/// storage.
const V_WINDOWS: usize = 4;

/// The output transform and epilogue.
pub const OUTPUT_KERNEL: Kernel = kernel!("conv2d_winograd_output", includes: [SHAPE, TILES],
    workgroup: 64, params: TileParams, bindings: &[Read, Read, Read, ReadWrite, Read]);

/// The weight transform into uniform windows.
pub const PACK_KERNEL: Kernel = kernel!("conv2d_winograd_pack", includes: [], workgroup: 256,
    params: PackParams, bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in conv2d_winograd.inc.wgsl (both transforms; the input transform ignores
    /// the epilogue).
    pub struct TileParams {
        pub shape: ConvShape, pub t0: u32, pub count: u32, pub tiles_h: u32, pub tiles_w: u32,
        pub tp: u32, pub has_residual: u32, pub has_channel: u32, pub out_scale: f32,
    }
}

params! {
    /// Mirrors `Params` in conv2d_winograd_gemm.inc.wgsl (both products kernels).
    pub struct GemmParams {
        pub cin: u32,
        pub cout: u32,
        pub tp: u32,
        pub blocks: u32,
        pub u0: u32,
        pub units: u32,
        /// Input channels per V window (the windowed kernel only).
        pub rows: u32,
        /// Units per weight window (the wide kernel only).
        pub per_window: u32,
        /// The position whose V the V window starts at (the wide kernel only).
        pub xi0: u32,
        pub _pad: [u32; 3],
    }
}

params! {
    /// Mirrors `Params` in conv2d_winograd_pack.wgsl.
    pub struct PackParams {
        pub cout: u32, pub cin: u32, pub blocks: u32, pub units_per_window: u32, pub window: u32,
        pub _pad: [u32; 3],
    }
}

/// How a batch's output is cut into 4 x 4 tiles, and the tiles into groups whose transformed values fit the
/// scratch limit. Tile `(n * tiles_h + ty) * tiles_w + tx` covers rows `4 ty ..` and columns `4 tx ..` of
/// image `n`; group `g` takes tiles `g * tp ..` (the last may take fewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    /// Tile rows and columns of one image.
    pub tiles_h: usize,
    pub tiles_w: usize,
    /// Tiles in the batch.
    pub total: usize,
    /// Tiles per group, a multiple of 8: the columns of V and M.
    pub tp: usize,
    /// Groups.
    pub groups: usize,
}

impl Tiling {
    /// The tiling of `shape` when V and M may take `limit` bytes each: the fewest groups that fit, of equal
    /// size. `None` when 8 tiles do not fit, or the convolution is not 3x3 stride 1.
    pub fn new(shape: &ConvShape, limit: u64) -> Option<Self> {
        if (shape.kh, shape.kw, shape.stride) != (3, 3, 1) {
            return None;
        }
        let [n, _, ho, wo] = shape.output_shape();
        let (tiles_h, tiles_w) = (ho.div_ceil(TILE), wo.div_ceil(TILE));
        let total = n * tiles_h * tiles_w;
        let per_tile = POSITIONS as u64 * shape.cin.max(shape.cout) as u64 * 4;
        let most = (limit / per_tile) as usize / 8 * 8;
        if most == 0 || total == 0 {
            return None;
        }
        let groups = total.div_ceil(most);
        Some(Tiling {
            tiles_h,
            tiles_w,
            total,
            tp: total.div_ceil(groups).next_multiple_of(8),
            groups,
        })
    }

    /// The tiling `gpu` runs `shape` with: [`Tiling::new`] within [`Tiling::limit`], or, where the products
    /// cannot read V from uniform windows at that tiling but can at one with at most twice the groups (V of a
    /// position within four windows: [`windowed_rows`]), that one. More groups cost launches (two transforms
    /// and the weight windows' per group); reading V from windows saved more than that where measured
    /// (BENCHMARKS.md).
    pub fn on(gpu: &Gpu, shape: &ConvShape) -> Option<Self> {
        let base = Tiling::new(shape, Tiling::limit(gpu))?;
        let (cin, cout) = (shape.cin as usize, shape.cout as usize);
        if windowed_rows(gpu, cout, cin, base.tp).is_some() {
            return Some(base);
        }
        let per_tile = (POSITIONS * cin.max(cout) * 4) as u64;
        let tiles = (V_WINDOWS * WINDOW_FLOATS / cin.max(1)) as u64;
        let finer = Tiling::new(shape, (tiles * per_tile).min(Tiling::limit(gpu)))
            .filter(|t| t.groups <= 4 * base.groups)
            .filter(|t| windowed_rows(gpu, cout, cin, t.tp).is_some());
        Some(finer.unwrap_or(base))
    }

    /// The bytes each of V and M may take on `gpu`: [`SCRATCH_BYTES`], or less where bindings are smaller.
    pub fn limit(gpu: &Gpu) -> u64 {
        SCRATCH_BYTES.min(gpu.limits().max_storage_buffer_binding_size)
    }

    /// Tiles of one image.
    pub fn tiles(&self) -> usize {
        self.tiles_h * self.tiles_w
    }

    /// The first tile and the tile count of group `g`.
    pub fn group(&self, g: usize) -> (usize, usize) {
        let t0 = (g * self.tp).min(self.total);
        (t0, self.tp.min(self.total - t0))
    }
}

/// Transformed weights in uniform windows, in units of one position and one block of 8 output channels:
/// unit `xi * blocks + block`, `units_per_window` to a window (conv2d_winograd_pack.wgsl).
pub struct PackedWeights {
    buffer: wgpu::Buffer,
    cout: usize,
    cin: usize,
    blocks: usize,
    units_per_window: usize,
    windows: usize,
}

impl PackedWeights {
    /// The buffer, `windows` windows of [`UNIFORM_WINDOW`] bytes.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    fn window(&self, w: usize) -> wgpu::BindingResource<'_> {
        window_binding(&self.buffer, w)
    }
}

/// How transformed weights for `cout` x `cin` channels fill windows: `(blocks, units_per_window, windows)`,
/// or `None` when a unit's input channels do not fit a window (cin > [`MAX_CIN`]).
fn windows(cout: usize, cin: usize) -> Option<(usize, usize, usize)> {
    if cout == 0 || cin == 0 || cin > MAX_CIN {
        return None;
    }
    let blocks = cout.div_ceil(8);
    let units = POSITIONS * blocks;
    let most = (MAX_CIN / cin).min(units);
    // Where a divisor of the blocks fills a window at least three quarters as well, that many: then every
    // window holds units of one position, which the windowed products need ([`windowed_rows`]).
    let units_per_window = (1..=most)
        .rev()
        .find(|&d| blocks.is_multiple_of(d) || most.is_multiple_of(blocks))
        .filter(|&d| 4 * d >= 3 * most)
        .unwrap_or(most);
    Some((blocks, units_per_window, units.div_ceil(units_per_window)))
}

/// Bytes of the transformed weights for `cout` x `cin` channels, or `None` when cin exceeds [`MAX_CIN`].
pub fn packed_bytes(cout: usize, cin: usize) -> Option<u64> {
    windows(cout, cin).map(|(_, _, windows)| windows as u64 * UNIFORM_WINDOW)
}

/// Transforms `weight` `[cout, cin, 3, 3]` (cin at most [`MAX_CIN`]) into uniform windows, on the GPU, and
/// waits.
pub fn pack_weights(gpu: &Gpu, label: &str, weight: &Tensor) -> Result<PackedWeights> {
    let [cout, cin, kh, kw] = dims::<4>(OP, weight)?;
    let fit = windows(cout, cin).filter(|_| (kh, kw) == (3, 3));
    let Some((blocks, units_per_window, windows)) = fit else {
        return Err(Error::shape(
            OP,
            format!(
                "`{label}`: weight `{}` {:?} is not [cout, cin <= {MAX_CIN}, 3, 3]",
                weight.label(),
                weight.shape()
            ),
        ));
    };
    let params = (0..windows)
        .map(|w| {
            Ok(PackParams {
                cout: dim(OP, "cout", cout)?,
                cin: dim(OP, "cin", cin)?,
                blocks: dim(OP, "blocks", blocks)?,
                units_per_window: dim(OP, "units per window", units_per_window)?,
                window: dim(OP, "window", w)?,
                _pad: [0; 3],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let what = format!("transforming the weights of `{label}`");
    Ok(PackedWeights {
        buffer: pack_into_windows(gpu, OP, &what, &PACK_KERNEL, weight, &params)?,
        cout,
        cin,
        blocks,
        units_per_window,
        windows,
    })
}

/// Checks V or M: `[36, channels, tiling.tp]`.
fn expect_transformed(t: &Tensor, channels: u32, tiling: &Tiling) -> Result<()> {
    expect_shape(OP, t, &[POSITIONS, channels as usize, tiling.tp])
}

/// The params of both transforms for `group` of `tiling`, with the epilogue of none.
fn tile_params(shape: &ConvShape, tiling: &Tiling, group: usize) -> Result<TileParams> {
    let (t0, count) = tiling.group(group);
    if count == 0 {
        return Err(Error::param(OP, format!("group {group} of {} is empty", tiling.groups)));
    }
    Ok(TileParams {
        shape: *shape,
        t0: dim(OP, "first tile", t0)?,
        count: dim(OP, "tiles", count)?,
        tiles_h: dim(OP, "tile rows", tiling.tiles_h)?,
        tiles_w: dim(OP, "tile columns", tiling.tiles_w)?,
        tp: dim(OP, "tile columns of V", tiling.tp)?,
        has_residual: 0,
        has_channel: 0,
        out_scale: 1.0,
    })
}

/// Prepares the input transform of `group` of `tiling`: x `[N, Cin, H, W]` (H and W halved when `shape.up`)
/// into v `[36, Cin, tp]`, the group's tiles in its first columns.
pub fn input_transform(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    tiling: &Tiling,
    group: usize,
    x: &Tensor,
    v: &Tensor,
) -> Result<Dispatch> {
    let s = shape;
    expect_shape(OP, x, &[s.batch, s.cin, s.h >> s.up, s.w >> s.up].map(|d| d as usize))?;
    expect_transformed(v, s.cin, tiling)?;
    let params = tile_params(shape, tiling, group)?;
    let invocations = params.count as u64 * s.cin as u64;
    Dispatch::for_invocations(gpu, &INPUT_KERNEL, OP, label, &params, &[x, v], invocations)
}

/// Input channels per V window when the products can read V from uniform windows
/// ([`GEMM_WINDOWED_KERNEL`]): `tp` divides a window's 16384 floats, `V[xi]` (`[cin, tp]`) fits four windows, every
/// weight window holds units of one position (units per window divide the blocks of 8 output channels), and
/// `V[xi]` starts at a multiple of the device's uniform offset alignment. `None` otherwise, and where the
/// device was opened with input windows off ([`crate::gpu::DeviceOptions::input_windows`]).
pub fn windowed_rows(gpu: &Gpu, cout: usize, cin: usize, tp: usize) -> Option<usize> {
    let (blocks, units_per_window, _) = windows(cout, cin)?;
    let limits = gpu.limits();
    let align = limits.min_uniform_buffer_offset_alignment as u64;
    let fits = gpu.input_windows()
        && tp > 0
        && limits.max_uniform_buffers_per_shader_stage as usize > V_WINDOWS + 1
        && WINDOW_FLOATS.is_multiple_of(tp)
        && cin <= V_WINDOWS * (WINDOW_FLOATS / tp)
        && blocks.is_multiple_of(units_per_window)
        && align > 0
        && (cin as u64 * tp as u64 * 4).is_multiple_of(align);
    fits.then_some(WINDOW_FLOATS / tp)
}

/// Weight windows per launch of [`GEMM_WIDE_KERNEL`] for products over V `[36, cin, tp]`, or `None` where it
/// does not apply: where the device binds its 9 uniform windows and reads activations through them, with 8, 4
/// or 2 windows per launch, the most for which every launch's positions' V lies in one window starting at a
/// multiple of the device's uniform offset alignment (V at the start of its buffer, with [`V_SLACK`] past it).
/// That is where a position's V is at most one window: on 4 x 4 and 8 x 8 maps at batch 8, where a weight
/// window is a workgroup or a few of work and the launches, not the arithmetic, set the time, and 128 input
/// channels at 16 x 16 (2 a launch).
pub fn wide_windows(gpu: &Gpu, cout: usize, cin: usize, tp: usize) -> Option<usize> {
    let (blocks, per_window, windows) = windows(cout, cin)?;
    let limits = gpu.limits();
    let align = limits.min_uniform_buffer_offset_alignment as u64;
    let applies = gpu.input_windows()
        && tp > 0
        && tp.is_multiple_of(8)
        && windows > 1
        && limits.max_uniform_buffers_per_shader_stage as usize > WIDE_WINDOWS + 1
        && align > 0
        && (cin as u64 * tp as u64 * 4).is_multiple_of(align);
    if !applies {
        return None;
    }
    let units = POSITIONS * blocks;
    let position = cin * tp;
    [WIDE_WINDOWS, 4, 2].into_iter().find(|&wide| {
        (0..windows).step_by(wide).all(|w| {
            let u0 = w * per_window;
            let last = (u0 + wide * per_window).min(units) - 1;
            (last / blocks - u0 / blocks + 1) * position <= WINDOW_FLOATS
        })
    })
}

/// Whether the windowed products take [`WINDOWED_WEIGHTS`] weight windows per launch
/// ([`GEMM_WINDOWED_WIDE_KERNEL`]): a position's units (`blocks` of them, `per_window` to a window) fill a
/// multiple of that many windows, and the device binds the 9 windows.
fn windowed_wide(gpu: &Gpu, blocks: usize, per_window: usize) -> bool {
    (blocks / per_window).is_multiple_of(WINDOWED_WEIGHTS)
        && gpu.limits().max_uniform_buffers_per_shader_stage as usize > V_WINDOWS + WINDOWED_WEIGHTS
}

/// The products' kernel the Winograd convolution of `shape` runs on `gpu` with `tiling` ([`Tiling::on`]; the
/// device's scratch V carries [`V_SLACK`]): [`GEMM_WIDE_KERNEL`] where [`wide_windows`] allows, else
/// [`GEMM_WINDOWED_KERNEL`] where [`windowed_rows`] does, else [`GEMM_KERNEL`].
pub fn products_kernel(gpu: &Gpu, shape: &ConvShape, tiling: &Tiling) -> &'static Kernel {
    let (cout, cin) = (shape.cout as usize, shape.cin as usize);
    if wide_windows(gpu, cout, cin, tiling.tp).is_some() {
        &GEMM_WIDE_KERNEL
    } else if windowed_rows(gpu, cout, cin, tiling.tp).is_some() {
        match windows(cout, cin) {
            Some((blocks, per_window, _)) if windowed_wide(gpu, blocks, per_window) => {
                &GEMM_WINDOWED_WIDE_KERNEL
            }
            _ => &GEMM_WINDOWED_KERNEL,
        }
    } else {
        &GEMM_KERNEL
    }
}

/// Bytes V needs past its last float for [`GEMM_WINDOWED_KERNEL`]'s windows: a window bound at `V[35]`'s last
/// chunk of channels may reach past V's end.
pub const V_SLACK: u64 = UNIFORM_WINDOW;

/// Prepares the 36 products `m[xi] = U[xi] v[xi]`: v `[36, cin, tp]`, m `[36, cout, tp]`, one launch per
/// weight window (36 x ceil(cout / 8) units of cin x 8 weights, as many to a window as fit). V is read from
/// uniform windows ([`GEMM_WINDOWED_KERNEL`]) where [`windowed_rows`] allows and v's buffer holds the windows
/// (the device's scratch V carries [`V_SLACK`]); from storage ([`GEMM_KERNEL`]) otherwise.
pub fn products(
    gpu: &Gpu,
    label: &str,
    packed: &PackedWeights,
    v: &Tensor,
    m: &Tensor,
) -> Result<Dispatch> {
    let [positions, cin, tp] = dims::<3>(OP, v)?;
    if positions != POSITIONS || cin != packed.cin || tp % 8 != 0 || tp == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "`{label}`: V {:?} is not [{POSITIONS}, {}, a positive multiple of 8]",
                v.shape(),
                packed.cin
            ),
        ));
    }
    expect_shape(OP, m, &[POSITIONS, packed.cout, tp])?;
    check_bindings(gpu, OP, &[v, m])?;
    // Where window k of position xi's V starts in v's buffer (windows past V[xi]'s channels repeat the first),
    // and whether every window can be bound.
    let v_window = |xi: usize, k: usize, rows: usize| {
        let k = if k < cin.div_ceil(rows) { k } else { 0 };
        v.offset() + ((xi * cin + k * rows) * tp * 4) as u64
    };
    let rows = windowed_rows(gpu, packed.cout, cin, tp).filter(|&rows| {
        let starts = (0..POSITIONS).flat_map(|xi| (0..V_WINDOWS).map(move |k| (xi, k)));
        windows_fit(gpu, v.buffer(), starts.map(|(xi, k)| v_window(xi, k, rows)))
    });
    let units = POSITIONS * packed.blocks;
    let params = (0..packed.windows)
        .map(|w| {
            let u0 = w * packed.units_per_window;
            Ok(GemmParams {
                cin: dim(OP, "cin", cin)?,
                cout: dim(OP, "cout", packed.cout)?,
                tp: dim(OP, "tp", tp)?,
                blocks: dim(OP, "blocks", packed.blocks)?,
                u0: dim(OP, "unit", u0)?,
                units: dim(OP, "units", packed.units_per_window.min(units - u0))?,
                rows: dim(OP, "rows", rows.unwrap_or(0))?,
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let workgroups = |p: &GemmParams| {
        workgroups_for(p.units as u64 * (tp / 8) as u64, GEMM_KERNEL.workgroup_size)
    };
    // Small maps: several weight windows per launch, V from one window at the launch's first position.
    let wide = wide_windows(gpu, packed.cout, cin, tp).filter(|&wide| {
        let starts = (0..packed.windows).step_by(wide).map(|w| {
            let xi = w * packed.units_per_window / packed.blocks;
            v.offset() + (xi * cin * tp * 4) as u64
        });
        windows_fit(gpu, v.buffer(), starts)
    });
    if let Some(wide) = wide {
        let mut launches = Vec::new();
        for w in (0..packed.windows).step_by(wide) {
            let u0 = w * packed.units_per_window;
            let xi0 = u0 / packed.blocks;
            let params = GemmParams {
                units: dim(OP, "units", (wide * packed.units_per_window).min(units - u0))?,
                per_window: dim(OP, "units per window", packed.units_per_window)?,
                xi0: dim(OP, "position", xi0)?,
                ..params[w]
            };
            launches.push((params, w, v.offset() + (xi0 * cin * tp * 4) as u64));
        }
        let specs = launches
            .iter()
            .map(|(p, w, start)| {
                let mut resources = vec![window_at(v.buffer(), *start)];
                resources.extend(
                    (0..WIDE_WINDOWS)
                        .map(|k| packed.window(if w + k < packed.windows { w + k } else { *w })),
                );
                resources.push(m.binding());
                LaunchSpec { params: bytemuck::bytes_of(p), resources, workgroups: workgroups(p) }
            })
            .collect();
        return Dispatch::launches(gpu, &GEMM_WIDE_KERNEL, OP, label, specs);
    }
    let Some(rows) = rows else {
        let specs = params
            .iter()
            .enumerate()
            .map(|(w, p)| LaunchSpec {
                params: bytemuck::bytes_of(p),
                resources: vec![v.binding(), packed.window(w), m.binding()],
                workgroups: workgroups(p),
            })
            .collect();
        return Dispatch::launches(gpu, &GEMM_KERNEL, OP, label, specs);
    };
    // WINDOWED_WEIGHTS weight windows of one position per launch where the position's fill a multiple of
    // them and the device binds them all; else one.
    let wide = if windowed_wide(gpu, packed.blocks, packed.units_per_window) {
        WINDOWED_WEIGHTS
    } else {
        1
    };
    let launches = (0..packed.windows)
        .step_by(wide)
        .map(|w| {
            let u0 = w * packed.units_per_window;
            Ok((
                GemmParams {
                    units: dim(OP, "units", (wide * packed.units_per_window).min(units - u0))?,
                    per_window: dim(OP, "units per window", packed.units_per_window)?,
                    ..params[w]
                },
                w,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let specs = launches
        .iter()
        .map(|(p, w)| {
            let xi = p.u0 as usize / packed.blocks;
            let mut resources: Vec<_> =
                (0..V_WINDOWS).map(|k| window_at(v.buffer(), v_window(xi, k, rows))).collect();
            resources.extend((0..wide).map(|k| packed.window(w + k)));
            resources.push(m.binding());
            LaunchSpec { params: bytemuck::bytes_of(p), resources, workgroups: workgroups(p) }
        })
        .collect();
    let kernel = if wide > 1 { &GEMM_WINDOWED_WIDE_KERNEL } else { &GEMM_WINDOWED_KERNEL };
    debug_assert_eq!(rows * tp, WINDOW_FLOATS);
    Dispatch::launches(gpu, kernel, OP, label, specs)
}

/// Prepares the output transform of `group` of `tiling`, with the convolution's epilogue:
/// `out = (A^T m A + bias + channel + residual) * out_scale` for the pixels of the group's tiles of out
/// `[N, Cout, Ho, Wo]`.
#[allow(clippy::too_many_arguments)] // the operands of the epilogue
pub fn output_transform(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    tiling: &Tiling,
    group: usize,
    m: &Tensor,
    bias: &Tensor,
    channel: Option<&Tensor>,
    residual: Option<&Tensor>,
    out: &Tensor,
    out_scale: f32,
) -> Result<Dispatch> {
    expect_transformed(m, shape.cout, tiling)?;
    expect_shape(OP, bias, &[shape.cout as usize])?;
    expect_shape(OP, out, &shape.output_shape())?;
    if let Some(r) = residual {
        expect_shape(OP, r, out.shape())?;
    }
    if let Some(c) = channel {
        // Image n's values at n * chan_stride + chan_offset (`ChannelSlice`).
        expect_shape(OP, c, &[shape.batch as usize, shape.chan_stride as usize])?;
        if shape.chan_offset as u64 + shape.cout as u64 > shape.chan_stride as u64 {
            return Err(Error::shape(
                OP,
                format!(
                    "channel vectors `{}`: {} values from {} overrun their {}",
                    c.label(),
                    shape.cout,
                    shape.chan_offset,
                    shape.chan_stride
                ),
            ));
        }
    }
    let params = TileParams {
        has_residual: residual.is_some() as u32,
        has_channel: channel.is_some() as u32,
        out_scale,
        ..tile_params(shape, tiling, group)?
    };
    let invocations = params.count as u64 * shape.cout as u64;
    Dispatch::for_invocations(
        gpu,
        &OUTPUT_KERNEL,
        OP,
        label,
        &params,
        &[m, bias, residual.unwrap_or(m), out, channel.unwrap_or(bias)],
        invocations,
    )
}

/// The whole convolution: packs the weights, then per group of tiles the input transform, the products and
/// the output transform, recorded as one dispatch of [`GEMM_KERNEL`] over the device's scratch buffers.
/// The caller (`conv2d::conv2d_with_channel`) has validated the operands against `shape`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    gpu: &Gpu,
    label: &str,
    tiling: &Tiling,
    o: &Operands<'_>,
) -> Result<Dispatch> {
    let shape = &o.shape;
    let (x, weight, bias, out) = (o.x, o.weight, o.bias, o.out);
    let (channel, residual, out_scale) = (o.channel, o.residual, o.cfg.out_scale);
    check_bindings(gpu, OP, &[x, bias, out])?; // the weight: by pack_weights
    let packed = pack_weights(gpu, label, weight)?;
    // V with V_SLACK bytes to spare, so that the products may read it through uniform windows.
    let (cin, tp) = (shape.cin as usize, tiling.tp);
    let v = gpu
        .scratch("winograd V", &[POSITIONS * cin * tp + (V_SLACK / 4) as usize])?
        .view("winograd V", &[POSITIONS, cin, tp])?;
    let m = gpu.scratch("winograd M", &[POSITIONS, shape.cout as usize, tiling.tp])?;
    let group = |group: usize| -> Result<Dispatch> {
        let input = input_transform(gpu, label, shape, tiling, group, x, &v)?;
        let gemm = products(gpu, label, &packed, &v, &m)?;
        let output = output_transform(
            gpu, label, shape, tiling, group, &m, bias, channel, residual, out, out_scale,
        )?;
        Ok(gemm.after(input).then(output))
    };
    let dispatch = Dispatch::sequence(OP, label, (0..tiling.groups).map(group))?;
    Ok(dispatch.owning(packed.buffer))
}

/// The arithmetic the Winograd convolution does: the products (36 multiply-adds per tile, output and input
/// channel) and the transforms (408 operations per tile and input channel, 200 per tile and output channel,
/// counted from the kernels). A quarter of the direct convolution's, plus the transforms.
pub fn flops(shape: &ConvShape, tiling: &Tiling) -> u64 {
    let tiles = (shape.batch as usize * tiling.tiles()) as u64;
    let (cin, cout) = (shape.cin as u64, shape.cout as u64);
    tiles * (2 * POSITIONS as u64 * cin * cout + 408 * cin + 200 * cout)
}
