#!/usr/bin/env bash
# The default model's quality tables (README, "Quality of the default model"): samples for every (S, eta) cell
# and the sigma-hat row with our CLI, DDIM inversion and decoding of held-out digits, then the Frechet distances
# and reconstruction errors (tools/quality/quality.py).
#
#   python3 -m venv /tmp/q && /tmp/q/bin/pip install -r tools/train/requirements.txt
#   PYTHON=/tmp/q/bin/python tools/quality/run.sh [DIR] [SAMPLES_PER_CELL] [HELDOUT] [SHARDS]
#
# Defaults: DIR /tmp/quality, 1,120 samples per cell made in 7 shards of 160, 64 held-out digits. Every cell
# samples images 0..N-1 of seed 1; `--shard k/SHARDS` makes the k-th slice of them (image k depends only on the
# seed and k, so the shards together are the unsplit run). The work goes shard by shard over all cells and skips
# any output already there: an interrupted run resumes where it stopped, and `quality.py evaluate` (run at the
# end, or by hand at any time) scores every cell on the shards that all cells have. Sampling clips x0 to [-1, 1]
# (--clip-sample 1, which the default model needs: weights/README.md); inversion and decoding do not clip, so
# they follow the deterministic ODE both ways. About 54 minutes per shard of 160 on a 2-core machine (lavapipe).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/quality}
n=${2:-1120}
held=${3:-64}
shards=${4:-7}
python=${PYTHON:-python3}
if (( n % shards != 0 )); then
  echo "run.sh: $n samples per cell do not split into $shards equal shards" >&2
  exit 2
fi
mkdir -p "$dir"
# One binary makes every shard: the first run copies it into DIR and a resumed run uses that copy, so engine
# changes made meanwhile (which may move the last bits of a sample) never mix into one table.
if [[ ! -x "$dir/ddim" ]]; then
  cargo build --release --quiet
  cp target/release/ddim "$dir/ddim.tmp" && mv "$dir/ddim.tmp" "$dir/ddim"
  git rev-parse HEAD > "$dir/ddim.commit"
fi
ddim=$dir/ddim
start=$(date +%s)

[[ -f "$dir/classifier.pt" && -f "$dir/heldout.npy" ]] ||
  "$python" tools/quality/quality.py prepare --dir "$dir" --heldout "$held"
for s in 10 20 50 100; do
  [[ -f "$dir/recon_S${s}.npy" ]] && continue
  "$ddim" invert --image "$dir/heldout.npy" --steps "$s" --quiet --out "$dir/latent_S${s}.npy"
  "$ddim" sample --latent "$dir/latent_S${s}.npy" --steps "$s" --quiet \
    --out "$dir/recon_S${s}.png" --out-npy "$dir/recon_S${s}.npy"
done
for (( k = 0; k < shards; k++ )); do
  for s in 10 20 50 100; do
    for row in eta0 eta0.5 eta1 sigmahat; do
      out="$dir/sample_S${s}_${row}.shard${k}of${shards}.npy"
      [[ -f "$out" ]] && continue
      if [[ $row == sigmahat ]]; then how=(--sigma-hat); else how=(--eta "${row#eta}"); fi
      "$ddim" sample --steps "$s" "${how[@]}" --clip-sample 1 --batch "$n" --shard "$k/$shards" --seed 1 --quiet \
        --out "$dir/grid_S${s}_${row}.shard${k}of${shards}.png" --out-npy "$out"
    done
  done
  echo "shard $((k + 1)) of $shards done after $(( $(date +%s) - start )) s"
done
"$python" tools/quality/quality.py evaluate --dir "$dir"
echo "total $(( $(date +%s) - start )) s"
