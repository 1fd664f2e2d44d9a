//! Which group norm runs: [`kernel_for`] picks by the device's family, its subgroups and the map size (never
//! the batch); [`group_norm`] validates and prepares it, [`group_norm_with`] a named variant.

use super::serial::{self, SERIAL_KERNEL};
use super::shape::{Norm, OP};
use super::workgroup::{self, KERNEL, SUBGROUP_KERNEL, VEC4_KERNEL};
use crate::error::{Error, Result};
use crate::gpu::{Cost, Dispatch, Gpu, Kernel, KernelChoice, Tensor};

/// The kernel [`group_norm`] runs on this device for `hw` values per channel. Where `hw` is a multiple of 4:
/// `group_norm_serial` for the CPU family ([`KernelChoice::Cpu`], what `Auto` means on CPU adapters);
/// `group_norm_subgroups` for the GPU family on a device opened with subgroups, `group_norm_vec4` without.
/// `group_norm` otherwise, and always for the baseline. GPUs keep a workgroup per group: an invocation per
/// channel would leave most of a GPU idle.
pub fn kernel_for(gpu: &Gpu, hw: usize) -> &'static Kernel {
    match gpu.kernel_family() {
        KernelChoice::Cpu if hw.is_multiple_of(4) => &SERIAL_KERNEL,
        KernelChoice::Gpu => workgroup::variant_for(gpu, hw, false),
        _ => &KERNEL,
    }
}

/// Prepares `out = silu?(group_norm(x) * gamma + beta)` with the kernel [`kernel_for`] picks.
///
/// Shapes: x and out `[N, C, ...]` (any trailing spatial dimensions), gamma and beta `[C]`; `groups` divides C.
#[allow(clippy::too_many_arguments)] // the operands and the three settings of one normalisation
pub fn group_norm(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    out: &Tensor,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Result<Dispatch> {
    let hw = x.shape().iter().skip(2).product();
    group_norm_with(gpu, kernel_for(gpu, hw), label, x, gamma, beta, out, groups, eps, silu)
}

/// Prepares the statistics of `group_norm(x)` with its affine parameters, for a consumer that normalises x as
/// it loads it: `affine` `[N, C, 4]` gets, per image and channel, (shift, mean_shifted, rstd * gamma, beta),
/// and the normalised value is `((x - shift) - mean_shifted) * affine[2] + affine[3]`, what [`group_norm`]
/// computes. One workgroup per (image, group), as [`KERNEL`] runs; the variant by the device's
/// subgroups and the map size, whatever the family.
#[allow(clippy::too_many_arguments)] // the operands and the two settings of one normalisation
pub fn group_norm_stats(
    gpu: &Gpu,
    label: &str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    affine: &Tensor,
    groups: usize,
    eps: f32,
) -> Result<Dispatch> {
    let g = Norm::statistics(x, gamma, beta, affine, groups, eps)?;
    let d = workgroup::launch(gpu, workgroup::variant_for(gpu, g.hw, true), label, &g)?;
    let floats = g.x.len() as u64 * 2 + 4 * (g.n * g.c) as u64 + 2 * g.c as u64;
    Ok(d.with_cost(Cost::new(4 * g.x.len() as u64, floats)))
}

/// [`group_norm`] with a chosen variant (any of [`kernel_for`]'s answers), whatever the device's family: to
/// compare the variants on one device. An error where the variant cannot run the map on this device (a vec4
/// variant where `h * w` is not a multiple of 4, the subgroup one where the device has no subgroups).
#[allow(clippy::too_many_arguments)] // the kernel, the operands and the three settings of one normalisation
pub fn group_norm_with(
    gpu: &Gpu,
    kernel: &'static Kernel,
    label: &str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    out: &Tensor,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Result<Dispatch> {
    let g = Norm::new(x, gamma, beta, out, groups, eps, silu)?;
    let d = if kernel.name == SERIAL_KERNEL.name {
        if !g.hw.is_multiple_of(4) {
            return Err(Error::param(
                OP,
                format!(
                    "kernel `{}` cannot normalise `{label}`: {} values per channel, not a multiple of 4",
                    kernel.name, g.hw
                ),
            ));
        }
        serial::launch(gpu, label, &g)?
    } else if [&KERNEL, &VEC4_KERNEL, &SUBGROUP_KERNEL].iter().any(|k| k.name == kernel.name) {
        workgroup::launch(gpu, kernel, label, &g)?
    } else {
        return Err(Error::param(OP, format!("`{}` is not a group-norm kernel", kernel.name)));
    };
    Ok(d.with_cost(g.cost()))
}
