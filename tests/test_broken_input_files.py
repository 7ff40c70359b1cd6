"""Broken input files are refused with a message that says what they are: a netCDF-3 file cut
short (which the netCDF library would read as zeros), an empty file, a gzip-compressed one, a
file that is not netCDF, a folder that is not a zarr store. The same check serves training's
datasets (``data.paths``), :func:`open_input` and the ``downscale`` command."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flexdownscale._input_files import check_input_file, netcdf3_expected_size
from flexdownscale._inputs import open_input
from flexdownscale.cli import main
from flexdownscale.data import SuperResolutionDataset, degrade, normalize_grid
from flexdownscale.errors import DataError

ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    """A small ERA5 slice (8 times, 32 x 48 cells) as netCDF-3 (64-bit offset) and netCDF-4,
    its 1-time coarse version for ``downscale``, and broken copies of them."""
    root = tmp_path_factory.mktemp("broken")
    ds = xr.open_dataset(shared_data / ERA5)
    fine = normalize_grid(ds.isel(time=slice(0, 8)))
    fine = fine.isel(latitude=slice(0, 32), longitude=slice(0, 48)).load()
    fine.to_netcdf(root / "fine3.nc", format="NETCDF3_64BIT")
    fine.to_netcdf(root / "fine4.nc")
    coarse = degrade(fine.isel(time=[0]), 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    coarse.to_netcdf(root / "coarse3.nc", format="NETCDF3_64BIT")
    for name in ("fine3", "coarse3"):  # cut to two thirds, as `truncate -s` does
        data = (root / f"{name}.nc").read_bytes()
        (root / f"{name}_cut.nc").write_bytes(data[: 2 * len(data) // 3])
    (root / "empty.nc").write_bytes(b"")
    with open(root / "fine4.nc", "rb") as src, gzip.open(root / "fine4.nc.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(root / "fine4.nc.gz", root / "renamed_gzip.nc")
    (root / "image.nc").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (root / "folder.nc").mkdir()
    return root


def _refusal(path: Path) -> str:
    """The DataError message of training's dataset opening and of open_input: the same one."""
    with pytest.raises(DataError) as train:
        SuperResolutionDataset(str(path), variables=["t2m"], factor=4, crop_size=16)
    with pytest.raises(DataError) as command:
        open_input(str(path))
    assert str(train.value) == str(command.value)
    message = str(train.value)
    assert "\n" not in message
    assert repr(str(path)) in message
    return message


def test_truncated_netcdf3_is_refused_not_read_as_zeros(files):
    """A netCDF-3 file cut to two thirds read as zeros past the cut (the training run's
    normalization came out 255 +- 82 K for 280 +- 2 K); now its length is checked against its
    header."""
    whole = (files / "fine3.nc").stat().st_size
    cut = (files / "fine3_cut.nc").stat().st_size
    assert whole >= netcdf3_expected_size(files / "fine3.nc") > whole - 8
    message = _refusal(files / "fine3_cut.nc")
    assert "is shorter than its header says" in message
    need = netcdf3_expected_size(files / "fine3.nc")
    assert f"{cut:,} bytes where its variables need {need:,} (67% of it)" in message
    assert "truncated" in message
    assert "download or copy it again" in message
    # the complete file opens
    SuperResolutionDataset(str(files / "fine3.nc"), variables=["t2m"], factor=4, crop_size=16)
    open_input(str(files / "fine3.nc")).close()


