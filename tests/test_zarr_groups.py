"""Zarr stores whose variables lie in a group (``ds.to_zarr(store, group="forecast")``).

``xr.open_zarr`` reads the root group only, so such a store looked empty: ``flexdownscale
downscale`` said the model's variables were not found in ``[]``, and training could not find a
grid, with no word of groups (netCDF-4 files got the group and the extraction line; stores
did not). Stores now get the same: the groups that hold variables, and a line that copies one
to a store of its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from flexdownscale.cli import main
from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.data.io import group_advice, store_groups, zarr_groups
from flexdownscale.errors import DataError

#: The zarr formats a store is written in: version 3 where zarr 3 writes it (zarr 2.18, the
#: floor, writes v3 only behind its experimental-API switch)
ZARR_FORMATS = [
    2,
    pytest.param(
        3,
        marks=pytest.mark.skipif(
            int(pytest.importorskip("zarr").__version__.split(".")[0]) < 3,
            reason="zarr < 3 writes format 3 only behind ZARR_V3_EXPERIMENTAL_API",
        ),
    ),
]


def _fields(times: int = 2) -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), 280 + rng.normal(size=(times, 16, 16)))},
        coords={
            "time": pd.date_range("2019-03-01", periods=times, freq="h"),
            "latitude": ("latitude", 50 + 0.25 * np.arange(16), {"units": "degrees_north"}),
            "longitude": ("longitude", 0.25 * np.arange(16), {"units": "degrees_east"}),
        },
    ).assign(t2m=lambda d: d.t2m.assign_attrs(units="K"))


@pytest.mark.parametrize("zarr_format", ZARR_FORMATS)
def test_groups_of_a_store_are_listed_only_where_variables_are(tmp_path, zarr_format):
    ds = _fields()
    kw = {"zarr_format": zarr_format, "consolidated": False}
    ds.to_zarr(tmp_path / "g.zarr", group="forecast", **kw)
    assert zarr_groups(tmp_path / "g.zarr") == ["forecast"]
    ds.to_zarr(tmp_path / "nested.zarr", group="run/members", **kw)
    assert store_groups(tmp_path / "nested.zarr") == ["run/members"]
    ds.to_zarr(tmp_path / "flat.zarr", **kw)
    assert zarr_groups(tmp_path / "flat.zarr") == []
    ds[[]].to_zarr(tmp_path / "coords.zarr", group="axes", **kw)  # coordinates only
    assert zarr_groups(tmp_path / "coords.zarr") == []
    assert zarr_groups(tmp_path / "missing.zarr") == []
    (tmp_path / "not-a-store").mkdir()
    assert zarr_groups(tmp_path / "not-a-store") == []


def test_the_copy_line_gives_a_store_of_its_own(tmp_path):
    ds = _fields()
    path = str(tmp_path / "g.zarr")
    ds.to_zarr(path, group="forecast", consolidated=False)
    advice = group_advice(path, ["forecast"], form="both")
    assert advice.startswith("the zarr store has variables in group(s) ['forecast']")
    assert "ncks" not in advice
    assert advice.endswith(f"pass xr.open_zarr({path!r}, group='forecast') in place of the path")
    line = advice.split('python -c "')[1].split('"')[0]
    exec(line, {})
    with xr.open_zarr(tmp_path / "g_forecast.zarr") as got:
        xr.testing.assert_identical(got.load(), ds)


def test_downscale_names_the_group_of_a_store_with_an_empty_root(tmp_path, capsys):
    path = tmp_path / "g.zarr"
    _fields().to_zarr(path, group="forecast", consolidated=False)
    args = ["downscale", str(path), str(tmp_path / "out.nc"), "--model", "era5-t2m-x4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{str(path)!r} has no variable at its root; the zarr store has variables in " in err
    assert "group(s) ['forecast']" in err
    assert not (tmp_path / "out.nc").exists()


def test_training_stores_in_a_group(tmp_path):
    path = str(tmp_path / "train.zarr")
    _fields(times=4).to_zarr(path, group="forecast", consolidated=False)

    def open_set(data):
        return SuperResolutionDataset(data, variables=["t2m"], factor=4, crop_size=16)

    with pytest.raises(DataError) as err:
        open_set([path])
    assert str(err.value).startswith(f"{path!r} has no variable at its root; the zarr store ")
    with xr.open_zarr(path, group="forecast") as grouped:  # the Python way it gives
        assert len(open_set([grouped.load()])) == 4
