"""Units in the metrics: every spelling of a unit agrees, spectra included, and a mismatch that
no conversion fixes says what is wrong (different quantities, or text that is no unit)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from metrics_helpers import grid_field

from flexdownscale.errors import UnitsError
from flexdownscale.metrics import (
    downscaling_skill,
    log_spectral_distance,
    power_spectrum,
    rmse,
    spectral_ratio,
)
from flexdownscale.units import parse_units, quantity_kind

FIELD = grid_field((16, 24), ("lat", "lon"), seed=3)
NOISY = FIELD + 0.3 * grid_field((16, 24), ("lat", "lon"), seed=4)


def _in(units: str, field: xr.DataArray = FIELD) -> xr.DataArray:
    return field.assign_attrs(units=units)


@pytest.mark.parametrize(
    ("composite", "same_as"),
    [
        ("m Kelvin^2", "m K^2"),
        ("m (deg C)^2", "m degC^2"),
        ("m (degrees C)^2", "m degC^2"),
        ("m (\u00b0C)^2", "m degC^2"),
        ("W m-2 degree_Kelvin-1", "W m-2 K-1"),
        ("Kelvin m-1", "K/m"),
    ],
)
def test_temperature_spellings_are_read_inside_composite_units(composite, same_as):
    # "m (deg C)^2" was read as an angle squared times a Celsius interval squared, and
    # "m Kelvin^2" not at all
    assert parse_units(composite) is not None
    assert parse_units(composite) == parse_units(same_as)


def test_words_that_contain_a_temperature_spelling_are_left_alone():
    assert parse_units("kg") == parse_units("kilogram")
    assert parse_units("mK") != parse_units("K")  # millikelvin, not kelvin
    assert parse_units("degrees_north") is not None


@pytest.mark.parametrize(("a", "b"), [("K", "Kelvin"), ("degC", "deg C"), ("K", "kelvin")])
def test_spectral_scores_accept_every_spelling_of_the_field_units(a, b):
    # K against Kelvin raised UnitsError "pred is in 'm K^2' but ref is in 'm Kelvin^2'"
    sp, sr = power_spectrum(_in(a, NOISY)), power_spectrum(_in(b))
    expected_sp, expected_sr = power_spectrum(_in(b, NOISY)), sr
    assert float(log_spectral_distance(sp, sr)) == float(
        log_spectral_distance(expected_sp, expected_sr)
    )
    assert float(log_spectral_distance(sp, sr)) > 0
    np.testing.assert_array_equal(spectral_ratio(sp, sr).values, (expected_sp / sr).values)


def test_downscaling_skill_of_a_prediction_in_kelvin_against_truth_in_k():
    ens = xr.concat([NOISY, NOISY + 0.1], dim="member")
    got = downscaling_skill(_in("Kelvin", ens), _in("K"))
    same = downscaling_skill(_in("K", ens), _in("K"))
    assert got == same
    assert got["lsd"] > 0


def test_spectra_of_fields_in_other_units_say_the_field_units_and_conversion():
    sp, sr = power_spectrum(_in("m s-1")), power_spectrum(_in("km h-1"))
    with pytest.raises(UnitsError) as err:
        log_spectral_distance(sp, sr)
    msg = str(err.value)
    assert msg.startswith(
        "pred is in 'm (m s-1)^2' but ref is in 'm (km h-1)^2', the spectra of fields in "
        "'m s-1' and in 'km h-1'; "
    )
    assert "values in m s-1 = values in km h-1 x 0.2777777778" in msg
    assert "compute its spectrum again" in msg
    with pytest.raises(UnitsError, match="a temperature and 'hPa' a pressure"):
        spectral_ratio(power_spectrum(_in("K")), power_spectrum(_in("hPa")))


def test_quantity_kind_names_common_kinds():
    assert quantity_kind("Kelvin") == quantity_kind("degC") == "a temperature"
    assert quantity_kind("hPa") == "a pressure"
    assert quantity_kind("m3") == "a quantity of dimension [length] ** 3"
    assert quantity_kind("") is None
    assert quantity_kind("not_a_unit") is None


def test_units_of_different_quantities_are_not_told_to_convert():
    # "convert one of them first and set its attrs['units'] = 'hPa'" for K against hPa
    with pytest.raises(UnitsError) as err:
        rmse(_in("hPa"), _in("K", NOISY))
    msg = str(err.value)
    assert "'hPa' is a pressure and 'K' a temperature: not the same kind of quantity" in msg
    assert "convert" not in msg


@pytest.mark.parametrize(
    ("units", "said"),
    [
        ("not_a_unit", "'not_a_unit' (fcst's) is not a unit flexdownscale recognises"),
        ("", "fcst's 'units' attribute is empty"),
    ],
)
def test_text_that_is_no_unit_is_named_with_the_attribute_to_set(units, said):
    with pytest.raises(UnitsError) as err:
        rmse(_in(units), _in("K", NOISY))
    msg = str(err.value)
    assert said in msg
    assert "set fcst's 'units' attribute" in msg
    assert "attrs['units'] = 'K'" in msg  # the obs' units, as the example
    assert "attrs['units'] = ''" not in msg
    assert "= 'not_a_unit'" not in msg


def test_convertible_units_keep_the_conversion():
    with pytest.raises(UnitsError, match=r"convert obs first \(values in K = values in degC "):
        rmse(_in("K"), _in("degC", NOISY))


def test_evaluate_command_scores_a_prediction_in_kelvin_against_truth_in_k(tmp_path, capsys):
    # `flexdownscale evaluate pred_Kelvin.nc truth_K.nc` exited 2: "pred is in 'm Kelvin^2'
    # but ref is in 'm K^2'" from the spectral scores, after its own units check had passed
    import json

    from flexdownscale.cli import main

    lat = np.arange(50.0, 54.0, 0.25)
    lon = np.arange(-4.0, 2.0, 0.25)
    rng = np.random.default_rng(5)
    truth = xr.Dataset(
        {
            "t2m": (
                ("time", "latitude", "longitude"),
                280 + rng.normal(size=(2, lat.size, lon.size)),
                {"units": "K"},
            )
        },
        coords={
            "time": np.array(["2019-03-01T00", "2019-03-01T01"], dtype="datetime64[ns]"),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )
    noise = xr.DataArray(rng.normal(size=(2, *truth.t2m.shape)), dims=("member", *truth.t2m.dims))
    pred = truth.assign(t2m=(truth.t2m + 0.5 * noise).assign_attrs(units="Kelvin"))
    truth.to_netcdf(tmp_path / "truth_K.nc")
    pred.to_netcdf(tmp_path / "pred_Kelvin.nc")
    out = tmp_path / "report"
    argv = ["evaluate", str(tmp_path / "pred_Kelvin.nc"), str(tmp_path / "truth_K.nc")]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    pred.assign(t2m=pred.t2m.assign_attrs(units="K")).to_netcdf(tmp_path / "pred_K.nc")
    argv_k = ["evaluate", str(tmp_path / "pred_K.nc"), str(tmp_path / "truth_K.nc")]
    assert main([*argv_k, "--out", str(tmp_path / "report_k")]) == 0
    (scores,) = json.loads((out / "metrics.json").read_text())
    (same,) = json.loads((tmp_path / "report_k" / "metrics.json").read_text())
    assert scores.pop("units") == "Kelvin"
    assert same.pop("units") == "K"
    assert scores == same
    assert scores["LSD (dB)"] > 0
