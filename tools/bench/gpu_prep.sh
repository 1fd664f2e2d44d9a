#!/usr/bin/env bash
# Prepares the device-machine runs (tools/bench/gpu_check.sh, tools/bench/gpu_compare.sh) on this machine:
# release builds of `ddim`, the studies and the test binaries, stripped and packed in .gpubin/bin.tar.xz (the
# device machine has no Rust toolchain), the Vulkan and EGL loaders the device machine lacks, in .gl/, and
# diffusers with what it needs beyond the device machine's PyTorch image, in .wheels/ (all ignored by git, carried to the
# device machine by name). Needs apt-get, pip and an x86-64 build machine.
#
#   tools/bench/gpu_prep.sh
#   then, with the device tool: run(command="bash tools/bench/gpu_check.sh", carry=[".gpubin", ".gl"])
#   or:                         run(command="bash tools/bench/gpu_compare.sh", carry=[".gpubin", ".gl", ".wheels"])
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info
for d in /.gpubin/ /.gl/ /.wheels/; do
  grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude
done
cargo build --release --quiet --bin ddim --example conv_study --example norm_study --example attention_study \
  --example unet_study --example gpu_compare
rm -rf .gpubin && mkdir -p .gpubin/stage/tests
cp target/release/ddim target/release/examples/{conv_study,norm_study,attention_study,unet_study,gpu_compare} \
  .gpubin/stage/
# Every integration-test binary, by its target name (they find tests/fixtures and weights/ through the
# CARGO_MANIFEST_DIR they were built with, which gpu_check.sh links to the tree there).
cargo test --release --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], ".gpubin/stage/tests/" + m["target"]["name"])
'
strip .gpubin/stage/* .gpubin/stage/tests/* 2>/dev/null || true
echo "$(pwd)" >.gpubin/stage/manifest_dir
tar -C .gpubin/stage -cf - . | xz -T0 -6 >.gpubin/bin.tar.xz
rm -rf .gpubin/stage
if [[ ! -d .gl ]] || ! ls .gl/*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086 # $o is several options
  apt-get $o update -qq
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .gpubin .gl
# diffusers (pure Python) and importlib_metadata, which it requires and the device machine's PyTorch image lacks;
# the rest of what diffusers imports (huggingface_hub, regex, safetensors, Pillow, numpy) is in that image.
if [[ ! -d .wheels ]]; then
  mkdir -p .wheels
  python3 -m pip download -q --no-deps -d .wheels diffusers==0.42.1 importlib_metadata
fi
du -sh .wheels
