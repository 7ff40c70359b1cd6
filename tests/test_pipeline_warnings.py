"""Downscaler warnings for runs the model was not trained for: periodic axes without the
attribute, tiles smaller than the training crops, a regional model far outside its domain."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from test_pipeline import era5_pair, make_downscaler

from flexdownscale.data import GridSpec, degrade, grid_spec
from flexdownscale.data.grid import _geographic_to_rotated_pole, rotated_pole_to_geographic
from flexdownscale.errors import SkillWarning
from flexdownscale.pipeline import DOMAIN_SHARE_MIN, _training_crop, _warn_outside_domain

# --------------------------------------------------------------------------------------------
# a. periodic axes without the attribute
# --------------------------------------------------------------------------------------------


def _box(n: int, *, periodic: bool) -> xr.Dataset:
    x = np.arange(n) * 2 * np.pi / n
    values = (280 + np.sin(x[:, None]) * np.cos(2 * x[None, :]))[None].astype(np.float32)
    attrs = {"units": "1", **({"periodic": "true"} if periodic else {})}
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), values, {"units": "K"})},
        coords={"time": [0.0], "y": ("y", x, attrs), "x": ("x", x, attrs)},
    )


def test_periodic_model_warns_when_the_input_lacks_the_attribute(pair_fine):
    fine = _box(64, periodic=True)
    model = make_downscaler(pair_fine)
    model.grid["grid"] = grid_spec(fine).to_dict()
    coarse = degrade(fine, 4)
    coarse["t2m"].attrs = {"units": "K"}
    plain = coarse.copy()
    for dim in ("x", "y"):
        plain[dim].attrs = {"units": "1"}
    assert grid_spec(coarse).periodic_x
    assert not grid_spec(plain).periodic_x
    with pytest.warns(SkillWarning, match=r"no periodic = \"true\" attribute") as caught:
        model(plain, seed=0)
    texts = [str(w.message) for w in caught if "periodic" in str(w.message)]
    assert len(texts) == 1  # one warning naming both axes
    assert 'ds[\'x\'].attrs["periodic"] = "true"; ds[\'y\'].attrs["periodic"] = "true"' in texts[0]
    assert "spans that whole period ('x' over 6.28319, 'y' over 6.28319)" in texts[0]  # no "1"
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(coarse, seed=0)  # with the attribute: no warning
        model(plain.isel(x=slice(0, 12), y=slice(0, 12)), seed=0)  # a part: no warning


@pytest.fixture(scope="module")
def pair_fine(shared_data):
    return era5_pair(shared_data, times=1)[0]


# --------------------------------------------------------------------------------------------
# b. tiles smaller than the training crops
# --------------------------------------------------------------------------------------------


def test_shipped_folders_record_the_training_crop_of_their_configs():
    import json
    import tomllib
    from pathlib import Path

    from flexdownscale.hub import shipped_models

    configs = Path(__file__).resolve().parents[1] / "benchmarks" / "configs"
    for name, path in shipped_models().items():
        grid = json.loads((path / "grid.json").read_text())
        trained = tomllib.loads((configs / f"{name}.toml").read_text())["data"]["crop_size"]
        assert _training_crop(grid) == (trained, trained), name
    assert _training_crop({"crop_size": 48}) == (48, 48)
    assert _training_crop({"crop_size": None}) is None  # whole fields
    assert _training_crop({}) is None  # not recorded


def test_tile_smaller_than_the_training_crop_warns(shared_data):
    fine, coarse = era5_pair(shared_data, times=1)
    model = make_downscaler(fine)
    model.grid = {**model.grid, "crop_size": 32}
    with pytest.warns(SkillWarning, match=r"tile = 16 fine cells is smaller than the 32 x 32") as w:
        model(coarse, tile=16, overlap=8, seed=0)
    assert "Use tile=32 or larger" in str(w[0].message)
    assert w[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(coarse, tile=32, seed=0)  # the training crop: fine
        model(coarse, seed=0)  # default tile
        model.grid = {k: v for k, v in model.grid.items() if k != "crop_size"}
        model(coarse, tile=16, overlap=8, seed=0)  # crop unknown: nothing to compare


# --------------------------------------------------------------------------------------------
# c. a regional model far outside its training domain
# --------------------------------------------------------------------------------------------

UK = GridSpec(
    x="longitude",
    y="latitude",
    kind="latlon",
    nx=49,
    ny=33,
    x0=-10.0,
    y0=50.0,
    dx=0.25,
    dy=0.25,
    x_units="degrees_east",
    y_units="degrees_north",
)


def _centres(lo: float, n: int, step: float = 1.0) -> np.ndarray:
    return lo + step * np.arange(n)


@pytest.mark.parametrize(
    ("ys", "xs", "warns"),
    [
        (_centres(-89.5, 180), _centres(-179.5, 360), True),  # the globe
        (_centres(-89.5, 180), _centres(0.5, 360), True),  # the globe, 0..360
        (_centres(-35.5, 8), _centres(140.5, 12), True),  # the UK's size, over Australia
        (_centres(50.5, 7), _centres(-9.5, 11), False),  # inside
        (_centres(50.5, 7), _centres(350.5, 11), False),  # inside, 0..360 longitudes
        (_centres(46.5, 16), _centres(-15.5, 24), False),  # twice the size each way, centred
        (_centres(40.5, 32), _centres(-22.5, 48), True),  # four times: a sixteenth inside
    ],
)
def test_domain_rule(ys, xs, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_outside_domain(UK, ys, xs, ("degrees_north", "degrees_east"), "uk")
    assert bool(caught) is warns
    if warns:
        text = str(caught[0].message)
        assert "x -10.125..2.125 degrees_east, y 49.875..58.125 degrees_north" in text
        assert f"warns below {100 * DOMAIN_SHARE_MIN:.0f}%" in text
        assert "bbox=" in text


def test_regional_model_on_a_far_domain_warns_and_a_bbox_does_not(shared_data):
    fine, coarse = era5_pair(shared_data, times=1, ny=16, nx=16)
    model = make_downscaler(fine)
    # the same cells moved by whole coarse cells to 90 degrees east (the lattice still fits)
    far = coarse.assign_coords(
        longitude=(coarse["longitude"] + 100.0).assign_attrs(coarse["longitude"].attrs)
    )
    with pytest.warns(SkillWarning, match=r"only 0% of its cells lie in the training domain") as w:
        model(far, seed=0)
    assert w[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(coarse, seed=0)
        # a wide input cut to the training region with bbox: the region counts
        n = coarse.sizes["longitude"]
        lon = coarse["longitude"]
        wide = xr.concat([coarse] * 30, "longitude").assign_coords(
            longitude=("longitude", float(lon[0]) + np.arange(30 * n) * 1.0, lon.attrs)
        )
        model(wide, seed=0, bbox=(-10, 54, -7, 58))
    with pytest.warns(SkillWarning, match=r"only 3% of its cells"):
        _warn_outside_domain(
            grid_spec(fine),
            wide["latitude"].values,
            wide["longitude"].values,
            ("degrees_north", "degrees_east"),
            "tiny-test",
        )


def _eur11_window(shared_data) -> tuple[GridSpec, np.ndarray, np.ndarray]:
    """The training grid of a model on 64 x 64 cells of EUR-11 (rotated pole at 39.25 N, 162 W),
    and those cells' rotated coordinates."""
    with xr.open_dataset(shared_data / "grids" / "tas_rotated_grid_EUR11.nc") as ds:
        window = ds.isel(rlat=slice(180, 244), rlon=slice(180, 244)).load()
    return grid_spec(window), window["rlat"].values, window["rlon"].values


