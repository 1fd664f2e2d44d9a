#!/usr/bin/env bash
# The browser test: builds the page (tools/web/build.sh), samples the same settings with the native CLI, and
# drives the page in Debian's Chromium with WebGPU on SwiftShader (tests/web/page.test.mjs, playwright-core from
# npm, no browser download). Needs the chromium package; .ci/run installs it.
#
#   tools/web/test.sh [SCREENSHOT]      (default: target/web/page.png)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
screenshot=${1:-target/web/page.png}
work=target/web
mkdir -p "$work" "$(dirname "$screenshot")"

tools/web/build.sh "$work/site"
cargo build --quiet --bin ddim
# The settings page.test.mjs runs (RUN there), natively.
target/debug/ddim sample --steps 10 --batch 4 --seed 1 --eta 0 --clip-sample 1 \
  --out "$work/cli.png" --out-npy "$work/cli.npy" --quiet
# The settings of the check that loads a diffusers model through the file picker.
target/debug/ddim sample --model tests/fixtures/unet/pad0_onehead_safetensors/model --steps 3 --batch 2 \
  --seed 1 --eta 0 --clip-sample 1 --out "$work/diffusers.png" --out-npy "$work/diffusers.npy" --quiet
# The same run's time per step natively, on lavapipe and on SwiftShader's Vulkan driver (which Chromium ships), to
# set beside the page's (every dispatch timed in all three).
per_step() {
  target/debug/ddim profile --steps 10 --batch 4 --seed 1 --eta 0 --clip-sample 1 2>&1 |
    sed -n "s/.*per step \([0-9.]* ms\) wall.*/     native on $1: \1 per step, every dispatch timed/p"
}
per_step lavapipe
VK_DRIVER_FILES=/usr/lib/chromium/vk_swiftshader_icd.json per_step swiftshader
(cd tests/web && npm ci --no-audit --no-fund --silent)
DDIM_WEB_DIR="$work/site" DDIM_WEB_REFERENCE="$work/cli.npy" DDIM_WEB_DIFFUSERS_REFERENCE="$work/diffusers.npy" \
  DDIM_WEB_DIFFUSERS_MODEL=tests/fixtures/unet/pad0_onehead_safetensors/model DDIM_WEB_SCREENSHOT="$screenshot" \
  node tests/web/page.test.mjs
