#!/usr/bin/env python3
"""The table of one same-run comparison (tools/bench/gpu_compare.sh): DIR/ours.jsonl and DIR/torch.json to
Markdown on stdout. Each row is one model, batch and PyTorch mode; the ratios are ours over PyTorch's time (above
1: ours is slower), from the medians of the one run. Where DIR/ours_8x8.jsonl holds runs with the 8 x 8
convolution tiles, a second table sets them beside the default 4 x 4; where DIR/ours_f16.jsonl holds runs at f16
precision, a third sets them beside ours at f32 and PyTorch's f16 autocast.

    python3 tools/bench/compare_table.py DIR
"""

import json
import os
import sys


def load(path):
    runs = {}
    if not os.path.exists(path):
        return runs
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                name = "ddpm256" if "256" in os.path.basename(r["config"]) else "cifar10"
                runs[(name, r["batch"])] = r
    return runs


def main():
    d = sys.argv[1]
    ours = load(os.path.join(d, "ours.jsonl"))
    tiles8 = load(os.path.join(d, "ours_8x8.jsonl"))
    half = load(os.path.join(d, "ours_f16.jsonl"))
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
    if tiles8:
        print("\nOurs with the 8 x 8 convolution tiles (`DDIM_CONV_TILE=8x8`) against the default 4 x 4, same run:\n")
        print("| model | batch | 4x4 forward ms | 8x8 forward ms | 8x8 / 4x4 | 4x4 sample ms | 8x8 sample ms | 8x8 / 4x4 |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for key, t in sorted(tiles8.items()):
            o = ours.get(key)
            if o is None:
                continue
            print(f"| {key[0]} | {key[1]} | {o['forward_ms']:.2f} | {t['forward_ms']:.2f} | "
                  f"{t['forward_ms'] / o['forward_ms']:.2f}x | {o['sample_ms']:.1f} | {t['sample_ms']:.1f} | "
                  f"{t['sample_ms'] / o['sample_ms']:.2f}x |")

    if half:
        autocast = {(r["model"], r["batch"]): r for r in torch["cases"]
                    if "f16" in r["mode"] and "error" not in r}
        print("\nOurs at f16 precision (`DDIM_PRECISION=f16`) against ours at f32 and PyTorch's f16 autocast, same "
              "run:\n")
        print("| model | batch | f32 forward ms | f16 forward ms | f32 / f16 | PyTorch f16 ms | f16 / PyTorch | "
              "f32 sample ms | f16 sample ms | f32 / f16 | f16 MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, h in sorted(half.items()):
            o = ours.get(key)
            a = autocast.get(key)
            if o is None:
                continue
            torch_ms = f"{a['forward_ms']:.2f}" if a else ""
            vs_torch = f"{h['forward_ms'] / a['forward_ms']:.2f}x" if a else ""
            print(f"| {key[0]} | {key[1]} | {o['forward_ms']:.2f} | {h['forward_ms']:.2f} | "
                  f"{o['forward_ms'] / h['forward_ms']:.2f}x | {torch_ms} | {vs_torch} | {o['sample_ms']:.1f} | "
                  f"{h['sample_ms']:.1f} | {o['sample_ms'] / h['sample_ms']:.2f}x | {h['memory_bytes'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
