#!/usr/bin/env bash
# The #8 checks on a machine with a real GPU, as one run (BENCHMARKS.md, "On a real GPU"): the roofline, the
# per-kernel profiles of the CIFAR-10 UNet (batch 8) and the MNIST model (batch 64) with each kernel family
# (`gpu`, what auto picks there; `cpu`; `baseline`), and the convolution (including Winograd against the direct
# kernel), group-norm and attention studies.
# Everything goes to $OUT (the device tool's output folder; ./gpu-check without one): gpu_check.log and the
# profiles as JSON.
#
# Prepare with tools/bench/gpu_prep.sh, which leaves the binaries in .gpubin/ and the loaders in .gl/.
# QUICK=1 runs the gpu family's profiles at batch 1 and 8 and the quick convolution study (a smoke test).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-check}
mkdir -p "$out"
log=$out/gpu_check.log
if [[ -d .gl ]] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
bin=.gpubin
[[ -x $bin/ddim ]] || bin=target/release
[[ -x $bin/ddim ]] || { echo "gpu_check: no binaries in .gpubin/ or target/release/ (run tools/bench/gpu_prep.sh)" >&2; exit 2; }
ex=$bin
[[ -x $ex/conv_study ]] || ex=$bin/examples
step() { echo "== $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; }

step nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv
step "$bin/ddim" info --roofline
families=(gpu cpu baseline)
cifar_batch=8 mnist_batch=64
if [[ ${QUICK:-0} == 1 ]]; then families=(gpu); cifar_batch=1 mnist_batch=8; fi
for k in "${families[@]}"; do
  step "$bin/ddim" profile --quiet --kernels "$k" --model benches/configs/ddpm-cifar10-32.json --steps 1 \
    --batch "$cifar_batch" --json "$out/profile_cifar10_$k.json"
  step "$bin/ddim" profile --quiet --kernels "$k" --steps 2 --batch "$mnist_batch" --clip-sample 1 \
    --json "$out/profile_mnist_$k.json"
done
if [[ ${QUICK:-0} == 1 ]]; then
  step "$ex/conv_study" quick cpu gpu
else
  step "$ex/conv_study" cpu gpu
  step "$ex/conv_study" cpu-direct cpu
  step "$ex/conv_study" baseline gpu
  step "$ex/norm_study" cpu gpu
  step env DDIM_KERNELS=gpu "$ex/attention_study"
  step env DDIM_KERNELS=cpu "$ex/attention_study"
fi
echo "gpu_check: done; $log" | tee -a "$log"
