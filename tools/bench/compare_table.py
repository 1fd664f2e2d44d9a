#!/usr/bin/env python3
"""The table of one same-run comparison (tools/bench/gpu_compare.sh): DIR/ours.jsonl and DIR/torch.json to
Markdown on stdout. Each row is one model, batch and PyTorch mode; the ratios are ours over PyTorch's time (above
1: ours is slower), from the medians of the one run.

    python3 tools/bench/compare_table.py DIR
"""

import json
import os
import sys


def main():
    d = sys.argv[1]
    ours = {}
    with open(os.path.join(d, "ours.jsonl")) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                name = "ddpm256" if "256" in os.path.basename(r["config"]) else "cifar10"
                ours[(name, r["batch"])] = r
    with open(os.path.join(d, "torch.json")) as f:
        torch = json.load(f)
    adapter = next(iter(ours.values()))["adapter"] if ours else "?"
    print(f"Ours on {adapter}; PyTorch {torch['torch']} on {torch['device']}; {torch['steps']}-step samples, "
          f"medians of {torch['rounds']} forward passes and {max(1, torch['rounds'] // 2)} samples.\n")
    print("| model | batch | PyTorch mode | PyTorch forward ms | ours | ours / PyTorch | PyTorch sample ms | ours "
          "| ours / PyTorch | PyTorch peak MiB | ours MiB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in torch["cases"]:
        key = (row["model"], row["batch"])
        o = ours.get(key)
        label = f"| {row['model']} | {row['batch']} | {row['mode']} |"
        if "error" in row:
            print(f"{label} failed: {row['error'][:80]} | | | | | | | |")
            continue
        peak = f"{row['peak_bytes'] / 2**20:.0f}" if row.get("peak_bytes") else ""
        if o is None:
            print(f"{label} {row['forward_ms']:.2f} | | | {row['sample_ms']:.1f} | | | {peak} | |")
            continue
        print(f"{label} {row['forward_ms']:.2f} | {o['forward_ms']:.2f} | {o['forward_ms'] / row['forward_ms']:.2f}x "
              f"| {row['sample_ms']:.1f} | {o['sample_ms']:.1f} | {o['sample_ms'] / row['sample_ms']:.2f}x | {peak} "
              f"| {o['memory_bytes'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
