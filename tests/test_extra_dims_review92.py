"""Inputs with ensemble or extra dims (reviewer-92): the advice the errors give works.

- ``ens.stack(sample=("member", "time")).flex.downscale(members=2, dims={"time": "sample"})``
  (the "select or stack" advice) raised xarray's "cannot drop or update coordinate(s)
  'member'": the level clashes with the output's ``member`` dim; now a DataError saying to
  rename it before stacking, which then works.
- A forecast was told to "select or stack" too, and a stacked time dim raised a TypeError
  (``tuple - tuple``); a forecast runs one trajectory, so it is told to select one value.
- The Forecaster dropped an input's scalar ``member`` coordinate without a word when asked for
  members (the Downscaler refused it); now both refuse it.
- On the command line "(or stack them)" could not be done (a file holds no stacked dim).
"""

from __future__ import annotations

import pytest
import xarray as xr
from test_forecast_fixes import box, box_grid, tiny_forecaster
from test_pipeline import era5_pair, make_downscaler

from flexdownscale.cli import cli_spelling
from flexdownscale.errors import DataError


@pytest.fixture(scope="module")
def ensemble(shared_data):
    fine, coarse = era5_pair(shared_data, times=2, ny=32, nx=32)
    ens = xr.concat([coarse, coarse + 0.1], "member").assign_coords(member=[1, 2])
    return make_downscaler(fine), ens


def test_a_stacked_member_level_is_told_to_be_renamed(ensemble):
    model, ens = ensemble
    stacked = ens.stack(sample=("member", "time"))
    with pytest.raises(DataError) as caught:
        model(stacked, members=2, dims={"time": "sample"})
    assert str(caught.value) == (
        "the input has a coordinate 'member' (a level of the stacked dim 'sample'), but the "
        "output has a 'member' dim; rename it before stacking, e.g. "
        "ds.rename(member='input_member').stack(sample=...)"
    )
    # the fix works, and the ensemble unstacks to (member, input_member, time) fields
    renamed = ens.rename(member="input_member").stack(sample=("input_member", "time"))
    out = model(renamed, members=2, dims={"time": "sample"})
    assert out["t2m"].dims[:2] == ("member", "sample")
    back = out.unstack("sample")
    assert back.sizes["input_member"] == 2
    assert back.sizes["time"] == 2
    # without members the output has no member dim: the level may keep its name
    assert model(stacked, dims={"time": "sample"})["t2m"].sizes["sample"] == 4


def test_a_member_coordinate_along_another_dim_is_refused_with_the_fix(ensemble):
    model, ens = ensemble
    one = ens.isel(member=0).assign_coords(member=("time", [5, 6]))
    with pytest.raises(DataError, match=r"coordinate 'member' along \('time',\).*rename it"):
        model(one, members=2)


def _forecaster_and_run():
    return tiny_forecaster(box_grid()), box(times=4)


def test_a_forecast_of_an_ensemble_is_told_to_select_one_member():
    model, run = _forecaster_and_run()
    ens = xr.concat([run, run], "realization").assign_coords(realization=[0, 1])
    with pytest.raises(DataError) as caught:
        model(ens, lead_steps=1)
    text = str(caught.value)
    assert "a forecast runs one trajectory: select one value of ['realization'] " in text
    assert "(e.g. ds.isel(realization=0)) and forecast each in turn" in text
    assert "stack" not in text
    assert cli_spelling(text, "forecast").endswith(
        "select one value of ['realization'] in the input file and forecast each as its own "
        "file (e.g. xr.open_dataset(IN).isel(realization=0).to_netcdf(ONE))"
    )
    with pytest.raises(DataError, match=r"the time dim 's' is stacked from \['realization', 'ti"):
        model(ens.stack(s=("realization", "time")), lead_steps=1, dims={"time": "s"})


def test_the_forecasters_scalar_member_is_refused_as_the_downscalers():
    model, run = _forecaster_and_run()
    one = xr.concat([run, run], "member").assign_coords(member=[1, 2]).sel(member=2)
    with pytest.raises(DataError, match=r"scalar coordinate 'member' .*drop it first"):
        model(one, lead_steps=1, members=2)
    out = model(one, lead_steps=1)  # no member dim asked for: kept, as the Downscaler does
    assert int(out["member"]) == 2


def test_the_command_line_says_one_file_per_value():
    said = cli_spelling("select or stack the extra dims ['level', 'member'] first")
    assert said == (
        "select one value of the extra dims ['level', 'member'] in the input file first and run "
        "each value as its own file (e.g. xr.open_dataset(IN).isel(level=0).to_netcdf(ONE))"
    )
    assert "stack" not in said
