#!/usr/bin/env bash
# Remakes the images under docs/ with the commands the README and docs/quality.md show beside them, with the
# default model. (docs/heldout.png is data, not output: eight held-out MNIST digits; docs/heldout.npy holds the
# same pixels in the model's range, [8, 1, 32, 32] in [-1, 1], for `ddim invert`.) docs/web.png is made by
# tools/web/test.sh docs/web.png.
#
#   tools/docs/images.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin ddim
ddim=target/release/ddim
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$ddim" sample --batch 64 --seed 1 --out docs/samples.png --quiet
"$ddim" invert --image docs/heldout.npy --steps 50 --clip-sample off --out "$work/latents.npy" --quiet
"$ddim" sample --latent "$work/latents.npy" --steps 50 --clip-sample off --out docs/reconstructed.png --quiet
"$ddim" interpolate --seeds 3,7 --frames 8 --out docs/interpolation.png --quiet
for s in 10 20 50 100; do
  "$ddim" sample --steps "$s" --batch 9 --seed 1 --out "docs/steps_S$s.png" --quiet
done
