#!/usr/bin/env bash
# The default model's quality tables (README, "Quality of the default model"): samples for every (S, eta) cell
# and the sigma-hat row with our CLI, DDIM inversion and decoding of held-out digits, then the Frechet distances
# and reconstruction errors (tools/quality/quality.py).
#
#   python3 -m venv /tmp/q && /tmp/q/bin/pip install -r tools/train/requirements.txt
#   PYTHON=/tmp/q/bin/python tools/quality/run.sh [DIR] [SAMPLES_PER_CELL] [HELDOUT]
#
# Defaults: DIR /tmp/quality, 160 samples per cell, 64 held-out digits. Every cell starts from the same x_T
# (seed 1). Sampling clips x0 to [-1, 1] (--clip-sample 1, which the default model needs: weights/README.md);
# inversion and decoding do not clip, so they follow the deterministic ODE both ways.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/quality}
n=${2:-160}
held=${3:-64}
python=${PYTHON:-python3}
mkdir -p "$dir"
cargo build --release --quiet
ddim=target/release/ddim
start=$(date +%s)

"$python" tools/quality/quality.py prepare --dir "$dir" --heldout "$held"
for s in 10 20 50 100; do
  for eta in 0 0.5 1; do
    "$ddim" sample --steps "$s" --eta "$eta" --clip-sample 1 --batch "$n" --seed 1 --quiet \
      --out "$dir/grid_S${s}_eta${eta}.png" --out-npy "$dir/sample_S${s}_eta${eta}.npy"
  done
  "$ddim" sample --steps "$s" --sigma-hat --clip-sample 1 --batch "$n" --seed 1 --quiet \
    --out "$dir/grid_S${s}_sigmahat.png" --out-npy "$dir/sample_S${s}_sigmahat.npy"
  "$ddim" invert --image "$dir/heldout.npy" --steps "$s" --quiet --out "$dir/latent_S${s}.npy"
  "$ddim" sample --latent "$dir/latent_S${s}.npy" --steps "$s" --quiet \
    --out "$dir/recon_S${s}.png" --out-npy "$dir/recon_S${s}.npy"
  echo "S = $s done after $(( $(date +%s) - start )) s"
done
"$python" tools/quality/quality.py evaluate --dir "$dir"
echo "total $(( $(date +%s) - start )) s"
