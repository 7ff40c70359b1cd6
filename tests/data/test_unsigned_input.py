"""netCDF's ``_Unsigned`` attribute: bytes or shorts 0 ... 255 stored in a signed integer type
(or the reverse). xarray's decoding reads them with the other sign; left undecoded
(``mask_and_scale=False``) a 200 was used as -56 without a word, and training's own HDF5 reader
ignored the attribute the same way. Both now follow xarray."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import xarray as xr

from flexdownscale._packing import check_decoded, packing_left
from flexdownscale.data.datasets import _H5Source
from flexdownscale.errors import DataError, FlexDownscaleWarning

BYTES = np.array([0, 17, 100, 127, 128, 200, 254, 255], dtype=np.uint8)


def test_undecoded_unsigned_variable_is_refused(tmp_path):
    stored = np.tile(BYTES.view(np.int8), (2, 8, 1))
    ds = xr.Dataset({"r": (("time", "y", "x"), stored, {"_Unsigned": "true", "units": "mm"})})
    path = tmp_path / "u.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path, mask_and_scale=False) as raw:
        assert raw["r"].values[0, 0, 5] == -56  # what the package used as 200 before
        assert packing_left(raw["r"].attrs) == {"_Unsigned": "true"}
        with pytest.raises(DataError, match=r"_Unsigned = 'true'.*read with the wrong sign"):
            check_decoded(raw, ["r"])
        # the fix the message names gives the bytes back, and passes
        fixed = xr.decode_cf(raw)
        np.testing.assert_array_equal(fixed["r"].values[0, 0], BYTES)
        check_decoded(fixed, ["r"])


def _h5(path, data, **attrs):
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("fields", data=data)
        dset.attrs.update(attrs)
    return _H5Source(str(path), variables=None, label="test")


def _read(source):
    block = source._read_block({"time": 0}, slice(None), slice(None))[0]
    lazy = source.lazy_channels({})["fields"].values[0]
    np.testing.assert_array_equal(block, lazy)
    return block


def test_hdf5_unsigned_bytes_with_packing_match_xarray(tmp_path):
    stored = np.tile(BYTES.view(np.int8), (2, 8, 1))
    attrs = {"_Unsigned": "true", "scale_factor": 0.5, "add_offset": 1.0, "_FillValue": np.int8(-1)}
    values = _read(_h5(tmp_path / "f.h5", stored, **attrs))
    expected = BYTES.astype(np.float64) * 0.5 + 1.0
    expected[-1] = np.nan  # -1 stored is 255, the fill
    np.testing.assert_array_equal(values[0], expected)
    # the same numbers written as netCDF and decoded by xarray
    nc = tmp_path / "f.nc"
    xr.Dataset({"f": (("time", "y", "x"), stored, attrs)}).to_netcdf(nc)
    with xr.open_dataset(nc) as decoded:
        np.testing.assert_array_equal(values, decoded["f"].values[0])


def test_hdf5_signed_shorts_stored_unsigned(tmp_path):
    signed = np.array([-32768, -2, -1, 0, 5, 32767], dtype=np.int16)
    stored = np.tile(signed.view(np.uint16), (1, 4, 1))
    values = _read(_h5(tmp_path / "s.h5", stored, _Unsigned=b"false"))
    np.testing.assert_array_equal(values[0], signed.astype(np.float64))


def test_hdf5_unsigned_attribute_checks(tmp_path):
    stored = np.tile(BYTES.view(np.int8), (1, 4, 1))
    with pytest.raises(DataError, match=r"_Unsigned = 'yes'; expected 'true' or 'false'"):
        _h5(tmp_path / "bad.h5", stored, _Unsigned="yes")
    with pytest.warns(FlexDownscaleWarning, match="holds float32 values, not integers"):
        source = _h5(tmp_path / "float.h5", stored.astype(np.float32), _Unsigned="true")
    np.testing.assert_array_equal(_read(source)[0], BYTES.view(np.int8).astype(np.float64))
    # no attribute: read as stored, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = _read(_h5(tmp_path / "plain.h5", stored))
    np.testing.assert_array_equal(plain[0], BYTES.view(np.int8).astype(np.float64))


@pytest.mark.parametrize("missing", [np.int8(-2), np.array([-2, -1], dtype=np.int8), np.uint8(254)])
def test_hdf5_unsigned_missing_value_as_xarray_reads_it(tmp_path, missing):
    """Only ``_FillValue`` is taken in the stored type; xarray compares ``missing_value`` as
    given (a signed -2 matches no unsigned byte), and training reads what xarray reads."""
    stored = np.tile(BYTES.view(np.int8), (1, 4, 1))
    attrs = {"_Unsigned": "true", "_FillValue": np.int8(0), "missing_value": missing}
    values = _read(_h5(tmp_path / "m.h5", stored, **attrs))
    nc = tmp_path / "m.nc"
    xr.Dataset({"f": (("time", "y", "x"), stored, attrs)}).to_netcdf(nc)
    with xr.open_dataset(nc) as decoded:
        np.testing.assert_array_equal(values, decoded["f"].values[0])
