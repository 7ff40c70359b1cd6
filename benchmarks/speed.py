"""Speed of FLEX: training throughput, sampling time, FLOPs and the demo's wall time.

Every number of one report is measured in one run on one machine, side by side:

- training step (forward + backward + AdamW) in IEEE fp32 (TF32 off for matmuls and
  convolutions) and with bf16 autocast, alternating round by round: samples/s, their ratio, and
  the peak GPU memory (CUDA only); on a GPU also fp32 with torch's default flags, whose
  convolutions run in TF32 (as ``precision = "fp32"`` trains there), and bf16's rate against it;
- sampling one field with 2-step DDIM, with the task features computed once and reused (the
  package's way) and recomputed at every network call;
- FLOPs per sample from ``torch.utils.flop_counter`` (forward, and forward + backward) and the
  achieved fraction of the machine's measured matmul peak of the IEEE fp32 and the bf16 row, each
  against its own dtype's peak (the fp32 peak with TF32 off, like its row);
- the cost of ``batch_invariant=True`` (the network on one tile at a time, for output that is
  bit-identical for any ``batch_size``): the shipped models on the demo's fields, default
  batching and batch-invariant alternating round by round;
- the wall time of ``flexdownscale demo`` (``--demo``).

The issue's GPU configuration is FLEX-small at 128 x 128, batch 32::

    python benchmarks/speed.py --preset small --size 128 --batch 32

On a CPU the same measurement runs on whatever preset and size you give (the defaults there are
tiny, 64 x 64, batch 8, which a 2-core machine measures in about a minute). The report goes to
``benchmarks/results/speed.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from flexdownscale.config import DiffusionConfig, ModelConfig
from flexdownscale.diffusion import build_objective, sample_ensemble
from flexdownscale.models import build_model, count_parameters

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tf32_flags() -> dict[str, bool]:
    """torch's two TF32 switches of float32 work on CUDA, by name, as this process has them."""
    return {
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
    }


@contextmanager
def ieee_float32() -> Iterator[None]:
    """TF32 off for matmuls and cuDNN convolutions (float32 in IEEE precision); both switches
    are restored on exit. Only the legacy ``allow_tf32`` switches are used, as everywhere in the
    project: torch refuses a mix of those with its newer ``fp32_precision`` settings."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul throughput in FLOP/s (square matrices); float32 in IEEE precision
    (TF32 off)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    with ieee_float32():
        seconds = _time(lambda: a @ b, device, warmup=3, repeats=10)
    return 2 * n**3 / seconds


class _NoTaskReuse(nn.Module):
    """The backbone with task-feature reuse switched off (the encoder runs at every call)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def encode_task(self, cond: torch.Tensor) -> None:
        return None

    def forward(self, x, t, cond=None, *, phys=None, task_features=None):
        return self.backbone(x, t, cond, phys=phys)


#: the label of the fp32 row that keeps torch's default TF32 flags (convolutions in TF32)
TF32_CONV = "fp32, TF32 convolutions"


