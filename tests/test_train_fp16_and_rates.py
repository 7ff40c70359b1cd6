"""Training under a gradient scaler (fp16 on a GPU), the steady training rate and the TF32
flags in ``launches.jsonl``.

accelerate refuses fp16 on a CPU (the trainer trains in fp32 there), so the fp16 tests give the
trainer what accelerate gives it on a GPU: a real ``torch.amp.GradScaler`` on the accelerator
and in the optimiser, and the scaler's ``unscale_`` before the gradient norm is clipped. The
overflow is real too: a finite loss whose gradients are NaN (``sqrt`` at 0 in the backward pass).
The runs are in-process with the tiny preset, 32 x 32 crops and a few optimiser steps on the
real ERA5 file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from train_runs import tiny_run_config

from flexdownscale import errors
from flexdownscale import train as train_module
from flexdownscale.train import Trainer


def _launch(tmp_path: Path) -> dict[str, Any]:
    lines = (tmp_path / "run" / "launches.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def _trainer(tmp_path: Path, shared_data: Path, steps: int) -> Trainer:
    return Trainer(
        tiny_run_config(
            tmp_path, shared_data, steps=steps, checkpoint_every=0, eval_every=0, total_limit=1
        )
    )


def _with_gradient_scaler(trainer: Trainer) -> torch.amp.GradScaler:
    """Wire a gradient scaler into ``trainer`` as accelerate does under fp16 on a GPU: the
    accelerator's ``scaler`` (``backward`` scales the loss), an optimiser that steps through it
    (skips the step when the gradients are not finite and halves the scale) and the unscaling
    that ``clip_grad_norm_`` makes first."""
    from accelerate.optimizer import AcceleratedOptimizer

    acc = trainer.accelerator
    scaler = torch.amp.GradScaler("cpu")
    inner = trainer.optimizer.optimizer
    optimizer = AcceleratedOptimizer(inner, device_placement=False, scaler=scaler)
    acc.scaler = scaler
    acc._optimizers = [optimizer]
    trainer.optimizer = optimizer
    acc.unscale_gradients = lambda optimizer=None: scaler.unscale_(inner)
    return scaler


def _nan_gradients_at(trainer: Trainer, steps: set[int] | None) -> dict[int, tuple]:
    """Make the gradients of optimiser steps ``steps`` (all when ``None``) NaN with a finite
    loss; returns the weights and EMA weights at the start of each step, filled in as it runs."""
    plain = trainer._loss
    seen: dict[int, tuple] = {}

    def loss(batch):
        step = trainer.progress.step
        seen[step] = (
            [p.detach().clone() for p in trainer.model.parameters()],
            {k: v.clone() for k, v in trainer.ema.shadow.items()},
        )
        value = plain(batch)
        if steps is None or step in steps:
            weights = sum(p.sum() for p in trainer.model.parameters())
            value = value + (weights * 0).abs().sqrt()  # value 0, gradient NaN
        return value

    trainer._loss = loss
    return seen


def _same(a: tuple, b: tuple) -> bool:
    weights = all(torch.equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    return weights and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_gradient_scaler_overflow_skips_the_step_and_the_run_goes_on(tmp_path, shared_data):
    """Under a gradient scaler, non-finite gradients skip their optimiser step (weights and EMA
    unchanged, the scale halved) and the run finishes; the skipped steps count as steps and
    launches.jsonl records them. (Before, the first overflow stopped the run with
    NonFiniteLossError.)"""
    trainer = _trainer(tmp_path, shared_data, steps=4)
    scaler = _with_gradient_scaler(trainer)
    seen = _nan_gradients_at(trainer, {1, 2})
    trainer.fit()
    assert scaler.get_scale() == 65536.0 / 4  # halved at each of the two skips
    assert trainer.progress.step == 4
    assert trainer.progress.samples == 4 * 2
    assert not _same(seen[0], seen[1])  # step 0 trained: weights and EMA moved
    assert _same(seen[1], seen[2])  # steps 1 and 2 skipped: weights and EMA unchanged
    assert _same(seen[2], seen[3])
    assert trainer.ema.updates == 2
    launch = _launch(tmp_path)
    assert (launch["stopped"], launch["steps"], launch["skipped_steps"]) == ("done", 4, 2)
    for tensor in trainer.model.parameters():
        assert bool(tensor.isfinite().all())


def test_many_skipped_steps_in_a_row_stop_with_a_typed_error(tmp_path, shared_data, monkeypatch):
    """Gradients that stay non-finite however far the scale falls stop the run after
    MAX_SKIPPED_STEPS_IN_A_ROW skips in a row, with the fixes named."""
    monkeypatch.setattr(train_module, "MAX_SKIPPED_STEPS_IN_A_ROW", 3)
    trainer = _trainer(tmp_path, shared_data, steps=6)
    _with_gradient_scaler(trainer)
    _nan_gradients_at(trainer, None)
    with pytest.raises(errors.NonFiniteLossError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "in 3 optimiser steps in a row" in message
    assert "its scale down to 8192" in message  # 65536 halved three times
    assert "precision = 'bf16'" in message
    assert "lower optim.grad_clip (now 1)" in message
    assert "at optimiser step 3" in message
    launch = _launch(tmp_path)
    assert (launch["stopped"], launch["end_step"], launch["skipped_steps"]) == ("non_finite", 3, 3)


def test_without_a_scaler_non_finite_gradients_still_stop(tmp_path, shared_data):
    """fp32 and bf16 (no gradient scaler): non-finite gradients stop the run at once, as before
    (this pins the behaviour the scaler's branch must not change)."""
    trainer = _trainer(tmp_path, shared_data, steps=3)
    assert trainer.accelerator.scaler is None
    _nan_gradients_at(trainer, {1})
    with pytest.raises(errors.NonFiniteLossError, match=r"non-finite gradients \(norm nan"):
        trainer.fit()
    launch = _launch(tmp_path)
    assert (launch["stopped"], launch["end_step"], launch["skipped_steps"]) == ("non_finite", 1, 0)


def test_steady_rate_leaves_out_the_first_step(tmp_path, shared_data):
    """launches.jsonl's steady_train_samples_per_s is counted from the end of the launch's
    first optimiser step: a slow first step (one-time costs on a GPU) lowers
    train_samples_per_s, not the steady rate."""
    trainer = _trainer(tmp_path, shared_data, steps=3)
    plain = trainer._loss

    def slow_first_step(batch):
        if trainer.progress.step == 0:
            time.sleep(1.5)
        return plain(batch)

    trainer._loss = slow_first_step
    trainer.fit()
    launch = _launch(tmp_path)
    assert launch["steady_train_samples_per_s"] > launch["train_samples_per_s"] > 0
    assert "tf32" not in launch  # a CPU: TF32 is a GPU's


def test_steady_rate_needs_two_steps(tmp_path, shared_data):
    """A launch of one step has no steady rate (null), and its other rates are kept."""
    Trainer(tiny_run_config(tmp_path, shared_data, eval_every=0)).fit()
    launch = _launch(tmp_path)
    assert launch["steady_train_samples_per_s"] is None
    assert launch["train_samples_per_s"] > 0
    assert launch["skipped_steps"] == 0


def test_tf32_flags_read_torch_settings_old_and_new():
    """The TF32 flags launches.jsonl records on a GPU: torch's defaults (matmul off, cuDNN
    convolutions on), and an answer where torch's legacy flags refuse one (TF32 set with
    torch's newer fp32_precision settings)."""
    backends = torch.backends
    assert train_module._tf32_flags() == {
        "matmul": bool(backends.cuda.matmul.allow_tf32),
        "cudnn": bool(backends.cudnn.allow_tf32),
    }
    conv = getattr(backends.cudnn, "conv", None)
    if conv is None or not hasattr(conv, "fp32_precision"):
        pytest.skip("this torch has no fp32_precision settings")
    settings = (backends, backends.cuda.matmul, backends.cudnn, conv, backends.cudnn.rnn)
    saved = [s.fp32_precision for s in settings]
    try:
        conv.fp32_precision = "ieee"
        with pytest.raises(RuntimeError):  # torch refuses the legacy read
            _ = backends.cudnn.allow_tf32
        assert train_module._tf32_flags()["cudnn"] is False
        conv.fp32_precision = "tf32"
        backends.cuda.matmul.fp32_precision = "tf32"
        assert train_module._tf32_flags() == {"matmul": True, "cudnn": True}
    finally:
        for setting, value in zip(settings, saved, strict=True):
            setting.fp32_precision = value
    assert (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32) == (False, True)
