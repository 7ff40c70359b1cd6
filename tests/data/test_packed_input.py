"""A file opened without CF decoding (``mask_and_scale=False``, ``decode_cf=False``) holds raw
packed counts: an int16 ERA5 file gave t2m from -31833 to 32771 "K" downscaled without a word.
Inference and training now refuse such a variable and say to decode it."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import degrade, normalize_grid
from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.data.grid import check_decoded
from flexdownscale.errors import DataError

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"


@pytest.fixture(scope="module")
def packed_file(shared_data, tmp_path_factory):
    """Four coarse ERA5 hours written as the CDS does: int16 with scale, offset and fill."""
    fine = normalize_grid(xr.open_dataset(shared_data / ERA5).isel(time=slice(0, 4)))
    coarse = degrade(fine, 4, boundary="trim")
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    path = tmp_path_factory.mktemp("packed") / "t2m_int16.nc"
    encoding = {"dtype": "int16", "scale_factor": 0.001, "add_offset": 280.0, "_FillValue": -32767}
    coarse.to_netcdf(path, encoding={"t2m": encoding})
    return path


def test_undecoded_input_is_refused_by_inference(packed_file):
    with xr.open_dataset(packed_file, mask_and_scale=False) as raw:
        assert raw["t2m"].dtype == np.int16
        with pytest.raises(DataError) as err:
            raw.flex.downscale(factor=4, seed=0)
    message = str(err.value)
    assert "variable 't2m' still carries the CF packing attributes scale_factor = 0.001" in message
    assert "add_offset = 280.0, _FillValue = -32767" in message
    assert message.endswith("Decode it first: ds = xr.decode_cf(ds) (or open the file with xarray's defaults)")  # fmt: skip
    # the fix runs, and gives what a default open gives
    with xr.open_dataset(packed_file, mask_and_scale=False) as raw:
        fixed = xr.decode_cf(raw).flex.downscale(factor=4, seed=0)
    with xr.open_dataset(packed_file) as plain:
        expected = plain.flex.downscale(factor=4, seed=0)
    xr.testing.assert_allclose(fixed["t2m"], expected["t2m"])
    assert float(fixed["t2m"].min()) > 250.0


def test_undecoded_input_is_refused_by_training(packed_file):
    raw = xr.open_dataset(packed_file, decode_cf=False)
    with pytest.raises(DataError, match="still carries the CF packing attributes"):
        SuperResolutionDataset(raw, factor=2, crop_size=None, split_dim="time", nan_fields=None)
    raw.close()


def test_attributes_that_change_nothing_pass():
    ds = xr.Dataset({"a": ("x", np.arange(3.0))})
    ds["a"].attrs.update(scale_factor=1.0, add_offset=0.0, _FillValue=np.nan)
    check_decoded(ds, ["a"])  # nothing packed, NaN is the decoded fill
    ds["a"].attrs["missing_value"] = -999.0
    with pytest.raises(DataError, match=r"missing_value = -999\.0"):
        check_decoded(ds, ["a"])
