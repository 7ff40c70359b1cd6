"""Normalizer: dask statistics, exact inverse, JSON round trip, arrays and xarray agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from data_helpers import assert_unchanged, no_compute

from flexdownscale.data.normalize import Normalizer, VariableStats, auto_transform
from flexdownscale.errors import DataError, MissingVariableError, ShapeError


def test_fit_matches_numpy_on_real_era5_lazily(shared_data):
    with xr.open_dataset(shared_data / "era5/era5_t2m_uk_2019-03-01_24.nc") as raw:
        ds = raw.chunk({"time": 96})
        before = ds.copy(deep=True)
        norm = Normalizer.fit(ds)
        values = ds.t2m.values.astype(np.float64)
        assert norm.variables == ("t2m",)
        assert norm.stats["t2m"].mean == pytest.approx(values.mean(), rel=1e-12)
        assert norm.stats["t2m"].std == pytest.approx(values.std(), rel=1e-10)
        assert norm.stats["t2m"].transform == "none"
        assert norm.stats["t2m"].units == "K"
        with no_compute():
            z = norm.transform(ds)
            back = norm.inverse_transform(z)
        # normalized values are numbers: units "1" and how they were made; the inverse puts
        # the fitted units back and the other attributes travel both ways
        m, sd = norm.stats["t2m"].mean, norm.stats["t2m"].std
        assert z.t2m.attrs == {
            **ds.t2m.attrs,
            "units": "1",
            "flexdownscale_normalization": f"(t2m [K] - {m:.6g}) / {sd:.6g}",
        }
        assert back.t2m.attrs == ds.t2m.attrs
        assert abs(float(z.t2m.mean())) < 1e-5
        assert float(z.t2m.std()) == pytest.approx(1.0, rel=1e-5)
        np.testing.assert_allclose(back.t2m.values, ds.t2m.values, rtol=1e-6)
        assert_unchanged(before, ds)


def test_log1p_for_precipitation_with_nans_kept(shared_data):
    path = shared_data / "radar/bom_mtstapylton_prcp10min_2020-10-31.nc"
    with xr.open_dataset(path, chunks={}) as ds:
        ds = ds.isel(time=slice(0, 12))
        assert auto_transform(ds.precipitation) == "log1p"
        norm = Normalizer.fit(ds, variables=["precipitation"])
        s = norm.stats["precipitation"]
        assert s.transform == "log1p"
        raw = ds.precipitation.values.astype(np.float64)
        logged = np.log1p(raw)
        assert s.mean == pytest.approx(np.nanmean(logged), rel=1e-10)
        assert s.std == pytest.approx(np.nanstd(logged), rel=1e-10)
        z = norm.transform(ds)
        assert int(z.precipitation.isnull().sum()) == int(np.isnan(raw).sum()) > 0
        back = norm.inverse_transform(z).precipitation.values.astype(np.float64)
        np.testing.assert_allclose(back, raw, rtol=1e-5, atol=1e-6)


def test_float64_inverse_is_exact_to_rounding_for_arrays_and_tensors():
    rng = np.random.default_rng(0)
    norm = Normalizer(
        {
            "a": VariableStats(mean=3.0, std=2.5),
            "b": VariableStats(mean=0.2, std=0.7, transform="log1p"),
        }
    )
    x = np.abs(rng.normal(size=(4, 2, 8, 8))) * 5
    z = norm.transform_array(x, channel_axis=1)
    np.testing.assert_allclose(
        norm.inverse_transform_array(z, channel_axis=1), x, rtol=1e-13, atol=1e-14
    )
    np.testing.assert_allclose(z[:, 0], (x[:, 0] - 3.0) / 2.5)
    np.testing.assert_allclose(z[:, 1], (np.log1p(x[:, 1]) - 0.2) / 0.7)
    t = torch.from_numpy(x)
    zt = norm.transform_array(t, channel_axis=1)
    assert isinstance(zt, torch.Tensor)
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-14)
    ds = xr.Dataset({n: (("s", "y", "x"), x[:, i]) for i, n in enumerate("ab")})
    zx = norm.transform(ds)
    np.testing.assert_allclose(np.stack([zx.a, zx.b], axis=1), z, rtol=1e-14)


def test_pooled_statistics_equal_statistics_of_the_concatenation():
    rng = np.random.default_rng(1)
    parts = [
        xr.Dataset({"v": (("t", "y", "x"), rng.normal(loc=i, scale=1 + i, size=(n, 4, 5)))})
        for i, n in enumerate((3, 7, 2))
    ]
    pooled = Normalizer.fit([p.chunk({"t": 1}) for p in parts])
    whole = Normalizer.fit(xr.concat(parts, dim="t"))
    assert pooled.stats["v"].mean == pytest.approx(whole.stats["v"].mean, rel=1e-12)
    assert pooled.stats["v"].std == pytest.approx(whole.stats["v"].std, rel=1e-12)


def test_json_round_trip_is_exact_and_keeps_the_order(tmp_path):
    norm = Normalizer(
        {
            "z": VariableStats(mean=0.1 + 0.2, std=1 / 3, units="m"),
            "a": VariableStats(mean=-1e-300, std=1e300, transform="log1p"),
        }
    )
    path = tmp_path / "normalization.json"
    norm.to_json(path)
    back = Normalizer.from_json(path)
    assert back == norm
    assert back.variables == ("z", "a")
    # survives json.dumps(sort_keys=True), as the model folder writes it
    resorted = json.loads(json.dumps(norm.to_dict(), sort_keys=True))
    assert Normalizer.from_dict(resorted).variables == ("z", "a")
    with pytest.raises(DataError, match="format_version"):
        Normalizer.from_dict({"variables": []})


def test_bad_inputs():
    ds = xr.Dataset(
        {"t": (("y", "x"), np.ones((3, 3))), "p": (("y", "x"), -np.full((3, 3), 2.0) + np.eye(3))}
    )
    with pytest.raises(DataError, match="constant"):
        Normalizer.fit(ds, variables=["t"])
    with pytest.raises(DataError, match="log1p"):
        Normalizer.fit(ds, variables=["p"], transforms={"p": "log1p"})
    with pytest.raises(MissingVariableError, match="q"):
        Normalizer.fit(ds, variables=["q"])
    with pytest.raises(DataError, match="all NaN"):
        Normalizer.fit(ds.assign(n=ds.t * np.nan), variables=["n"])
    norm = Normalizer({"t": VariableStats(mean=0.0, std=1.0)})
    with pytest.raises(MissingVariableError):
        norm.transform(ds.drop_vars("t"))
    with pytest.raises(MissingVariableError):
        norm.transform(ds.p)
    with pytest.raises(ShapeError):
        norm.transform_array(np.zeros((2, 4, 4)))
    with pytest.raises(DataError):
        VariableStats(mean=0.0, std=0.0)


def test_fit_by_default_takes_only_numeric_fields_on_the_grid():
    rng = np.random.default_rng(3)
    lat = np.arange(40.5, 44.0, 1.0)
    tas = rng.normal(280.0, 5.0, size=(3, 4, 5))
    ds = xr.Dataset(
        {
            "tas": (("time", "lat", "lon"), tas, {"units": "K", "grid_mapping": "rotated_pole"}),
            "rotated_pole": ((), np.array(b"", dtype="S1"), {"grid_mapping_name": "x"}),
            "lat_bnds": (("lat", "bnds"), np.stack([lat - 0.5, lat + 0.5], axis=1)),
            "height": ((), 2.0, {"units": "m"}),
            "n_obs": (("time",), [3.0, 4.0, 5.0]),
        },
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds"}),
            "lon": ("lon", np.arange(5.0), {"units": "degrees_east"}),
        },
    )
    norm = Normalizer.fit(ds)
    assert norm.variables == ("tas",)
    assert norm.stats["tas"].mean == pytest.approx(tas.mean(), rel=1e-13)
    assert norm.stats["tas"].std == pytest.approx(tas.std(), rel=1e-12)
    z = norm.transform(ds)
    assert z.rotated_pole.dtype == ds.rotated_pole.dtype  # metadata passes through untouched
    np.testing.assert_array_equal(z.lat_bnds.values, ds.lat_bnds.values)
    # variables named explicitly are still fitted, and an off-grid-only dataset is refused
    assert Normalizer.fit(ds, variables=["n_obs"]).stats["n_obs"].mean == pytest.approx(4.0)
    with pytest.raises(DataError, match="variables="):
        Normalizer.fit(ds.drop_vars("tas"))  # the grid is there, no field is on it


def test_precipitable_water_is_not_precipitation():
    """'precip' matched "Precipitable Water" (a column of vapour, e.g. NCEP pr_wtr): log1p."""
    from flexdownscale.data.normalize import auto_transform

    vapour = xr.DataArray(1.0, name="prw", attrs={"long_name": "Precipitable Water"})
    rain = xr.DataArray(1.0, name="x", attrs={"long_name": "Total precipitation"})
    assert (auto_transform(vapour), auto_transform(rain)) == ("none", "log1p")


def test_malformed_files_are_typed_errors():
    """A non-numeric mean raised a builtin ValueError; a grid description missing keys a
    builtin TypeError."""
    from flexdownscale.data import GridSpec, Normalizer
    from flexdownscale.errors import DataError, GridError

    bad = {"format_version": 1, "variables": [{"name": "t", "mean": "abc", "std": 1.0}]}
    with pytest.raises(DataError, match="malformed normalization statistics \\(ValueError"):
        Normalizer.from_dict(bad)
    with pytest.raises(GridError, match=r"the grid description lacks \['dx', 'dy'"):
        GridSpec.from_json('{"format_version": 1, "x": "lon"}')


@pytest.mark.parametrize(
    ("value", "transform"),
    [
        (0.1, "none"),
        (280.1, "none"),
        (-3.7e5, "none"),
        (1e-30, "none"),
        (0.1, "log1p"),
        (280.1, "log1p"),
    ],
)
def test_a_constant_field_is_refused_whatever_its_round_off(value, transform):
    """A constant 0.1 or 280.1 has a computed std of 1e-17 or 6e-14 (round-off), not 0: it was
    accepted, and a later value 0.1 K off normalized to about 1.8e12. Refused like an exact
    constant, in the fit and when statistics are built or read back."""
    field = np.full((8, 16, 16), value)
    ds = xr.Dataset({"sst": (("time", "y", "x"), field)})
    mean = float(np.mean(np.log1p(field) if transform == "log1p" else field))
    std = float(np.std(np.log1p(field) if transform == "log1p" else field))
    assert std <= 1e-12 * abs(mean)  # what the computation leaves of a constant: round-off
    with pytest.raises(DataError, match=r"'sst' is constant .* Drop it from the variables"):
        Normalizer.fit(ds, transforms={"sst": transform})
    for bad in {b for b in (std, 1e-12 * abs(mean)) if b > 0}:
        with pytest.raises(DataError, match=r"round-off of a constant variable"):
            VariableStats(mean=mean, std=bad)
    with pytest.raises(DataError, match="round-off"):
        Normalizer.from_dict(
            {
                "format_version": 1,
                "variables": [{"name": "sst", "mean": mean, "std": 1e-13 * abs(mean)}],
            }
        )


def test_small_but_real_variation_is_kept():
    """The tolerance is relative to the mean: tiny values that vary (1e-20 +- 1e-21, a
    zero-mean 1e-15 field) and a field that varies by one part in 1e9 are normalized."""
    rng = np.random.default_rng(0)
    for field in (
        1e-20 + 1e-21 * rng.normal(size=(4, 8, 8)),
        1e-15 * rng.normal(size=(4, 8, 8)),
        280.0 * (1 + 1e-9 * rng.normal(size=(4, 8, 8))),
    ):
        ds = xr.Dataset({"v": (("time", "y", "x"), field)})
        s = Normalizer.fit(ds).stats["v"]
        assert s.std == pytest.approx(field.std(), rel=1e-6)
        z = Normalizer.fit(ds).transform_array(field[:, None], channel_axis=1)
        assert float(np.abs(z).max()) < 10


def test_transform_checks_units_and_inverse_takes_normalized_values_only(shared_data):
    """Statistics fitted in K normalized degC data to a mean of -178.7 without a word, and the
    inverse of data in K that was never normalized gave a mean of 710 K (reviewer-50). The
    normalizer now compares units as the Downscaler does (the error gives the conversion) and
    takes only normalized values back; values without attributes pass as before."""
    from flexdownscale.errors import UnitsError

    with xr.open_dataset(shared_data / "era5/era5_t2m_uk_2019-03-01_24.nc") as raw:
        ds = raw.isel(time=slice(0, 4)).load()
    norm = Normalizer.fit(ds)
    celsius = ds.assign(t2m=(ds.t2m - 273.15).assign_attrs(units="degC"))
    with pytest.raises(UnitsError) as err:
        norm.transform(celsius)
    assert str(err.value) == (
        "variable 't2m' is in 'degC' but the statistics were fitted in 'K' (values in K = "
        "values in degC + 273.15); convert first: ds['t2m'] = (ds['t2m'] + "
        "273.15).assign_attrs(units='K')"
    )
    # a length is no temperature: no conversion to advise; an attribute that is no unit is the
    # metadata to fix (both were told to "convert the values")
    with pytest.raises(UnitsError) as err:
        norm.transform(ds.t2m.assign_attrs(units="furlong"))
    said = "is a length ('furlong') but the statistics were fitted on a temperature ('K'): not "
    assert said in str(err.value)
    assert "convert" not in str(err.value)
    with pytest.raises(UnitsError, match="has units 'not_a_unit', not a unit flexdownscale reads"):
        norm.transform(ds.t2m.assign_attrs(units="not_a_unit"))
    # following the hint gives the normalization of the data in K
    fixed = celsius.assign(t2m=(celsius["t2m"] + 273.15).assign_attrs(units="K"))
    xr.testing.assert_allclose(norm.transform(fixed), norm.transform(ds))
    # the same unit under another spelling, and values without units, pass
    z = norm.transform(ds)
    xr.testing.assert_identical(
        norm.transform(ds.assign(t2m=ds.t2m.assign_attrs(units="kelvin"))).t2m.drop_attrs(),
        z.t2m.drop_attrs(),
    )
    bare = norm.transform(ds.t2m.drop_attrs())
    np.testing.assert_array_equal(bare.values, z.t2m.values)
    with pytest.raises(DataError, match=r"^variable 't2m' is normalized already \("):
        norm.transform(z)
    # the inverse: not of values in physical units, nor of another normalizer's output
    with pytest.raises(DataError) as err:
        norm.inverse_transform(ds)
    assert str(err.value).startswith("variable 't2m' is in 'K', not normalized (units '1'): ")
    other = Normalizer({"t2m": VariableStats(mean=280.0, std=5.0, units="K")})
    with pytest.raises(DataError, match="normalized with other statistics"):
        other.inverse_transform(z)
    np.testing.assert_allclose(norm.inverse_transform(z).t2m.values, ds.t2m.values, rtol=1e-6)
    np.testing.assert_allclose(  # normalized values without attributes: taken as they are
        norm.inverse_transform(z.t2m.drop_attrs()).values, ds.t2m.values, rtol=1e-6
    )
