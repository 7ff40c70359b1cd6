"""Inputs the engine and the backbones take the way a researcher passes them.

Each case was found failing in an audit: a meta-built model could not be materialised, a
scalar condition crashed the rollout, task features in another dtype reached the network as
they were, an IDFF backbone with C channels got a message without the fix, ModelConfig values
of the wrong type built a model, and switching only the objective trained flow matching with L1.
"""

from __future__ import annotations

import math

import pytest
import torch

from flexdownscale.config import DiffusionConfig, ModelConfig
from flexdownscale.diffusion import (
    IDFF,
    ResidualModel,
    VPDiffusion,
    build_objective,
    rollout,
)
from flexdownscale.errors import ConfigError, ShapeError
from flexdownscale.models import build_model, export_state_dict


def _tiny(**kwargs):
    torch.manual_seed(0)
    return build_model(ModelConfig(preset="tiny", dropout=0.0, **kwargs)).eval()


def test_a_model_built_on_meta_materialises_and_loads_a_state():
    """to_empty raised 'Cannot copy out of meta tensor' (the time embedding's frequencies)."""
    reference = _tiny()
    empty = build_model(ModelConfig(preset="tiny", dropout=0.0), device="meta")
    empty = empty.to_empty(device="cpu")
    assert not any(b.is_meta for b in empty.buffers())
    freqs = [b for n, b in empty.named_buffers() if n.endswith("freqs")]
    assert freqs
    assert all(f.dtype == torch.float32 for f in freqs)
    # a bfloat16 export loads into it with the frequencies exact (float32)
    empty.load_state_dict(export_state_dict(reference, torch.bfloat16))
    exact = dict(reference.named_buffers())
    for name, buffer in empty.named_buffers():
        if name.endswith("freqs"):
            torch.testing.assert_close(buffer, exact[name], rtol=0, atol=0)


def test_rollout_takes_a_scalar_condition_for_every_field():
    net = _tiny(task="forecast", past_frames=2, physical_condition=True)
    model = ResidualModel(net, task="forecast", past_frames=2)
    frames = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    kw = dict(lead_steps=2, members=2, sampler="ddim", steps=2, generator=0)
    scalar = rollout(model, VPDiffusion(), frames, phys=0.1, **kw)
    per_field = rollout(model, VPDiffusion(), frames, phys=torch.tensor([0.1, 0.1]), **kw)
    torch.testing.assert_close(scalar, per_field, rtol=0, atol=0)
    zero_dim = rollout(model, VPDiffusion(), frames, phys=torch.tensor(0.1), **kw)
    torch.testing.assert_close(zero_dim, per_field, rtol=0, atol=0)
    with pytest.raises(ShapeError, match=r"phys has shape \(3,\); expected one value per field"):
        rollout(model, VPDiffusion(), frames, phys=torch.ones(3), **kw)


@pytest.mark.parametrize("backbone", ["flex", "unet", "uvit", "dit"])
def test_task_features_in_another_dtype_are_cast_to_the_networks(backbone):
    """Float64 features into a float32 network raised torch's 'mixed dtype' error, float32
    features into a bfloat16 one too (x_t and cond were cast, the features were not)."""
    torch.manual_seed(0)
    net = build_model(ModelConfig(backbone=backbone, preset="tiny", dropout=0.0)).eval()
    gen = torch.Generator().manual_seed(2)
    cond, x_t = torch.randn(2, 1, 16, 16, generator=gen), torch.randn(2, 1, 16, 16, generator=gen)
    with torch.no_grad():
        features = net.encode_task(cond)
        expected = net(x_t, 0.5, task_features=features)
        got = net(x_t.double(), 0.5, task_features=tuple(f.double() for f in features))
        torch.testing.assert_close(got, expected)
        half = net.to(torch.bfloat16)
        assert half(x_t, 0.5, task_features=features).dtype == torch.bfloat16


def test_an_idff_backbone_with_c_channels_is_told_the_fix():
    net = _tiny()  # in and out 1 channel; IDFF needs 2
    target = torch.randn(2, 1, 16, 16)
    with pytest.raises(
        ShapeError,
        match=r"build its backbone with in_channels = C \(the data and cond channels\) and "
        r"out_channels = C, or out_channels = 2 C for IDFF\)$",
    ):
        IDFF().loss(net, target, target)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gradient_checkpointing", "no", "must be true or false, got 'no'"),
        ("physical_condition", "yes", "must be true or false, got 'yes'"),
        ("image_size", 128, "must be a list, got int 128"),
        ("dropout", "0.1", "must be a number, got '0.1'"),
    ],
)
def test_a_model_config_built_directly_is_checked_like_one_read_from_a_file(field, value, message):
    """'no' for a flag is true in Python: the model built with checkpointing on. Checked when
    the ModelConfig is built (it was when build_model got it)."""
    expected = rf"^model\.{field} {message} \(ModelConfig\.{field}\)$"
    with pytest.raises(ConfigError, match=expected):
        ModelConfig(preset="tiny", **{field: value})


@pytest.mark.parametrize("scale", [-1.0, 0.0, math.nan, math.inf])
def test_loss_scale_must_be_positive_and_finite(scale):
    with pytest.raises(ConfigError, match=r"loss_scale = .* must be a positive finite number"):
        build_objective(DiffusionConfig(loss_scale=scale))


def test_each_objective_gets_its_own_loss_unless_one_is_given():
    """DiffusionConfig's loss defaulted to L1 for every objective: switching only the
    objective trained flow matching's velocity (a conditional mean) with L1."""
    assert DiffusionConfig().loss is None
    assert build_objective(DiffusionConfig()).loss_kind == "l1"
    assert build_objective(DiffusionConfig(objective="flow")).loss_kind == "l2"
    assert build_objective(DiffusionConfig(objective="idff")).loss_kind == "l2"
    assert build_objective(DiffusionConfig(objective="flow", loss="l1")).loss_kind == "l1"
    assert build_objective(DiffusionConfig(loss="l2")).loss_kind == "l2"
