"""Review 70. Where a conditioned model's condition comes from: the input's scalar coordinate or
variable of the condition's name wins over a global attribute (as training reads it), a
disagreement between them warns, and an input holding several values says to select one. And
the units message for a water depth given to a model in a mass per area (mm against kg m-2),
and the condition and normalization transform on a generated model card and in `info`."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from test_forecast_fixes import box, tiny_forecaster

from flexdownscale.cli import main
from flexdownscale.data import Normalizer, VariableStats, degrade
from flexdownscale.demo import open_sample
from flexdownscale.errors import DataError, FlexDownscaleWarning, UnitsError
from flexdownscale.hub import model_card_lines, normalization_transforms
from flexdownscale.pipeline import Downscaler, Forecaster
from flexdownscale.units import compare_units, water_equivalent

RE = "reynolds_number"
DISAGREE = r"the input disagrees on 'reynolds_number'"
KW = {"members": None, "steps": 2, "seed": 3, "progress": False}


@pytest.fixture(scope="module")
def kolmogorov() -> Downscaler:
    return Downscaler.from_pretrained("kolmogorov-x8")


@pytest.fixture(scope="module")
def joined() -> xr.Dataset:
    """The shipped sample's two Reynolds numbers (32 x 32 coarse cells each) joined by
    ``xr.concat`` from two datasets with a global attribute ``reynolds_number`` each, as two
    files would be: xarray keeps the first one's (1000)."""
    kf = degrade(open_sample("kolmogorov"), 8)
    parts = [kf.sel({RE: re}).drop_vars(RE).assign_attrs({RE: re}) for re in kf[RE].values.tolist()]
    both = xr.concat(parts, dim=xr.DataArray([1000.0, 4000.0], dims=RE, name=RE))
    assert both.attrs[RE] == 1000.0
    return both


def test_selected_coordinate_wins_over_the_first_files_attribute(kolmogorov, joined):
    """both.sel(reynolds_number=4000) (the docs' recipe) ran at Re = 1000, the global attribute
    xr.concat kept from the first file, with no warning (max |out - out(condition=4000)| = 0.70
    against a field std of 3.18); training reads the coordinate."""
    sel = joined.sel({RE: 4000.0})
    with pytest.warns(FlexDownscaleWarning, match=DISAGREE) as caught:
        out = kolmogorov(sel, **KW)
    text = str(caught[0].message)
    assert caught[0].filename == __file__
    assert (
        "its scalar coordinate 'reynolds_number' = 4000.0, but its global attribute "
        "'reynolds_number' = 1000.0" in text
    )
    assert "runs at reynolds_number = 4000.0, from the scalar coordinate" in text
    assert "ds.attrs.pop('reynolds_number') (or ds.attrs['reynolds_number'] = 4000.0)" in text
    assert out.attrs["flexdownscale_condition_reynolds_number"] == 4000.0
    assert out.attrs[RE] == 4000.0  # the output does not keep the stale attribute
    assert sel.attrs[RE] == 1000.0  # the input is not changed
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        fixed = kolmogorov(sel.assign_attrs({RE: 4000.0}), **KW)  # agreeing sources: silent
    np.testing.assert_array_equal(out["vorticity"].values, fixed["vorticity"].values)
    with pytest.warns(FlexDownscaleWarning, match="condition = 1000.0 given"):
        at_1000 = kolmogorov(sel, condition=1000.0, **KW)  # what it ran before: another field
    assert np.abs(out["vorticity"].values - at_1000["vorticity"].values).max() > 0.1


def test_scalar_variable_wins_over_the_attribute(kolmogorov, joined):
    """A global attribute 1000 and a scalar data variable 4000 ran at 1000 without a warning."""
    one = joined.isel({RE: 1}, drop=True)  # attribute 1000 (xr.concat's), fields at 4000
    one[RE] = xr.DataArray(4000.0)
    assert RE in one.data_vars
    with pytest.warns(FlexDownscaleWarning, match=r"its scalar variable 'reynolds_number' = 4000"):
        out = kolmogorov(one, **KW)
    assert out.attrs["flexdownscale_condition_reynolds_number"] == 4000.0


