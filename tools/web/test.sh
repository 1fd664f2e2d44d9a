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
(cd tests/web && npm ci --no-audit --no-fund --silent)
DDIM_WEB_DIR="$work/site" DDIM_WEB_REFERENCE="$work/cli.npy" DDIM_WEB_SCREENSHOT="$screenshot" \
  node tests/web/page.test.mjs