def test_domain_rule_on_a_rotated_grid_with_another_pole(shared_data):
    """The rule compared rotated coordinates only: the same numbers under another rotated pole
    are other places (under the NAM-44 pole, 42.5 N 83 E, over North America), yet a model
    trained on central Europe ran there without a warning. Cells under another pole are now
    moved into the training frame first."""
    trained, rlat, rlon = _eur11_window(shared_data)
    assert trained.kind == "rotated"
    assert trained.crs["grid_north_pole_latitude"] == 39.25
    units = ("degrees", "degrees")
    america = {
        "grid_mapping_name": "rotated_latitude_longitude",
        "grid_north_pole_latitude": 42.5,
        "grid_north_pole_longitude": 83.0,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training cells, under their own pole: no warning
        _warn_outside_domain(trained, rlat, rlon, units, "eur", crs=trained.crs)
    with pytest.warns(SkillWarning, match=r"only 0% of its cells lie in the training domain") as w:
        _warn_outside_domain(trained, rlat, rlon, units, "eur", crs=america)
    text = str(w[0].message)
    assert "in the training grid's rotated frame: the input's rotated pole is another" in text
    # a bbox is read in the input's frame: the fix is to regrid, not bbox=
    assert "regrid the input onto the model's rotated grid" in text
    assert "bbox" not in text
    # the same European cells given in the other frame: inside, no warning
    lat, lon = rotated_pole_to_geographic(rlat[:, None], rlon[None, :], trained.crs)
    other_r, other_lam = _geographic_to_rotated_pole(lat, lon, america)
    ys = np.linspace(other_r.min(), other_r.max(), 64)
    xs = np.linspace(other_lam.min(), other_lam.max(), 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_outside_domain(trained, ys, xs, units, "eur", crs=america)
    # a grid mapping without the pole cannot be compared: the rotated numbers, as before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_outside_domain(trained, rlat, rlon, units, "eur", crs={"grid_mapping_name": "x"})


def test_downscaler_compares_a_rotated_input_in_the_training_frame(shared_data):
    """End to end: the input's grid mapping is read from the input file (selecting the model's
    variables leaves the ``rotated_pole`` variable behind)."""
    with xr.open_dataset(shared_data / "grids" / "tas_rotated_grid_EUR11.nc") as ds:
        fine = ds.isel(height=0, rlat=slice(180, 244), rlon=slice(180, 244)).load()
    fine = fine.rename(tas="t2m")
    coarse = degrade(fine, 4)
    model = make_downscaler(fine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(coarse, seed=0)
    moved = coarse.copy()
    moved["rotated_pole"] = coarse["rotated_pole"].copy()
    moved["rotated_pole"].attrs.update(
        grid_north_pole_latitude=42.5, grid_north_pole_longitude=83.0
    )
    with pytest.warns(SkillWarning, match=r"rotated pole is another\): only 0% of its cells"):
        model(moved, seed=0)
    assert coarse["rotated_pole"].attrs["grid_north_pole_latitude"] == 39.25  # not mutated