def test_variable_attribute_disagreeing_with_the_coordinate_warns(kolmogorov, joined):
    """A DataArray's own attribute (kept by xr.concat too) that contradicts its coordinate."""
    sel = joined.sel({RE: 4000.0})
    sel.attrs = {k: v for k, v in sel.attrs.items() if k != RE}
    sel["vorticity"].attrs[RE] = 1000.0
    with pytest.warns(FlexDownscaleWarning, match=DISAGREE) as caught:
        out = kolmogorov(sel, **KW)
    text = str(caught[0].message)
    assert "its variable 'vorticity''s attribute 'reynolds_number' = 1000.0" in text
    assert "ds['vorticity'].attrs.pop('reynolds_number')" in text
    assert out.attrs["flexdownscale_condition_reynolds_number"] == 4000.0


@pytest.mark.parametrize("condition", [None, 4000.0])
def test_joined_input_says_to_select_one_value_despite_its_attribute(kolmogorov, joined, condition):
    """The joined, unselected input (dims reynolds_number, x, y) ran at the attribute's 1000
    for both Reynolds numbers' fields or, with condition=, was told to "select or stack the
    extra dims" (stacking a condition dimension runs every field at one value)."""
    with pytest.raises(DataError) as e:
        kolmogorov(joined, condition=condition, **KW)
    text = str(e.value)
    assert (
        "the input's 'reynolds_number' holds 2 different values (1000, 4000) along 'reynolds_number'"
        in (text)
    )
    assert "Select one value per call, e.g. ds.sel(reynolds_number=1000.0)" in text
    assert "the global attribute 'reynolds_number' = 1000.0, which xr.concat kept" in text
    assert "stack" not in text


def test_forecaster_reads_the_condition_as_the_downscaler_does():
    """The Forecaster shares the rule: the scalar coordinate wins over the global attribute."""
    model = tiny_forecaster(condition={"name": RE, "scale": 1000.0})
    ds = box().assign_coords({RE: 4000.0}).assign_attrs({RE: 1000.0})
    with pytest.warns(FlexDownscaleWarning, match=DISAGREE):
        out = model(ds, lead_steps=1, seed=0)
    assert out.attrs["flexdownscale_condition_reynolds_number"] == 4000.0
    reference = model(ds.drop_attrs(deep=False), lead_steps=1, seed=0)
    np.testing.assert_array_equal(out["vorticity"].values, reference["vorticity"].values)
    many = xr.concat([ds, ds.assign_coords({RE: 2000.0})], dim=RE)
    with pytest.raises(DataError, match=r"holds 2 different values \(4000, 2000\)"):
        model(many, lead_steps=1, seed=0)


def test_one_value_held_along_time_is_that_value():
    """A condition stored along time at one value (``("time", [4000, 4000, 4000])``) was refused
    with "select the fields of one reynolds_number per call (ds.isel along 'time')", which
    leaves a forecast one frame (reviewer-75); it is that value, as training reads it."""
    model = tiny_forecaster(condition={"name": RE, "scale": 1000.0})
    ds = box()
    along = ds.assign_coords({RE: ("time", [4000.0] * ds.sizes["time"])})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        out = model(along, lead_steps=1, seed=0)
    assert out.attrs["flexdownscale_condition_reynolds_number"] == 4000.0
    reference = model(ds, lead_steps=1, seed=0, condition=4000.0)
    np.testing.assert_array_equal(out["vorticity"].values, reference["vorticity"].values)
    # an attribute that disagrees is named, as with a scalar coordinate
    with pytest.warns(FlexDownscaleWarning, match=r"coordinate 'reynolds_number' \(one value"):
        model(along.assign_attrs({RE: 1000.0}), lead_steps=1, seed=0)
    # values that differ along time are still refused
    moving = ds.assign_coords({RE: ("time", [4000.0, 4000.0, 2000.0])})
    with pytest.raises(DataError, match=r"holds 2 different values \(4000, 2000\)"):
        model(moving, lead_steps=1, seed=0)


