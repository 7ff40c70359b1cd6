"""Array types at the package's xarray entry points: one rule (reviewer-156).

A pint-quantified input (pint-xarray's ``quantify()``: units on ``.data``, no ``units``
attribute) was scored wrongly without a word: the CRPS of a Celsius truth against a kelvin
ensemble was 272.8 (the magnitudes, units stripped), other scores crashed with pint errors, the
Downscaler said "no 'units' attribute" and the data helpers dropped the units. Now every entry
point (the metrics, the Downscaler, degrade / up / regrid) takes a pint quantity as its
magnitude with its units as the ``units`` attribute (``flexdownscale._duck.plain_arrays``), so
the package's unit checks see it; other array types (cupy, sparse, ...) are a typed error with
the conversion. Also: a stacked (MultiIndex) dim in another order is reordered by label, a
DataArray named like a coordinate and Datasets without variables get typed errors.

The quantities are built with pint directly (pint-xarray is not a dependency), in cf-xarray's
registry, the one :mod:`flexdownscale.units` parses with.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import xarray as xr
from cf_xarray.units import units as ureg

from flexdownscale import data, metrics
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.errors import DataError, GridError, MissingVariableError, UnitsError
from flexdownscale.models import build_model
from flexdownscale.pipeline import Downscaler, Forecaster

pytestmark = pytest.mark.filterwarnings("error::pint.UnitStrippedWarning")

LAT, LON = np.linspace(50.0, 57.5, 16), np.linspace(-8.0, -0.5, 16)


def _field(values: np.ndarray | None = None, units: str | None = "K") -> xr.DataArray:
    if values is None:
        values = 280.0 + np.random.default_rng(0).normal(size=(2, 16, 16))
    return xr.DataArray(
        values,
        dims=("time", "latitude", "longitude"),
        coords={"time": np.arange(2), "latitude": LAT, "longitude": LON},
        attrs={} if units is None else {"units": units},
        name="t2m",
    )


def _quantity(da: xr.DataArray, units: str) -> xr.DataArray:
    """``da`` as pint-xarray holds it: the units on the data, no ``units`` attribute."""
    attrs = {k: v for k, v in da.attrs.items() if k != "units"}
    return xr.DataArray(
        ureg.Quantity(da.values, units), dims=da.dims, coords=da.coords, attrs=attrs, name=da.name
    )


def _ensemble() -> xr.DataArray:
    noise = np.random.default_rng(1).normal(scale=0.5, size=(4, 2, 16, 16))
    return _field() + xr.DataArray(noise, dims=("member", "time", "latitude", "longitude"))


class _Foreign:
    """A duck array that is neither numpy, dask nor pint (as cupy or sparse arrays are)."""

    def __init__(self, values: np.ndarray) -> None:
        self._values = np.asarray(values)

    shape = property(lambda self: self._values.shape)
    dtype = property(lambda self: self._values.dtype)
    ndim = property(lambda self: self._values.ndim)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return NotImplemented

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return NotImplemented

    def __getitem__(self, key: Any) -> _Foreign:
        return _Foreign(self._values[key])


def test_crps_and_rank_histogram_read_pint_units():
    ens, truth = _ensemble(), _field() + 0.3
    expected = metrics.crps_ensemble(ens, truth)
    got = metrics.crps_ensemble(_quantity(ens, "K"), _quantity(truth, "K"))
    assert type(got.data) is np.ndarray
    assert got.attrs["units"] == "K"
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(
        metrics.rank_histogram(_quantity(ens, "K"), _quantity(truth, "K")),
        metrics.rank_histogram(ens, truth),
    )
    # a Celsius truth against a kelvin ensemble: refused as for units attributes (it was a CRPS
    # of 272.8 computed on the magnitudes, and a rank histogram of [1, 0, ...])
    celsius = _quantity(truth - 273.15, "degC")
    for score in (metrics.crps_ensemble, metrics.rank_histogram, metrics.spread_skill_ratio):
        with pytest.raises(UnitsError, match="fcst is in 'K' but obs is in 'degC'"):
            score(_quantity(ens, "K"), celsius)
    # one side a quantity, the other a plain array with a units attribute
    with pytest.raises(UnitsError, match="fcst is in 'K' but obs is in 'degC'"):
        metrics.crps_ensemble(_quantity(ens, "K"), (truth - 273.15).assign_attrs(units="degC"))
    with pytest.raises(UnitsError, match="pred is in 'K' but truth is in 'degC'"):
        metrics.downscaling_skill(_quantity(ens, "K"), celsius)


def test_the_other_scores_take_pint_inputs():
    f, t = _field() + 0.2, _field()
    qf, qt = _quantity(f, "K"), _quantity(t, "K")
    pairs = [
        (lambda a, b: metrics.psnr(a, b, data_range=10.0)),
        (lambda a, b: metrics.fss(a, b, threshold=280.0, window=3)),
        (lambda a, b: metrics.exceedance_frequency(a, threshold=280.0)),
        (lambda a, b: metrics.rmse(a, b)),
        (lambda a, b: metrics.pearson_r(a, b)),
        (lambda a, b: metrics.power_spectrum(a)),
        (lambda a, b: metrics.ensemble_mean(a, member_dim="time")),
    ]
    for score in pairs:
        xr.testing.assert_allclose(score(qf, qt), score(f, t))
        assert score(qf, qt).attrs.get("units") == score(f, t).attrs.get("units")
    # a quantity against a plain array with a units attribute, in the same units
    xr.testing.assert_identical(metrics.rmse(qf, t), metrics.rmse(f, t))
    # a Dataset of quantities
    ds = xr.Dataset({"t2m": qf})
    xr.testing.assert_identical(metrics.mae(ds, t.to_dataset()), metrics.mae(f.to_dataset(), t))


def test_a_pint_quantity_and_a_units_attribute_that_disagree():
    quantity = _quantity(_field() - 273.15, "degC").assign_attrs(units="K")
    with pytest.raises(UnitsError, match=r"pint quantity in 'degC' but its 'units' attr.*'K'"):
        metrics.rmse(quantity, _field())
    # the same units in another spelling are fine
    same = _quantity(_field(), "kelvin").assign_attrs(units="K")
    xr.testing.assert_identical(metrics.rmse(same, _field()), metrics.rmse(_field(), _field()))


def test_other_array_types_are_refused_with_the_conversion():
    foreign = _field().copy(data=_Foreign(_field().values))
    with pytest.raises(DataError, match=r"obs \('t2m'\) holds a .*_Foreign array.*as_numpy"):
        metrics.rmse(_field(), foreign)
    with pytest.raises(DataError, match=r"_Foreign array.*obj = obj\.as_numpy\(\)"):
        data.degrade(foreign, 4)


def test_inputs_are_not_changed_and_dask_stays_lazy():
    ens = _quantity(_ensemble(), "K")
    truth = _quantity(_field(), "K").chunk({"time": 1})
    before = copy.deepcopy(ens), copy.deepcopy(truth)
    out = metrics.crps_ensemble(ens, truth, preserve_dims="time")
    assert out.chunks is not None  # lazy
    np.testing.assert_allclose(
        out.compute(), metrics.crps_ensemble(_ensemble(), _field(), preserve_dims="time")
    )
    for obj, kept in zip((ens, truth), before, strict=True):
        xr.testing.assert_identical(obj, kept)
        assert isinstance(obj.data, type(kept.data))
        assert "units" not in obj.attrs


def test_data_helpers_keep_pint_units_as_the_attribute():
    field = _field()
    quantity = _quantity(field, "K").assign_coords(
        orog=(("latitude", "longitude"), ureg.Quantity(np.zeros((16, 16)), "m"))
    )
    for helper in (
        lambda o: data.degrade(o, 4),
        lambda o: data.up(o, 2),
        lambda o: data.regrid(o, data.degrade(field, 4), method="conservative"),
    ):
        out = helper(quantity)
        assert type(out.data) is np.ndarray
        assert out.attrs["units"] == "K"
        xr.testing.assert_allclose(out, helper(field))
    spectrum = metrics.power_spectrum(quantity)
    assert spectrum.attrs["units"] == metrics.power_spectrum(field).attrs["units"]


@pytest.fixture(scope="module")
def downscaler() -> Downscaler:
    return Downscaler(
        build_model(ModelConfig(preset="tiny", dropout=0.0)),
        DiffusionConfig(),
        normalizer=data.Normalizer.fit(_field().to_dataset()),
        grid={"grid": None, "factor": 4},
        variables=["t2m"],
        units={"t2m": "K"},
        factor=4,
        sampler=SamplerConfig(steps=1),
    )


def test_the_normalizer_reads_pint_units():
    """Normalizer.fit / transform / inverse_transform of quantities: the same statistics and
    values as for the plain field with a units attribute; a Celsius quantity against kelvin
    statistics is the conversion UnitsError (it failed with pint's "Cannot compare
    PlainQuantity and float", and fit took Celsius magnitudes without their units)."""
    plain = _field()
    fitted = data.Normalizer.fit(_quantity(plain, "K"))
    reference = data.Normalizer.fit(plain)
    assert fitted.stats["t2m"] == reference.stats["t2m"]
    assert fitted.stats["t2m"].units == "K"
    forward = fitted.transform(_quantity(plain, "K"))
    xr.testing.assert_identical(forward, reference.transform(plain))
    back = fitted.inverse_transform(forward)
    xr.testing.assert_allclose(back, plain)
    with pytest.raises(UnitsError, match="degC"):
        fitted.transform(_quantity(plain - 273.15, "degC"))
    named = plain.rename("latitude").assign_coords(latitude=LAT)
    with pytest.raises(DataError, match=r"da\.rename\('t2m'\)"):
        data.Normalizer.fit(named)


def _timeless(out: xr.Dataset) -> xr.Dataset:
    """``out`` without its ``history`` line, which starts with the time of the call (two calls
    a second boundary apart differ there only)."""
    history = out.attrs["history"]
    assert history[19:21] == "Z:"  # a time stamp, then the call
    return out.assign_attrs(history=history[21:])


def test_the_downscaler_reads_pint_units(downscaler):
    coarse = data.degrade(_field(), 4)
    expected = downscaler(coarse, seed=0)
    got = downscaler(_quantity(coarse, "K").to_dataset(), seed=0)
    xr.testing.assert_identical(_timeless(got), _timeless(expected))
    # Celsius: the conversion, not "no 'units' attribute" (whose fix gave degC read as K)
    celsius = _quantity(coarse - 273.15, "degC")
    with pytest.raises(UnitsError, match=r"is in 'degC' but the model expects 'K'.*\+ 273\.15"):
        downscaler(celsius)


def test_the_forecaster_reads_pint_units():
    forecaster = Forecaster(
        build_model(ModelConfig(preset="tiny", task="forecast", past_frames=1, dropout=0.0)),
        DiffusionConfig(),
        normalizer=data.Normalizer.fit(_field().to_dataset()),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(steps=1),
    )
    xr.testing.assert_identical(
        _timeless(forecaster(_quantity(_field(), "K"), lead_steps=1, seed=0)),
        _timeless(forecaster(_field(), lead_steps=1, seed=0)),
    )
    with pytest.raises(UnitsError, match=r"is in 'degC' but the model expects 'K'"):
        forecaster(_quantity(_field() - 273.15, "degC"), lead_steps=1)


def test_a_dataarray_named_like_a_coordinate(downscaler):
    coarse = data.degrade(_field(), 4).rename("latitude")
    with pytest.raises(
        DataError, match=r"named 'latitude', as one of its coord.*da\.rename\('t2m'\)"
    ):
        downscaler(coarse, rename={"latitude": "t2m"})


def test_a_stacked_dim_in_another_order_is_reordered_by_label():
    f, t = _field() + 0.3, _field()
    stacked_f = f.stack(cell=("latitude", "longitude"))
    perm = np.random.default_rng(2).permutation(stacked_f.sizes["cell"])
    stacked_t = t.stack(cell=("latitude", "longitude")).isel(cell=perm)
    np.testing.assert_allclose(metrics.rmse(stacked_f, stacked_t), metrics.rmse(f, t))
    np.testing.assert_allclose(
        metrics.crps_ensemble(_ensemble().stack(cell=("latitude", "longitude")), stacked_t),
        metrics.crps_ensemble(_ensemble(), t),
    )
    for func in (metrics.area_weights, metrics.power_spectrum):
        with pytest.raises(GridError, match=r"'cell' is a stacked.*obj\.unstack\('cell'\)"):
            func(stacked_f)


def test_datasets_without_variables_are_refused():
    empty = _field().to_dataset()[[]]
    with pytest.raises(DataError, match=r"fcst is a Dataset without data variables"):
        metrics.rmse(empty, empty)
    with pytest.raises(DataError, match=r"pred is a Dataset without data variables"):
        metrics.downscaling_skill(empty, empty)
    with pytest.raises(MissingVariableError, match=r"no data variables.*ds\[\['t2m'\]\]"):
        empty.flex.downscale()
    # a grid of coordinates only is still a grid
    grid = _field().to_dataset().drop_vars("t2m")
    assert "latitude" in metrics.area_weights(grid).dims


@pytest.mark.parametrize(
    ("score", "ensemble"),
    [
        (metrics.rmse, False),
        (metrics.bias, False),
        (metrics.pearson_r, False),
        (metrics.crps_ensemble, True),
        (metrics.spread_skill_ratio, True),
        (metrics.rank_histogram, True),
    ],
)
def test_quantity_weights_are_their_magnitudes(score, ensemble):
    """Weights given as a quantity (an area in m2) were passed on as pint arrays: pint
    quantities in the scores' data and UnitStrippedWarnings. Their units cancel in every
    weighted mean: the scores equal those of the plain weights."""
    truth = _field()
    pred = _ensemble() if ensemble else _field(truth.values + 0.3 * np.cos(truth.values))
    plain = xr.DataArray(np.cos(np.deg2rad(LAT)), dims="latitude", coords={"latitude": LAT})
    area = plain.copy(data=ureg.Quantity(plain.values * 1.2e9, "m**2"))
    expected = score(pred, truth, weights=plain)
    got = score(pred, truth, weights=area)
    assert isinstance(got.data, np.ndarray)
    xr.testing.assert_allclose(got, expected, rtol=1e-12)
    # a conflicting units attribute on quantity weights is the package's units error
    area.attrs["units"] = "km2"
    with pytest.raises(UnitsError, match="weights"):
        score(pred, truth, weights=area)
