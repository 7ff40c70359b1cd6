"""One training step (forward + backward) of a backbone: samples/s and peak memory.

Issue #2's GPU check: FLEX-small at 128 x 128, batch 32, bf16 autocast::

    python benchmarks/backbone_step.py --backbone flex --preset small --size 128 --batch 32 --bf16

On a CPU it runs the same measurement (use a small preset). Results are printed and appended as
one JSON line to benchmarks/results/backbone_step.jsonl with the machine described.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from flexdownscale.config import ModelConfig
from flexdownscale.models import build_model, count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="flex")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "backbone_step.jsonl")
    )
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=args.backbone, preset=args.preset)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shape = (args.batch, 1, args.size, args.size)
    x_t, cond = torch.randn(shape, device=device), torch.randn(shape, device=device)
    t = torch.rand(args.batch, device=device)
    target = torch.randn(shape, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = (model(x_t, t, cond) - target).abs().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    record = {
        "backbone": args.backbone,
        "preset": args.preset,
        "parameters_M": round(count_parameters(model) / 1e6, 2),
        "size": args.size,
        "batch": args.batch,
        "bf16": args.bf16,
        "samples_per_s": round(args.batch * args.repeats / elapsed, 2),
        "peak_memory_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda"
        else None,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
    }
    print(json.dumps(record))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