# --------------------------------------------------------------------------------------------
# the liquid-water equivalence of a depth and a mass per area
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "expected", "scale"),
    [
        ("m", "kg m-2", 1000.0),
        ("mm", "kg m-2", 1.0),
        ("kg m-2", "m", 0.001),
        ("kg m-2", "mm", 1.0),
        ("mm s-1", "kg m-2 s-1", 1.0),
        ("m s-1", "kg m-2 s-1", 1000.0),
        ("mm day-1", "kg m-2 s-1", 1.0 / 86400.0),
        ("kg m-2 s-1", "mm h-1", 3600.0),
        ("m", "kg m-2 s-1", None),  # an amount against a rate
        ("m s-1", "kg m-2", None),
        ("K", "kg m-2", None),
        ("m", "K", None),
        ("m", "not_a_unit", None),
    ],
)
def test_water_equivalent_scale(found, expected, scale):
    """1 mm of liquid water (1000 kg m-3) is 1 kg m-2, per time as well."""
    got = water_equivalent(found, expected)
    if scale is None:
        assert got is None
    else:
        assert got == pytest.approx(scale, rel=1e-12)
    comparison = compare_units(found, expected)
    assert comparison.water_scale == got  # both not convertible by units alone
    assert comparison.conversion is None


def test_convertible_units_have_no_water_scale():
    assert compare_units("g m-2", "kg m-2").water_scale is None
    assert compare_units("mm", "m").water_scale is None


def test_depth_given_to_a_mass_per_area_model_gives_the_conversion():
    """'tp' in mm or m against a model in kg m-2 said only "no conversion exists between them";
    the message now gives the liquid-water conversion, which is not applied unasked."""
    model = tiny_forecaster(units="kg m-2")
    amount = box()  # values in kg m-2 (a mass per area)
    amount["vorticity"].attrs["units"] = "kg m-2"
    in_m = amount.copy()
    in_m["vorticity"] = (amount["vorticity"] / 1000).assign_attrs(units="m")
    with pytest.raises(UnitsError) as e:
        model(in_m, lead_steps=1, seed=0)
    text = str(e.value)
    assert text.startswith("variable 'vorticity' is in 'm', a length, but the model expects")
    assert (
        "for liquid water (1000 kg m-3) a depth is a mass per area, values in kg m-2 = values in "
        "m x 1000 (1 mm of water is 1 kg m-2)" in text
    )
    assert "no conversion exists" not in text
    code = "ds['vorticity'] = (ds['vorticity'] * 1000).assign_attrs(units='kg m-2')"
    assert f"convert first: {code}." in text
    assert in_m["vorticity"].attrs["units"] == "m"  # not converted on its own
    ds = in_m.copy()
    exec(code, {"ds": ds})  # the fix given runs as the model's own units
    np.testing.assert_allclose(ds["vorticity"].values, amount["vorticity"].values, rtol=1e-6)
    assert model(ds, lead_steps=1, seed=0)["vorticity"].attrs["units"] == "kg m-2"
    in_mm = amount.copy()
    in_mm["vorticity"] = amount["vorticity"].assign_attrs(units="mm")
    with pytest.raises(UnitsError, match=r"values in kg m-2 = values in mm \(1 mm of water"):
        model(in_mm, lead_steps=1, seed=0)
    # other kinds keep their message
    in_k = amount.copy()
    in_k["vorticity"] = amount["vorticity"].assign_attrs(units="K")
    with pytest.raises(UnitsError, match="no conversion exists between them") as e:
        model(in_k, lead_steps=1, seed=0)
    assert "liquid water" not in str(e.value)


# --------------------------------------------------------------------------------------------
# the condition and the normalization transform on the model card and in `flexdownscale info`
# --------------------------------------------------------------------------------------------

TP_NORMALIZATION = {
    "format_version": 1,
    "variables": [
        {"name": "tp", "transform": "log1p", "mean": 0.144, "std": 0.355, "units": "kg m-2"},
        {"name": "t2m", "transform": "none", "mean": 280.0, "std": 5.0, "units": "K"},
    ],
}
LOG1P_WORDS = (
    "log1p (standardized as log(1 + x); generated values are clipped at 0, the transform's "
    "lower bound)"
)


