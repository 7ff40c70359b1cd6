"""The output of a downscale or a forecast carries the input's CF grid mapping (reviewer-118).

A window of the real radar file (Albers projection, grid mapping ``proj``): the grid mapping
comes back whether the file is opened as is (``grid_mapping`` in the variable's attrs, ``proj``
a data variable) or with ``decode_coords="all"`` (``grid_mapping`` in the encoding, ``proj`` a
coordinate), for a Dataset, a selection of its variables and a DataArray; it is written by
``to_netcdf`` and reads back equal to the input's. A reference to a variable that neither the
input nor the model folder holds is left out, with a warning, never written dangling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from test_pipeline import FACTOR, make_downscaler

from flexdownscale import Forecaster
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import Normalizer, degrade, grid_spec
from flexdownscale.errors import FlexDownscaleWarning
from flexdownscale.models import build_model
from flexdownscale.pipeline import Downscaler

RADAR = "radar/bom_mtstapylton_prcp10min_2020-10-31.nc"
VAR = "precipitation"
UNITS = {VAR: "kg m-2"}
#: the window's amounts are small (0.1 kg m-2 at most): log1p would be nearly the identity
PLAIN = {"transforms": {VAR: "none"}}


@pytest.fixture(scope="module")
def radar(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 64 x 64 fine window of two times, its x4 coarse copy written to netCDF (``proj``
    and ``grid_mapping`` as in the file) and the file's own ``proj`` attributes."""
    with xr.open_dataset(shared_data / RADAR) as ds:
        fine = ds.isel(time=slice(72, 74), y=slice(192, 256), x=slice(192, 256)).load()
    coarse = degrade(fine, FACTOR)
    assert coarse[VAR].attrs["grid_mapping"] == "proj"
    assert "proj" in coarse.data_vars
    path = tmp_path_factory.mktemp("radar") / "coarse.nc"
    coarse.to_netcdf(path)
    return {"fine": fine, "coarse": path, "proj": dict(fine["proj"].attrs)}


@pytest.fixture(scope="module")
def downscaler(radar: dict[str, Any]) -> Downscaler:
    """A tiny x4 model of the window's grid: its grid.json records ``proj``."""
    down = make_downscaler(radar["fine"], variables=[VAR], units=UNITS, name="radar-test", **PLAIN)
    assert down.grid["grid"]["crs"]["name"] == "proj"
    return down


def _open(path: Path, decode_coords: bool | str) -> xr.Dataset:
    with xr.open_dataset(path, decode_coords=decode_coords) as ds:
        return ds.load()


def _form(ds: xr.Dataset, form: str) -> xr.Dataset | xr.DataArray:
    """The input as a user passes it: whole, a selection of its variables, or one DataArray."""
    return {"dataset": ds, "selection": ds[[VAR]], "dataarray": ds[VAR]}[form]


def _grid_mapping(ds: xr.Dataset, var: str = VAR) -> dict[str, Any] | None:
    """The attributes of the grid mapping ``ds[var]`` refers to (attrs or encoding), ``None``
    without a reference; fails on a reference to a variable ``ds`` lacks."""
    ref = ds[var].attrs.get("grid_mapping") or ds[var].encoding.get("grid_mapping")
    if not ref:
        return None
    assert ref in ds.variables, f"dangling grid_mapping {ref!r}: {list(ds.variables)}"
    assert ds[ref].ndim == 0
    return dict(ds[ref].attrs)


