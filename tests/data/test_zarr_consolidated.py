"""Zarr stores with and without consolidated metadata, as inputs and as training files.

A training file written with ``to_zarr(..., consolidated=False)`` (or by a tool that does not
consolidate) opened with xarray's default and printed "Failed to open Zarr store with
consolidated metadata" to the user; the command line opened every store with
``consolidated=False`` and so never used the metadata of stores that have it. Both now ask
:func:`~flexdownscale.data.io.zarr_consolidated` first.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from test_zarr_groups import ZARR_FORMATS, _fields

from flexdownscale import cli
from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.data.io import zarr_consolidated


def _write(path, zarr_format: int, consolidated: bool) -> str:
    with warnings.catch_warnings():  # zarr's notice that v3 consolidation is not yet standard
        warnings.simplefilter("ignore")
        _fields(times=4).to_zarr(path, zarr_format=zarr_format, consolidated=consolidated)
    return str(path)


@pytest.mark.parametrize("zarr_format", ZARR_FORMATS)
def test_consolidated_metadata_is_told_apart(tmp_path, zarr_format):
    assert zarr_consolidated(_write(tmp_path / "c.zarr", zarr_format, True))
    assert not zarr_consolidated(_write(tmp_path / "p.zarr", zarr_format, False))
    assert not zarr_consolidated(tmp_path / "missing.zarr")
    (tmp_path / "f.nc").write_bytes(b"CDF")
    assert not zarr_consolidated(tmp_path / "f.nc")


@pytest.mark.parametrize("zarr_format", ZARR_FORMATS)
def test_a_store_without_consolidated_metadata_trains_without_a_warning(tmp_path, zarr_format):
    path = _write(tmp_path / "train.zarr", zarr_format, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xarray's "Failed to open ..." was a RuntimeWarning
        data = SuperResolutionDataset([path], variables=["t2m"], factor=4, crop_size=None)
        items = [data[i]["fine"] for i in range(len(data))]
    in_memory = SuperResolutionDataset(
        [_fields(times=4)], variables=["t2m"], factor=4, crop_size=None
    )
    assert len(items) == len(in_memory) == 4
    for i, fine in enumerate(items):  # the store reads the very fields the dataset holds
        np.testing.assert_array_equal(fine.numpy(), in_memory[i]["fine"].numpy())


@pytest.mark.parametrize("consolidated", [True, False])
def test_the_command_line_reads_the_metadata_a_store_has(tmp_path, monkeypatch, consolidated):
    path = _write(tmp_path / "in.zarr", 2, consolidated)
    asked: list[object] = []
    real = xr.open_zarr

    def spy(store, *args, **kwargs):
        asked.append(kwargs.get("consolidated"))
        return real(store, *args, **kwargs)

    monkeypatch.setattr(xr, "open_zarr", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = cli._open(path)
    with ds:
        xr.testing.assert_identical(ds.load(), _fields(times=4))
    assert asked == [consolidated]