def test_model_card_lines_name_the_condition_and_the_transforms():
    condition = {"name": RE, "scale": 40000.0, "range": [1000.0, 4000.0]}
    assert model_card_lines(condition, TP_NORMALIZATION) == [
        "- physical condition: `reynolds_number` (the network sees reynolds_number / 40000), "
        "trained on 1000 to 4000; at inference `condition=` or the input's `reynolds_number` "
        "(a scalar coordinate, else a global attribute)",
        f"- normalization transform: `tp` {LOG1P_WORDS}",
    ]
    one = model_card_lines({"name": RE, "scale": 1.0, "range": [2000.0, 2000.0]}, {})
    assert one[0].startswith("- physical condition: `reynolds_number` (the network sees ")
    assert "/ 1), trained on 2000;" in one[0]
    assert model_card_lines(None, {"variables": [TP_NORMALIZATION["variables"][1]]}) == []
    assert normalization_transforms(TP_NORMALIZATION) == {"tp": LOG1P_WORDS}


def test_card_of_a_model_without_one_and_info_show_condition_and_transform(tmp_path, capsys):
    """The card never mentioned the condition, and neither the card nor `flexdownscale info`
    the log1p transform (with its clipping at 0)."""
    model = tiny_forecaster(condition={"name": RE, "scale": 1000.0})
    model.normalizer = Normalizer(
        {"vorticity": VariableStats(mean=0.1, std=0.4, transform="log1p", units="1")}
    )
    folder = model.save_pretrained(tmp_path / "tiny")
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("# tiny-box\n\n- physical condition: `reynolds_number` (the network ")
    assert f"- normalization transform: `vorticity` {LOG1P_WORDS}\n" in card
    assert main(["info", str(folder)]) == 0
    said = capsys.readouterr().out
    assert f"  normalization transform: vorticity {LOG1P_WORDS}\n" in said
    # a loaded folder's own card is kept as it is (the shipped cards are hand-written)
    loaded = Forecaster.from_pretrained(folder)
    loaded.card = "# hand-written\n"
    again = loaded.save_pretrained(tmp_path / "again")
    assert (again / "README.md").read_text(encoding="utf-8") == "# hand-written\n"
    # no transform, no line
    assert main(["info", "kolmogorov-x8"]) == 0
    assert "normalization transform" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("held_as", "fix"),
    [
        ("attribute", "ds.attrs.pop('reynolds_number')"),
        ("coordinate", "ds = ds.drop_vars('reynolds_number')"),
        ("variable attribute", "ds['vorticity'].attrs.pop('reynolds_number')"),
    ],
)
def test_condition_argument_differing_from_the_input_warns(kolmogorov, joined, held_as, fix):
    """condition=1000 on a field the input says is at Re = 4000 ran at 1000 without a word (a
    stale or mistyped value gives fields of another flow); it still runs at the value asked,
    and says what the input holds and how to keep a deliberate value quiet."""
    field = joined.sel({RE: 4000.0}).drop_vars(RE).drop_attrs(deep=False)
    if held_as == "attribute":
        field = field.assign_attrs({RE: 4000.0})
    elif held_as == "coordinate":
        field = field.assign_coords({RE: 4000.0})
    else:
        field["vorticity"] = field["vorticity"].assign_attrs({RE: 4000.0})
    with pytest.warns(FlexDownscaleWarning, match="condition = 1000.0 given, but") as caught:
        out = kolmogorov(field, condition=1000.0, **KW)
    (warning,) = [w for w in caught if "given, but" in str(w.message)]
    assert warning.filename == __file__
    text = str(warning.message)
    assert "= 4000.0; model 'kolmogorov-x8' runs at reynolds_number = 1000.0 as asked" in text
    assert fix in text
    assert out.attrs[f"flexdownscale_condition_{RE}"] == 1000.0
    # the same value, or an input that holds none, is quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        kolmogorov(field, condition=4000, **KW)
        bare = field.drop_vars(RE, errors="ignore").drop_attrs(deep=False)
        bare["vorticity"] = bare["vorticity"].drop_attrs(deep=False).assign_attrs(units="1")
        kolmogorov(bare, condition=1000.0, **KW)
