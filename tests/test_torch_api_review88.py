"""Fixes from the session-27 reviewer's look at the torch layer used as a library (sampler
options, devices, input dtypes, custom backbones, few-step DDIM)."""

from __future__ import annotations

import math

import pytest
import torch

from flexdownscale.config import DiffusionConfig, ModelConfig
from flexdownscale.diffusion import (
    ResidualModel,
    build_objective,
    sample_ddim,
    sample_ensemble,
    sample_euler,
    sample_idff,
    sample_sde,
)
from flexdownscale.errors import ConfigError, DataError, ShapeError
from flexdownscale.models import Backbone, build_model
from flexdownscale.models.layers import GRID_MULTIPLE

# -- helpers ------------------------------------------------------------------------------------


class GaussianVP:
    """The exact VP network (output read as ``v``) for data ``N(0, s^2)``, pointwise:
    ``E[v | z] = alpha sigma (1 - s^2) z / (alpha^2 s^2 + sigma^2)``."""

    def __init__(self, objective: object, s: float) -> None:
        self.objective = objective
        self.s = s

    def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
        alpha, sigma = self.objective.alpha_sigma(t.to(torch.float64))
        alpha = alpha.reshape(-1, *([1] * (x_t.ndim - 1)))
        sigma = sigma.reshape(-1, *([1] * (x_t.ndim - 1)))
        s2 = self.s**2
        return alpha * sigma * (1 - s2) * x_t / (alpha**2 * s2 + sigma**2)

    def encode_task(self, cond):
        return ()


class Zero:
    """A network that always outputs zero (any objective, any channels)."""

    def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
        return torch.zeros_like(x_t)

    def encode_task(self, cond):
        return ()


# -- 1: sample_sde's delta (and sample_idff's g1, g2) must be finite -----------------------------


@pytest.mark.parametrize("objective_name", ["vp", "flow"])
@pytest.mark.parametrize("delta", [math.inf, math.nan, -1.0])
def test_sde_refuses_infinite_nan_and_negative_delta(objective_name: str, delta: float) -> None:
    """delta = inf gave all-NaN samples without an error; now a ConfigError names the value and
    the stable range for the call's steps (2 / h: 12.7 for 10 VP steps, 20 for 10 flow steps)."""
    objective = build_objective(DiffusionConfig(objective=objective_name))
    x_init = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError) as info:
        sample_sde(Zero(), x_init, objective=objective, steps=10, delta=delta, generator=0)
    message = str(info.value)
    assert message.startswith(f"delta = {delta!r} must be >= 0 and finite")
    bound = "12.7" if objective_name == "vp" else "20"
    assert f"delta < 2 / h = {bound} for these 10 steps" in message


def test_sde_with_a_finite_delta_keeps_the_gaussian_marginal() -> None:
    """The valid path is unchanged: with the exact network for N(0, 0.5^2) data, 40 SDE steps
    with delta = 1 give samples of standard deviation 0.5 (to sampling error)."""
    objective = build_objective(DiffusionConfig(objective="vp"))
    x_init = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sample_sde(
        GaussianVP(objective, 0.5), x_init, objective=objective, steps=40, delta=1.0, generator=1
    )
    assert torch.isfinite(out.sample).all()
    assert out.sample.std().item() == pytest.approx(0.5, rel=0.03)


@pytest.mark.parametrize(("g1", "g2"), [(math.inf, 0.0), (0.0, math.inf), (math.nan, 0.0)])
def test_idff_refuses_infinite_knobs(g1: float, g2: float) -> None:
    """g1 = inf or g2 = inf passed the '>= 0' check and gave NaN samples."""
    objective = build_objective(DiffusionConfig(objective="idff"))
    x_init = objective.initial_state(
        torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    )
    with pytest.raises(ConfigError, match=r"must be >= 0 and finite"):
        sample_idff(Zero(), x_init, objective=objective, steps=3, g1=g1, g2=g2, generator=0)


