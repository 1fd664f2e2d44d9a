#!/usr/bin/env python3
"""The default model's quality tables, in the shape of the DDIM paper's Tables 1 and 2.

    prepare  --dir D   writes D/heldout.npy (the first --heldout held-out digits of the MNIST 5k split of
                       tools/train/train_mnist.py, float32 [N, 1, 32, 32] in [-1, 1]) for `ddim invert`
    evaluate --dir D   Frechet distances in the feature space of the committed digit classifier
                       (tests/data/digit_classifier.safetensors, made by tools/quality/classifier.py) between the
                       5,000 real digits and each cell's samples, D/sample_S{S}_{row}.shard{k}of{n}.npy written by
                       `ddim sample --out-npy` (on images 0..M-1, the most that every cell has); how often each
                       cell's samples are classified confidently against how often the 500 held-out digits are,
                       and which digit classes they cover; the per-dimension MSE of each D/recon_S{S}.npy (`ddim
                       invert` then `ddim sample --latent`) against D/heldout.npy. Prints Markdown tables and
                       writes D/quality.json
    docs     --dir docs  writes docs/heldout.npy and docs/heldout.png, the eight held-out digits the README inverts

tools/quality/run.sh runs the whole thing with our CLI. Nothing here is on the sampling path: the images come
from `ddim`; this script only measures them.
"""

import argparse
import json
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "train"))
from classifier import CONFIDENT, load  # noqa: E402
from train_mnist import split  # noqa: E402  (the same data, padding and split as the model's training)


def prepare(args):
    """D/heldout.npy: the first --heldout held-out digits, for `ddim invert`."""
    images, _, _, held = split()
    np.save(os.path.join(args.dir, "heldout.npy"), images[held[: args.heldout]])


