"""Options of one spectrum kind are refused with the other, by every public spectrum function.

``dims``, ``spacing``, ``spacing_units``, ``method``, ``detrend`` and ``window`` set the
isotropic spectrum (:func:`power_spectrum`); ``lat_dim`` and ``lon_dim`` the zonal one
(:func:`zonal_spectrum`). The check sits in ``_spectrum_for``, which every function with a
``kind`` passes: :func:`kinetic_energy_spectrum` ignored the isotropic options with
``kind="zonal"`` (and ``lat_dim`` / ``lon_dim`` with ``kind="isotropic"``) before; only
:func:`spread_skill_spectrum` refused them. An option left at its default, or passed with the
default value, is not refused; the options of the chosen kind give the numbers of the spectra
they are built from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import xarray as xr

from flexdownscale.errors import ConfigError
from flexdownscale.metrics import (
    kinetic_energy_spectrum,
    power_spectrum,
    spread_skill_spectrum,
    zonal_spectrum,
)
from flexdownscale.plot import plot_spread_skill_spectrum

BOX = np.arange(16) * 2000.0  # a 16 x 16 limited-area grid, 2 km steps
LAT = np.arange(-60.0, 61.0, 30.0)
LON = np.arange(0.0, 360.0, 10.0)  # the full circle, each longitude once


def _box(values: np.ndarray, dims: tuple[str, ...]) -> xr.DataArray:
    da = xr.DataArray(values, dims=dims, coords={"y": BOX, "x": BOX}, attrs={"units": "m s-1"})
    for c in ("y", "x"):
        da[c].attrs["units"] = "m"
    return da


def _global(values: np.ndarray, dims: tuple[str, ...]) -> xr.DataArray:
    da = xr.DataArray(values, dims=dims, coords={"lat": LAT, "lon": LON}, attrs={"units": "m s-1"})
    da["lat"].attrs["units"] = "degrees_north"
    da["lon"].attrs["units"] = "degrees_east"
    return da


def _fields(kind: str) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    """Three members, their truth and a second wind component: 4 times on a box (isotropic)
    or a global grid (zonal)."""
    rng = np.random.default_rng(172)
    if kind == "isotropic":
        draw = rng.normal(size=(5, 4, BOX.size, BOX.size))
        make, space = _box, ("y", "x")
    else:
        draw = rng.normal(size=(5, 4, LAT.size, LON.size))
        make, space = _global, ("lat", "lon")
    ens = make(draw[:3], ("member", "time", *space))
    truth = make(draw[3], ("time", *space))
    other = make(draw[4], ("time", *space))
    return ens, truth, other


def _ke(kind: str, **options: Any) -> Any:
    _, u, v = _fields(kind)
    return kinetic_energy_spectrum(u, v, kind=kind, **options)


def _ssr(kind: str, **options: Any) -> Any:
    ens, truth, _ = _fields(kind)
    return spread_skill_spectrum(ens, truth, kind=kind, **options)


def _plot_ssr(kind: str, **options: Any) -> Any:
    ens, truth, _ = _fields(kind)
    return plot_spread_skill_spectrum(ens, truth, spectrum_kwargs={"kind": kind, **options})


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "kinetic_energy_spectrum": _ke,
    "spread_skill_spectrum": _ssr,
    "plot_spread_skill_spectrum": _plot_ssr,
}

#: Every isotropic-only option with a value other than its default.
ISOTROPIC_ONLY = [
    ("dims", ("lat", "lon")),
    ("dims", "lon"),
    ("spacing", 1000.0),
    ("spacing", {"lat": 1000.0, "lon": 1000.0}),
    ("spacing_units", "km"),
    ("method", "fft"),
    ("method", "dct"),
    ("detrend", "linear"),
    ("detrend", "errico"),
    ("detrend", None),  # no detrending at all: not the default "constant"
    ("window", "hann"),
]
ZONAL_ONLY = [("lat_dim", "y"), ("lon_dim", "x")]


@pytest.mark.parametrize("option", ISOTROPIC_ONLY, ids=lambda o: f"{o[0]}={o[1]!r}")
@pytest.mark.parametrize("function", FUNCTIONS)
def test_isotropic_option_refused_with_zonal(function, option):
    name, value = option
    with pytest.raises(
        ConfigError,
        match=(
            rf"^{name} set the isotropic spectrum; kind='zonal' takes the periodogram along "
            r"each latitude circle, which has no such option: leave it out, or use "
            r"kind='isotropic' for a limited-area grid"
        ),
    ):
        FUNCTIONS[function]("zonal", **{name: value})


@pytest.mark.parametrize("option", ZONAL_ONLY, ids=lambda o: o[0])
@pytest.mark.parametrize("function", FUNCTIONS)
def test_zonal_option_refused_with_isotropic(function, option):
    name, value = option
    with pytest.raises(
        ConfigError,
        match=(
            r"^lat_dim / lon_dim name the latitude circles of kind='zonal'; pass kind='zonal' "
            r"for a global grid, or dims=\.\.\. for the isotropic spectrum"
        ),
    ):
        FUNCTIONS[function]("isotropic", **{name: value})


@pytest.mark.parametrize("function", FUNCTIONS)
def test_several_options_are_named_together(function):
    with pytest.raises(
        ConfigError, match=r"^method, window, detrend set the isotropic spectrum.*leave them out"
    ):
        FUNCTIONS[function]("zonal", method="fft", window="hann", detrend="linear")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_bad_kind_refused(function):
    with pytest.raises(ConfigError, match="kind"):
        FUNCTIONS[function]("meridional")


@pytest.mark.parametrize("function", ["kinetic_energy_spectrum", "spread_skill_spectrum"])
def test_defaults_passed_explicitly_are_not_refused(function):
    """The default value of an option of the other kind, passed by name, is no option."""
    call = FUNCTIONS[function]
    zonal_defaults = {
        "dims": None,
        "spacing": None,
        "spacing_units": "m",
        "method": None,
        "detrend": "constant",
        "window": None,
    }
    xr.testing.assert_identical(call("zonal", **zonal_defaults), call("zonal"))
    xr.testing.assert_identical(call("isotropic", lat_dim=None, lon_dim=None), call("isotropic"))


#: Options of the isotropic spectrum, each applied by both functions as by power_spectrum.
ISOTROPIC_CASES = [
    {},
    {"dims": ("y", "x")},
    {"spacing": 2.0, "spacing_units": "km"},
    {"spacing": {"y": 3.0, "x": 2.0}},
    {"method": "fft"},
    {"method": "dct", "detrend": "linear"},
    {"detrend": "errico"},
    {"detrend": None, "method": "fft"},
    {"window": "hann"},
    {"method": "fft", "window": "hann", "detrend": "linear"},
]


@pytest.mark.parametrize("options", ISOTROPIC_CASES, ids=str)
def test_isotropic_options_still_apply(options):
    ens, u, v = _fields("isotropic")
    ke = kinetic_energy_spectrum(u, v, **options)
    eu, ev = power_spectrum(u, **options), power_spectrum(v, **options)
    np.testing.assert_array_equal(ke.values, (0.5 * (eu + ev)).values)
    np.testing.assert_array_equal(ke.wavenumber.values, eu.wavenumber.values)
    assert ke.attrs["spectrum_method"] == eu.attrs["spectrum_method"]
    assert ke.attrs["spectrum_detrend"] == eu.attrs["spectrum_detrend"]
    assert ke.attrs["spectrum_window"] == eu.attrs["spectrum_window"]
    # the spread-skill ratio from the same spectra of the members' deviations and the error
    ratio = spread_skill_spectrum(ens, u, include_components=True, **options)
    mean = ens.mean("member")
    error = power_spectrum(mean - u, **options).mean("time")
    spread = (power_spectrum(ens - mean, **options).sum("member") / 2).mean("time")
    np.testing.assert_allclose(ratio.sel(component="error").values, error.values, rtol=1e-13)
    np.testing.assert_allclose(ratio.sel(component="spread").values, spread.values, rtol=1e-13)
    assert ratio.attrs["spectrum_method"] == error.attrs["spectrum_method"]


@pytest.mark.parametrize("options", [{}, {"lat_dim": "lat"}, {"lat_dim": "lat", "lon_dim": "lon"}])
def test_zonal_options_still_apply(options):
    ens, u, v = _fields("zonal")
    ke = kinetic_energy_spectrum(u, v, kind="zonal", **options)
    expected = 0.5 * (zonal_spectrum(u) + zonal_spectrum(v))
    np.testing.assert_array_equal(ke.values, expected.values)
    assert ke.dims == expected.dims == ("time", "lat", "zonal_wavenumber")
    ratio = spread_skill_spectrum(ens, u, kind="zonal", include_components=True, **options)
    mean = ens.mean("member")
    error = zonal_spectrum(mean - u).mean(("time", "lat"))
    np.testing.assert_allclose(ratio.sel(component="error").values, error.values, rtol=1e-13)
