"""What an output records of the call that made it (reviewer-117, provenance gaps).

A ``bbox`` run recorded no bbox, though passing the recorded settings back is how a run is
reproduced; ``members=None`` and ``members=1`` recorded the same (``flexdownscale_members = 1``,
"1 member") though only one output has a ``member`` dimension; the batch size, device and torch
thread count, which change the float32 rounding unless ``batch_invariant``, were not recorded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from test_forecast_fixes import box, box_grid, tiny_forecaster

import flexdownscale as fd
from flexdownscale.cli import main
from flexdownscale.data import degrade

BBOX = (-5, 50, 0.5, 54)  # (x_min, y_min, x_max, y_max) in degrees, inside the ERA5 window


@pytest.fixture(scope="module")
def coarse(shared_data) -> xr.Dataset:
    """Two coarse ERA5 fields (x4) for the shipped ERA5 model."""
    path = shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc"
    with xr.open_dataset(path) as ds:
        fine = ds.isel(time=slice(400, 412, 6)).load()
    return degrade(fine, 4, boundary="trim")


@pytest.fixture(scope="module")
def model() -> fd.Downscaler:
    return fd.Downscaler.from_pretrained("era5-t2m-x4")


def _call(history: str) -> str:
    """The settings of the newest history line: what its parentheses hold."""
    first = history.splitlines()[0]
    return first[first.index("(") + 1 : first.rindex(")")]


def test_bbox_is_recorded_as_given_and_passing_it_back_reproduces_the_run(coarse, model):
    out = model(coarse, members=2, steps=1, seed=3, bbox=BBOX)
    assert out.attrs["flexdownscale_bbox"] == "-5, 50, 0.5, 54"
    assert (
        _call(out.attrs["history"])
        == "ddim eta=0, 1 step, 2 members, seed 3, bbox (-5, 50, 0.5, 54)"
    )
    again = model(
        coarse,
        members=out.attrs["flexdownscale_members"],
        steps=out.attrs["flexdownscale_steps"],
        seed=out.attrs["flexdownscale_seed"],
        tile=out.attrs["flexdownscale_tile"],
        overlap=out.attrs["flexdownscale_overlap"],
        bbox=[float(v) for v in out.attrs["flexdownscale_bbox"].split(",")],
    )
    np.testing.assert_array_equal(again["t2m"].values, out["t2m"].values)
    # a bbox across the other longitude convention is recorded as given, too
    east = model(coarse, steps=1, bbox=(355, 50, 0.5, 54))
    assert east.attrs["flexdownscale_bbox"] == "355, 50, 0.5, 54"
    # without a bbox: none recorded, none in the history line
    whole = model(coarse, steps=1)
    assert "flexdownscale_bbox" not in whole.attrs
    assert "bbox" not in whole.attrs["history"]


def test_members_none_and_one_are_told_apart(coarse, model):
    none = model(coarse, steps=1)
    one = model(coarse, steps=1, members=1)
    assert "member" not in none.dims
    assert one.sizes["member"] == 1
    assert none.attrs["flexdownscale_members"] == one.attrs["flexdownscale_members"] == 1
    assert none.attrs["flexdownscale_member_dim"] == 0
    assert one.attrs["flexdownscale_member_dim"] == 1
    assert "1 sample, no member dim, seed 0" in none.attrs["history"]
    assert "1 step, 1 member, seed 0" in one.attrs["history"]
    three = model(coarse, steps=1, members=3)
    assert three.attrs["flexdownscale_member_dim"] == 1
    assert "3 members, seed 0" in three.attrs["history"]


def test_batch_size_device_and_threads_are_recorded(coarse, model):
    auto = model(coarse, members=2, steps=1)
    assert auto.attrs["flexdownscale_batch_size"] == "auto"
    assert auto.attrs["flexdownscale_device"] == "cpu"
    assert auto.attrs["flexdownscale_torch_threads"] == torch.get_num_threads() == 1
    torch.set_num_threads(2)  # the conftest fixture sets it back to 1
    given = model(coarse, members=2, steps=1, batch_size=3, device="cpu")
    assert given.attrs["flexdownscale_batch_size"] == 3
    assert given.attrs["flexdownscale_device"] == "cpu"
    assert given.attrs["flexdownscale_torch_threads"] == 2
    # lazy: recorded when the call is made, the same as an eager call's
    lazy = model(coarse.chunk(time=1), members=2, steps=1, batch_size=3)
    assert lazy.attrs["flexdownscale_batch_size"] == 3
    assert lazy.attrs["flexdownscale_torch_threads"] == 2


def test_forecaster_records_members_batch_size_device_and_threads():
    forecaster = tiny_forecaster(box_grid())
    none = forecaster(box(), lead_steps=1)
    one = forecaster(box(), lead_steps=1, members=1, batch_size=1)
    assert (none.attrs["flexdownscale_member_dim"], one.attrs["flexdownscale_member_dim"]) == (0, 1)
    assert none.attrs["flexdownscale_members"] == one.attrs["flexdownscale_members"] == 1
    assert "1 sample, no member dim" in none.attrs["history"]
    assert "1 member, seed 0" in one.attrs["history"]
    assert none.attrs["flexdownscale_batch_size"] == "auto"
    assert one.attrs["flexdownscale_batch_size"] == 1
    for out in (none, one):
        assert out.attrs["flexdownscale_device"] == "cpu"
        assert out.attrs["flexdownscale_torch_threads"] == torch.get_num_threads()
        assert "flexdownscale_bbox" not in out.attrs


def test_written_files_keep_every_setting(coarse, model, tmp_path):
    """The attributes are valid netCDF and zarr values (strings and integers) and read back
    unchanged, from the Python API and from the command line."""
    out = model(coarse, members=2, steps=1, bbox=BBOX, batch_size=3)
    recorded = {k: v for k, v in out.attrs.items() if k.startswith("flexdownscale_")}
    assert all(isinstance(v, str | int) for v in recorded.values()), recorded
    out.to_netcdf(tmp_path / "api.nc")
    out.to_zarr(tmp_path / "api.zarr", mode="w", consolidated=False)
    for back in (
        xr.open_dataset(tmp_path / "api.nc"),
        xr.open_zarr(tmp_path / "api.zarr", consolidated=False),
    ):
        with back:
            for key in ("bbox", "member_dim", "batch_size", "device", "torch_threads"):
                assert back.attrs[f"flexdownscale_{key}"] == recorded[f"flexdownscale_{key}"]
    coarse.to_netcdf(tmp_path / "coarse.nc")
    args = ["--model", "era5-t2m-x4", "--steps", "1", "--members", "2", "--batch-size", "3"]
    bbox = ["--bbox", "-5", "50", "0.5", "54"]
    cli = tmp_path / "cli.nc"
    assert main(["downscale", str(tmp_path / "coarse.nc"), str(cli), *args, *bbox, "--quiet"]) == 0
    with xr.open_dataset(cli) as written, xr.open_dataset(tmp_path / "api.nc") as api:
        for key in ("bbox", "members", "member_dim", "batch_size", "device", "torch_threads"):
            assert written.attrs[f"flexdownscale_{key}"] == api.attrs[f"flexdownscale_{key}"]
        assert _call(written.attrs["history"]) == _call(api.attrs["history"])
        np.testing.assert_array_equal(written["t2m"].values, api["t2m"].values)
    one = tmp_path / "one.nc"
    assert main(["downscale", str(tmp_path / "coarse.nc"), str(one), *args[:4], "--quiet"]) == 0
    with xr.open_dataset(one) as written:
        assert written.attrs["flexdownscale_member_dim"] == 0
        assert written.attrs["flexdownscale_batch_size"] == "auto"
        assert "bbox" not in written.attrs["history"]


def test_forecast_command_records_the_run(tmp_path):
    folder = tiny_forecaster(box_grid()).save_pretrained(tmp_path / "model")
    box(times=4).to_netcdf(tmp_path / "run.nc")
    out = tmp_path / "fc.nc"
    common = ["--model", str(folder), "--lead-steps", "1", "--quiet", "--batch-size", "2"]
    assert main(["forecast", str(tmp_path / "run.nc"), str(out), *common, "--members", "2"]) == 0
    with xr.open_dataset(out) as fc:
        assert fc.attrs["flexdownscale_member_dim"] == 1
        assert fc.attrs["flexdownscale_batch_size"] == 2
        assert fc.attrs["flexdownscale_device"] == "cpu"
        assert fc.attrs["flexdownscale_torch_threads"] == torch.get_num_threads()
