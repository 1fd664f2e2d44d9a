//! Which group norm runs: [`kernel_for`] picks by the device's family and the map size (never the batch);
//! [`group_norm`] validates and prepares it.

use super::serial::{self, SERIAL_KERNEL};
use super::shape::Norm;
use super::workgroup::{self, KERNEL};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelChoice, Tensor};

/// The kernel [`group_norm`] runs on this device for `hw` values per channel: `group_norm_serial` for the CPU
/// family ([`KernelChoice::Cpu`], what `Auto` means on CPU adapters) when `hw` is a multiple of 4,
/// `group_norm` otherwise. GPUs keep the workgroup reduction: an invocation per channel would leave most of a
/// GPU idle.
pub fn kernel_for(gpu: &Gpu, hw: usize) -> &'static Kernel {
    match gpu.kernel_family() {
        KernelChoice::Cpu if hw.is_multiple_of(4) => &SERIAL_KERNEL,
        _ => &KERNEL,
    }
}

/// Prepares `out = silu?(group_norm(x) * gamma + beta)`.
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
    let g = Norm::new(x, gamma, beta, out, groups, eps, silu)?;
    let d = if kernel_for(gpu, g.hw).name == SERIAL_KERNEL.name {
        serial::launch(gpu, label, &g)?
    } else {
        workgroup::launch(gpu, label, &g)?
    };
    Ok(d.with_cost(g.cost()))
}
