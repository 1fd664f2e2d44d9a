#!/usr/bin/env bash
# The real-GPU checks, on a machine with a real GPU, as one run (BENCHMARKS.md, "On a real GPU"): the roofline; the
# per-kernel profiles of the CIFAR-10 UNet (batch 8) and the MNIST model (batch 64) with each kernel family
# (`gpu`, what auto picks there; `cpu`; `baseline`); the convolution (Winograd against the direct kernel too),
# 1x1, group-norm, attention and whole-UNet studies; a sample of the default model on Vulkan and on GL; then
# every integration test on that GPU, with the `auto` family and again with `cpu`.
# Everything goes to $OUT (the device tool's output folder; ./gpu-check without one), at most 8 files:
# gpu_check.log, tests.log, profiles.tar (the profiles as JSON), samples.png, samples_gl.png.
#
# Prepare with tools/bench/gpu_prep.sh, which leaves the binaries in .gpubin/bin.tar.xz and the loaders in .gl/.
# QUICK=1 runs the gpu family's profiles at batch 1 and 8, the quick convolution study and no tests (a smoke
# test). PARTS picks groups of steps (default "roofline profiles studies samples tests"); FAMILIES the
# profiles' kernel families (default "gpu cpu baseline"); TEST_KERNELS the tests' (default "auto cpu"); TESTS=GLOB
# the test binaries (`TESTS=kernels`). Each step has a time limit (STEP_LIMIT seconds, default 150), so one hung
# step cannot eat the lease. On an NVIDIA machine DDIM_ADAPTER defaults to `nvidia`, so that a software adapter
# there fails instead of running for hours.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-check}
mkdir -p "$out/json"
log=$out/gpu_check.log tests_log=$out/tests.log
limit=${STEP_LIMIT:-150}
if [[ -d .gl ]] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nv=/usr/local/nvidia/share
[[ -f $nv/vulkan/icd.d/nvidia_icd.json ]] && export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json
[[ -f $nv/glvnd/egl_vendor.d/10_nvidia.json ]] &&
  export __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan} DDIM_REQUIRE_GPU=1
# On an NVIDIA machine, insist on its GPU: a software adapter there would run for hours, not fail.
command -v nvidia-smi >/dev/null && export DDIM_ADAPTER=${DDIM_ADAPTER:-nvidia}
if [[ -f .gpubin/bin.tar.xz ]]; then
  tar -C .gpubin -xJf .gpubin/bin.tar.xz
  bin=.gpubin ex=.gpubin
else
  bin=target/release ex=target/release/examples
fi
[[ -x $bin/ddim ]] || { echo "gpu_check: no binaries (run tools/bench/gpu_prep.sh)" >&2; exit 2; }
parts=" ${PARTS:-roofline profiles studies samples tests} "
want() { [[ $parts == *" $1 "* ]]; }
failed=()
step() {
  echo "== $*" | tee -a "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "-- rc $rc, $((SECONDS - t0)) s" | tee -a "$log"
  ((rc == 0)) || failed+=("$*")
}

step nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
want roofline && step "$bin/ddim" info --roofline
read -ra families <<<"${FAMILIES:-gpu cpu baseline}"
cifar_batch=8 mnist_batch=64 steps=10
if [[ ${QUICK:-0} == 1 ]]; then families=(gpu); cifar_batch=1 mnist_batch=8 steps=2; fi
want profiles && for k in "${families[@]}"; do
  step "$bin/ddim" profile --quiet --kernels "$k" --model benches/configs/ddpm-cifar10-32.json --steps $steps \
    --batch "$cifar_batch" --json "$out/json/profile_cifar10_$k.json"
  step "$bin/ddim" profile --quiet --kernels "$k" --steps $steps --batch "$mnist_batch" --clip-sample 1 \
    --json "$out/json/profile_mnist_$k.json"
  if [[ $k == gpu ]]; then
    step "$bin/ddim" profile --quiet --kernels gpu --split-k off --model benches/configs/ddpm-cifar10-32.json \
      --steps $steps --batch "$cifar_batch" --json "$out/json/profile_cifar10_gpu_nosplit.json"
    step "$bin/ddim" profile --quiet --kernels gpu --conv-tile 8x8 --model benches/configs/ddpm-cifar10-32.json \
      --steps $steps --batch "$cifar_batch" --json "$out/json/profile_cifar10_gpu_8x8.json"
    step env DDIM_SUBGROUPS=off "$bin/ddim" profile --quiet --kernels gpu \
      --model benches/configs/ddpm-cifar10-32.json --steps $steps --batch "$cifar_batch" \
      --json "$out/json/profile_cifar10_gpu_nosubgroups.json"
    step "$bin/ddim" profile --quiet --kernels gpu --precision f16 --model benches/configs/ddpm-cifar10-32.json \
      --steps $steps --batch "$cifar_batch" --json "$out/json/profile_cifar10_gpu_f16.json"
    step "$bin/ddim" profile --quiet --kernels gpu --precision f16 --steps $steps --batch "$mnist_batch" \
      --clip-sample 1 --json "$out/json/profile_mnist_gpu_f16.json"
  fi