def _assert_same_attrs(found: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> None:
    assert found is not None, "no grid mapping"
    assert set(found) == set(expected)
    for key, value in expected.items():
        if isinstance(value, str):
            assert found[key] == value, key
        else:
            np.testing.assert_allclose(np.asarray(found[key]), np.asarray(value), err_msg=key)


def _no_dangling_reference(path: Path, var: str = VAR) -> dict[str, Any]:
    """The written file's attributes of ``var``, checked to name only variables it holds."""
    with xr.open_dataset(path, decode_coords=False) as raw:
        attrs = dict(raw[var].attrs)
        for name in str(attrs.get("grid_mapping", "")).replace(":", " ").split():
            assert name in raw.variables or name in raw.dims, f"dangling {name!r}"
    return attrs


def _assert_round_trips(out: xr.Dataset, path: Path, expected: Mapping[str, Any]) -> None:
    """``out`` written to ``path`` reads back with the grid mapping ``expected``, opened as
    is and with ``decode_coords="all"``."""
    out.to_netcdf(path)
    assert _no_dangling_reference(path)["grid_mapping"] == "proj"
    for decode_coords in (True, "all"):
        _assert_same_attrs(_grid_mapping(_open(path, decode_coords)), expected)


@pytest.mark.parametrize(
    ("decode_coords", "form"),
    [
        (True, "selection"),
        (True, "dataarray"),
        ("all", "dataset"),
        ("all", "selection"),
        ("all", "dataarray"),
    ],
)
def test_downscaled_radar_keeps_its_grid_mapping(radar, downscaler, tmp_path, decode_coords, form):
    """Reviewer-118: decode_coords="all" lost the grid mapping (the reference is in the
    encoding); a DataArray or a selection of the file opened as is wrote ``grid_mapping =
    "proj"`` without ``proj``. The reference stays where the input keeps it; ``proj`` is the
    input's, or rebuilt from the model's grid.json where the input left it behind."""
    ds = _open(radar["coarse"], decode_coords)
    where = "attrs" if decode_coords is True else "encoding"
    assert getattr(ds[VAR], where)["grid_mapping"] == "proj"
    out = _form(ds, form).flex.downscale(downscaler, members=2, seed=0)
    assert getattr(out[VAR], where)["grid_mapping"] == "proj"  # where the input keeps it
    _assert_same_attrs(_grid_mapping(out), radar["proj"])
    _assert_round_trips(out, tmp_path / "fine.nc", radar["proj"])


def test_lazy_and_tiled_runs_keep_the_grid_mapping(radar, downscaler, tmp_path):
    """Dask input and several tiles build the output's metadata as an eager run does."""
    plain = _open(radar["coarse"], True)
    whole = downscaler(plain, members=2, seed=0)
    _assert_same_attrs(_grid_mapping(whole), radar["proj"])  # (this one was right before)
    lazy = downscaler(plain[VAR].chunk(time=1), members=2, seed=0, tile=32)
    assert lazy[VAR].chunks is not None
    assert lazy.attrs["flexdownscale_tiles"] > 1
    assert lazy[VAR].attrs["grid_mapping"] == "proj"
    _assert_same_attrs(_grid_mapping(lazy), radar["proj"])
    _assert_round_trips(lazy, tmp_path / "lazy.nc", radar["proj"])
    everything = _open(radar["coarse"], "all").chunk(time=1)
    tiled = downscaler(everything, members=2, seed=0, tile=32)
    assert tiled[VAR].encoding["grid_mapping"] == "proj"
    _assert_round_trips(tiled, tmp_path / "tiled.nc", radar["proj"])


def test_a_grid_mapping_nobody_holds_is_left_out_with_a_warning(radar, tmp_path):
    """A reference the input cannot resolve and the model folder does not record (no
    mapping, or one under another name) is dropped with a warning naming it, not written."""
    ds = _open(radar["coarse"], True)
    dangling = ds[[VAR]]
    unnamed = make_downscaler(
        radar["fine"].drop_vars("proj"), variables=[VAR], units=UNITS, **PLAIN
    )
    other = make_downscaler(
        radar["fine"]
        .rename(proj="albers")
        .assign({VAR: radar["fine"][VAR].assign_attrs(grid_mapping="albers")}),
        variables=[VAR],
        units=UNITS,
        **PLAIN,
    )
    assert unnamed.grid["grid"]["crs"] is None
    assert other.grid["grid"]["crs"]["name"] == "albers"
    for model, words in ((unnamed, "records no grid mapping"), (other, "as 'albers'")):
        with pytest.warns(FlexDownscaleWarning, match=r"'proj'.*" + re.escape(words)) as caught:
            out = dangling.flex.downscale(model, seed=0)
        assert len(caught) == 1
        assert "decode_coords='all'" in str(caught[0].message)
        assert "grid_mapping" not in out[VAR].attrs
        assert "grid_mapping" not in out[VAR].encoding
        assert not {"proj", "albers"} & set(out.variables)
        out.to_netcdf(tmp_path / "fine.nc")
        assert "grid_mapping" not in _no_dangling_reference(tmp_path / "fine.nc")
    # the input that holds it wins over the model's record, and nothing warns
    out = ds.flex.downscale(other, seed=0)
    _assert_same_attrs(_grid_mapping(out), radar["proj"])


def test_a_mapping_of_another_kind_is_not_rebuilt(radar):
    """A model folder's mapping is taken only for the kind of grid it belongs to: a
    latitude/longitude mapping named 'proj' does not become a projected input's CRS."""
    down = make_downscaler(radar["fine"], variables=[VAR], units=UNITS, **PLAIN)
    crs = {"name": "proj", "grid_mapping_name": "latitude_longitude"}
    down.grid = {**down.grid, "grid": {**down.grid["grid"], "crs": crs}}
    with pytest.warns(FlexDownscaleWarning, match="records no grid mapping that fits"):
        out = _open(radar["coarse"], True)[VAR].flex.downscale(down, seed=0)
    assert "grid_mapping" not in out[VAR].attrs
    assert "proj" not in out.variables


def test_extended_grid_mapping_keeps_the_entries_it_can_resolve(radar, downscaler):
    """CF's ``"name: coords name2: coords"`` form: the entry the output can hold stays, the
    one it cannot is dropped with a warning."""
    ds = _open(radar["coarse"], True)
    ds[VAR].attrs["grid_mapping"] = "proj: x y wgs84: lat lon"
    with pytest.warns(FlexDownscaleWarning, match="'wgs84'"):
        out = ds.flex.downscale(downscaler, seed=0)
    assert out[VAR].attrs["grid_mapping"] == "proj: x y"
    _assert_same_attrs(out["proj"].attrs, radar["proj"])
    from flexdownscale.pipeline import _grid_mapping_without

    assert _grid_mapping_without("proj: x y wgs84: lat lon", ["proj"]) == "wgs84: lat lon"
    assert _grid_mapping_without("proj", ["proj"]) == ""


def _radar_forecaster(fine: xr.Dataset) -> Forecaster:
    torch.manual_seed(0)
    net = build_model(ModelConfig(preset="tiny", task="forecast", past_frames=1, dropout=0.0))
    return Forecaster(
        net,
        DiffusionConfig(),
        normalizer=Normalizer.fit(fine[[VAR]], **PLAIN),
        variables=[VAR],
        units=UNITS,
        sampler=SamplerConfig(steps=2),
        grid={"grid": grid_spec(fine).to_dict(), "past_frames": 1, "lead": 1},
        name="radar-forecast",
    )


def test_forecast_keeps_the_grid_mapping(radar, tmp_path):
    """The Forecaster resolves the grid mapping as the Downscaler does."""
    fine = radar["fine"]
    model = _radar_forecaster(fine)
    path = tmp_path / "fine_in.nc"
    fine.to_netcdf(path)
    for decode_coords, form in ((True, "dataarray"), ("all", "dataset"), ("all", "dataarray")):
        ds = _open(path, decode_coords)
        out = _form(ds, form).flex.forecast(model, 1, seed=0)
        where = "attrs" if decode_coords is True else "encoding"
        assert getattr(out[VAR], where)["grid_mapping"] == "proj"
        _assert_same_attrs(_grid_mapping(out), radar["proj"])
        _assert_round_trips(out, tmp_path / f"forecast_{form}.nc", radar["proj"])


def test_command_line_rebuilds_a_dangling_grid_mapping(radar, downscaler, tmp_path):
    """A file whose variable names a grid mapping it does not hold (as a DataArray written
    alone leaves) gets the model folder's mapping in the command line's output too."""
    from flexdownscale.cli import main

    folder = downscaler.save_pretrained(tmp_path / "model")
    ds = _open(radar["coarse"], True)
    ds[[VAR]].to_netcdf(tmp_path / "dangling.nc")
    assert main(["downscale", str(tmp_path / "dangling.nc"), str(tmp_path / "out.nc"),
                 "--model", str(folder), "--seed", "0", "--quiet"]) == 0  # fmt: skip
    _no_dangling_reference(tmp_path / "out.nc")
    _assert_same_attrs(_grid_mapping(_open(tmp_path / "out.nc", "all")), radar["proj"])