@pytest.mark.parametrize("version", ["NETCDF3_CLASSIC", "NETCDF3_64BIT", "NETCDF3_64BIT_DATA"])
@pytest.mark.parametrize("records", [0, 1, 3])
def test_netcdf3_expected_size_of_each_layout(tmp_path, version, records):
    """Complete files of every netCDF-3 version, with 0, 1 and 3 record variables (of sizes
    that need padding: a record of one variable is not padded), pass; one byte less is
    refused."""
    netCDF4 = pytest.importorskip("netCDF4")
    rng = np.random.default_rng(0)
    path = tmp_path / "layout.nc"
    with netCDF4.Dataset(path, "w", format=version) as f:
        f.title = "layouts"
        f.createDimension("time", None if records else 3)
        f.createDimension("y", 3)
        f.createDimension("x", 5)
        for i, (name, dtype) in enumerate((("b", "i1"), ("a", "f4"), ("d", "f8"))):
            over_time = records == 0 or i < records
            v = f.createVariable(name, dtype, ("time", "y", "x") if over_time else ("y", "x"))
            v.units = "1"
            v[:] = rng.integers(0, 9, (3, 3, 5) if over_time else (3, 5))
        f.createVariable("c", "i2", ("x",))[:] = np.arange(5)
    size = path.stat().st_size
    assert size - 8 < netcdf3_expected_size(path) <= size
    check_input_file(path)
    path.write_bytes(path.read_bytes()[: netcdf3_expected_size(path) - 1])
    with pytest.raises(DataError, match="is shorter than its header says"):
        check_input_file(path)


def test_streaming_record_count_is_not_checked(files, tmp_path):
    """A record count of 0xFFFFFFFF ("streaming": never written) gives no expected length."""
    data = bytearray((files / "fine3.nc").read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    path = tmp_path / "streaming.nc"
    path.write_bytes(bytes(data[: len(data) // 2]))
    assert netcdf3_expected_size(path) is None
    check_input_file(path)


def test_netcdf3_header_cut_short_is_truncated(files, tmp_path):
    path = tmp_path / "header.nc"
    path.write_bytes((files / "fine3.nc").read_bytes()[:40])
    with pytest.raises(DataError, match="its header is cut"):
        check_input_file(path)


def test_empty_file(files):
    assert "is empty (0 bytes)" in _refusal(files / "empty.nc")


@pytest.mark.parametrize("name", ["fine4.nc.gz", "renamed_gzip.nc"])
def test_gzip_compressed_file(files, name):
    message = _refusal(files / name)
    assert "is gzip-compressed: decompress it first (gunzip -c" in message
    assert "backends" not in message


def test_gzip_compressed_netcdf3_still_opens(files, tmp_path):
    """xarray reads a gzip-compressed netCDF-3 file (through scipy): it is not refused."""
    path = tmp_path / "fine3.nc.gz"
    with open(files / "fine3.nc", "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    check_input_file(path)
    assert open_input(str(path))["t2m"].shape == (8, 32, 48)


def test_file_that_is_not_netcdf(files):
    message = _refusal(files / "image.nc")
    assert "is not netCDF, HDF5 or zarr (its first bytes are b'\\x89PNG" in message
    assert ": a PNG image)" in message
    assert "backends" not in message


def test_folder_that_is_not_a_zarr_store(files, tmp_path):
    """Training said "No group found in store", ``downscale`` "NetCDF: Unknown file format"."""
    message = _refusal(files / "folder.nc")
    assert "is a folder that holds none of .zgroup" in message
    # a folder of netCDF files: the message says how to read them
    shutil.copy(files / "fine4.nc", tmp_path / "a.nc")
    message = _refusal(tmp_path)
    assert "it holds 1 netCDF file ('a.nc')" in message
    assert repr(os.path.join(str(tmp_path), "*.nc")) in message


def test_zarr_store_named_without_zarr_opens_as_training_opens_it(files, tmp_path):
    """A folder that is a zarr store is read as one by open_input too, whatever its name."""
    pytest.importorskip("zarr")
    xr.open_dataset(files / "fine4.nc").to_zarr(tmp_path / "store", consolidated=False)
    assert open_input(str(tmp_path / "store"))["t2m"].shape == (8, 32, 48)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("coarse3_cut.nc", "is shorter than its header says"),
        ("empty.nc", "is empty (0 bytes)"),
        ("renamed_gzip.nc", "is gzip-compressed"),
        ("image.nc", "is not netCDF, HDF5 or zarr"),
        ("folder.nc", "is a folder that holds none of .zgroup"),
    ],
)
def test_downscale_command_refuses_broken_input(files, tmp_path, capsys, name, words):
    out = tmp_path / "out.nc"
    argv = ["downscale", str(files / name), str(out), "--model", "era5-t2m-x4"]
    code = main([*argv, "--steps", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") <= 1, err
    assert words in err
    assert repr(str(files / name)) in err
    assert not out.exists()
