"""Files whose variables lie in a netCDF-4 group (``ds.to_netcdf(path, group="forecast")``).

xarray reads the root group only, so such a file looked empty: ``flexdownscale downscale`` said
the model's variables were not found in ``[]`` and training could not find a grid, with no word
of groups. Where a file is opened and its root lacks what is wanted, the groups that hold
variables are named now, with the ``ncks`` / xarray line that extracts one to a flat file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import flexdownscale.cli as cli
import flexdownscale.data.datasets as datasets
from flexdownscale.cli import main
from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.data.io import group_advice, netcdf_groups
from flexdownscale.errors import DataError, GridError


def _fields(name: str = "t2m", times: int = 2) -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            name: (
                ("time", "latitude", "longitude"),
                280 + rng.normal(size=(times, 16, 16)),
                {"units": "K"},
            )
        },
        coords={
            "time": pd.date_range("2019-03-01", periods=times, freq="h"),
            "latitude": ("latitude", 50 + 0.25 * np.arange(16), {"units": "degrees_north"}),
            "longitude": ("longitude", 0.25 * np.arange(16), {"units": "degrees_east"}),
        },
    )


def test_groups_are_listed_only_where_variables_are(tmp_path):
    ds = _fields()
    ds.to_netcdf(tmp_path / "g.nc", group="forecast")
    assert netcdf_groups(tmp_path / "g.nc") == ["forecast"]
    ds.to_netcdf(tmp_path / "nested.nc", group="run/members")
    assert netcdf_groups(tmp_path / "nested.nc") == ["run/members"]
    ds.to_netcdf(tmp_path / "flat.nc")
    assert netcdf_groups(tmp_path / "flat.nc") == []
    ds.to_netcdf(tmp_path / "classic.nc", format="NETCDF3_64BIT")  # no HDF5: no groups
    assert netcdf_groups(tmp_path / "classic.nc") == []
    ds[[]].to_netcdf(tmp_path / "coords.nc", group="axes")  # coordinates only
    assert netcdf_groups(tmp_path / "coords.nc") == []
    assert netcdf_groups(tmp_path / "missing.nc") == []


def test_the_extraction_line_gives_a_flat_file(tmp_path):
    ds = _fields()
    path = str(tmp_path / "g.nc")
    ds.to_netcdf(path, group="forecast")
    advice = group_advice(path, ["forecast"])
    assert advice.startswith("the file has variables in group(s) ['forecast']")
    flat = str(tmp_path / "g_forecast.nc")
    assert f"ncks -G : -g forecast {path} {flat} (NCO)" in advice
    line = advice.split('python -c "')[1].rstrip('"')
    exec(line, {})
    with xr.open_dataset(flat) as got:
        xr.testing.assert_identical(got.load(), ds)


def test_downscale_names_the_group_of_a_file_with_an_empty_root(tmp_path, capsys, monkeypatch):
    path = tmp_path / "g.nc"
    _fields().to_netcdf(path, group="forecast")
    args = ["downscale", str(path), str(tmp_path / "out.nc"), "--model", "era5-t2m-x4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{str(path)!r} has no variable at its root; the file has variables in group(s) " in err
    assert "['forecast']" in err
    assert f"ncks -G : -g forecast {path} " in err
    assert not (tmp_path / "out.nc").exists()
    # without the groups the message said nothing of them (what the user got before)
    monkeypatch.setattr("flexdownscale.data.io.netcdf_groups", lambda path: [])
    assert main(args) == 2
    assert "group" not in capsys.readouterr().err


def test_downscale_and_evaluate_name_groups_when_the_variable_is_not_at_the_root(tmp_path, capsys):
    path = tmp_path / "mix.nc"
    root = _fields("sp")
    root["sp"].attrs["units"] = "Pa"
    root.to_netcdf(path)
    _fields().to_netcdf(path, group="forecast", mode="a")
    args = ["downscale", str(path), str(tmp_path / "out.nc"), "--model", "era5-t2m-x4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "the model needs variables ['t2m']" in err
    assert f"{str(path)!r} has groups too: the file has variables in group(s) ['forecast']" in err
    # evaluate: a prediction at the root against a truth in a group
    _fields().to_netcdf(tmp_path / "pred.nc")
    truth = tmp_path / "truth.nc"
    _fields().to_netcdf(truth, group="obs")
    out = tmp_path / "report"
    assert main(["evaluate", str(tmp_path / "pred.nc"), str(truth), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{str(truth)!r} has no variable at its root" in err
    assert f"ncks -G : -g obs {truth} {tmp_path / 'truth_obs.nc'}" in err
    assert not out.exists()
    assert cli._groups_hint(str(tmp_path / "pred.nc")) == ""  # a flat file: nothing to add


def test_training_files_in_a_group(tmp_path, monkeypatch):
    path = str(tmp_path / "train.nc")
    _fields(times=4).to_netcdf(path, group="forecast")

    def open_set(data):
        return SuperResolutionDataset(data, variables=["t2m"], factor=4, crop_size=16)

    with pytest.raises(DataError) as err:
        open_set([path])
    text = str(err.value)
    assert text.startswith(f"{path!r} has no variable at its root; the file has variables in ")
    assert "ncks -G : -g forecast" in text
    said = f"pass xr.open_dataset({path!r}, group='forecast') in place of the path"
    assert text.endswith(said)
    # the Python way given works
    with xr.open_dataset(path, group="forecast") as grouped:
        assert len(open_set([grouped.load()])) == 4
    # without the group check it failed elsewhere, with no word of groups
    monkeypatch.setattr(datasets, "store_groups", lambda path: [])
    with pytest.raises(GridError, match=r"could not find the x and y dimension among \[\]"):
        open_set([path])
