"""The package on an accelerator: parity with the CPU, bf16 training steps, auto device choice.

These tests are marked ``gpu`` and run where CUDA is available (the GPU runbook,
``benchmarks/gpu/run.sh check``). ``FLEXDOWNSCALE_TEST_DEVICE=cpu`` rehearses them on a CPU
machine (every comparison then runs CPU against CPU), so their logic is exercised before a GPU
session spends device time on them.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from flexdownscale import Downscaler
from flexdownscale.config import ModelConfig
from flexdownscale.data import degrade
from flexdownscale.demo import CASES, load_case
from flexdownscale.diffusion import VPDiffusion, sample_ensemble
from flexdownscale.models import build_model

DEVICE = os.environ.get("FLEXDOWNSCALE_TEST_DEVICE", "cuda")

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _exact_float32():
    """TF32 off, so float32 comparisons with the CPU measure the code, not the matmul mode."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _tiny(backbone: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(backbone=backbone, preset="tiny", image_size=(32, 48)))
    with torch.no_grad():  # zero-initialised heads would make every comparison trivial
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def _inputs(batch: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 32, 48, generator=g)
    t = torch.rand(batch, generator=g)
    cond = torch.randn(batch, 1, 32, 48, generator=g)
    return x, t, cond


@pytest.mark.parametrize("backbone", ["flex", "unet", "uvit", "dit"])
def test_backbone_forward_matches_the_cpu(backbone):
    model = _tiny(backbone).eval()
    x, t, cond = _inputs()
    with torch.no_grad():
        ref = model(x, t, cond)
        out = model.to(DEVICE)(x.to(DEVICE), t.to(DEVICE), cond.to(DEVICE))
    assert out.device.type == torch.device(DEVICE).type
    assert float(ref.abs().max()) > 1e-3
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backbone", ["flex", "unet", "uvit", "dit"])
def test_bf16_training_step_tracks_fp32(backbone):
    """One forward + backward under bf16 autocast: finite, and close to the fp32 step."""
    x, t, cond = _inputs(4)
    x, t, cond = x.to(DEVICE), t.to(DEVICE), cond.to(DEVICE)
    target = torch.randn_like(x)
    grads = {}
    for precision in ("fp32", "bf16"):
        model = _tiny(backbone).to(DEVICE).train()
        with torch.autocast(
            device_type=torch.device(DEVICE).type,
            dtype=torch.bfloat16,
            enabled=precision == "bf16",
        ):
            loss = (model(x, t, cond).float() - target).abs().mean()
        loss.backward()
        flat = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        assert torch.isfinite(flat).all(), precision
        grads[precision] = (float(loss.detach()), flat)
    (loss32, g32), (loss16, g16) = grads["fp32"], grads["bf16"]
    assert abs(loss16 - loss32) < 2e-2 * abs(loss32)
    cosine = torch.nn.functional.cosine_similarity(g16.double(), g32.double(), dim=0)
    assert float(cosine) > 0.98


def test_ensemble_draw_is_device_independent():
    """Int seeds draw the noise on the CPU: same members on any device, up to kernel rounding."""
    model = _tiny("flex").eval()
    _, _, cond = _inputs(2)
    kw = dict(
        objective=VPDiffusion(),
        members=3,
        shape=(2, 1, 32, 48),
        sampler="ddim",
        steps=2,
        generator=5,
    )
    with torch.no_grad():
        ref = sample_ensemble(model, cond, **kw)
        out = sample_ensemble(model.to(DEVICE), cond.to(DEVICE), **kw)
    assert out.device.type == torch.device(DEVICE).type
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=1e-4)


def test_shipped_model_downscales_alike_on_the_device():
    case = CASES[0]  # ERA5 t2m x4
    fine = load_case(case)
    coarse = degrade(fine, case.factor).isel(time=[0, 1])
    coarse[case.variable].attrs = dict(fine[case.variable].attrs)
    model = Downscaler.from_pretrained(case.model)
    kw = dict(members=2, seed=3)
    ref = model(coarse, device="cpu", **kw)
    out = model(coarse, device=DEVICE, **kw)
    assert out[case.variable].dims == ref[case.variable].dims
    # kelvin: two DDIM steps do not amplify float32 rounding beyond a millikelvin
    np.testing.assert_allclose(out[case.variable].values, ref[case.variable].values, atol=1e-3)
    assert out.attrs.keys() == ref.attrs.keys()
    # the device call ran a copy: the shared (cached) model's backbone is still on the CPU
    assert next(model.backbone.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(
        model(coarse, device="cpu", **kw)[case.variable], ref[case.variable]
    )


def test_no_device_given_picks_the_accelerator():
    case = CASES[0]
    fine = load_case(case)
    coarse = degrade(fine, case.factor).isel(time=[0])
    coarse[case.variable].attrs = dict(fine[case.variable].attrs)
    model = Downscaler.from_pretrained(case.model)
    auto = model(coarse, members=1, seed=0)
    explicit = model(
        coarse, members=1, seed=0, device=DEVICE if torch.cuda.is_available() else "cpu"
    )
    np.testing.assert_array_equal(auto[case.variable].values, explicit[case.variable].values)


def test_launch_records_the_tf32_flags_it_started_with(tmp_path, shared_data):
    """On the GPU, launches.jsonl records whether float32 products and convolutions could run
    in TF32 when the launch started (this module's fixture turned both off; torch's defaults
    are matmul off, cuDNN on) and a steady rate without the first step; on a CPU no flags."""
    import json

    from train_runs import tiny_run_config

    from flexdownscale.train import Trainer

    trainer = Trainer(
        tiny_run_config(tmp_path, shared_data, steps=3, eval_every=0, checkpoint_every=0)
    )
    trainer.fit()
    lines = (tmp_path / "run" / "launches.jsonl").read_text().splitlines()
    launch = json.loads(lines[-1])
    if trainer.accelerator.device.type == "cuda":
        assert launch["tf32"] == {"matmul": False, "cudnn": False}
    else:
        assert "tf32" not in launch
    assert launch["steady_train_samples_per_s"] > 0
