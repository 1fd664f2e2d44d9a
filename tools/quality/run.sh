#!/usr/bin/env bash
# The default model's quality tables (README, "Quality of the default model"): samples for every (S, eta) cell
# and the sigma-hat row with our CLI, DDIM inversion and decoding of held-out digits, then the Frechet distances
# and reconstruction errors (tools/quality/quality.py).
#
#   python3 -m venv /tmp/q && /tmp/q/bin/pip install -r tools/train/requirements.txt
#   PYTHON=/tmp/q/bin/python tools/quality/run.sh [DIR] [N] [HELDOUT] [SLICES]
#   STEPS=50 ROWS=eta0 PYTHON=/tmp/q/bin/python tools/quality/run.sh [DIR]    # one cell: the targets' cell
#
# Defaults: DIR /tmp/quality, N = 1,120 samples per cell, 64 held-out digits, SLICES "0/7 1/7 2/7 3/7 4/7 5/7
# 24/28 25/28 26/28 27/28". Every cell samples images 0..N-1 of seed 1, slice by slice: `--shard k/n` makes
# images k*N/n .. (k+1)*N/n - 1 (image k depends only on the seed and k, so the slices together are the
# unsplit run). Six slices of 160 and four of 40 put a slice boundary at 1,000 images, the tables' minimum. The
# work goes slice by slice over all 16 cells and skips any output already there: an interrupted run resumes
# where it stopped, and `quality.py evaluate` (run at the end, or by hand at any time) scores every cell on the
# images 0..M-1 that all cells have. Sampling uses the model's own defaults (the default model clips x0 to
# [-1, 1]); inversion and decoding do not clip (--clip-sample off), so they follow the deterministic ODE both
# ways. STEPS (default "10 20 50 100") and ROWS (default "eta0 eta0.5 eta1 sigmahat") choose the cells; MODEL
# (a weights file) measures another model than the default, such as a training checkpoint converted by `ddim
# convert`.
# About 30 minutes per slice of 160 on a 2-core machine (lavapipe, 16 ms per image per step).
#
# The first run copies the binary into DIR and later runs use that copy, so that engine changes made meanwhile
# never mix into one table unnoticed; DIR/provenance.txt records the commit that made each output. To change the
# binary on purpose, replace DIR/ddim and DIR/ddim.commit (README, "Quality of the default model", says when
# that was done and what it changed).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/quality}
n=${2:-1120}
held=${3:-64}
slices=${4:-"0/7 1/7 2/7 3/7 4/7 5/7 24/28 25/28 26/28 27/28"}
python=${PYTHON:-python3}
for slice in $slices; do
  if (( n % ${slice#*/} != 0 )); then
    echo "run.sh: $n samples per cell do not split into ${slice#*/} equal slices ($slice)" >&2
    exit 2
  fi
done
mkdir -p "$dir"
if [[ ! -x "$dir/ddim" ]]; then
  cargo build --release --quiet
  cp target/release/ddim "$dir/ddim.tmp" && mv "$dir/ddim.tmp" "$dir/ddim"
  git rev-parse HEAD > "$dir/ddim.commit"
fi
ddim=$dir/ddim
made() { echo "$(basename "$1") $(cat "$dir/ddim.commit")" >> "$dir/provenance.txt"; }
start=$(date +%s)

[[ -f "$dir/heldout.npy" ]] || "$python" tools/quality/quality.py prepare --dir "$dir" --heldout "$held"
model=()
[[ -n ${MODEL:-} ]] && model=(--model "$MODEL")
steps=${STEPS:-"10 20 50 100"}
rows=${ROWS:-"eta0 eta0.5 eta1 sigmahat"}
for s in $steps; do
  [[ -f "$dir/recon_S${s}.npy" ]] && continue
  "$ddim" invert "${model[@]}" --image "$dir/heldout.npy" --steps "$s" --clip-sample off --quiet --out "$dir/latent_S${s}.npy"
  "$ddim" sample "${model[@]}" --latent "$dir/latent_S${s}.npy" --steps "$s" --clip-sample off --quiet \
    --out "$dir/recon_S${s}.png" --out-npy "$dir/recon_S${s}.npy"
  made "$dir/recon_S${s}.npy"
done
for slice in $slices; do
  k=${slice%/*}
  m=${slice#*/}
  for s in $steps; do
    for row in $rows; do
      out="$dir/sample_S${s}_${row}.shard${k}of${m}.npy"
      [[ -f "$out" ]] && continue
      if [[ $row == sigmahat ]]; then how=(--sigma-hat); else how=(--eta "${row#eta}"); fi
      "$ddim" sample "${model[@]}" --steps "$s" "${how[@]}" --batch "$n" --shard "$k/$m" --seed 1 --quiet \
        --out "$dir/grid_S${s}_${row}.shard${k}of${m}.png" --out-npy "$out"
      made "$out"
    done
  done
  echo "slice $slice done after $(( $(date +%s) - start )) s"
done
"$python" tools/quality/quality.py evaluate --dir "$dir"
echo "total $(( $(date +%s) - start )) s"
