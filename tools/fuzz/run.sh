#!/usr/bin/env bash
# Fuzzes every parser of outside input (fuzz/fuzz_targets/) with cargo-fuzz, one target after another, each for
# RUNS executions, then merges what each run found into the committed corpus (fuzz/corpus/<target>/), which
# `cargo test` replays (tests/fuzz_corpus.rs). Needs nightly Rust and `cargo install cargo-fuzz`.
#
#   tools/fuzz/run.sh [RUNS] [TARGET...]        RUNS defaults to 10,000,000; targets to all eight
#   FUZZ_MAX_SECONDS=3600 tools/fuzz/run.sh ... also stops each target after that many seconds
#
# Targets run uninstrumented (-s none, debug assertions on: overflow checks panic) under a capped global
# allocator (ddim_wgpu::fuzz::CappedAllocator): any single allocation over 64 MiB (320 MiB for images) aborts.
# libFuzzer also stops on a 10 s execution (a hang) and on 2 GiB of resident memory. Crashes land in
# fuzz/artifacts/<target>/; each found is fixed and its input kept in fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
runs=${1:-10000000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pickle checkpoint weights model_file npy yaml json_config image)
limit=()
[ -z "${FUZZ_MAX_SECONDS:-}" ] || limit=(-max_total_time="$FUZZ_MAX_SECONDS")

cargo +nightly fuzz build -O -a -s none >/dev/null
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t" "corpus/$t" "artifacts/$t"
  start=$(date +%s)
  "$bin/$t" "corpus-work/$t" "corpus/$t" "seeds/$t" -runs="$runs" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"logs/$t.log" 2>&1 || {
    echo "$t: FAILED after $(( $(date +%s) - start )) s; see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    continue
  }
  secs=$(( $(date +%s) - start ))
  done_line=$(grep -E '^Done [0-9]+ runs' "logs/$t.log" | tail -1)
  cov=$(grep -E 'cov: [0-9]+' "logs/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+')
  # Keep a minimal corpus with the same coverage: the committed regression corpus.
  "$bin/$t" -merge=1 "corpus/$t" "corpus-work/$t" >"logs/$t.merge.log" 2>&1
  echo "$t: ${done_line} (${secs} s wall), final ${cov}, committed corpus $(ls "corpus/$t" | wc -l) files"
done
