"""Outputs and copies of a loaded model, as a user saves and reuses them (reviewer-176).

- A seed above 2**31 - 1 (every seed drawn from a ``torch.Generator``, which the docs
  recommend) made ``to_netcdf`` fail for netCDF-3 and netCDF-4 classic with a message about
  datetimes: it is now recorded as its decimal text.
- ``concat_outputs`` turned differing seeds into floats (6838803925648402110 recorded as
  6838803925648402432, which reproduces nothing; 0 and 1 as 0.0 and 1.0) and differing text
  into arrays of strings that those formats cannot hold.
- ``copy.deepcopy`` of a loaded Downscaler handed the copy the network cached for its folder in
  the process: editing the copy changed every later ``ds.flex.downscale`` of that model.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale.pipeline import Downscaler, _cached, clear_model_cache
from flexdownscale.provenance import concat_outputs, integer_attr

FORMATS = [
    {"engine": "scipy"},
    {"engine": "netcdf4", "format": "NETCDF4_CLASSIC"},
    {"engine": "netcdf4", "format": "NETCDF3_64BIT"},
    {"engine": "netcdf4"},
]


@pytest.fixture(scope="module")
def coarse():
    rng = np.random.default_rng(0)
    lat, lon = 50.375 + 1.0 * np.arange(8), -7.625 + 1.0 * np.arange(8)  # the training lattice
    return xr.Dataset(
        {
            "t2m": (
                ("time", "latitude", "longitude"),
                280 + rng.normal(size=(1, 8, 8)),
                {"units": "K"},
            )
        },
        coords={"time": [np.datetime64("2019-03-01T00")], "latitude": lat, "longitude": lon},
    )


def test_integer_attr():
    assert integer_attr(2**31 - 1) == 2**31 - 1
    assert integer_attr(np.int64(5)) == 5
    assert type(integer_attr(np.int64(5))) is int
    assert integer_attr(2**31) == "2147483648"
    assert int(integer_attr(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.get("format", f["engine"]))
def test_generator_seeded_output_writes_to_every_netcdf_format(coarse, tmp_path, fmt):
    generator = torch.Generator().manual_seed(1)
    out = coarse.flex.downscale("era5-t2m-x4", members=2, seed=generator, steps=2)
    drawn = torch.Generator().manual_seed(1)
    expected = int(torch.randint(0, 2**63 - 1, (1,), generator=drawn).item())
    assert expected >= 2**31  # the case that failed
    assert out.attrs["flexdownscale_seed"] == str(expected)
    # the recorded seed reproduces the call
    again = coarse.flex.downscale(
        "era5-t2m-x4", members=2, seed=int(out.attrs["flexdownscale_seed"]), steps=2
    )
    np.testing.assert_array_equal(again["t2m"].values, out["t2m"].values)
    path = tmp_path / "out.nc"
    out.to_netcdf(path, **fmt)
    with xr.open_dataset(path, engine=fmt["engine"]) as back:
        assert int(back.attrs["flexdownscale_seed"]) == expected
    # small seeds stay integers
    assert coarse.flex.downscale("era5-t2m-x4", seed=3, steps=2).attrs["flexdownscale_seed"] == 3


def _part(start: int, **attrs) -> xr.Dataset:
    return xr.Dataset({"v": ("x", np.zeros(2))}, coords={"start": start}, attrs=attrs)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.get("format", f["engine"]))
def test_joined_provenance_keeps_seeds_and_writes_everywhere(tmp_path, fmt):
    big = 6838803925648402110
    parts = [
        _part(0, flexdownscale_seed=0, flexdownscale_sampler="ddim", flexdownscale_steps=2),
        _part(1, flexdownscale_seed=1, flexdownscale_sampler="heun", flexdownscale_steps=2),
        _part(2, flexdownscale_seed=2, flexdownscale_steps=4),
    ]
    out = concat_outputs(parts, "start")
    assert out.attrs["flexdownscale_seed"].dtype == np.int32
    np.testing.assert_array_equal(out.attrs["flexdownscale_seed"], [0, 1, 2])
    np.testing.assert_array_equal(out.attrs["flexdownscale_steps"], [2, 2, 4])
    assert out.attrs["flexdownscale_sampler"] == "ddim | heun | "
    # a seed recorded as text (above 2**31 - 1) is kept exactly beside small ones
    recorded = [_part(0, flexdownscale_seed=integer_attr(big)), _part(1, flexdownscale_seed=5)]
    joined = concat_outputs(recorded, "start")
    assert joined.attrs["flexdownscale_seed"] == f"{big} | 5"
    for name, data in (("a", out), ("b", joined)):
        path = tmp_path / f"{name}.nc"
        data.to_netcdf(path, **fmt)
        with xr.open_dataset(path, engine=fmt["engine"]) as back:
            for key, value in data.attrs.items():
                np.testing.assert_array_equal(np.asarray(back.attrs[key]), np.asarray(value))


def test_numbers_with_a_missing_part_and_huge_integers():
    out = concat_outputs([_part(0, flexdownscale_x=1.5), _part(1)], "start")
    np.testing.assert_array_equal(out.attrs["flexdownscale_x"], [1.5, np.nan])
    huge = concat_outputs(
        [_part(0, flexdownscale_x=2**60 + 1), _part(1, flexdownscale_x=3)], "start"
    )
    assert huge.attrs["flexdownscale_x"] == f"{2**60 + 1} | 3"  # a float would round it


def test_deepcopy_of_a_loaded_downscaler_has_its_own_network(coarse):
    clear_model_cache()
    model = Downscaler.from_pretrained("era5-t2m-x4")
    before = coarse.flex.downscale("era5-t2m-x4", members=2, seed=0, steps=2)
    cached = _cached(str(model.path))
    twin = copy.deepcopy(model)
    first = next(twin.backbone.parameters())
    assert first.data_ptr() != next(cached.backbone.parameters()).data_ptr()
    assert first.data_ptr() != next(model.backbone.parameters()).data_ptr()
    with torch.no_grad():
        first.mul_(0.0)
    after = coarse.flex.downscale("era5-t2m-x4", members=2, seed=0, steps=2)
    xr.testing.assert_identical(after.drop_attrs(), before.drop_attrs())
    # the shallow copy shares the original's network (not the cache's)
    shallow = copy.copy(model)
    assert shallow.backbone is model.backbone
    assert "_device_copies" not in shallow.__dict__
    # the deep copy runs, and the untouched one gives the original's numbers
    fresh = copy.deepcopy(model)
    np.testing.assert_array_equal(
        fresh(coarse, members=2, seed=0, steps=2)["t2m"].values, before["t2m"].values
    )
    clear_model_cache()


def test_a_recorded_text_seed_passes_back():
    from flexdownscale.diffusion.samplers import check_seed
    from flexdownscale.errors import ConfigError

    assert check_seed("6838803925648402110") == 6838803925648402110
    assert check_seed(" 12 ") == 12
    for bad in ("-1", "1e3", "0x10", "\uff11\uff12", "", str(2**63)):
        with pytest.raises(ConfigError, match="must be"):
            check_seed(bad)


@pytest.mark.parametrize(
    ("recorded", "read"),
    [
        (7, 7),
        (np.int32(7), 7),
        ("6838803925648402110", 6838803925648402110),
        ("6838803925648402110 | 5 | ", [6838803925648402110, 5, None]),
        (np.array([0, 7], dtype=np.int32), [0, 7]),
    ],
)
def test_evaluate_reads_recorded_seeds_as_integers(recorded, read):
    """evaluate's report took a seed recorded as text (above 2**31 - 1) as a string, and joined
    parts' seeds as one string instead of one per part."""
    from flexdownscale.evaluation import _prediction_provenance

    found = _prediction_provenance({"flexdownscale_seed": recorded, "flexdownscale_model": "m"})
    assert found["seed"] == read
