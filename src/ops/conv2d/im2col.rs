//! `conv2d_im2col.wgsl`: the CPU family's strided convolutions as a matrix product, the input laid out as
//! columns in a shared scratch and multiplied by the 1x1 kernels ([`Im2col`]).

use super::one_by_one::{OneByOne, one_by_one_fits, one_by_one_launches};
use super::packed::pack_weights;
use super::shape::{ConvShape, OP, Operands, SHAPE};
use crate::error::{Error, Result};
use crate::gpu::Access::{Read, ReadWrite};
use crate::gpu::check::{check_bindings, dim, expect_shape};
use crate::gpu::kernel::kernel;
use crate::gpu::kernel::params;
use crate::gpu::{Dispatch, Gpu, Kernel, Tensor, UNIFORM_WINDOW, WINDOW_FLOATS};

/// Lays a strided convolution's input out as matrix columns (conv2d_im2col.wgsl), which [`KERNEL_1X1`](super::KERNEL_1X1) or
/// [`KERNEL_1X1_WIDE`](super::KERNEL_1X1_WIDE) then multiply by the weights ([`Im2col`]); the dispatch runs under this kernel's name,
/// the product included.
pub const KERNEL_IM2COL: Kernel = kernel!("conv2d_im2col", includes: [SHAPE], workgroup: 64,
    params: Im2colParams, bindings: &[Read, ReadWrite]);

params! {
    /// Mirrors `Params` in conv2d_im2col.wgsl.
    pub struct Im2colParams {
        pub shape: ConvShape, pub n0: u32, pub images: u32, pub _pad: [u32; 2],
    }
}

/// The most bytes of columns [`Im2col`] writes at once (the device's scratch `conv2d columns`, with a window
/// of slack): the images run in groups that fit.
pub const IM2COL_SCRATCH_BYTES: u64 = 32 << 20;

/// How the CPU family runs a strided convolution as a matrix product (im2col): [`KERNEL_IM2COL`] writes the
/// columns of `images` images at a time (`[images, cin * kh * kw, ho * wo]`, within
/// [`IM2COL_SCRATCH_BYTES`]) and the 1x1 path ([`OneByOne`]) multiplies them by the weights read as
/// `[cout, cin * kh * kw]`, both operands from uniform windows. `conv2d_packed` gathers 8 inputs per 64
/// multiply-adds from storage, lane by lane on lavapipe; the product reads its columns at 2 uniform-buffer
/// gathers per 64.
#[derive(Clone, Copy, Debug)]
pub struct Im2col {
    /// The 1x1 convolution over the columns.
    pub columns: ConvShape,
    /// Its cut into windows.
    pub product: OneByOne,
    /// Images per group.
    pub images: usize,
}

impl Im2col {
    /// The cut for `shape` on `gpu`, or `None` where it does not apply: stride 1 (the Winograd and 3x3 kernels
    /// take those), output rows not a multiple of 4 floats, one image's columns over the scratch limit (or the
    /// device's storage-binding limit), or a product [`OneByOne::on`] refuses. Per image, never per batch; a
    /// smaller binding limit makes smaller groups of images, and changes the choice only where one image's
    /// columns exceed it.
    pub fn on(gpu: &Gpu, shape: &ConvShape) -> Option<Self> {
        if shape.stride < 2 || !shape.wo.is_multiple_of(4) {
            return None;
        }
        let rows = shape.cin.checked_mul(shape.kh * shape.kw)?;
        let columns = ConvShape {
            cin: rows,
            h: shape.ho,
            w: shape.wo,
            kh: 1,
            kw: 1,
            stride: 1,
            pad_top: 0,
            pad_left: 0,
            up: 0,
            ..*shape
        };
        // The columns are bound as storage (the window of slack past them is not), and the buffer holds both.
        let limits = gpu.limits();
        let limit = IM2COL_SCRATCH_BYTES
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size.saturating_sub(UNIFORM_WINDOW));
        let per_image = rows as u64 * (shape.ho * shape.wo) as u64 * 4;
        let images = (limit / per_image.max(1)) as usize;
        if images == 0 {
            return None;
        }
        let product = OneByOne::on(gpu, &columns)?;
        Some(Im2col { columns, product, images })
    }
}

