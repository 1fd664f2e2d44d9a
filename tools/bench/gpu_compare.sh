#!/usr/bin/env bash
# Ours against PyTorch on one GPU, in one run: for the CIFAR-10 UNet at batch 1, 8 and 64 and the DDPM 256x256
# UNet at batch 1 and 4, a forward pass and a 50-step DDIM sample, ours (examples/gpu_compare.rs, the kernels
# auto picks) and PyTorch's (tools/bench/torch_gpu.py: eager f32 with TF32 off, eager TF32, f16 autocast,
# torch.compile), with peak memory; ours again with the 8 x 8 convolution tiles (DDIM_CONV_TILE=8x8, into
# DIR/ours_8x8.jsonl) and at f16 precision (DDIM_PRECISION=f16, into DIR/ours_f16.jsonl); VARIANTS=0 skips those. Writes DIR/torch.json, DIR/ours.jsonl and DIR/table.md (by
# tools/bench/compare_table.py), DIR defaulting to $OUT (the device tool's output folder) or
# docs/bench/<gpu>-<date>.
#
#   tools/bench/gpu_prep.sh                      # here: binaries in .gpubin, loaders in .gl, wheels in .wheels
#   bash tools/bench/gpu_compare.sh [DIR]        # there (carry .gpubin .gl .wheels)
#
# QUICK=1 runs one small case on each side (a smoke test; with DEVICE=cpu, PyTorch on the CPU). Each step has a
# time limit (STEP_LIMIT seconds, default 240). PYTHON picks the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
limit=${STEP_LIMIT:-240}
device=${DEVICE:-cuda}
if [[ -d .wheels ]] && ! "$python" -c 'import diffusers' 2>/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .wheels/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The binaries and loaders as gpu_check.sh sets them up.
if [[ -d .gl ]] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nv=/usr/local/nvidia/share
[[ -f $nv/vulkan/icd.d/nvidia_icd.json ]] && export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
command -v nvidia-smi >/dev/null && export DDIM_ADAPTER=${DDIM_ADAPTER:-nvidia}
if [[ -f .gpubin/bin.tar.xz ]]; then
  tar -C .gpubin -xJf .gpubin/bin.tar.xz
  ex=.gpubin
else
  ex=target/release/examples
fi
[[ -x $ex/gpu_compare ]] || { echo "gpu_compare: no binaries (run tools/bench/gpu_prep.sh)" >&2; exit 2; }
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
dir=${1:-${OUT:-docs/bench/${gpu:-gpu}-$(date +%F)}}
mkdir -p "$dir"
: >"$dir/ours.jsonl"
: >"$dir/ours_8x8.jsonl"
: >"$dir/ours_f16.jsonl"
failed=0
if [[ ${QUICK:-0} == 1 ]]; then
  cases="cifar10:1" rounds=2 steps=2 quick=(--quick)
else
  cases="cifar10:1 cifar10:8 cifar10:64 ddpm256:1 ddpm256:4" rounds=7 steps=50 quick=()
fi
declare -A config=([cifar10]=benches/configs/ddpm-cifar10-32.json [ddpm256]=benches/configs/ddpm-256.json)
for c in $cases; do
  name=${c%:*} batch=${c#*:}
  echo "== ours: $name batch $batch"
  if ! timeout "$limit" "$ex/gpu_compare" "${config[$name]}" "$batch" "$rounds" "$steps" >>"$dir/ours.jsonl"; then
    echo "-- ours: $name batch $batch failed or ran past ${limit}s"
    failed=1
  fi
  tail -1 "$dir/ours.jsonl"
  if [[ ${VARIANTS:-1} == 1 ]]; then
    echo "== ours, 8x8 tiles: $name batch $batch"
    DDIM_CONV_TILE=8x8 timeout "$limit" "$ex/gpu_compare" "${config[$name]}" "$batch" "$rounds" "$steps" \
      >>"$dir/ours_8x8.jsonl" || { echo "-- ours, 8x8 tiles: $name batch $batch failed"; failed=1; }
    echo "== ours, f16: $name batch $batch"
    DDIM_PRECISION=f16 timeout "$limit" "$ex/gpu_compare" "${config[$name]}" "$batch" "$rounds" "$steps" \
      >>"$dir/ours_f16.jsonl" || { echo "-- ours, f16: $name batch $batch failed"; failed=1; }
  fi
done
echo "== PyTorch"
timeout $((limit * 4)) "$python" tools/bench/torch_gpu.py --json "$dir/torch.json" --device "$device" \
  --rounds "$rounds" --steps "$steps" "${quick[@]}" || failed=1
"$python" tools/bench/compare_table.py "$dir" | tee "$dir/table.md"
exit $failed
