"""Seeds for the fuzz targets that need PyTorch: small `torch.save` checkpoints (fuzz/seeds/checkpoint/) and
their `data.pkl` pickles (fuzz/seeds/pickle/), covering what the reader accepts: a plain state dict, the DDIM
repository's `[state_dict, optimizer]` list, a dict under `state_dict`, `module.` prefixes, f32 / f16 / bf16 /
f64 / int64 tensors, a non-contiguous view, storage shared by two tensors, and nn.Parameter; and one hostile
file (`hostile_*`, which the reader must refuse): a broadcast view claiming 10^9 values over one.

The other targets' seeds come from the repository's fixtures and from `cargo run --example fuzz_seeds`.
Run: /opt/fixenv/bin/python tools/fuzz/make_seeds.py   (torch 2.15; tools/fixtures/requirements.txt)
"""

import collections
import io
import pathlib
import zipfile

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2] / "fuzz" / "seeds"


def checkpoints():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 3, 3, generator=g)
    sd = collections.OrderedDict(
        [("conv_in.weight", w), ("conv_in.bias", torch.zeros(4)), ("norm.weight", torch.ones(4))]
    )
    base = torch.randn(6, 5, generator=g)
    yield "state_dict", sd
    yield "list_with_optimizer", [sd, {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999)}]}]
    yield "nested_state_dict", {"state_dict": sd, "epoch": 3, "name": "model"}
    yield "module_prefix", collections.OrderedDict((f"module.{k}", v) for k, v in sd.items())
    yield "dtypes", {
        "a": torch.randn(3, generator=g).half(),
        "b": torch.randn(3, generator=g).bfloat16(),
        "c": torch.randn(2, 2, generator=g).double(),
        "d": torch.arange(4),
    }
    yield "views_and_shared_storage", {"t": base.t(), "row": base[2], "slice": base[1:4, ::2]}
    yield "parameter", {"p": torch.nn.Parameter(torch.randn(2, 3, generator=g))}
    # Hostile: a one-value storage viewed with stride 0 as 10^9 values (4 GB once materialised); refused.
    yield "hostile_broadcast", {"w": torch.zeros(1).expand(10**9)}


def main():
    (ROOT / "checkpoint").mkdir(parents=True, exist_ok=True)
    (ROOT / "pickle").mkdir(parents=True, exist_ok=True)
    for name, obj in checkpoints():
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
        (ROOT / "checkpoint" / f"{name}.pt").write_bytes(data)
        if name.startswith("hostile"):
            continue  # its pickle alone is well-formed: the refusal is the reader's, over the storages
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            (ROOT / "pickle" / f"{name}.pkl").write_bytes(z.read(pkl))
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
