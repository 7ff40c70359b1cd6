"""Review 66: a window cut from a periodic box runs as not periodic (with a warning), a condition
held along a dimension says to select one value, sampler options refuse strings, and two
messages (small domain shares, the automatic model choice without ``factor=``)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import xarray as xr
from test_forecast_fixes import N, box, tiny_forecaster

from flexdownscale.data import degrade, grid_spec, normalize_grid
from flexdownscale.demo import open_sample
from flexdownscale.errors import ConfigError, DataError, ModelFolderError, SkillWarning
from flexdownscale.pipeline import (
    Downscaler,
    Forecaster,
    _percent,
    _training_grid,
    _warn_outside_domain,
)

PERIOD = r"ignored and the field runs as non-periodic"


def _without_periodic(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    for dim in ("x", "y"):
        out[dim].attrs = {k: v for k, v in out[dim].attrs.items() if k != "periodic"}
    return out


@pytest.fixture(scope="module")
def kolmogorov_coarse() -> xr.Dataset:
    """The shipped Kolmogorov sample at Re = 4000 coarsened x8 (32 x 32 cells, doubly periodic)."""
    kf = open_sample("kolmogorov").isel(reynolds_number=1)
    return degrade(kf, 8).drop_vars("reynolds_number")


@pytest.fixture(scope="module")
def kolmogorov() -> Downscaler:
    return Downscaler.from_pretrained("kolmogorov-x8")


# --------------------------------------------------------------------------------------------
# 1. a window of a periodic box
# --------------------------------------------------------------------------------------------


def test_window_of_a_periodic_box_runs_as_not_periodic_and_warns(kolmogorov_coarse, kolmogorov):
    """A 12 x 12 window cut with isel kept periodic = "true" (xarray copies attributes) and ran
    wrapped around itself: its opposite edges joined (RMSE 1.92 against 1.77 unwrapped)."""
    window = kolmogorov_coarse.isel(x=slice(0, 12), y=slice(0, 12))
    assert grid_spec(window).periodic_x
    assert grid_spec(window).periodic_y
    kw: dict[str, Any] = {"condition": 4000.0, "members": None, "steps": 2, "seed": 3}
    with pytest.warns(SkillWarning, match=PERIOD) as caught:
        out = kolmogorov(window, **kw)
    texts = [str(w.message) for w in caught if "periodic" in str(w.message)]
    assert len(texts) == 1
    assert caught[0].filename == __file__
    text = texts[0]
    assert "'x' spans 12 cells of 0.19635 = 2.35619, the model's period 6.28319" in text
    assert "'y' spans 12 cells" in text
    assert "bbox=" in text
    assert "ds['x'].attrs.pop(\"periodic\"); ds['y'].attrs.pop(\"periodic\")" in text
    assert window["x"].attrs["periodic"] == "true"  # the input is not changed
    plain = _without_periodic(window)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkillWarning)
        reference = kolmogorov(plain, **kw)
    np.testing.assert_array_equal(out["vorticity"].values, reference["vorticity"].values)
    assert "periodic" not in out["x"].attrs
    # only the axis whose extent is not the period: a strip of whole rows stays periodic in x
    strip = kolmogorov_coarse.isel(y=slice(0, 16))
    with pytest.warns(SkillWarning, match=PERIOD) as caught:
        kolmogorov(strip, **kw)
    text = next(str(w.message) for w in caught if "periodic" in str(w.message))
    assert "'y' spans 16 cells" in text
    assert "'x' spans" not in text


def test_whole_periodic_box_still_wraps_without_a_warning(kolmogorov_coarse, kolmogorov):
    kw: dict[str, Any] = {"condition": 4000.0, "members": None, "steps": 1, "seed": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkillWarning)
        wrapped = kolmogorov(kolmogorov_coarse, **kw)
    assert wrapped["x"].attrs.get("periodic") == "true"
    # the same box without the attribute runs non-periodic (another result, and a warning)
    with pytest.warns(SkillWarning, match=r"no periodic = \"true\" attribute"):
        plain = kolmogorov(_without_periodic(kolmogorov_coarse), **kw)
    assert not np.array_equal(wrapped["vorticity"].values, plain["vorticity"].values)


def _tiny_forecaster() -> Forecaster:
    """The perturbed tiny forecast model of test_forecast_fixes, trained (as its grid.json
    says) on the whole :func:`box`."""
    grid = {"grid": grid_spec(box()).to_dict(), "past_frames": 2, "lead": 1, "time_dim": "time"}
    return tiny_forecaster(grid)


def test_forecaster_runs_a_window_of_its_periodic_box_as_not_periodic():
    model = _tiny_forecaster()
    window = box().isel(x=slice(0, 16), y=slice(4, 20))
    with pytest.warns(SkillWarning, match=PERIOD) as caught:
        out = model(window, lead_steps=2, seed=1)
    assert "'x' spans 16 cells of 0.19635 = 3.14159, the model's period 6.28319" in str(
        caught[0].message
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkillWarning)
        reference = model(_without_periodic(window), lead_steps=2, seed=1)
        model(box(), lead_steps=1, seed=1)  # the whole box: no warning
    np.testing.assert_array_equal(out["vorticity"].values, reference["vorticity"].values)


def test_a_larger_periodic_domain_keeps_wrapping():
    """A periodic box twice the training period (a 4 pi box for a model of the 2 pi box, same
    spacing) is periodic in its own right: no warning, and the result differs from the same box
    run as non-periodic."""
    model = _tiny_forecaster()
    x = np.arange(2 * N) * 2 * np.pi / N
    whole = box()
    big = xr.Dataset(  # the box tiled twice along each axis: a periodic field of period 4 pi
        {
            "vorticity": (
                ("time", "y", "x"),
                np.tile(whole["vorticity"].values, (1, 2, 2)),
                {"units": "1"},
            )
        },
        coords={"time": whole["time"], **{a: (a, x, dict(whole[a].attrs)) for a in ("y", "x")}},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkillWarning)
        wrapped = model(big, lead_steps=1, seed=1)
        plain = model(_without_periodic(big), lead_steps=1, seed=1)  # for contrast
    assert not np.array_equal(wrapped["vorticity"].values, plain["vorticity"].values)


# --------------------------------------------------------------------------------------------
# 2. a condition along a dimension
# --------------------------------------------------------------------------------------------


def test_condition_along_a_dimension_says_to_select_one_value(kolmogorov):
    """The demo sample keeps Re = 1000 and 4000 along a 'reynolds_number' dimension: the message
    said there was no such attribute or scalar variable and to pass one condition= (which runs
    both fields at one Re)."""
    both = degrade(open_sample("kolmogorov").isel(x=slice(0, 64), y=slice(0, 64)), 8)
    with pytest.raises(DataError) as e:
        kolmogorov(both, members=None)
    text = str(e.value)
    assert (
        "the input's 'reynolds_number' holds 2 different values (1000, 4000) along 'reynolds_number'"
        in text
    )
    assert "ds.sel(reynolds_number=1000.0)" in text
    assert "no attribute or scalar variable" not in text
    # a condition that varies along time: select the fields of one value along that dim
    one = both.isel(reynolds_number=0).drop_vars(["reynolds_number", "time"], errors="ignore")
    one = one.expand_dims(time=2)
    one["reynolds_number"] = ("time", [1000.0, 4000.0])
    with pytest.raises(
        DataError, match=r"holds 2 different values \(1000, 4000\) along 'time'"
    ) as e:
        kolmogorov(one, members=None)
    assert "ds.isel along 'time'" in str(e.value)


# --------------------------------------------------------------------------------------------
# 3. sampler options given as strings
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def era5_coarse() -> xr.Dataset:
    ds = normalize_grid(open_sample("era5_t2m_uk")).isel(time=[0])
    return degrade(ds, 4, boundary="trim")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"delta": "0.5"}, "sampler_options['delta'] = '0.5' must be a number, not a str"),
        ({"delta": b"0.5"}, "sampler_options['delta'] = b'0.5' must be a number, not a bytes"),
        ({"delta": True}, "sampler_options['delta'] = True must be a number, not a bool"),
    ],
)
def test_sampler_options_refuse_strings_and_bools(era5_coarse, options, words):
    """{"delta": "0.5"} ran as 0.5 while steps="2" and condition="4000" were refused."""
    with pytest.raises(ConfigError) as e:
        era5_coarse.flex.downscale(sampler="sde", steps=1, sampler_options=options)
    assert str(e.value) == f"{words}; pass it as a float"


def test_sampler_options_take_numbers(era5_coarse):
    out = era5_coarse.flex.downscale(sampler="sde", steps=1, sampler_options={"delta": 0.5})
    assert "0.5" in str(out.attrs["flexdownscale_sampler_options"])


# --------------------------------------------------------------------------------------------
# 4. messages
# --------------------------------------------------------------------------------------------


def test_small_domain_shares_keep_significant_digits():
    assert [_percent(s) for s in (0.0, 0.0015, 0.03, 0.24)] == ["0%", "0.15%", "3%", "24%"]
    trained = _training_grid(Downscaler.from_pretrained("era5-t2m-x4").grid)
    assert trained is not None
    # a global 1 degree grid: the UK training domain (33 x 49 quarter degrees) holds 0.15%
    lon = np.arange(-179.625, 180, 1.0)
    lat = np.arange(-88.625, 89, 1.0)
    with pytest.warns(SkillWarning, match=r"only 0\.15% of its cells lie in the training domain"):
        _warn_outside_domain(trained, lat, lon, ("degrees_north", "degrees_east"), "era5")


def test_automatic_model_choice_without_factor_names_no_factor(era5_coarse):
    tas = era5_coarse.rename(t2m="tas")
    with pytest.raises(ModelFolderError) as e:
        tas.flex.downscale()
    text = str(e.value)
    assert "None" not in text
    assert text.startswith("no shipped model downscales variables ['tas'] at any factor (shipped")
    assert "pass rename={'tas': 't2m'} (model 'era5-t2m-x4')" in text
    # a factor no shipped model of that size has: the hint names the model's factor too
    with pytest.raises(ModelFolderError) as e:
        tas.flex.downscale(factor=2)
    assert "variables ['tas'] by factor 2 (shipped" in str(e.value)
    assert "pass rename={'tas': 't2m'} and factor=4 (model 'era5-t2m-x4')" in str(e.value)
