"""Outputs of several calls joined with provenance true for every part
(:func:`flexdownscale.provenance.concat_outputs`).

``xr.concat`` keeps the first part's attributes: ``flexdownscale forecast --start 17 25`` on a
run at Re = 1000 then 4000 recorded ``flexdownscale_condition_reynolds_number = 1000`` for both
starts (the second ran at 4000), and ``flexdownscale evaluate`` repeated it (reviewer-92).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from test_forecast_fixes import box, box_grid, tiny_forecaster

from flexdownscale.cli import main
from flexdownscale.evaluation import _prediction_provenance
from flexdownscale.provenance import concat_outputs

CONDITION = {"name": "reynolds_number", "scale": 4000.0, "range": [1000.0, 4000.0]}


def _part(value: float, start: float, **attrs) -> xr.Dataset:
    return xr.Dataset(
        {"v": (("lead", "y"), np.full((2, 3), value))},
        coords={"forecast_reference_time": start},
        attrs={
            "flexdownscale_model": "m",
            "flexdownscale_seed": 0,
            "flexdownscale_condition_reynolds_number": value,
            "history": f"2026-11-25 ran at {value:g}\nthe input's history",
            "title": f"run {value:g}",
            **attrs,
        },
    )


def test_attributes_that_differ_are_kept_per_part_in_order():
    parts = [_part(1000.0, 17.0), _part(4000.0, 25.0, flexdownscale_seed=7)]
    before = [dict(p.attrs) for p in parts]
    out = concat_outputs(parts, "forecast_reference_time")
    assert out.sizes["forecast_reference_time"] == 2
    np.testing.assert_array_equal(out.attrs["flexdownscale_condition_reynolds_number"], [1e3, 4e3])
    np.testing.assert_array_equal(out.attrs["flexdownscale_seed"], [0.0, 7.0])
    assert out.attrs["flexdownscale_model"] == "m"  # equal in every part: kept as it is
    assert "title" not in out.attrs  # differs and is not provenance: dropped, as xarray does
    assert out.attrs["history"].split("\n") == [
        "2026-11-25 ran at 4000; forecast_reference_time = 25",
        "2026-11-25 ran at 1000; forecast_reference_time = 17",
        "the input's history",
    ]
    assert [dict(p.attrs) for p in parts] == before  # the parts are not changed


def test_a_key_only_some_parts_have_is_nan_or_empty_where_missing():
    a, b = _part(1000.0, 1.0), _part(1000.0, 2.0)
    a.attrs["flexdownscale_sampler_options"] = "delta=0.5"
    del b.attrs["flexdownscale_condition_reynolds_number"]
    out = concat_outputs([a, b], "forecast_reference_time")
    np.testing.assert_array_equal(
        out.attrs["flexdownscale_condition_reynolds_number"], [1e3, np.nan]
    )
    # text per part is one string (netCDF-3 and netCDF-4 classic hold no arrays of strings)
    assert out.attrs["flexdownscale_sampler_options"] == "delta=0.5 | "


def test_arrays_and_netcdf_round_trip(tmp_path):
    parts = [_part(1000.0, 17.0), _part(4000.0, 25.0)]
    path = tmp_path / "fc.nc"
    concat_outputs(parts, "forecast_reference_time").to_netcdf(path)
    with xr.open_dataset(path) as back:
        found = _prediction_provenance(back.attrs)
    assert found["condition"] == {"reynolds_number": [1000.0, 4000.0]}


@pytest.mark.parametrize(
    ("parts", "kwargs", "says"),
    [([], {}, "at least one output"), ([1], {"combine_attrs": "override"}, "leave combine_attrs")],
)
def test_refusals(parts, kwargs, says):
    with pytest.raises(ValueError, match=says):
        concat_outputs([_part(1.0, 1.0)] * len(parts), "forecast_reference_time", **kwargs)


def test_forecast_starts_at_two_conditions_record_each(tmp_path, capsys):
    """The command line: two starts, the first at Re = 1000, the second at 4000; each is
    recorded, equal to its own one-start run, and evaluate's report names both values."""
    folder = tmp_path / "model"
    tiny_forecaster(box_grid(), condition=CONDITION).save_pretrained(folder)
    run = box(times=8)
    values = np.array([1000.0] * 4 + [4000.0] * 4)
    run = run.assign(reynolds_number=("time", values, {"units": "1"}))
    src = tmp_path / "run.nc"
    run.to_netcdf(src)
    starts = [str(float(run["time"].values[k])) for k in (2, 6)]
    both, one = tmp_path / "both.nc", tmp_path / "one.nc"
    common = ["--model", str(folder), "--lead-steps", "1", "--seed", "3", "--quiet"]
    assert main(["forecast", str(src), str(both), *common, "--start", *starts]) == 0
    assert main(["forecast", str(src), str(one), *common, "--start", starts[1]]) == 0
    with xr.open_dataset(both) as fc, xr.open_dataset(one) as single:
        recorded = fc.attrs["flexdownscale_condition_reynolds_number"]
        np.testing.assert_array_equal(recorded, [1000.0, 4000.0])
        assert single.attrs["flexdownscale_condition_reynolds_number"] == 4000.0
        np.testing.assert_array_equal(
            fc["vorticity"].isel(forecast_reference_time=1).values.squeeze(),
            single["vorticity"].values.squeeze(),
        )
    capsys.readouterr()
    assert main(["evaluate", str(both), str(src), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "metrics.md").read_text()
    assert "forecast 1 step ahead, condition reynolds_number = 1000.0, 4000.0 (one per part, " in (
        report
    )
