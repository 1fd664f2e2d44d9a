#!/usr/bin/env bash
# Builds the web page into OUT_DIR, ready for any static file server: index.html, main.js, style.css, the wasm
# and its JavaScript glue (ddim_web_bg.wasm, ddim_web.js), and the default model (default.safetensors).
#
# Installs what it needs from crates.io: the wasm32 target, and wasm-bindgen-cli at the version web/Cargo.lock
# pins (the CLI and the crate must match exactly).
#
#   tools/web/build.sh OUT_DIR
set -euo pipefail
out=${1:?usage: tools/web/build.sh OUT_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
version=$(grep -A1 '^name = "wasm-bindgen"$' web/Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]]; then
  echo "installing wasm-bindgen-cli $version" >&2
  # Not --locked: its lock file names releases of its own dependencies that a registry mirror may not carry.
  cargo install --quiet wasm-bindgen-cli --version "$version"
fi

cargo build --quiet --locked --release --target wasm32-unknown-unknown --manifest-path web/Cargo.toml
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name ddim_web \
  web/target/wasm32-unknown-unknown/release/ddim_web.wasm
cp web/index.html web/main.js web/style.css "$out/"
cp weights/default.safetensors "$out/default.safetensors"
echo "built the page into $out ($(du -sh "$out" | cut -f1)); serve it, e.g. python3 -m http.server -d $out 8000" >&2
