"""``flexdownscale evaluate`` on files whose units cannot be compared.

A prediction in K against a truth in hPa was told to "convert one of them", which no conversion
does; an attribute that names no unit got the same advice. The messages now say which case it
is (another kind of quantity, or a units attribute that is wrong).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.cli import main


def _field(units: str, offset: float = 0.0) -> xr.Dataset:
    rng = np.random.default_rng(0)
    da = xr.DataArray(
        rng.normal(size=(8, 8)) + offset,
        dims=("y", "x"),
        coords={"x": np.arange(8.0), "y": np.arange(8.0)},
        attrs={"units": units},
    )
    for axis in ("x", "y"):
        da[axis].attrs = {"units": "km"}
    return xr.Dataset({"t": da})


def _evaluate(tmp_path, pred_units, truth_units, capsys, offset=0.0):
    _field(pred_units).to_netcdf(tmp_path / "p.nc")
    _field(truth_units, offset).to_netcdf(tmp_path / "t.nc")
    out = tmp_path / "report"
    code = main(["evaluate", str(tmp_path / "p.nc"), str(tmp_path / "t.nc"), "--out", str(out)])
    return code, capsys.readouterr().err.strip(), out


def test_another_kind_of_quantity_is_not_told_to_convert(tmp_path, capsys):
    code, err, out = _evaluate(tmp_path, "K", "hPa", capsys)
    assert code == 2
    assert (
        "variable 't' is a temperature in the prediction ('K') but a pressure in the truth "
        "('hPa'): not the same kind of quantity, so no conversion makes them comparable" in err
    )
    assert "--rename TRUTH=PREDICTION" in err
    assert "convert one of them" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("pred", "truth", "said"),
    [
        ("K", "not_a_unit", "the truth's 'units' attribute is 'not_a_unit', not a unit"),
        ("", "K", "the prediction's 'units' attribute is empty (the other file says 'K')"),
    ],
)
def test_an_attribute_that_names_no_unit_is_the_metadata(tmp_path, capsys, pred, truth, said):
    code, err, _ = _evaluate(tmp_path, pred, truth, capsys)
    assert code == 2
    assert said in err
    assert "ncatted -a units,t,o,c,'K' FILE" in err
    assert "convert one of them" not in err


def test_two_attributes_that_name_no_unit_are_both_named(tmp_path, capsys):
    """Neither file names a unit: both attributes are named, and the example is a CF unit (only
    the prediction's was named, with the truth's empty attribute as the example: "(the other
    file says ''); set it to what the values are in, e.g. ncatted -a units,t,o,c,'' FILE")."""
    code, err, _ = _evaluate(tmp_path, "not_a_unit", "", capsys)
    assert code == 2
    assert (
        "the prediction's 'units' attribute is 'not_a_unit', not a unit flexdownscale reads and "
        "the truth's 'units' attribute is empty; set each to what the values are in" in err
    )
    assert "ncatted -a units,t,o,c,'K' FILE" in err
    assert "the other file says" not in err


def test_convertible_units_keep_the_rule(tmp_path, capsys):
    code, err, _ = _evaluate(tmp_path, "degC", "K", capsys, offset=273.15)
    assert code == 2
    assert "(values in K = values in degC + 273.15); convert one of them" in err
