"""Typed errors and clear messages for the keywords of the Downscaler and the Forecaster:
``device``, ``sampler``, the input's units and ``condition`` (review 55)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale.cli import _check_device
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import Normalizer, VariableStats, degrade
from flexdownscale.errors import ConfigError
from flexdownscale.models import build_model
from flexdownscale.pipeline import Downscaler, Forecaster, device_unavailable

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"
NO_MPS = not torch.backends.mps.is_available()


@pytest.fixture(scope="module")
def coarse(shared_data) -> xr.Dataset:
    """One ERA5 time step, 64 x 64 fine cells coarsened x4 on the shipped model's lattice."""
    ds = xr.open_dataset(shared_data / ERA5)
    fine = ds[["t2m"]].isel(time=[430], latitude=slice(0, 64), longitude=slice(0, 64))
    return degrade(fine, 4, method="area_mean", boundary="trim").load()


@pytest.fixture(scope="module")
def era5() -> Downscaler:
    return Downscaler.from_pretrained("era5-t2m-x4")


def tiny_forecaster() -> Forecaster:
    """An untrained tiny forecast model of a dimensionless vorticity (units '1')."""
    torch.manual_seed(0)
    net = build_model(ModelConfig(preset="tiny", task="forecast", past_frames=2, dropout=0.0))
    return Forecaster(
        net,
        DiffusionConfig(),
        normalizer=Normalizer({"vorticity": VariableStats(mean=0.0, std=1.0)}),
        variables=["vorticity"],
        units={"vorticity": "1"},
        sampler=SamplerConfig(steps=2),
        name="tiny-box",
    )


def box(units: str = "1") -> xr.Dataset:
    """Three time steps of a 16 x 16 doubly periodic field in ``units``."""
    x = np.arange(16) * 2 * np.pi / 16
    values = np.sin(x[None, :, None] + np.arange(3)[:, None, None]) * np.cos(x[None, None, :])
    axis = {"units": "1", "periodic": "true"}
    return xr.Dataset(
        {"vorticity": (("time", "y", "x"), values.astype(np.float32), {"units": units})},
        coords={
            "time": ("time", 10.0 + 0.5 * np.arange(3), {"units": "s"}),
            "y": ("y", x, {**axis, "axis": "Y"}),
            "x": ("x", x, {**axis, "axis": "X"}),
        },
    )


# --------------------------------------------------------------------------------------------
# 1. device: one availability rule for the Python API and the command line
# --------------------------------------------------------------------------------------------


def test_device_availability_rule():
    assert device_unavailable(torch.device("cpu")) is None
    assert device_unavailable(torch.device("cpu:0")) is None
    assert "one CPU device" in device_unavailable(torch.device("cpu:1"))
    assert "not on 'meta' devices" in device_unavailable(torch.device("meta"))
    assert "not on 'xpu' devices" in device_unavailable(torch.device("xpu"))
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert "CUDA device" in device_unavailable(torch.device(f"cuda:{count}"))
    if NO_MPS:
        assert "this machine has no MPS device" in device_unavailable(torch.device("mps"))


def test_mps_counts_where_the_backend_is_available(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device_unavailable(torch.device("mps")) is None
    assert "one MPS device" in device_unavailable(torch.device("mps:1"))


@pytest.mark.skipif(not NO_MPS, reason="this machine has MPS")
@pytest.mark.parametrize("device", ["mps", torch.device("meta"), "xpu", "cpu:1"])
def test_devices_this_machine_lacks_are_config_errors(coarse, era5, device):
    """``device="mps"`` was torch's RuntimeError ('PyTorch is not linked with support for mps
    devices') from the Downscaler, the accessor and the Forecaster; ``meta`` a
    NotImplementedError ('Cannot copy out of meta tensor'); ``cpu:1`` ran on the CPU."""
    with pytest.raises(ConfigError, match=r"is not available \(.*\); available here: cpu"):
        era5(coarse, members=1, steps=1, device=device)
    with pytest.raises(ConfigError, match=r"is not available \("):
        coarse.flex.downscale(factor=4, members=1, steps=1, device=device)
    with pytest.raises(ConfigError, match=r"is not available \("):
        tiny_forecaster()(box(), lead_steps=1, device=device)
    with pytest.raises(ConfigError, match=r"--device .* is not available \("):
        _check_device(str(device))


def test_the_cli_takes_cpu_0_like_the_api(coarse, era5):
    """``--device cpu:0`` was refused (its name is not 'cpu') while the API ran it."""
    _check_device("cpu:0")
    out = era5(coarse, members=1, steps=1, device="cpu:0", progress=False)
    ref = era5(coarse, members=1, steps=1, device="cpu", progress=False)
    np.testing.assert_array_equal(out["t2m"].values, ref["t2m"].values)


# --------------------------------------------------------------------------------------------
# 2. a misspelt sampler is said to be no sampler name, with the nearest one
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "meant"), [("ddmi", "ddim"), ("DDIM", "ddim"), ("Heun", "heun")])
def test_misspelt_sampler_suggests_the_name(coarse, era5, given, meant):
    """It said ``sampler = 'ddmi' does not apply to the model's 'vp' objective``."""
    with pytest.raises(ConfigError) as err:
        era5(coarse, sampler=given)
    assert str(err.value) == (
        f"sampler = {given!r} is not a sampler name; did you mean {meant!r}? (the model's 'vp' "
        "objective takes 'ddim', 'euler', 'heun', 'sde')"
    )


def test_unknown_and_foreign_samplers(coarse, era5):
    with pytest.raises(ConfigError) as err:
        era5(coarse, sampler="langevin")
    assert str(err.value) == (
        "sampler = 'langevin' is not a sampler name (the model's 'vp' objective takes 'ddim', "
        "'euler', 'heun', 'sde')"
    )
    with pytest.raises(ConfigError) as err:  # a real sampler of another objective
        era5(coarse, sampler="idff")
    assert str(err.value) == (
        "sampler = 'idff' does not apply to the model's 'vp' objective; use one of 'ddim', "
        "'euler', 'heun', 'sde'"
    )
    with pytest.raises(ConfigError, match=r"sampler = 3 is not a sampler name \(a string\)"):
        era5(coarse, sampler=3)