def docs(args):
    """docs/heldout.npy and docs/heldout.png: the first eight held-out digits, as data for `ddim invert` and as a
    one-row grid laid out as the CLI lays out its grids (one white pixel around and between the cells)."""
    from PIL import Image

    images, _, _, held = split()
    x = images[held[:8]]
    np.save(os.path.join(args.dir, "heldout.npy"), x)
    n, _, h, w = x.shape
    grid = np.full((h + 2, n * (w + 1) + 1), 255, np.uint8)
    for k in range(n):
        grid[1 : 1 + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = np.round((np.clip(x[k, 0], -1, 1) + 1) * 127.5)
    Image.fromarray(grid, "L").save(os.path.join(args.dir, "heldout.png"))


def feats(net, x):
    with torch.no_grad():
        x = torch.from_numpy(np.clip(x, -1.0, 1.0).astype(np.float32))
        return torch.cat([net.features(x[i : i + 500]) for i in range(0, len(x), 500)]).double().numpy()


def classes(net, f):
    """Over features f: the classifier's digit histogram (fractions per class), its mean top-class probability,
    and the fraction of images whose top-class probability is at least CONFIDENT."""
    with torch.no_grad():
        p = F.softmax(net.f2(torch.from_numpy(f).float()), dim=1).numpy()
    top = p.max(1)
    return np.bincount(p.argmax(1), minlength=10) / len(p), float(top.mean()), float((top >= CONFIDENT).mean())


def stats(f):
    return f.mean(0), np.cov(f, rowvar=False)


def frechet(a, b):
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), with symmetric square roots."""
    (ma, sa), (mb, sb) = a, b

    def sqrt_psd(m):
        w, v = np.linalg.eigh((m + m.T) / 2)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    ra = sqrt_psd(sa)
    return float(((ma - mb) ** 2).sum() + np.trace(sa + sb - 2 * sqrt_psd(ra @ sb @ ra)))


def load_cells(d):
    """{(S, row): samples 0..M-1} from D/sample_S{S}_{row}.shard{k}of{n}.npy (tools/quality/run.sh: slice k of
    n equal slices, so it starts at image k * len) or an unsharded D/sample_S{S}_{row}.npy; M is where a cell's
    slices stop being contiguous from image 0."""
    slices = {}
    for name in os.listdir(d):
        m = re.fullmatch(r"sample_S(\d+)_(.+?)(?:\.shard(\d+)of(\d+))?\.npy", name)
        if m:
            x = np.load(os.path.join(d, name))
            first = int(m.group(3)) * len(x) if m.group(3) else 0
            slices.setdefault((int(m.group(1)), m.group(2)), {})[first] = x
    cells = {}
    for cell, parts in slices.items():
        run, at = [], 0
        while at in parts:
            run.append(parts[at])
            at += len(parts[at])
        cells[cell] = np.concatenate(run) if run else np.zeros((0, 1, 32, 32), np.float32)
    return cells


def evaluate(args):
    net = load()
    images, _, _, held_idx = split()
    real = feats(net, images)
    real_stats = stats(real)
    real_hist, real_conf, _ = classes(net, real)
    # How often real digits the classifier never trained on are classified confidently: the yardstick.
    _, _, held_confident = classes(net, feats(net, images[held_idx]))
    result = {"fd": {}, "floor": {}, "mse": {}, "parts": {}}
    parts = {}
    rows = {}
    cells = load_cells(args.dir)
    # Score every cell on the images that all cells have, so that a table read mid-run compares equal counts.
    common = min((len(x) for x in cells.values()), default=0)
    if cells and not common:
        sys.exit(f"quality.py: some cell of {args.dir} has no samples from image 0; nothing to compare")
    n = None
    for (s, row), samples in sorted(cells.items()):
        if common:
            x = samples[:common]
            n = len(x)
            f = feats(net, x)
            # The spread of the estimate: the distance over 20 bootstrap resamples of the generated set.
            rng = np.random.default_rng(s)
            boot = [frechet(stats(f[rng.integers(0, n, n)]), real_stats) for _ in range(20)]
            rows.setdefault(row, {})[s] = (frechet(stats(f), real_stats), float(np.std(boot)))
            hist, conf, confident = classes(net, f)
            parts[(row, s)] = {
                "mean_term": float(((f.mean(0) - real_stats[0]) ** 2).sum()),
                "class_tv": float(0.5 * np.abs(hist - real_hist).sum()),
                "confidence": conf,
                "confident": confident,
                "confident_vs_heldout": confident / held_confident,
                "classes": int((hist > 0).sum()),
                "rarest_class": float(hist.min()),
            }
    # The floor: real digits, as many as each cell has, against all 5,000 (mean of 5 draws).
    if n:
        rng = np.random.default_rng(1)
        draws = [frechet(stats(real[rng.choice(len(real), n, replace=False)]), real_stats) for _ in range(5)]
        result["floor"] = {"n": n, "mean": float(np.mean(draws)), "max": float(np.max(draws))}
    result["fd"] = {r: {s: {"fd": v[0], "bootstrap_std": v[1]} for s, v in c.items()} for r, c in rows.items()}
    result["parts"] = {f"{r} S={s}": v for (r, s), v in sorted(parts.items())}
    result["parts"]["real digits"] = {"confidence": real_conf}
    result["parts"]["held-out digits"] = {"confident": held_confident}
    held = os.path.join(args.dir, "heldout.npy")
    for name in sorted(os.listdir(args.dir)):
        m = re.fullmatch(r"recon_S(\d+)\.npy", name)
        if m:
            x0, rec = np.load(held), np.load(os.path.join(args.dir, name))
            result["mse"][int(m.group(1))] = {
                "model_range": float(((rec - x0) ** 2).mean()),
                "unit_range": float((((rec - x0) / 2) ** 2).mean()),
                "n": len(x0),
            }
    with open(os.path.join(args.dir, "quality.json"), "w") as f:
        json.dump(result, f, indent=1)

    steps = sorted({s for r in rows.values() for s in r})
    order = [r for r in ("eta0", "eta0.5", "eta1", "sigmahat") if r in rows]
    label = {"eta0": "eta = 0", "eta0.5": "eta = 0.5", "eta1": "eta = 1", "sigmahat": "sigma-hat"}
    print(f"Frechet distance, {n} samples per cell vs the 5,000 real digits (lower is better; ± the standard")
    print("deviation over 20 bootstrap resamples of the cell's samples):\n")
    print("| | " + " | ".join(f"S = {s}" for s in steps) + " |")
    print("|---|" + "---:|" * len(steps))
    for r in order:
        cells = [rows[r].get(s) for s in steps]
        print(f"| {label[r]} | " + " | ".join(f"{c[0]:.1f} ± {c[1]:.1f}" if c else "" for c in cells) + " |")
    if result["floor"]:
        fl = result["floor"]
        print(f"\nFloor: {fl['n']} real digits vs the 5,000: {fl['mean']:.2f} (mean of 5 draws, max {fl['max']:.2f})")
    if parts:
        print("\nWhat each distance is made of: the squared distance between the feature means (the rest is the")
        print("covariance term), the total-variation distance between the classifier's digit histograms of the")
        print(f"cell and of the real digits, the mean top-class probability (real digits: {real_conf:.3f}), the")
        print(f"fraction classified confidently (p >= {CONFIDENT}), that fraction over the held-out digits' "
              f"({held_confident:.3f}),")
        print("and the digit classes the cell's samples are classified as (of 10) with the rarest one's share:\n")
        print("| cell | distance | mean term | class TV | confidence | confident | vs held-out | classes |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in order:
            for s in steps:
                if (r, s) in parts:
                    q = parts[(r, s)]
                    print(f"| {label[r]}, S = {s} | {rows[r][s][0]:.1f} | {q['mean_term']:.1f} | "
                          f"{q['class_tv']:.3f} | {q['confidence']:.3f} | {q['confident']:.3f} | "
                          f"{q['confident_vs_heldout']:.2f} | {q['classes']} ({q['rarest_class']:.1%}) |")
    if result["mse"]:
        print("\nReconstruction (invert S steps, decode S steps), per-dimension MSE:\n")
        ms = sorted(result["mse"])
        print("| | " + " | ".join(f"S = {s}" for s in ms) + " |")
        print("|---|" + "---:|" * len(ms))
        print("| pixels in [-1, 1] | " + " | ".join(f"{result['mse'][s]['model_range']:.4f}" for s in ms) + " |")
        print("| pixels in [0, 1] | " + " | ".join(f"{result['mse'][s]['unit_range']:.4f}" for s in ms) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["prepare", "evaluate", "docs"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--heldout", type=int, default=64)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    {"prepare": prepare, "evaluate": evaluate, "docs": docs}[args.command](args)


if __name__ == "__main__":
    main()
