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
from flexdownscale.errors import ConfigError, UnitsError
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


def tiny_forecaster(*, conditioned: bool = False) -> Forecaster:
    """An untrained tiny forecast model of a dimensionless vorticity (units '1'); with
    ``conditioned``, conditioned on a Reynolds number."""
    torch.manual_seed(0)
    net = build_model(
        ModelConfig(
            preset="tiny",
            task="forecast",
            past_frames=2,
            dropout=0.0,
            physical_condition=conditioned,
        )
    )
    return Forecaster(
        net,
        DiffusionConfig(),
        normalizer=Normalizer({"vorticity": VariableStats(mean=0.0, std=1.0)}),
        variables=["vorticity"],
        units={"vorticity": "1"},
        sampler=SamplerConfig(steps=2),
        condition={"name": "reynolds_number", "scale": 40000.0} if conditioned else None,
        name="tiny-conditioned" if conditioned else "tiny-box",
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


# --------------------------------------------------------------------------------------------
# 3. units that do not convert: another kind of quantity, or no unit at all
# --------------------------------------------------------------------------------------------


def _with_units(ds: xr.Dataset, name: str, units: str) -> xr.Dataset:
    out = ds.copy()
    out[name] = out[name].copy().assign_attrs(units=units)
    return out


def test_units_of_another_kind_say_so(coarse, era5):
    """'hPa' for the K model said 'convert the values and set attrs['units'] = 'K''."""
    given = _with_units(coarse, "t2m", "hPa")
    with pytest.raises(UnitsError) as err:
        era5(given)
    assert str(err.value) == (
        "variable 't2m' is in 'hPa', a pressure, but the model expects 'K', a temperature: no "
        "conversion exists between them. If this is not the model's variable, pass that one "
        "(variables=[...] or rename={'yours': 't2m'}). If it is and the attribute is wrong, fix "
        "the attribute. Set it if the values are in K: ds['t2m'].attrs['units'] = 'K'"
    )
    assert given["t2m"].attrs["units"] == "hPa"  # the input is not touched
    with pytest.raises(UnitsError, match=r"is in '1', dimensionless \(a pure number\), but"):
        era5(_with_units(coarse, "t2m", "1"))
    with pytest.raises(UnitsError, match=r"is in 'm s-1', a speed .*, but the model expects"):
        era5(_with_units(coarse, "t2m", "m s-1"))
    with pytest.raises(UnitsError, match=r"units are case-sensitive, 'k' is not 'K'"):
        era5(_with_units(coarse, "t2m", "k"))


def test_unknown_or_empty_units_say_the_attribute_is_wrong(coarse, era5):
    with pytest.raises(UnitsError) as err:
        era5(_with_units(coarse, "t2m", "not_a_unit"))
    assert str(err.value).startswith(
        "variable 't2m' has units 'not_a_unit', which is not a unit flexdownscale knows (CF / "
        "UDUNITS spellings: "
    )
    assert str(err.value).endswith(
        "the model expects 'K' (a temperature). Set it if the values are in K: "
        "ds['t2m'].attrs['units'] = 'K'; in other units, set those: the error then gives the "
        "conversion"
    )
    with pytest.raises(UnitsError, match=r"^variable 't2m' has an empty 'units' attribute; the"):
        era5(_with_units(coarse, "t2m", ""))


def test_convertible_units_keep_the_conversion(coarse, era5):
    celsius = coarse.assign(t2m=(coarse["t2m"] - 273.15).assign_attrs(units="degC"))
    with pytest.raises(UnitsError) as err:
        era5(celsius)
    assert str(err.value) == (
        "variable 't2m' is in 'degC' but the model expects 'K' (a 273.15 offset: values in K = "
        "values in degC + 273.15); convert first: ds['t2m'] = (ds['t2m'] + 273.15)"
        ".assign_attrs(units='K')"
    )


def test_forecaster_units_of_another_kind():
    with pytest.raises(UnitsError) as err:
        tiny_forecaster()(box("K"), lead_steps=1)
    assert str(err.value).startswith(
        "variable 'vorticity' is in 'K', a temperature, but the model expects '1', dimensionless "
        "(a pure number): no conversion exists between them."
    )


def test_cli_spells_the_units_fix_for_the_file(coarse, era5):
    from flexdownscale.cli import cli_spelling

    with pytest.raises(UnitsError) as err:
        era5(_with_units(coarse, "t2m", "hPa"))
    said = cli_spelling(str(err.value))
    assert "(--variables NAME,NAME,... or --rename yours=t2m)" in said
    assert said.endswith(
        "If the values are in K, set the units attribute of variable 't2m' in the input file to "
        "'K' (with NCO, for example: ncatted -a units,t2m,o,c,K FILE)"
    )


# --------------------------------------------------------------------------------------------
# 4. condition= takes numbers only, like steps= and seed=
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["4000", True, b"4000"])
def test_condition_must_be_a_number(shared_data, value):
    """``condition="4000"`` ran silently as 4000.0 while ``steps="2"`` was refused."""
    ds = xr.open_dataset(shared_data / "kolmogorov/kf_re4000.nc")
    fine = ds[["vorticity"]].isel(trajectory=3, time=[0], y=slice(0, 64), x=slice(0, 64))
    coarse = degrade(fine, 8, method="area_mean").load()
    model = Downscaler.from_pretrained("kolmogorov-x8")
    with pytest.raises(ConfigError) as err:
        model(coarse, members=1, steps=1, condition=value)
    assert str(err.value) == (
        f"condition = {value!r} must be a number (the model's 'reynolds_number'), not a "
        f"{type(value).__name__}; pass condition=<value> as a float"
    )
    with pytest.raises(ConfigError, match=r"condition = '4000' must be a number"):
        tiny_forecaster(conditioned=True)(box(), lead_steps=1, condition="4000")
