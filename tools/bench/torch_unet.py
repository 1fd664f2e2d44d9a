#!/usr/bin/env python3
"""PyTorch's time for the UNet forward pass that `examples/unet_study.rs` times on our engine: the same diffusers
config (default benches/configs/ddpm-cifar10-32.json), random weights, batch 8, on --threads CPU threads.

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install -r tools/fixtures/requirements.txt
    /tmp/tb/bin/python tools/bench/torch_unet.py [--config PATH] [--batch 8] [--rounds 5] [--threads 2]

Prints the median wall time of a forward pass (no autograd) and per image. For BENCHMARKS.md's comparison
only: nothing in the engine, its tests or CI runs this.
"""

import argparse
import json
import os
import statistics
import time

import torch
from diffusers import UNet2DModel


def main():
    here = os.path.dirname(__file__)
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(here, "..", "..", "benches", "configs", "ddpm-cifar10-32.json"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.config) as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    net = UNet2DModel(**config).eval()
    x = torch.randn(args.batch, config["in_channels"], config["sample_size"], config["sample_size"])
    t = torch.full((args.batch,), 500)
    times = []
    with torch.inference_mode():
        net(x, t)  # warm-up
        for _ in range(args.rounds):
            start = time.perf_counter()
            net(x, t)
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    params = sum(p.numel() for p in net.parameters())
    print(
        f"torch {torch.__version__}, {args.threads} threads: {params:,} parameters, batch {args.batch}: "
        f"forward {median * 1e3:.1f} ms median of {args.rounds} ({median * 1e3 / args.batch:.1f} ms per image)"
    )


if __name__ == "__main__":
    main()