def training_steps(
    model: nn.Module, batch: int, size: int, device: torch.device, tf32_row: bool = False
) -> dict[str, Callable[[], None]]:
    """One training step (forward + backward + AdamW) by label: ``"fp32"`` in IEEE precision
    (TF32 off for matmuls and convolutions), ``"bf16 autocast"`` with torch's flags as they are
    and, with ``tf32_row``, :data:`TF32_CONV`: fp32 with torch's flags as they are (by default
    cuDNN convolutions in TF32, matmuls in IEEE fp32), as ``precision = "fp32"`` trains on a GPU.
    The same inputs and one optimizer, so all hold the same optimizer state in memory."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shape = (batch, 1, size, size)
    x_t, cond = torch.randn(shape, device=device), torch.randn(shape, device=device)
    t = torch.rand(batch, device=device)
    target = torch.randn(shape, device=device)

    def step(bf16: bool) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = (model(x_t, t, cond) - target).abs().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def ieee_step() -> None:
        with ieee_float32():
            step(False)

    steps = {"fp32": ieee_step, "bf16 autocast": lambda: step(True)}
    if tf32_row:
        steps[TF32_CONV] = lambda: step(False)
    return steps


#: the matmul dtype each training row is compared with (the TF32-convolution row mixes TF32
#: convolutions with IEEE fp32 matmuls: no single peak fits it, so it has none)
_PEAK_DTYPE = {"fp32": torch.float32, "bf16 autocast": torch.bfloat16}


def training_rows(
    model: nn.Module,
    batch: int,
    size: int,
    device: torch.device,
    repeats: int,
    fwd_bwd: float,
    tf32_row: bool | None = None,
) -> list[tuple[str, str]]:
    """The training rows of the report: the matmul peak of each dtype; per training step
    (:func:`training_steps`) samples/s, the fraction of its dtype's peak (IEEE fp32 and bf16) and
    (CUDA) the peak memory; the bf16 / IEEE fp32 rate and, with ``tf32_row`` (default: on CUDA),
    the bf16 / fp32-with-TF32-convolutions rate.

    The peak memory of each step is read over two steps of its own (the optimizer state
    allocated in all); the timed steps then alternate round by round, so that warm-up,
    frequency scaling and other load hit them alike (the median of ``repeats`` rounds)."""
    if tf32_row is None:
        tf32_row = device.type == "cuda"
    rows: list[tuple[str, str]] = []
    peaks = {label: matmul_peak(device, dtype) for label, dtype in _PEAK_DTYPE.items()}
    for label, dtype in _PEAK_DTYPE.items():
        rows.append(
            (
                f"measured {str(dtype).split('.')[1]} matmul peak",
                f"{peaks[label] / 1e12:.2f} TFLOP/s",
            )
        )
    steps = training_steps(model, batch, size, device, tf32_row)
    memory: dict[str, float] = {}
    for label, step in steps.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _time(step, device, warmup=2, repeats=1)
        if device.type == "cuda":
            memory[label] = torch.cuda.max_memory_allocated(device) / 2**30
    seconds: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            seconds[label].append(_time(step, device, warmup=0, repeats=1))
    rate = {label: batch / statistics.median(v) for label, v in seconds.items()}
    for label in steps:
        rows.append((f"training, {label}: samples/s", f"{rate[label]:.1f}"))
        if label in _PEAK_DTYPE:
            dtype = str(_PEAK_DTYPE[label]).split(".")[1]
            rows.append(
                (
                    f"training, {label}: fraction of the {dtype} matmul peak",
                    f"{rate[label] * fwd_bwd / peaks[label]:.1%}",
                )
            )
        if label in memory:
            rows.append((f"training, {label}: peak memory", f"{memory[label]:.2f} GiB"))
    rows.append(
        (
            "training rate, bf16 autocast / fp32 (IEEE)",
            f"{rate['bf16 autocast'] / rate['fp32']:.2f}x",
        )
    )
    if TF32_CONV in rate:
        rows.append(
            (
                f"training rate, bf16 autocast / {TF32_CONV}",
                f"{rate['bf16 autocast'] / rate[TF32_CONV]:.2f}x",
            )
        )
    return rows


def flops(model: nn.Module, size: int, device: torch.device) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per sample at ``size`` x ``size``."""
    x = torch.randn(2, 1, size, size, device=device)
    t = torch.rand(2, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x, t, x.clone())
    forward = counter.get_total_flops() / 2
    with FlopCounterMode(display=False) as counter:
        model(x, t, x.clone()).sum().backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops() / 2


