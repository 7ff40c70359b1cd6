"""Fixes from reviewer-83's look at the torch layer used as a library (samplers, objectives,
backbones)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexdownscale.config import DiffusionConfig, ModelConfig
from flexdownscale.diffusion import (
    ResidualModel,
    build_objective,
    rollout,
    sample_ddim,
    sample_ensemble,
    sample_euler,
    sample_heun,
    sample_idff,
    sample_sde,
)
from flexdownscale.errors import ConfigError, FlexDownscaleWarning, ShapeError
from flexdownscale.models import build_model


def _fields(batch: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    fine = torch.randn(batch, 1, size, size, generator=gen)
    base = F.interpolate(F.avg_pool2d(fine, 4), scale_factor=4, mode="bilinear")
    return fine, base


# -- 1: the IDFF channel advice ---------------------------------------------------------------


def test_idff_state_channel_error_gives_the_working_fix() -> None:
    """A C-channel backbone under IDFF: the advice says in_channels = C, out_channels = 2 C,
    and following it works."""
    torch.manual_seed(0)
    obj = build_objective(DiffusionConfig(objective="idff"))
    fine, base = _fields()
    model = ResidualModel(build_model(ModelConfig(in_channels=1)))
    with pytest.raises(ShapeError, match=r"x_t has 2 channels") as info:
        model.loss(obj, fine, base)
    assert "in_channels = C" in str(info.value)
    assert "out_channels = 2 C for IDFF" in str(info.value)
    assert "in_channels and out_channels = 2 C" not in str(info.value)
    fixed = ResidualModel(build_model(ModelConfig(in_channels=1, out_channels=2)))
    assert fixed.loss(obj, fine, base).shape == (2,)


def test_cond_channel_error_carries_no_objective_advice() -> None:
    """The cond error (in_channels = 2 for one-channel data) keeps its own message only."""
    torch.manual_seed(0)
    obj = build_objective(DiffusionConfig(objective="idff"))
    fine, base = _fields()
    model = ResidualModel(build_model(ModelConfig(in_channels=2, out_channels=2)))
    with pytest.raises(ShapeError, match=r"^cond has 1 channels, expected 2") as info:
        model.loss(obj, fine, base)
    assert "the state here" not in str(info.value)
    assert "2 C" not in str(info.value)


# -- 2: scalars and int seeds at the engine's lower level ------------------------------------


def _phys_net(out_channels: int = 1, physical_condition: bool = True) -> torch.nn.Module:
    """A backbone (with phys) and random weights everywhere (the built one starts with a zero
    output layer, whose output would not depend on phys or t)."""
    torch.manual_seed(0)
    config = ModelConfig(physical_condition=physical_condition, out_channels=out_channels)
    net = build_model(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.05)
    return net


@pytest.mark.parametrize(
    ("sampler", "objective", "options"),
    [
        (sample_ddim, "vp", {"eta": 1.0}),
        (sample_euler, "flow", {}),
        (sample_heun, "vp", {}),
        (sample_sde, "flow", {"delta": 1.0}),
        (sample_idff, "idff", {"g1": 1.0}),
    ],
)
def test_samplers_take_a_scalar_phys_and_an_int_seed(sampler, objective, options) -> None:
    """phys=0.1 is phys=(0.1, 0.1); generator=3 is a CPU generator seeded with 3."""
    obj = build_objective(DiffusionConfig(objective=objective))
    net = _phys_net(obj.channel_factor)
    x_init, cond = _fields()
    common = dict(objective=obj, steps=3, **options)
    scalar = sampler(net, x_init, cond, phys=0.1, generator=3, **common).sample
    per_row = sampler(
        net,
        x_init,
        cond,
        phys=torch.tensor([0.1, 0.1]),
        generator=torch.Generator().manual_seed(3),
        **common,
    ).sample
    torch.testing.assert_close(scalar, per_row, rtol=0, atol=0)
    zero_d = sampler(net, x_init, cond, phys=torch.tensor(0.1), generator=3, **common).sample
    torch.testing.assert_close(zero_d, per_row, rtol=0, atol=0)
    other_phys = sampler(net, x_init, cond, phys=0.9, generator=3, **common).sample
    assert not torch.equal(other_phys, per_row)  # phys reaches the network


def test_sampler_bad_phys_and_generator_are_typed_errors() -> None:
    obj = build_objective(DiffusionConfig(objective="vp"))
    net = _phys_net()
    x_init, cond = _fields()
    with pytest.raises(ShapeError, match=r"phys has shape \(3,\); expected one value per"):
        sample_ddim(net, x_init, cond, objective=obj, steps=2, phys=torch.ones(3))
    with pytest.raises(ConfigError, match=r"generator = 'seed' must be a torch.Generator"):
        sample_ddim(net, x_init, cond, objective=obj, steps=2, eta=1.0, phys=0.1, generator="seed")


@pytest.mark.parametrize("objective", ["vp", "flow", "idff"])
def test_loss_takes_a_scalar_time(objective) -> None:
    """t=0.5 and t=tensor(0.5) give the loss of t=(0.5, 0.5) with the same noise."""
    obj = build_objective(DiffusionConfig(objective=objective))
    net = _phys_net(obj.channel_factor, physical_condition=False)
    fine, base = _fields()
    phys = None

    def loss(t):
        with torch.no_grad():
            gen = torch.Generator().manual_seed(5)
            return obj.loss(net, fine, base, phys=phys, t=t, generator=gen)

    expected = loss(torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(loss(0.5), expected, rtol=0, atol=0)
    torch.testing.assert_close(loss(torch.tensor(0.5)), expected, rtol=0, atol=0)
    assert not torch.equal(loss(0.3), expected)
    with pytest.raises(ShapeError, match=r"t has shape \(3,\); expected one time per sample"):
        loss(torch.full((3,), 0.5))
    with pytest.raises(ConfigError, match="t must be a number or a tensor"):
        loss("0.5")


# -- 3: numpy integer steps ------------------------------------------------------------------


def test_numpy_integer_steps_are_steps() -> None:
    """steps=np.int64(2) samples as steps=2 (through ResidualModel.sample and a sampler); a bool
    or a float is still refused."""
    obj = build_objective(DiffusionConfig(objective="vp"))
    net = _phys_net(physical_condition=False)
    model = ResidualModel(net)
    _, base = _fields()
    expected = model.sample(obj, base, members=2, steps=2, generator=0)
    got = model.sample(obj, base, members=2, steps=np.int64(2), generator=0)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    result = sample_euler(net, base.double(), base, objective=obj, steps=np.int32(3))
    assert result.nfe == 3
    assert result.times.shape == (4,)
    for bad in (True, 2.0, np.int64(0)):
        with pytest.raises(ConfigError, match="must be a positive integer"):
            model.sample(obj, base, members=2, steps=bad, generator=0)


# -- 4: sampling a network in training mode --------------------------------------------------

TRAIN_MODE = "the network is in training mode: dropout makes samples differ"


def _dropout_model() -> ResidualModel:
    """A residual model with dropout 0.1 and random weights (as after some training)."""
    torch.manual_seed(0)
    model = ResidualModel(build_model(ModelConfig(dropout=0.1)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_sampling_in_train_mode_warns_once_per_call() -> None:
    obj = build_objective(DiffusionConfig(objective="vp"))
    model = _dropout_model()
    assert model.training
    _, base = _fields(batch=1)
    with pytest.warns(FlexDownscaleWarning, match=TRAIN_MODE) as record:
        a = model.sample(obj, base, members=2, steps=3, generator=0, batch_size=1)
    assert len([w for w in record if issubclass(w.category, FlexDownscaleWarning)]) == 1
    assert record[0].filename == __file__  # points at the user's line
    with pytest.warns(FlexDownscaleWarning, match=TRAIN_MODE):
        b = model.sample(obj, base, members=2, steps=3, generator=0, batch_size=1)
    assert (a - b).abs().max() > 1e-3  # what the warning is about: dropout differs per call
    net = model.backbone
    x_init = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    for call in (
        lambda: sample_ddim(net, x_init, base, objective=obj, steps=2),
        lambda: sample_ensemble(net, base, objective=obj, shape=(1, 1, 16, 16), steps=2),
    ):
        with pytest.warns(FlexDownscaleWarning, match=TRAIN_MODE) as record:
            call()
        assert len(record) == 1


def test_sampling_in_eval_mode_is_silent_and_repeatable() -> None:
    obj = build_objective(DiffusionConfig(objective="vp"))
    model = _dropout_model().eval()
    _, base = _fields(batch=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = model.sample(obj, base, members=2, steps=3, generator=0)
        b = model.sample(obj, base, members=2, steps=3, generator=0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_rollout_in_train_mode_warns_once() -> None:
    obj = build_objective(DiffusionConfig(objective="flow"))
    torch.manual_seed(0)
    model = ResidualModel(build_model(ModelConfig(task="forecast", past_frames=1)), task="forecast")
    frames = torch.randn(1, 1, 16, 16)
    with pytest.warns(FlexDownscaleWarning, match=TRAIN_MODE) as record:
        rollout(model, obj, frames, lead_steps=2, members=1, steps=2, generator=0)
    assert len(record) == 1


# -- 5: repeat_features agrees with repeat_task_features --------------------------------------


@pytest.mark.parametrize("repeats", [0, -1, 2.0, True])
def test_repeat_features_refuses_what_repeat_task_features_refuses(repeats) -> None:
    from flexdownscale.diffusion import repeat_features
    from flexdownscale.models import repeat_task_features

    features = (torch.arange(4.0).reshape(2, 2),)
    for func in (repeat_features, repeat_task_features):
        with pytest.raises(ConfigError, match="repeats must be a positive integer"):
            func(features, repeats)
    torch.testing.assert_close(
        repeat_features(features, 2)[0], repeat_task_features(features, 2)[0]
    )
