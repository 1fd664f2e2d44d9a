#!/usr/bin/env python3
"""PyTorch's side of the same-run comparison on a GPU (tools/bench/gpu_compare.sh runs it beside ours): for each
UNet config and batch, a forward pass and a 50-step DDIM sample (diffusers' DDIMScheduler loop, as its
DDIMPipeline runs it), in four modes, with the peak GPU memory of each.

    python3 tools/bench/torch_gpu.py --json OUT.json [--device cuda] [--rounds 7] [--steps 50] [--quick]

Modes: `eager-f32` (TF32 off for matmuls and convolutions), `eager-tf32` (TF32 on), `autocast-f16`
(torch.autocast float16 over f32 weights), `compile` (torch.compile of the f32 model, TF32 off; for the cases
--compile-cases names, by default the CIFAR-10 UNet at batch 8 and the 256x256 UNet at batch 1, since each
compilation takes minutes; a mode that fails is recorded with its error and skipped). Cases: the CIFAR-10 UNet
(benches/configs/ddpm-cifar10-32.json, 35.7M parameters) at batch 1, 8 and 64, and the DDPM 256x256 UNet
(benches/configs/ddpm-256.json, 113.7M, the config of google/ddpm-church-256) at batch 1 and 4; random weights
(seed 0). Times are medians over --rounds runs after a warm-up, measured with CUDA events on a GPU (wall time on
the CPU); memory is torch.cuda.max_memory_allocated over the timed runs (weights included). --quick runs only
the CIFAR-10 UNet at batch 1 with 2 steps and 2 rounds, to check the script anywhere (also with --device cpu).

For BENCHMARKS.md's comparison only: nothing in the engine, its tests or CI runs this.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
from diffusers import DDIMScheduler, UNet2DModel

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CONFIGS = {
    "cifar10": os.path.join(ROOT, "benches", "configs", "ddpm-cifar10-32.json"),
    "ddpm256": os.path.join(ROOT, "benches", "configs", "ddpm-256.json"),
}
CASES = [("cifar10", 1), ("cifar10", 8), ("cifar10", 64), ("ddpm256", 1), ("ddpm256", 4)]
MODES = ["eager-f32", "eager-tf32", "autocast-f16", "compile"]


def load(name):
    with open(CONFIGS[name]) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


class Timer:
    """Median time in ms of a callable: CUDA events on a GPU, wall time elsewhere."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, rounds):
        fn()  # warm-up (and, for torch.compile, compilation)
        times = []
        for _ in range(rounds):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times), times


def run_mode(net, config, batch, mode, steps, rounds, device, timer):
    torch.backends.cuda.matmul.allow_tf32 = mode == "eager-tf32"
    torch.backends.cudnn.allow_tf32 = mode == "eager-tf32"
    model = torch.compile(net) if mode == "compile" else net
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=mode == "autocast-f16")
    size, channels = config["sample_size"], config["in_channels"]
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(batch, channels, size, size, generator=g).to(device)
    t = torch.full((batch,), 500, device=device)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    scheduler.set_timesteps(steps)

    def forward():
        with torch.inference_mode(), autocast:
            return model(x, t).sample

    def sample():
        latents = x.clone()
        with torch.inference_mode():
            for step_t in scheduler.timesteps:
                with autocast:
                    eps = model(latents, step_t.to(device).expand(batch)).sample
                latents = scheduler.step(eps.float(), step_t, latents, eta=0.0).prev_sample
        return latents

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fwd_ms, fwd_all = timer(forward, rounds)
    sample_ms, sample_all = timer(sample, max(1, rounds // 2))
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    # How far this mode's forward output is from eager f32's (the first mode run for a case).
    return {"forward_ms": fwd_ms, "forward_runs_ms": fwd_all, "sample_ms": sample_ms,
            "sample_runs_ms": sample_all, "peak_bytes": peak, "output": forward().float()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--compile-cases", default="cifar10:8,ddpm256:1",
                    help="the cases torch.compile runs for (compiling every case would take most of a lease)")
    args = ap.parse_args()
    device = torch.device(args.device)
    cases, steps, rounds = (CASES[:1], 2, 2) if args.quick else (CASES, args.steps, args.rounds)
    timer = Timer(device)
    result = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu", "steps": steps, "rounds": rounds, "cases": []}
    for name, batch in cases:
        config = load(name)
        torch.manual_seed(0)
        net = UNet2DModel(**config).to(device).eval()
        params = sum(p.numel() for p in net.parameters())
        reference = None
        for mode in args.modes.split(","):
            if mode == "compile" and not args.quick and f"{name}:{batch}" not in args.compile_cases.split(","):
                continue
            row = {"model": name, "parameters": params, "batch": batch, "mode": mode}
            try:
                r = run_mode(net, config, batch, mode, steps, rounds, device, timer)
            except Exception as e:  # a mode that cannot run here (torch.compile without a compiler)
                row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                print(f"{name} batch {batch} {mode}: {row['error']}", file=sys.stderr, flush=True)
                result["cases"].append(row)
                continue
            out = r.pop("output")
            if reference is None:
                reference = out
            row.update(r)
            row["max_abs_diff_vs_first_mode"] = float((out - reference).abs().max())
            row["max_abs_output"] = float(reference.abs().max())
            result["cases"].append(row)
            mem = f", peak {row['peak_bytes'] / 2**20:.0f} MiB" if row["peak_bytes"] else ""
            print(f"{name} batch {batch} {mode}: forward {row['forward_ms']:.2f} ms, {steps}-step sample "
                  f"{row['sample_ms']:.1f} ms{mem}", flush=True)
        del net
        if device.type == "cuda":
            torch.cuda.empty_cache()
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
