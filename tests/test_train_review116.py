"""CPU training speed and memory (reviewer-116): the weights' fingerprint at the end of a
launch, the thread-count warning, figures rendered once, and what launches.jsonl records."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from flexdownscale.config import ModelConfig
from flexdownscale.models import build_model

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# 1. the fingerprint of the weights in ranks.json


def _single_sum_fingerprint(parameters: list[torch.Tensor]) -> torch.Tensor:
    """The fingerprint as it was computed before: every value joined into one float64 tensor."""
    flat = torch.cat([p.detach().double().flatten() for p in parameters])
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
    return torch.stack([flat.sum(), (flat * weights.sin()).sum()])


def test_fingerprint_agrees_with_the_single_sum():
    from flexdownscale.train import _parameter_fingerprint

    torch.manual_seed(0)
    parameters = list(build_model(ModelConfig(preset="tiny")).parameters())
    expected = _single_sum_fingerprint(parameters)
    for chunk in (1 << 20, 1000, 7):  # chunks inside and across parameters
        got = _parameter_fingerprint(parameters, chunk=chunk)
        assert got.dtype == torch.float64
        assert got.shape == (2,)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0.0)
    # the position-weighted sum tells apart weights holding the same values in another order
    swapped = [parameters[1], parameters[0], *parameters[2:]]
    other = _parameter_fingerprint(swapped)
    assert other[0] == pytest.approx(expected[0].item(), rel=1e-12)
    assert abs(other[1].item() - expected[1].item()) > 1e-6
    assert _parameter_fingerprint([]).tolist() == [0.0, 0.0]


_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, pathlib, sys, types
    import torch
    from accelerate import Accelerator
    from flexdownscale.train import Trainer

    def peak_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1])

    torch.manual_seed(0)
    model = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.randn(4_000_000)) for _ in range(2)]
    )
    run_dir = pathlib.Path(sys.argv[1])
    fake = types.SimpleNamespace(
        accelerator=Accelerator(cpu=True),
        model=model,
        run_dir=run_dir,
        progress=types.SimpleNamespace(step=3),
    )
    # once on a small model first: the code and buffers any first call loads are not counted
    Trainer._record_rank_fingerprints(
        types.SimpleNamespace(**{**vars(fake), "model": torch.nn.Linear(3, 2)})
    )
    with open("/proc/self/clear_refs", "w") as fh:  # the peak starts again from here
        fh.write("5")
    before = peak_kib()
    Trainer._record_rank_fingerprints(fake)
    print(json.dumps({"extra_mib": (peak_kib() - before) / 1024}))
    """
)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_fingerprint_memory_is_bounded(tmp_path):
    # 8 M float32 parameters (31 MiB): joined into one float64 tensor with its float64 positions
    # and their sines the fingerprint took ~305 MiB more at its peak; a chunk at a time, ~32 MiB
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    extra = json.loads(result.stdout.strip().splitlines()[-1])["extra_mib"]
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert ranks["step"] == 3
    assert len(ranks["parameter_fingerprints"]) == 1
    assert extra < 100, f"the fingerprint took {extra:.0f} MiB more at its peak"


# ---------------------------------------------------------------------------------------------
# 2. one torch thread under `accelerate launch`


def test_one_thread_under_accelerate_launch_is_named_with_its_fix():
    from flexdownscale.train import _one_thread_advice

    launched = {"ACCELERATE_MIXED_PRECISION": "no", "OMP_NUM_THREADS": "1"}
    cpu = torch.device("cpu")
    advice = _one_thread_advice(cpu, threads=1, cores=8, processes=1, environ=launched)
    assert advice is not None
    assert "OMP_NUM_THREADS=1" in advice
    assert "--num_cpu_threads_per_process 8" in advice
    assert "accelerate config" in advice
    assert "python -m flexdownscale.train" in advice
    two = _one_thread_advice(cpu, threads=1, cores=8, processes=2, environ=launched)
    assert "each of the 2 processes" in two
    assert "--num_cpu_threads_per_process 4" in two
    # nothing to say: a GPU, threads given, every core busy, or one thread the user chose
    assert (
        _one_thread_advice(torch.device("cuda"), threads=1, cores=8, processes=1, environ=launched)
        is None
    )
    assert _one_thread_advice(cpu, threads=4, cores=8, processes=1, environ=launched) is None
    assert _one_thread_advice(cpu, threads=1, cores=2, processes=2, environ=launched) is None
    assert _one_thread_advice(cpu, threads=1, cores=1, processes=1, environ=launched) is None
    mine = {"OMP_NUM_THREADS": "1"}  # python -m flexdownscale.train with OMP_NUM_THREADS=1
    assert _one_thread_advice(cpu, threads=1, cores=8, processes=1, environ=mine) is None