/// Prepares [`KERNEL_IM2COL`]: the columns of the convolution `shape` for `images` of its batch, x
/// `[N, Cin, H, W]` (H and W halved when `shape.up`) into cols `[images, cin * kh * kw, ho, wo]`. wo must be a
/// multiple of 4 and cols must start at a multiple of 16 bytes (it is written as vec4s).
pub fn lay_columns(
    gpu: &Gpu,
    label: &str,
    shape: &ConvShape,
    x: &Tensor,
    cols: &Tensor,
    images: std::ops::Range<usize>,
) -> Result<Dispatch> {
    let s = shape;
    let stored = [s.batch, s.cin, s.h >> s.up, s.w >> s.up].map(|d| d as usize);
    expect_shape(OP, x, &stored)?;
    let rows = (s.cin * s.kh * s.kw) as usize;
    expect_shape(OP, cols, &[images.len(), rows, s.ho as usize, s.wo as usize])?;
    if images.end > s.batch as usize || !s.wo.is_multiple_of(4) || !cols.offset().is_multiple_of(16)
    {
        return Err(Error::shape(
            OP,
            format!(
                "`{label}`: columns of images {images:?} of {} with {} output columns into `{}` at byte {}: \
                 need whole images, a multiple of 4 columns and a 16-byte-aligned tensor",
                s.batch,
                s.wo,
                cols.label(),
                cols.offset()
            ),
        ));
    }
    let params = Im2colParams {
        shape: *shape,
        n0: dim(OP, "image", images.start)?,
        images: dim(OP, "images", images.len())?,
        _pad: [0; 2],
    };
    let invocations = (images.len() * rows * s.ho as usize) as u64;
    Dispatch::for_invocations(gpu, &KERNEL_IM2COL, OP, label, &params, &[x, cols], invocations)
}

/// The im2col path ([`Im2col`]): the weights packed once, then per group of images the columns and their
/// product. `None` where the columns' windows would not start at aligned offsets.
pub(super) fn im2col(
    gpu: &Gpu,
    label: &str,
    cut: &Im2col,
    e: &Operands<'_>,
) -> Result<Option<Dispatch>> {
    let shape = &e.shape;
    let (x, weight) = (e.x, e.weight);
    let c = &cut.columns;
    let (n, rows, hw) = (shape.batch as usize, c.cin as usize, (c.h * c.w) as usize);
    let group = cut.images.min(n);
    let floats = group * rows * hw;
    let scratch = gpu.scratch("conv2d columns", &[floats + WINDOW_FLOATS])?;
    let columns =
        |images: usize| scratch.view("conv2d columns", &[images, rows, c.h as usize, c.w as usize]);
    let groups: Vec<std::ops::Range<usize>> =
        (0..n).step_by(group).map(|n0| n0..(n0 + group).min(n)).collect();
    for g in &groups {
        if !one_by_one_fits(gpu, c, &cut.product, &columns(g.len())?, e.out, g.clone()) {
            return Ok(None);
        }
    }
    // The columns are bound without the slack past them; the first group is the largest.
    check_bindings(gpu, OP, &[x, weight, e.bias, e.out, &columns(group)?])?;
    let w2 = weight.view(weight.label(), &[c.cout as usize, rows, 1, 1])?;
    let packed = pack_weights(gpu, label, &w2, &cut.product.weights)?;
    let part = |g: &std::ops::Range<usize>| -> Result<Dispatch> {
        let cols = columns(g.len())?;
        let lay = lay_columns(gpu, label, shape, x, &cols, g.clone())?;
        let product =
            one_by_one_launches(gpu, label, c, &cut.product, &packed, &cols, g.clone(), e)?;
        Ok(lay.then(product))
    };
    let d = Dispatch::sequence(OP, label, groups.iter().map(part))?;
    Ok(Some(d.owning(packed)))
}