done
if [[ ${QUICK:-0} == 1 ]]; then
  step "$ex/conv_study" quick cpu gpu
else
  if want studies; then
    step "$ex/conv_study" cpu gpu
    step "$ex/conv_study" cpu-direct cpu
    step "$ex/conv_study" baseline gpu
    step "$ex/conv_study" 1x1 cpu gpu
    step "$ex/conv_study" gpu-nosplit gpu
    step "$ex/conv_study" gpu gpu-8x8
    step "$ex/conv_study" 1x1 gpu gpu-8x8
    step "$ex/conv_study" 1x1 gpu-nosplit gpu
    step "$ex/conv_study" gpu gpu-f16
    step "$ex/conv_study" 1x1 gpu gpu-f16
    step "$ex/norm_study" cpu gpu
    step "$ex/norm_study" baseline gpu
    step env DDIM_SUBGROUPS=off "$ex/norm_study" baseline gpu
    step "$ex/norm_study" gpu gpu-f16
    step env DDIM_KERNELS=gpu "$ex/attention_study"
    step env DDIM_KERNELS=gpu DDIM_SPLIT_K=off "$ex/attention_study"
    step env DDIM_KERNELS=gpu DDIM_PRECISION=f16 "$ex/attention_study"
    step env DDIM_KERNELS=cpu "$ex/attention_study"
    step env DDIM_KERNELS=baseline "$ex/attention_study"
    step "$ex/unet_study" benches/configs/ddpm-cifar10-32.json 8 7
  fi
  want samples && step "$bin/ddim" sample --quiet --clip-sample 1 --batch 64 --seed 1 --out "$out/samples.png"
  # GL through EGL: first as wgpu finds it, then on the surfaceless platform (no display server there).
  for platform in "-u EGL_PLATFORM" "EGL_PLATFORM=surfaceless"; do
    # shellcheck disable=SC2086 # $platform is an env argument or two
    want samples && step env $platform WGPU_BACKEND=gl DDIM_ADAPTER= "$bin/ddim" sample --quiet \
      --clip-sample 1 --batch 16 --steps 20 --out "$out/samples_gl.png"
  done
  # The tests find tests/fixtures and weights/ under the directory they were built in, and the CLI tests
  # run target/release/ddim there.
  if want tests && [[ -f $bin/manifest_dir && -d $bin/tests ]]; then
    dir=$(cat "$bin/manifest_dir")
    if [[ ! -e $dir ]]; then mkdir -p "$(dirname "$dir")" && ln -s "$PWD" "$dir"; fi
    mkdir -p target/release && cp "$bin/ddim" target/release/ddim
    for kernels in ${TEST_KERNELS:-auto cpu}; do
      for t in "$bin"/tests/${TESTS:-*}; do
        name=$(basename "$t") exe=$PWD/$t part=$(mktemp)
        echo "== DDIM_KERNELS=$kernels $name" | tee -a "$tests_log"
        (cd "$dir" && DDIM_KERNELS=$kernels timeout "$limit" "$exe") >"$part" 2>&1
        rc=$?
        cat "$part" >>"$tests_log"
        grep -E '^test result|^test .* FAILED|panicked' "$part" | tail -n 5
        echo "-- rc $rc" | tee -a "$tests_log"
        ((rc == 0)) || failed+=("tests $name with DDIM_KERNELS=$kernels")
      done
    done
  fi
fi
(cd "$out" && tar -cf profiles.tar json && rm -rf json)
echo "gpu_check: done; ${#failed[@]} failed step(s)" | tee -a "$log"
for f in "${failed[@]}"; do echo "  failed: $f" | tee -a "$log"; done