# -- 2: build_model on a device this machine lacks -------------------------------------------------


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this machine look CPU-only, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda"), "mps"])
def test_build_model_on_a_missing_gpu_names_it_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, device: object
) -> None:
    """device="cuda" on a CPU-only machine raised torch's AssertionError ("Torch not compiled
    with CUDA enabled"); now a ConfigError names the device, what is available and the fix."""
    _no_gpu(monkeypatch)
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(), device=device)
    message = str(info.value)
    assert message.startswith(f"device = {device!r} is not available: this machine has no ")
    assert "available here: 'cpu', 'meta'" in message
    assert "pass device='cpu'" in message


# ids without "gpu": conftest skips the tests with a "gpu" keyword on CPU-only machines
@pytest.mark.parametrize("device", ["gpu", "cuda:x", 3.5], ids=["name", "index", "float"])
def test_build_model_on_an_unknown_device_names_it(device: object) -> None:
    """device="gpu" raised torch's RuntimeError about the device string."""
    with pytest.raises(ConfigError, match=r"is not a device torch knows; available here: 'cpu'"):
        build_model(ModelConfig(), device=device)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_build_model_on_the_cpu_and_meta_still_works(device: object) -> None:
    model = build_model(ModelConfig(), device=device)
    assert next(model.parameters()).device == torch.device(device)


# -- 3: integer and boolean fields are refused, not cast or truncated --------------------------------


