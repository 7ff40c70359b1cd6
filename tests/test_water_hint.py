"""A water depth against a mass per area (``mm`` / ``m`` against ``kg m-2``, ``mm/h`` against
``kg m-2 s-1``) in every units message.

The Downscaler offered the liquid-water equivalence, but the normalizer, the metrics, ``flexdownscale
evaluate`` and the training files' units check said only that no conversion exists. Each now
gives the equivalence (1 mm of water is 1 kg m-2, for a density of 1000 kg m-3) and the fix in
its own words (Python, or NCO commands for a file), through one helper
(:meth:`~flexdownscale.units.UnitComparison.water_hint`); nothing is converted unasked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from flexdownscale.cli import main
from flexdownscale.data import Normalizer, VariableStats
from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.errors import UnitsError
from flexdownscale.metrics import rmse
from flexdownscale.units import compare_units

LIQUID = "for liquid water (1000 kg m-3) "


@pytest.mark.parametrize(
    ("found", "expected", "rule", "code"),
    [
        ("mm", "kg m-2", "values in kg m-2 = values in mm (", "ds['tp'].assign_attrs"),
        ("m", "kg m-2", "values in kg m-2 = values in m x 1000 (", "(ds['tp'] * 1000)"),
        ("kg m-2", "m", "values in m = values in kg m-2 / 1000 (", "(ds['tp'] / 1000)"),
        ("kg m-2 s-1", "mm/h", "values in mm/h = values in kg m-2 s-1 x 3600 (", "* 3600)"),
        ("mm/h", "kg m-2 s-1", "values in kg m-2 s-1 = values in mm/h / 3600 (", "/ 3600)"),
    ],
)
def test_the_hint_gives_the_factor_and_its_direction(found, expected, rule, code):
    comparison = compare_units(found, expected)
    hint = comparison.water_hint("tp")
    assert hint is not None
    assert hint.startswith(LIQUID)
    assert rule in hint
    assert code in hint
    assert "does not assume it" in hint
    # the Python given converts the values by the water scale and sets the expected units
    ds = xr.Dataset({"tp": ("x", np.array([0.5, 2.0, 7.0]), {"units": found})})
    fixed = ds.copy()
    exec(hint.split("convert first: ")[1], {"ds": fixed})
    np.testing.assert_allclose(fixed["tp"].values, ds["tp"].values * comparison.water_scale)
    assert fixed["tp"].attrs["units"] == expected
    assert ds["tp"].attrs["units"] == found  # the input is untouched


def test_the_command_and_words_forms():
    hint = compare_units("mm/h", "kg m-2 s-1").water_hint("pr", form="command", file="my t.nc")
    assert hint is not None
    assert hint.endswith(
        "convert first: ncap2 -O -s 'pr=pr/3600' 'my t.nc' 'my t.nc' && "
        "ncatted -O -a units,pr,o,c,'kg m-2 s-1' 'my t.nc'"
    )
    same = compare_units("mm", "kg m-2").water_hint("tp", form="command", file="t.nc")
    assert same is not None
    assert same.endswith("convert first: ncatted -O -a units,tp,o,c,'kg m-2' t.nc")
    words = compare_units("m", "kg m-2").water_hint(form="words", target="obs")
    assert words is not None
    assert words.endswith(
        "convert obs first (multiply by 1000) and set its attrs['units'] = 'kg m-2'"
    )
    assert compare_units("K", "kg m-2").water_hint("tp") is None
    assert compare_units("g m-2", "kg m-2").water_hint("tp") is None  # a conversion exists


def test_normalizer_transform_gives_the_water_conversion():
    norm = Normalizer({"tp": VariableStats(mean=2.0, std=3.0, units="kg m-2")})
    truth = xr.Dataset({"tp": ("x", np.array([0.0, 1.5, 9.0]), {"units": "kg m-2"})})
    in_m = truth.assign(tp=(truth["tp"] / 1000).assign_attrs(units="m"))
    with pytest.raises(UnitsError) as err:
        norm.transform(in_m)
    text = str(err.value)
    assert text.startswith(
        "variable 'tp' is a length ('m') but the statistics were fitted on a mass per area "
    )
    assert LIQUID + "a depth is a mass per area, values in kg m-2 = values in m x 1000" in text
    assert "no conversion" not in text
    code = text.split("convert first: ")[1].split(". Otherwise")[0]
    assert code == "ds['tp'] = (ds['tp'] * 1000).assign_attrs(units='kg m-2')"
    ds = in_m.copy()
    exec(code, {"ds": ds})
    xr.testing.assert_allclose(norm.transform(ds), norm.transform(truth))
    in_k = truth.assign(tp=truth["tp"].assign_attrs(units="K"))  # other kinds: as before
    with pytest.raises(UnitsError, match="so no conversion joins them") as err:
        norm.transform(in_k)
    assert "liquid water" not in str(err.value)


def test_metrics_give_the_water_conversion_in_python():
    rng = np.random.default_rng(0)
    fcst = xr.DataArray(rng.gamma(2.0, size=50), dims="n", attrs={"units": "kg m-2 s-1"})
    obs_si = xr.DataArray(rng.gamma(2.0, size=50), dims="n", attrs={"units": "kg m-2 s-1"})
    obs = (obs_si * 3600).assign_attrs(units="mm/h")
    with pytest.raises(UnitsError) as err:
        rmse(fcst, obs)
    text = str(err.value)
    assert text.startswith("fcst is in 'kg m-2 s-1' but obs is in 'mm/h'; ")
    assert "values in kg m-2 s-1 = values in mm/h / 3600 (1 mm of water is 1 kg m-2)" in text
    code = text.split("convert first: ")[1].split(". Otherwise")[0]
    assert code == "obs = (obs / 3600).assign_attrs(units='kg m-2 s-1')"
    scope = {"obs": obs}
    exec(code, scope)
    assert float(rmse(fcst, scope["obs"])) == pytest.approx(float(rmse(fcst, obs_si)), rel=1e-12)
    # a Dataset: the variable's own line
    with pytest.raises(UnitsError, match=r"obs\['tp'\] = obs\['tp'\].assign_attrs\(units="):
        rmse(
            xr.Dataset({"tp": fcst.assign_attrs(units="kg m-2")}),
            xr.Dataset({"tp": obs.assign_attrs(units="mm")}),
        )


def _field(units: str, scale: float = 1.0) -> xr.Dataset:
    rng = np.random.default_rng(0)
    da = xr.DataArray(
        rng.gamma(2.0, size=(8, 8)) * scale,
        dims=("y", "x"),
        coords={"x": np.arange(8.0), "y": np.arange(8.0)},
        attrs={"units": units},
    )
    for axis in ("x", "y"):
        da[axis].attrs = {"units": "km"}
    return xr.Dataset({"pr": da})


def test_evaluate_gives_the_commands_that_convert_the_truth(tmp_path, capsys):
    pred, truth = tmp_path / "p.nc", tmp_path / "t.nc"
    _field("kg m-2 s-1").to_netcdf(pred)
    _field("mm/h", 3600.0).to_netcdf(truth)
    out = tmp_path / "report"
    code = main(["evaluate", str(pred), str(truth), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "variable 'pr' is a mass flux" in err
    assert "values in kg m-2 s-1 = values in mm/h / 3600" in err
    assert (
        f"convert first: ncap2 -O -s 'pr=pr/3600' {truth} {truth} && "
        f"ncatted -O -a units,pr,o,c,'kg m-2 s-1' {truth}"
    ) in err
    assert "no conversion" not in err
    assert not out.exists()
    # what the commands do (scale the values, set the units) makes the files comparable
    with xr.open_dataset(truth) as raw:
        fixed = raw.load()
    fixed["pr"] = (fixed["pr"] / 3600).assign_attrs(units="kg m-2 s-1")
    fixed.to_netcdf(tmp_path / "t2.nc")
    assert main(["evaluate", str(pred), str(tmp_path / "t2.nc"), "--out", str(out)]) == 0
    assert (out / "metrics.json").exists()


def _hourly_file(path, units: str, scale: float, start: str) -> str:
    rng = np.random.default_rng(1)
    ds = xr.Dataset(
        {"tp": (("time", "latitude", "longitude"), rng.gamma(2.0, size=(4, 16, 16)) * scale)},
        coords={
            "time": pd.date_range(start, periods=4, freq="h"),
            "latitude": ("latitude", 50 + 0.25 * np.arange(16), {"units": "degrees_north"}),
            "longitude": ("longitude", 0.25 * np.arange(16), {"units": "degrees_east"}),
        },
    )
    ds["tp"].attrs["units"] = units
    ds.to_netcdf(path)
    return str(path)


def test_training_files_in_a_depth_and_a_mass_per_area(tmp_path):
    a = _hourly_file(tmp_path / "a.nc", "kg m-2", 1.0, "2019-03-01")
    b = _hourly_file(tmp_path / "b.nc", "m", 1e-3, "2019-03-02")
    norm = Normalizer({"tp": VariableStats(mean=2.0, std=1.0)})

    def open_set(paths):
        return SuperResolutionDataset(
            paths, variables=["tp"], factor=4, crop_size=16, normalizer=norm
        )

    with pytest.raises(UnitsError) as err:
        open_set([a, b])
    text = str(err.value)
    assert text.startswith(f"'tp' is in 'm' in {b!r} but in 'kg m-2' in {a!r}")
    assert "values in kg m-2 = values in m x 1000 (1 mm of water is 1 kg m-2)" in text
    assert (
        f"convert first: ncap2 -O -s 'tp=tp*1000' {b} {b} && "
        f"ncatted -O -a units,tp,o,c,'kg m-2' {b}. Otherwise"
    ) in text
    # in-memory datasets get the Python line
    with xr.open_dataset(a) as first, xr.open_dataset(b) as second:
        given = [first.load(), second.load()]
    with pytest.raises(UnitsError) as err:
        open_set(given)
    code = str(err.value).split("convert first: ")[1].split(". Otherwise")[0]
    assert code == "ds['tp'] = (ds['tp'] * 1000).assign_attrs(units='kg m-2')"
    ds = given[1].copy()
    exec(code, {"ds": ds})
    assert len(open_set([given[0], ds])) == 8
    assert given[1]["tp"].attrs["units"] == "m"