def demo_input(case: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(fine field, coarse input, call keywords) of a demo case: its sample coarsened with the
    model's factor, at the first physical condition for a conditioned model (one condition
    per call, as the demo), 8 members, seed 0."""
    from flexdownscale.data.degrade import degrade
    from flexdownscale.demo import load_case

    fine = load_case(case)
    kw: dict[str, Any] = dict(members=8, seed=0, progress=False)
    if case.condition_dim is not None:
        value = float(fine[case.condition_dim].values[0])
        fine = fine.sel({case.condition_dim: value}).drop_vars(case.condition_dim)
        kw["condition"] = value
    coarse = degrade(fine, case.factor)
    coarse[case.variable].attrs = dict(fine[case.variable].attrs)
    return fine, coarse, kw


def batch_invariant_rows(device: torch.device, repeats: int) -> list[tuple[str, str]]:
    """Time of one downscaling call per demo case, batched (default) and batch-invariant."""
    from flexdownscale.demo import CASES
    from flexdownscale.pipeline import Downscaler

    rows = []
    for case in CASES:
        fine, coarse, kw = demo_input(case)
        kw["device"] = device
        down = Downscaler.from_pretrained(case.model)
        calls = {
            "batched": lambda kw=kw, coarse=coarse, down=down: down(coarse, **kw),
            "batch-invariant": lambda kw=kw, coarse=coarse, down=down: down(
                coarse, batch_invariant=True, **kw
            ),
        }
        seconds: dict[str, list[float]] = {label: [] for label in calls}
        for call in calls.values():
            _time(call, device, warmup=1, repeats=1)
        for _ in range(repeats):
            for label, call in calls.items():
                seconds[label].append(_time(call, device, warmup=0, repeats=1))
        median = {label: statistics.median(v) for label, v in seconds.items()}
        shape = "x".join(str(n) for n in fine[case.variable].shape[-2:])
        what = f"{case.model}, {shape} fine cells, 8 members"
        rows.append((f"downscaling {what}, default batching", f"{median['batched']:.2f} s"))
        rows.append(
            (f"downscaling {what}, batch_invariant=True", f"{median['batch-invariant']:.2f} s")
        )
        rows.append(
            (
                f"cost of batch_invariant=True ({case.model})",
                f"{median['batch-invariant'] / median['batched']:.2f}x",
            )
        )
    return rows


def demo_seconds() -> float:
    from flexdownscale.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_demo(tmp, progress=False, log=None)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cuda = torch.cuda.is_available()
    parser.add_argument("--preset", default="small" if cuda else "tiny")
    parser.add_argument("--size", type=int, default=128 if cuda else 64)
    parser.add_argument("--batch", type=int, default=32 if cuda else 8)
    parser.add_argument("--members", type=int, default=16, help="ensemble size when sampling")
    parser.add_argument("--repeats", type=int, default=10 if cuda else 3)
    parser.add_argument("--demo", action="store_true", help="also time flexdownscale demo")
    parser.add_argument("--out", default=str(RESULTS / "speed.md"))
    args = parser.parse_args(argv)
    device = torch.device("cuda" if cuda else "cpu")
    flags = tf32_flags()
    torch.manual_seed(0)
    config = ModelConfig(preset=args.preset, dropout=0.0)
    model = build_model(config).to(device)
    rows: list[tuple[str, str]] = []
    machine = (
        torch.cuda.get_device_name(device)
        if cuda
        else f"CPU ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)"
    )

    fwd, fwd_bwd = flops(model, args.size, device)
    rows.append(("FLOPs per sample, forward", f"{fwd / 1e9:.2f} GFLOP"))
    rows.append(("FLOPs per sample, forward + backward", f"{fwd_bwd / 1e9:.2f} GFLOP"))
    rows += training_rows(model, args.batch, args.size, device, args.repeats, fwd_bwd)

    model.eval()
    objective = build_objective(DiffusionConfig())
    cond = torch.randn(1, 1, args.size, args.size, device=device)
    nets = {"reused": model, "recomputed": _NoTaskReuse(model)}

    def sampler(net: nn.Module) -> Callable[[], None]:
        def sample() -> None:
            with torch.no_grad():
                sample_ensemble(
                    net,
                    cond,
                    objective=objective,
                    members=args.members,
                    shape=tuple(cond.shape),
                    steps=2,
                    generator=0,
                )

        return sample

    # interleaved rounds, so that warm-up, frequency scaling and other load hit both alike
    samples: dict[str, list[float]] = {label: [] for label in nets}
    for net in nets.values():
        _time(sampler(net), device, warmup=2, repeats=1)
    for _ in range(max(args.repeats, 7)):
        for label, net in nets.items():
            samples[label].append(_time(sampler(net), device, warmup=0, repeats=1))
    timings = {label: statistics.median(v) for label, v in samples.items()}
    for label in nets:
        rows.append(
            (
                f"sampling 1 field, {args.members} members, DDIM 2 steps, task features {label}",
                f"{timings[label] * 1e3:.1f} ms",
            )
        )
    rows.append(
        ("speed-up from task-feature reuse", f"{timings['recomputed'] / timings['reused']:.2f}x")
    )
    rows += batch_invariant_rows(device, max(args.repeats, 5))
    if args.demo:
        rows.append(
            ("`flexdownscale demo` wall time (8 members, both cases)", f"{demo_seconds():.1f} s")
        )

    lines = [
        "# Speed",
        "",
        f"Machine: {machine}; torch {torch.__version__}; Python {platform.python_version()}.",
        f"Model: FLEX {args.preset} ({count_parameters(model) / 1e6:.2f} M parameters), "
        f"{args.size} x {args.size}, 1 channel; training batch {args.batch}.",
        f"Command: `python benchmarks/speed.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "TF32 switches of this process (torch's defaults unless changed): "
        + ", ".join(f"`{name} = {value}`" for name, value in flags.items())
        + (f'; the bf16 and "{TF32_CONV}" rows run' if cuda else "; the bf16 row runs")
        + " with them, the fp32 row and the float32 matmul peak with both off (IEEE float32).",
        "",
        "| measurement | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "All numbers come from this one run (medians of the repeats). Fractions of the peak use "
        "the forward + backward FLOPs of `torch.utils.flop_counter` and the matmul throughput "
        "measured above on the same machine (each training row against its own dtype's peak: "
        "the fp32 row, matmuls and convolutions in IEEE float32, against the float32 peak with "
        "TF32 off; the bf16 autocast row against the bfloat16 peak). The training steps "
        "alternate round by round (one optimizer, the same inputs), as do the two sampling rows "
        "and the batched and batch-invariant downscaling calls (each over the demo's field, "
        "all time steps, one Reynolds number for Kolmogorov). The FLOPs are the textbook count "
        "of each operation, and the peak is one square matmul: convolution kernels that do "
        "fewer operations than the count (Winograd and the like) or run closer to the "
        "hardware's limit than that matmul can still give fractions above 100%.",
        "",
        '"bf16 autocast / fp32 (IEEE)" is the speed-up of bf16 autocast over float32 with '
        "TF32 off everywhere. On a GPU, torch's default `torch.backends.cudnn.allow_tf32 = "
        'True` runs float32 convolutions in TF32, so `precision = "fp32"` training there is '
        f'faster than the fp32 row: the "{TF32_CONV}" row measures that (the process\'s flags '
        "above; by default its matmuls stay IEEE float32, so no single peak fits it), and "
        f'"bf16 autocast / {TF32_CONV}" is bf16\'s speed-up over it. On a CPU both flags do '
        "nothing and that row is left out.",
        "",
    ]
    if device.type != "cuda":
        lines += [
            "No GPU on this machine, so the GPU configuration (FLEX-small, 128 x 128, batch 32: "
            "samples/s and peak memory in fp32 and bf16, fraction of each dtype's matmul "
            "peak) is not measured here. On a GPU: "
            "`python benchmarks/speed.py --preset small --size 128 --batch 32 --demo`.",
            "",
        ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
