"""Training data: an axis that says it is periodic but whose edges are not neighbours (a window
cut from a periodic field keeps the attribute) is trained as non-periodic, with a warning."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import xarray as xr

from flexdownscale.data.datasets import SEAM_RATIO_MAX, SuperResolutionDataset, _seam_ratio
from flexdownscale.errors import DataError, FlexDownscaleWarning

KOLMO = "kolmogorov/kf_re1000.nc"
SPLITS = {"train": [0, 1, 2], "validation": [3]}


def _dataset(data, **kwargs):
    return SuperResolutionDataset(
        data,
        variables=["vorticity"],
        factor=8,
        crop_size=64,
        split_dim="trajectory",
        splits=SPLITS,
        nan_fields=None,
        **kwargs,
    )


@pytest.fixture(scope="module")
def box(shared_data):
    with xr.open_dataset(shared_data / KOLMO) as raw:
        return raw.isel(time=slice(0, 4)).load()


def test_seam_ratio_closed_forms():
    n = 32
    ramp = np.broadcast_to(np.arange(n, dtype=float), (2, 5, n))
    # a ramp: neighbours differ by 1, the edges by n - 1
    assert _seam_ratio(ramp, -1) == pytest.approx((n - 1) ** 2)
    assert np.isnan(_seam_ratio(ramp, -2))  # constant along rows: nothing to compare
    # a whole period of a sine joins its edges as neighbours do: sin(x + h) - sin(x) =
    # 2 s cos(x + h / 2) with s = sin(h / 2), h = 2 pi / n; the edge step (x = -h) squares to
    # 4 s^2 c^2, the n - 1 others sum to 2 n s^2 - 4 s^2 c^2 (c = cos(h / 2))
    x = 2 * np.pi * np.arange(n) / n
    wave = np.sin(x)[None, :] * np.ones((n, 1))
    s, c = np.sin(np.pi / n), np.cos(np.pi / n)
    edge = 4 * s**2 * c**2
    assert _seam_ratio(wave, -1) == pytest.approx(edge / ((2 * n * s**2 - edge) / (n - 1)))
    assert _seam_ratio(wave, -1) < 2.1  # the steepest place for a seam: still far below 8
    # a quarter period (a window): the edge jumps from sin(0) to about 1 in one step
    quarter = np.sin(x[: n // 4])[None, :] * np.ones((4, 1))
    assert _seam_ratio(quarter, -1) > SEAM_RATIO_MAX


def test_whole_periodic_box_keeps_wrapping(box):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = _dataset(box)
    assert data.sources[0].periodic == (True, True)
    grid = data.grid_metadata()["grid"]
    assert grid["periodic_x"]
    assert grid["periodic_y"]
    # crops wrap: some origins run past the end of the 256 box
    y0 = [data.locate(i)["y0"] for i in range(len(data))]
    assert max(y0) + 64 > 256


def test_window_of_periodic_box_trains_non_periodic(box):
    window = box.isel(x=slice(0, 128), y=slice(0, 128))
    assert window.x.attrs["periodic"] == "true"  # kept by isel: the trap
    before = window.copy(deep=True)
    with pytest.warns(FlexDownscaleWarning, match="opposite edges are not neighbours") as rec:
        data = _dataset(window)
    message = str(rec[0].message)
    assert "'y' and 'x'" in message
    assert 'attrs.pop("periodic")' in message
    assert data.sources[0].periodic == (False, False)
    grid = data.grid_metadata()["grid"]
    assert not grid["periodic_x"]
    assert not grid["periodic_y"]
    # no crop wraps: every crop lies inside the window
    for epoch in range(3):
        data.set_epoch(epoch)
        for i in range(len(data)):
            where = data.locate(i)
            assert where["y0"] + 64 <= 128
            assert where["x0"] + 64 <= 128
    xr.testing.assert_identical(window, before)  # the input keeps its attribute


def test_only_the_cut_axis_is_unwrapped(box):
    strip = box.isel(x=slice(0, 96))  # the whole period along y, a window along x
    with pytest.warns(FlexDownscaleWarning, match="along 'x'") as rec:
        data = _dataset(strip)
    assert "'y'" not in str(rec[0].message).split("neighbours")[0]
    assert data.sources[0].periodic == (True, False)


def test_hdf5_window_with_periodic_attribute(tmp_path, box):
    fields = box.vorticity.isel(trajectory=0).transpose("time", "y", "x").values
    with h5py.File(tmp_path / "window.h5", "w") as f:
        f.create_dataset("w", data=fields[:, :128, :128])
        f.attrs["periodic"] = "true"
    with h5py.File(tmp_path / "whole.h5", "w") as f:
        f.create_dataset("w", data=fields)
        f.attrs["periodic"] = "true"
    kwargs = {"factor": 8, "crop_size": 64, "nan_fields": None, "split": "train"}
    with pytest.warns(FlexDownscaleWarning, match="opposite edges"):
        cut = SuperResolutionDataset(tmp_path / "window.h5", **kwargs)
    assert cut.sources[0].periodic == (False, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = SuperResolutionDataset(tmp_path / "whole.h5", **kwargs)
    assert whole.sources[0].periodic == (True, True)


def test_global_longitude_is_not_checked(shared_data):
    # periodic by its 360-degree extent: nothing to check, even with the attribute set
    with xr.open_dataset(shared_data / "era_interim/eraint_uv_monthly.nc") as raw:
        ds = raw[["u"]].isel(level=0).load()
    ds["longitude"].attrs["periodic"] = "true"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = SuperResolutionDataset(
            ds.isel(latitude=slice(0, 240)), factor=4, crop_size=64, split_dim="month",
            splits={"train": [1, 7]}, nan_fields=None,
        )  # fmt: skip
    assert data.sources[0].periodic == (False, True)


def test_a_repeated_cyclic_point_is_refused(box):
    # the box with its first column appended after the last (add_cyclic_point, node-based
    # solvers): wrapping would count that column twice
    cyclic = xr.concat([box, box.isel(x=[0]).assign_coords(x=[box.x[-1].item() + box.x.diff("x")[0].item()])], "x")  # fmt: skip
    cyclic["x"].attrs = dict(box.x.attrs)
    with pytest.raises(DataError, match="repeats its first") as err:
        _dataset(cyclic)
    assert str(err.value).endswith("Drop it: ds.isel(x=slice(None, -1))")


def test_a_file_is_read_and_warned_about_once(tmp_path, box):
    # the train and validation splits open the same file: one warning, one reading
    path = tmp_path / "window.nc"
    box.isel(x=slice(0, 96), y=slice(0, 96)).to_netcdf(path)
    with pytest.warns(FlexDownscaleWarning, match="opposite edges") as first:
        train = _dataset(str(path), split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validation = _dataset(str(path), split="validation")
    assert len(first) == 1
    assert train.sources[0].periodic == validation.sources[0].periodic == (False, False)
    assert validation.grid_metadata()["grid"]["periodic_x"] is False


def test_a_netcdf_file_named_h5_says_how_to_read_it(tmp_path, box):
    path = tmp_path / "box.h5"
    box.isel(time=slice(0, 2)).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(DataError, match='pass format="xarray"'):
        SuperResolutionDataset(path, factor=8, crop_size=64, split="train", nan_fields=None)
    data = _dataset(path, format="xarray")
    assert data.sources[0].channels == ("vorticity",)
