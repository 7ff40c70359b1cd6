"""Training under the settings an accelerate configuration or its environment variables bring:
a dynamo backend (``torch.compile``), gradient accumulation, mixed precision, and the
launch decisions that every rank of a multi-node run must share.

The runs are in-process with the tiny preset, 32 x 32 crops and a few optimiser steps on the
real ERA5 file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from train_runs import tiny_run_config

from flexdownscale import errors
from flexdownscale.train import EMA, Trainer


@pytest.fixture
def fresh_accelerate_state() -> Iterator[None]:
    """accelerate's process-wide state rebuilt by the next trainer (it reads the dynamo backend
    and the precision from the environment only when it is first built), and again after the
    test, so that later tests do not inherit this test's settings."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state()
    GradientState._reset_state()


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


# ---------------------------------------------------------------------------------------------
# 1. a dynamo backend (torch.compile): the EMA moves, the export is the EMA and loads


@pytest.mark.slow
def test_compiled_training_updates_the_ema_and_exports_a_loadable_folder(
    tmp_path, shared_data, monkeypatch, fresh_accelerate_state
):
    from flexdownscale.pipeline import Downscaler

    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "AOT_EAGER")
    config = tiny_run_config(
        tmp_path,
        shared_data,
        steps=2,
        checkpoint_every=1,
        total_limit=2,
        eval_every=0,
        data={"validation": []},
    )
    trainer = Trainer(config)
    assert hasattr(trainer.model, "_orig_mod")  # accelerate compiled it
    folder = trainer.fit()
    states = trainer.run_dir / "checkpoints"
    first = _tensors(states / "step_00000001" / "ema.safetensors")
    second = _tensors(states / "step_00000002" / "ema.safetensors")
    assert first.keys() == second.keys()
    assert not any(name.startswith("_orig_mod.") for name in second)
    moved = max(float((first[name] - second[name]).abs().max()) for name in first)
    assert moved > 0.0  # the average follows the training

    exported = _tensors(folder / "model.safetensors")
    assert not any("_orig_mod" in name for name in exported)
    for name, tensor in second.items():  # the export holds the EMA, not the raw weights
        torch.testing.assert_close(exported[name].float(), tensor, rtol=0, atol=0)
    Downscaler.from_pretrained(folder)  # raised WeightsMismatchError on _orig_mod. names

    resumed = tiny_run_config(
        tmp_path,
        shared_data,
        steps=3,
        checkpoint_every=1,
        total_limit=2,
        eval_every=0,
        data={"validation": []},
    )
    again = Trainer(resumed, resume=True)
    again.fit()
    third = _tensors(states / "step_00000003" / "ema.safetensors")
    assert max(float((third[name] - second[name]).abs().max()) for name in third) > 0.0


def test_ema_refuses_a_model_without_its_tensors():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    ema = EMA(net, 0.9)
    compiled = torch.nn.Module()
    compiled._orig_mod = net  # the names torch.compile's wrapper gives
    with pytest.raises(errors.ConfigError, match=r"first '0\.bias'.*'_orig_mod\.0\.weight'"):
        ema.update(compiled)
    assert ema.updates == 0


# ---------------------------------------------------------------------------------------------
# 2. ACCELERATE_GRADIENT_ACCUMULATION_STEPS: the run's accumulation wins, with a warning


def test_environment_accumulation_does_not_change_the_batch(tmp_path, shared_data, monkeypatch):
    import json

    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "2")
    config = tiny_run_config(tmp_path, shared_data, eval_every=0, data={"validation": []})
    with pytest.warns(
        errors.FlexDownscaleWarning,
        match=r"ACCELERATE_GRADIENT_ACCUMULATION_STEPS=2 .* not used: this run accumulates 1 "
        r"micro-batch per optimiser step, from batch_size = 2",
    ):
        trainer = Trainer(config)
    assert trainer.accelerator.gradient_accumulation_steps == 1
    trainer.fit()
    lines = (trainer.run_dir / "samples.jsonl").read_text().splitlines()
    drawn = [index for line in lines for index in json.loads(line)["indices"]]
    assert len(drawn) == config.batch_size  # one step of batch_size samples, not two batches


def test_environment_accumulation_equal_to_the_runs_is_quiet(tmp_path, shared_data, monkeypatch):
    import warnings

    from flexdownscale.train import _warn_environment_accumulation

    config = tiny_run_config(tmp_path, shared_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_environment_accumulation({"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "1"}, 1, config)
        _warn_environment_accumulation({}, 4, config)