def test_device_name_counts_one_thread_in_the_singular(monkeypatch):
    from flexdownscale.train import _device_name

    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert _device_name(torch.device("cpu")).endswith(", 1 thread")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert _device_name(torch.device("cpu")).endswith(", 2 threads")


# ---------------------------------------------------------------------------------------------
# 3. validation figures drawn once, to the PNG and to TensorBoard


def test_figures_are_drawn_once_for_the_png_and_tensorboard(tmp_path, monkeypatch):
    import io
    import types

    import matplotlib
    import numpy as np
    import xarray as xr
    from matplotlib.figure import Figure
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from flexdownscale.train import Trainer

    matplotlib.use("Agg")
    saved: list[Figure] = []
    redrawn: list[Figure] = []
    savefig, draw = Figure.savefig, Figure.draw

    def saving(self, *args, **kwargs):
        result = savefig(self, *args, **kwargs)
        saved.append(self)
        return result

    def drawing(self, *args, **kwargs):
        if any(self is figure for figure in saved):
            redrawn.append(self)
        return draw(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", saving)
    monkeypatch.setattr(Figure, "draw", drawing)
    rng = np.random.default_rng(0)
    dims = ("field", "channel", "y", "x")
    truth = xr.DataArray(rng.normal(size=(1, 1, 32, 32)), dims=dims)
    base = xr.DataArray(rng.normal(size=(1, 1, 32, 32)), dims=dims)
    coarse = xr.DataArray(rng.normal(size=(1, 1, 8, 8)), dims=dims)
    ens = xr.DataArray(rng.normal(size=(1, 2, 1, 32, 32)), dims=("field", "member", *dims[1:]))
    writer = SummaryWriter(str(tmp_path / "logs"))
    fake = types.SimpleNamespace(
        run_dir=tmp_path,
        progress=types.SimpleNamespace(step=7),
        val_set=types.SimpleNamespace(variables=["t2m"]),
        config=types.SimpleNamespace(logger="tensorboard"),
        accelerator=types.SimpleNamespace(get_tracker=lambda name, unwrap=False: writer),
    )
    Trainer._plot(fake, coarse, base, truth, ens, field=3)
    writer.close()

    assert len(saved) == 2  # panels and spectra
    assert not redrawn  # TensorBoard got the PNG: add_figure drew each figure again
    pngs = {p.name for p in (tmp_path / "plots").iterdir()}
    assert pngs == {"panels_step00000007.png", "spectra_step00000007.png"}
    events = EventAccumulator(str(tmp_path / "logs"), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["val/panels", "val/spectra"]
    for name in ("panels", "spectra"):
        (image,) = events.Images(f"val/{name}")
        assert image.step == 7
        # the image TensorBoard shows is the PNG written to plots/, pixel for pixel
        from flexdownscale.train import _png_pixels

        pixels = _png_pixels(tmp_path / "plots" / f"{name}_step00000007.png")
        shown = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        np.testing.assert_array_equal(shown, pixels)


# ---------------------------------------------------------------------------------------------
# 4. DataLoader workers kept from one epoch to the next


def _eight_fields(shared_data: Path) -> dict:
    """[data] of 8 hourly ERA5 fields to train on: with batch_size 4, an epoch of 2 steps."""
    return {
        "paths": [str(shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc")],
        "variables": ["t2m"],
        "factor": 4,
        "crop_size": 16,
        "train": ["2019-03-01", "2019-03-01T07"],
        "validation": ["2019-03-24T00", "2019-03-24T03"],
    }


def test_persistent_workers_see_each_epoch(shared_data):
    from flexdownscale.config import DataConfig, from_dict
    from flexdownscale.data.datasets import from_config

    train = from_config(from_dict(DataConfig, _eight_fields(shared_data)), "train", seed=0)
    epochs = {}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(
            train, batch_size=4, num_workers=workers, persistent_workers=workers > 0
        )
        epochs[workers] = []
        for epoch in range(3):
            train.set_epoch(epoch)
            epochs[workers].append(torch.cat([batch["fine"] for batch in loader]))
        train.set_epoch(0)
        del loader
    # new crops at every epoch (workers kept with a copy of the dataset made at their start
    # drew epoch 0's crops again), the same with workers as without
    assert not torch.equal(epochs[2][0], epochs[2][1])
    assert not torch.equal(epochs[2][1], epochs[2][2])
    for without, within in zip(epochs[0], epochs[2]):
        assert torch.equal(without, within)


def _eight_field_run(tmp_path: Path, shared_data: Path, **top) -> dict:
    """The tiny preset on the 8 fields, batch 4, a state every 2 steps (one kept), no
    validation; ``top`` adds or replaces top-level keys (``steps`` among them)."""
    return {
        "run_dir": str(tmp_path / "run"),
        "batch_size": 4,
        "eval_every": 0,
        "checkpoint_every": 2,
        "total_limit": 1,
        "logger": "none",
        "model": {"preset": "tiny"},
        "data": _eight_fields(shared_data),
        "optim": {"warmup_steps": 1},
        **top,
    }


def _run(
    tmp_path: Path, shared_data: Path, *, resume: bool = False, **top
) -> tuple[dict, list[str], int]:
    """Train the 8-field run in this process: its weights, its samples.jsonl and how many
    times DataLoader workers were started."""
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    from flexdownscale.config import TrainConfig, from_dict
    from flexdownscale.train import Trainer

    values = _eight_field_run(tmp_path, shared_data, steps=6, **top)
    starts = []
    original = _MultiProcessingDataLoaderIter.__init__

    def counted(self, loader):
        starts.append(loader)
        original(self, loader)

    _MultiProcessingDataLoaderIter.__init__ = counted
    try:
        trainer = Trainer(from_dict(TrainConfig, values), resume=resume)
        trainer.fit()
    finally:
        _MultiProcessingDataLoaderIter.__init__ = original
    weights = {
        k: v.clone()
        for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()
    }
    samples = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    return weights, samples, len(starts)


@pytest.mark.slow
def test_workers_start_once_and_train_the_same_run(tmp_path, shared_data):
    plain, plain_samples, plain_starts = _run(tmp_path / "w0", shared_data)
    kept, kept_samples, kept_starts = _run(tmp_path / "w2", shared_data, num_workers=2)
    assert plain_starts == 0
    assert kept_starts == 1  # 3 epochs of 2 steps: workers started once, not at every epoch
    assert kept_samples == plain_samples
    for name, value in plain.items():
        assert torch.equal(kept[name], value), name  # bit for bit: the same crops every epoch


@pytest.mark.slow
def test_workers_kept_across_epochs_resume_the_same_run(tmp_path, shared_data, monkeypatch):
    from flexdownscale.errors import NonFiniteLossError
    from flexdownscale.train import FAULT_NAN_ENV

    whole, whole_samples, _ = _run(tmp_path / "whole", shared_data, num_workers=2)
    # stopped inside epoch 1: the 4th step fails, the state of step 3 is the last one
    monkeypatch.setenv(FAULT_NAN_ENV, "3")
    with pytest.raises(NonFiniteLossError):
        _run(tmp_path / "parts", shared_data, num_workers=2, checkpoint_every=1)
    monkeypatch.delenv(FAULT_NAN_ENV)
    resumed, resumed_samples, _ = _run(tmp_path / "parts", shared_data, resume=True, num_workers=2)
    assert resumed_samples == whole_samples
    for name, value in whole.items():
        assert torch.equal(resumed[name], value), name


# ---------------------------------------------------------------------------------------------
# 5. what launches.jsonl, the progress bar and the logger record


def test_logged_rate_leaves_out_states_as_launches_does_and_cpu_peak_memory(
    tmp_path, shared_data, monkeypatch
):
    import json
    import time

    from flexdownscale.config import TrainConfig, from_dict
    from flexdownscale.train import Trainer

    values = _eight_field_run(tmp_path, shared_data, steps=4)
    trainer = Trainer(from_dict(TrainConfig, values))
    logged: list[dict] = []
    trainer.accelerator.log = lambda values, step=None, **kwargs: logged.append(values)
    # every state "takes" 1000 s more on the clock the trainer reads
    skipped = [0.0]
    real_clock = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + skipped[0])
    save_state = trainer.save_state

    def slow_save(*args, **kwargs):
        skipped[0] += 1000.0
        return save_state(*args, **kwargs)

    monkeypatch.setattr(trainer, "save_state", slow_save)
    trainer.fit()
    monkeypatch.undo()

    (launch,) = [json.loads(line) for line in (tmp_path / "run" / "launches.jsonl").open()]
    rates = [record["train/samples_per_s"] for record in logged if "train/samples_per_s" in record]
    assert len(rates) == 4
    # the last logged rate is launches.jsonl's train_samples_per_s (states left out), not its
    # samples_per_s (16 samples over 2000 s of states and more)
    assert launch["samples_per_s"] < 0.01
    assert launch["train_samples_per_s"] > 100 * launch["samples_per_s"]
    assert launch["train_samples_per_s"] / 2 < rates[-1] < 2 * launch["train_samples_per_s"]
    # on a CPU the peak memory is the process's peak resident set
    assert launch["device_type"] == "cpu"
    assert launch["peak_memory_source"] == "ru_maxrss"
    assert 0.01 < launch["peak_memory_gib"] < 64
