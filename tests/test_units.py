"""Units compared as units (pint with cf-xarray's CF / UDUNITS registry), and the conversions
the errors give: closed forms, and the suggested line applied to a dataset."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.units import (
    conversion_code,
    conversion_rule,
    degree_units,
    linear_conversion,
    parse_units,
    same_units,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("K", "kelvin"),
        ("K", "kelvins"),
        ("K", "degK"),
        ("K", "1 K"),
        ("degC", "degree_Celsius"),
        ("degC", "celsius"),
        ("m s**-1", "m s-1"),
        ("m s**-1", "m/s"),
        ("m s-1", "m.s-1"),
        ("kg m-2 s-1", "kg/m^2/s"),
        ("1", "dimensionless"),
        ("s-1", "1/s"),
    ],
)
def test_spellings_of_one_unit_are_the_same(a, b):
    assert same_units(a, b)
    assert same_units(b, a)
    assert linear_conversion(a, b) == (1.0, 0.0)


@pytest.mark.parametrize(
    ("found", "expected", "scale", "offset"),
    [
        ("degC", "K", 1.0, 273.15),
        ("K", "degC", 1.0, -273.15),
        ("degF", "K", 5 / 9, 273.15 - 32 * 5 / 9),
        ("mm/h", "m s-1", 1e-3 / 3600, 0.0),
        ("hPa", "Pa", 100.0, 0.0),
        ("%", "1", 0.01, 0.0),
        ("km", "m", 1000.0, 0.0),
    ],
)
def test_linear_conversions_in_closed_form(found, expected, scale, offset):
    got = linear_conversion(found, expected)
    assert got is not None
    np.testing.assert_allclose(got, (scale, offset), rtol=1e-12, atol=1e-12)
    assert not same_units(found, expected)


@pytest.mark.parametrize(
    ("a", "b"),
    [("K", "m s-1"), ("kg m-2 s-1", "mm/h"), ("K", "not a unit"), ("", "K"), ("1", "K")],
)
def test_other_dimensions_or_unknown_units_do_not_convert(a, b):
    assert linear_conversion(a, b) is None
    assert not same_units(a, b)


def test_identical_strings_need_no_parsing():
    assert parse_units("furlongs per shmoo") is None
    assert same_units("furlongs per shmoo", " furlongs per shmoo ")
    assert parse_units("") is None


@pytest.mark.parametrize(
    ("found", "expected"), [("degC", "K"), ("degF", "degC"), ("mm/h", "m s-1"), ("hPa", "Pa")]
)
def test_the_suggested_line_converts(found, expected):
    values = np.array([-10.0, 0.0, 12.5, 30.0])
    ds = xr.Dataset({"v": ("x", values.copy(), {"units": found, "long_name": "field"})})
    scale, offset = linear_conversion(found, expected)
    code = conversion_code("v", scale, offset, expected)
    exec(code, {}, {"ds": ds})  # the line the UnitsError prints
    from cf_xarray.units import units

    truth = units.Quantity(values, found).to(expected).magnitude
    np.testing.assert_allclose(ds["v"].values, truth, rtol=1e-9, atol=1e-12)
    assert ds["v"].attrs == {"units": expected, "long_name": "field"}
    assert conversion_rule(found, expected, scale, offset).startswith(
        f"values in {expected} = values in {found}"
    )


@pytest.mark.parametrize(
    ("units", "kind"),
    [
        ("degrees_north", "north"),
        ("degree_N", "north"),
        ("degreesN", "north"),
        ("degN", "north"),
        ("\u00b0N", "north"),
        ("degrees north", "north"),
        (" Degrees_North ", "north"),
        ("degrees_east", "east"),
        ("\u00b0 E", "east"),
        ("degrees_south", "south"),
        ("degW", "west"),
        ("degrees", "degrees"),
        ("deg", "degrees"),
        ("\u00b0", "degrees"),
        ("degC", None),
        ("\u00b0C", None),
        ("m", None),
        ("", None),
        ("radians", None),
    ],
)
def test_degree_units_in_every_spelling(units, kind):
    # one recogniser for the data layer's grid discovery and the metrics' spacing
    assert degree_units(units) == kind


@pytest.mark.parametrize(
    ("units", "scale", "offset"),
    [
        ("degree_C", 1.0, 273.15),  # ocean products (CMEMS); pint did not know it
        ("degrees_C", 1.0, 273.15),
        ("degrees C", 1.0, 273.15),  # pint read an angle times a Celsius interval: x 0.01745
        ("deg C", 1.0, 273.15),
        ("Celsius", 1.0, 273.15),
        ("degree_K", 1.0, 0.0),
        ("degrees_kelvin", 1.0, 0.0),
        ("Kelvin", 1.0, 0.0),
        ("degree_F", 5 / 9, 255.3722222),
    ],
)
def test_temperatures_in_every_common_spelling(units, scale, offset):
    assert linear_conversion(units, "K") == (pytest.approx(scale), pytest.approx(offset))


@pytest.mark.parametrize(
    ("found", "expected", "outcome", "kinds"),
    [
        ("kelvin", "K", "same", ("a temperature", "a temperature")),
        ("degC", "K", "convertible", ("a temperature", "a temperature")),
        ("hPa", "Pa", "convertible", ("a pressure", "a pressure")),
        ("K", "hPa", "other_kind", ("a temperature", "a pressure")),
        ("not_a_unit", "K", "not_a_unit", (None, "a temperature")),
        ("K", "", "not_a_unit", ("a temperature", None)),
    ],
)
def test_compare_units_is_the_one_classification(found, expected, outcome, kinds):
    """The metrics, the Downscaler, the normalizer and ``evaluate`` each classified a unit
    mismatch themselves from ``linear_conversion`` and ``quantity_kind``; ``compare_units`` is
    that classification once."""
    from flexdownscale.units import compare_units

    units = compare_units(found, expected)
    assert units.outcome == outcome
    assert (units.found_kind, units.expected_kind) == kinds
    if outcome == "convertible":
        scale, offset = units.conversion
        assert units.rule.startswith(f"values in {expected} = values in {found}")
        code = units.code("v")
        namespace = {"ds": {"v": _Attrs(2.0)}}
        exec(code, namespace)  # the line the messages print converts the value
        assert namespace["ds"]["v"].value == pytest.approx(2.0 * scale + offset)
        assert namespace["ds"]["v"].units == expected
    elif outcome == "same":
        assert units.conversion == (1.0, 0.0)
    else:
        assert units.conversion is None
        with pytest.raises(ValueError, match="does not convert"):
            _ = units.rule


class _Attrs:
    """A number with ``assign_attrs``, standing in for a DataArray in a conversion line."""

    def __init__(self, value: float, units: str | None = None) -> None:
        self.value, self.units = value, units

    def __mul__(self, other: float) -> _Attrs:
        return _Attrs(self.value * other)

    def __add__(self, other: float) -> _Attrs:
        return _Attrs(self.value + other)

    def __sub__(self, other: float) -> _Attrs:
        return _Attrs(self.value - other)

    def assign_attrs(self, units: str) -> _Attrs:
        return _Attrs(self.value, units)