@pytest.fixture(scope="module")
def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig()).eval()


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_backbone_refuses_integer_fields(tiny_net: torch.nn.Module, dtype: torch.dtype) -> None:
    """An integer x_t or cond raised torch's "Input type (long int) and bias type (float) should
    be the same"; now a DataError names the argument, its dtype and the fix."""
    field = torch.randn(1, 1, 16, 16)
    integer = torch.ones(1, 1, 16, 16).to(dtype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(
        DataError, match=rf"^x_t has dtype {name}; .* convert it with x_t\.float\(\)"
    ):
        tiny_net(integer, 0.5, field)
    with pytest.raises(DataError, match=rf"^cond has dtype {name}; "):
        tiny_net(field, 0.5, integer)
    with pytest.raises(DataError, match=rf"^cond has dtype {name}; "):
        tiny_net.encode_task(integer)


def test_backbone_still_casts_float64_fields(tiny_net: torch.nn.Module) -> None:
    """The documented cast stays: float64 fields run in the parameters' float32 and give the
    float32 result to rounding."""
    gen = torch.Generator().manual_seed(1)
    x, cond = torch.randn(1, 1, 16, 16, generator=gen), torch.randn(1, 1, 16, 16, generator=gen)
    with torch.no_grad():
        out64 = tiny_net(x.double(), 0.5, cond.double())
        out32 = tiny_net(x, 0.5, cond)
    assert out64.dtype == torch.float32
    torch.testing.assert_close(out64, out32)


def test_sampler_refuses_an_integer_x_init(tiny_net: torch.nn.Module) -> None:
    """sample_ddim with an int64 x_init returned an int64 sample (the float64 state truncated
    towards zero, without a word); now a DataError."""
    objective = build_objective(DiffusionConfig(objective="vp"))
    cond = torch.randn(1, 1, 16, 16)
    with pytest.raises(DataError, match=r"^x_init has dtype int64; .*objective\.initial_state"):
        sample_ddim(
            tiny_net, torch.ones(1, 1, 16, 16, dtype=torch.int64), cond, objective=objective
        )
    noise = torch.zeros(1, 1, 1, 16, 16, dtype=torch.int64)
    with pytest.raises(DataError, match=r"^noise has dtype int64"):
        sample_ensemble(tiny_net, cond, objective=objective, noise=noise)


@pytest.mark.parametrize("objective_name", ["vp", "flow", "idff"])
def test_objective_loss_refuses_an_integer_target(objective_name: str) -> None:
    """Objective.loss with an integer target raised torch's '"check_uniform_bounds" not
    implemented for 'Long''; now a DataError (the Denoiser is never called)."""
    objective = build_objective(DiffusionConfig(objective=objective_name))
    target = torch.ones(2, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(DataError, match=r"^target has dtype int64; .* target\.float\(\)"):
        objective.loss(Zero(), target)


def test_residual_model_loss_refuses_an_integer_target(tiny_net: torch.nn.Module) -> None:
    """ResidualModel.loss took an integer target through the float residual; refused as well,
    like Objective.loss."""
    objective = build_objective(DiffusionConfig(objective="vp"))
    field = torch.randn(2, 1, 16, 16)
    with pytest.raises(DataError, match=r"^target has dtype int64"):
        ResidualModel(tiny_net).loss(objective, field.round().long(), field)
    assert ResidualModel(tiny_net).loss(objective, field, field).shape == (2,)


def test_custom_denoiser_may_take_integer_cond() -> None:
    """cond goes to the network as it is: a custom Denoiser conditioned on integer labels still
    samples (the check is on the state only)."""

    class Labels:
        def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
            assert cond.dtype == torch.int64
            return torch.zeros_like(x_t) + cond.reshape(-1, 1).to(x_t.dtype)

        def encode_task(self, cond):
            return ()

    objective = build_objective(DiffusionConfig(objective="flow"))
    x_init = torch.zeros(2, 1)
    out = sample_euler(Labels(), x_init, torch.tensor([1, 2]), objective=objective, steps=4)
    span = objective.t_max - objective.t_min
    torch.testing.assert_close(out.sample, torch.tensor([[1.0], [2.0]]) * span)


# -- 4: a custom Backbone's grid multiple and name -------------------------------------------------


class Pointwise(Backbone):
    """A custom backbone with no downsampling: 1x1 convs, one task feature at stride 1."""

    grid_multiple = 4

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.task = torch.nn.Conv2d(self.cond_channels, 8, 1)
        self.net = torch.nn.Conv2d(self.out_channels + 8, self.out_channels, 1)
        self.task_shapes = [(8, 1)]

    def _encode_task(self, cond):
        return [self.task(cond)]

    def _forward(self, x_t, t, phys, features):
        return self.net(torch.cat([x_t, features[0]], dim=1)) * t[:, None, None, None]


class PointwiseChild(Pointwise):
    """A subclass of a custom backbone inherits its grid_multiple (4), as any class attribute."""


class DefaultGrid(Backbone):
    """A subclass that leaves grid_multiple alone: 16, as the built-in backbones."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.net = torch.nn.Conv2d(self.out_channels, self.out_channels, 1)
        self.task_shapes = []

    def _encode_task(self, cond):
        return []

    def _forward(self, x_t, t, phys, features):
        return self.net(x_t)


def test_custom_backbone_sets_its_own_grid_multiple() -> None:
    """A custom Backbone was held to grids divisible by 16 (the module constant) and the refusal
    named config.backbone ("flex"); now the class attribute grid_multiple decides and the message
    names the class that runs."""
    model = Pointwise(ModelConfig()).eval()
    x = torch.randn(2, 1, 20, 12)
    assert model(x, 0.5, x).shape == (2, 1, 20, 12)  # 20 and 12: multiples of 4, not of 16
    with pytest.raises(ShapeError) as info:
        model(torch.randn(1, 1, 18, 12), 0.5, torch.randn(1, 1, 18, 12))
    assert str(info.value) == (
        "x_t has a 18 x 12 grid; Pointwise needs H and W divisible by 4 (at least 4). "
        "Pad to 20 x 12 or crop to 16 x 12."
    )
    assert PointwiseChild.grid_multiple == 4
    with pytest.raises(
        ShapeError, match=r"^x_t has a 24 x 24 grid; DefaultGrid needs H and W divisible by 16"
    ):
        DefaultGrid(ModelConfig()).eval()(torch.randn(1, 1, 24, 24), 0.5, torch.randn(1, 1, 24, 24))


@pytest.mark.parametrize("backbone", ["flex", "unet", "uvit", "dit"])
def test_built_in_backbones_keep_16_and_say_their_class(backbone: str) -> None:
    model = build_model(ModelConfig(backbone=backbone), device="meta")
    assert model.grid_multiple == GRID_MULTIPLE == 16
    x = torch.zeros(1, 1, 24, 32, device="meta")
    with pytest.raises(
        ShapeError,
        match=rf"^x_t has a 24 x 32 grid; {type(model).__name__} needs H and W divisible by 16",
    ):
        model(x, 0.5, x)


@pytest.mark.parametrize("value", [0, 2.0, True])
def test_a_bad_grid_multiple_is_refused_when_the_class_is_defined(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^Bad\.grid_multiple = .* must be a positive integer"):
        type("Bad", (DefaultGrid,), {"grid_multiple": value})
