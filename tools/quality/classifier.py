#!/usr/bin/env python3
"""The digit classifier that judges the default model's samples: the Frechet features of tools/quality/quality.py
and the classifier of tests/default_model.rs are this one network.

    python3 tools/quality/classifier.py [--out tests/data/digit_classifier.safetensors]

A small CNN (conv 3x3 1->16, ReLU, max-pool 2; conv 3x3 16->32, ReLU, max-pool 2; linear 2048->32, ReLU; linear
32->10) trained for 12 epochs (Adam 1e-3, batch 64, seed 0) on the 4,500 training digits of the MNIST 5k subset
(the default model's split, tools/train/train_mnist.py), never on the 500 held out. It writes the weights as f32
safetensors, with its accuracy and its confident fraction (top-class probability >= 0.8) on the 500 held-out
digits in the file's metadata, and tests/data/digit_classifier_check.json: the labels of the eight held-out digits
in docs/heldout.npy (`quality.py docs --dir docs`) and this network's logits for them, against which
tests/default_model.rs checks its Rust copy of the network.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "train"))
from train_mnist import split  # noqa: E402  (the same data, padding and split as the model's training)

FEATURES = 32
CONFIDENT = 0.8
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "digit_classifier.safetensors")


class Classifier(nn.Module):
    """A small CNN; its FEATURES-wide penultimate layer (after ReLU) gives the Frechet features."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.f1 = nn.Linear(32 * 8 * 8, FEATURES)
        self.f2 = nn.Linear(FEATURES, 10)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return F.relu(self.f1(x.flatten(1)))

    def forward(self, x):
        return self.f2(self.features(x))


def load(path=DEFAULT_OUT):
    net = Classifier()
    net.load_state_dict(load_file(path))
    return net.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    images, labels, train, held = split()
    net = Classifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.from_numpy(images[train]), torch.from_numpy(labels[train])
    for _ in range(args.epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        p = F.softmax(net(torch.from_numpy(images[held])), dim=1)
    accuracy = float((p.argmax(1) == torch.from_numpy(labels[held])).float().mean())
    confident = float((p.max(1).values >= CONFIDENT).float().mean())
    meta = {"heldout_accuracy": f"{accuracy:.4f}", "heldout_confident": f"{confident:.4f}",
            "confident_at": str(CONFIDENT), "epochs": str(args.epochs), "torch": torch.__version__}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, args.out, metadata=meta)
    # docs/heldout.npy holds the first eight held-out digits (quality.py docs).
    x = np.load(os.path.join(ROOT, "docs", "heldout.npy"))
    if not np.array_equal(x, images[held[: len(x)]]):
        sys.exit("classifier.py: docs/heldout.npy is not the first held-out digits; remake it with "
                 "`tools/quality/quality.py docs --dir docs`")
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    check = {"images": "docs/heldout.npy", "labels": [int(v) for v in labels[held[: len(x)]]],
             "logits": [[float(v) for v in row] for row in logits]}
    with open(os.path.join(os.path.dirname(os.path.abspath(args.out)), "digit_classifier_check.json"), "w") as f:
        json.dump(check, f, indent=1)
        f.write("\n")
    print(f"classifier: {args.epochs} epochs on 4,500 digits; on the 500 held out: accuracy {accuracy:.4f}, "
          f"confident (p >= {CONFIDENT}) {confident:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
