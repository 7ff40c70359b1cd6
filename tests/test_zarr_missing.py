"""Without the optional zarr package (a base install: it is the ``zarr`` extra), a ``.zarr``
path ended in xarray's raw ``ImportError`` traceback, and an output store only after the whole
computation (reviewer-95, from the wheel). It is a ``BackendNotAvailableError`` naming the
extra, raised before anything is computed or read."""

from __future__ import annotations

import sys

import pytest

from flexdownscale.cli import main
from flexdownscale.data import SuperResolutionDataset, degrade
from flexdownscale.data.io import require_zarr
from flexdownscale.demo import open_sample
from flexdownscale.errors import BackendNotAvailableError

EXTRA = "pip install 'flexdownscale[zarr]'"


@pytest.fixture
def no_zarr(monkeypatch):
    """Python as without the zarr package: ``import zarr`` fails, find_spec finds nothing."""
    monkeypatch.setitem(sys.modules, "zarr", None)


@pytest.fixture
def coarse_file(tmp_path):
    coarse = degrade(open_sample("era5_t2m_uk").isel(time=[0]), 4, boundary="trim")
    coarse.to_netcdf(tmp_path / "coarse.nc")
    return tmp_path / "coarse.nc"


def test_zarr_output_is_refused_before_computing(no_zarr, coarse_file, capsys, monkeypatch):
    import flexdownscale.pipeline as pipeline

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded before the output was checked")

    monkeypatch.setattr(pipeline.Downscaler, "from_pretrained", never)
    target = coarse_file.parent / "out.zarr"
    assert main(["downscale", str(coarse_file), str(target), "--factor", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the zarr store {str(target)!r}: the zarr package is not installed" in err
    assert EXTRA in err
    assert "Traceback" not in err
    assert not target.exists()


@pytest.mark.parametrize("command", ["downscale", "evaluate"])
def test_zarr_input_is_refused_with_the_extra(no_zarr, coarse_file, tmp_path, capsys, command):
    store = tmp_path / "in.zarr"
    store.mkdir()
    argv = [command, str(store), str(coarse_file if command == "evaluate" else tmp_path / "o.nc")]
    argv += ["--out", str(tmp_path / "report")] if command == "evaluate" else ["--factor", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"cannot read the zarr store {str(store)!r}" in err
    assert EXTRA in err


def test_training_data_in_a_zarr_store_names_the_extra(no_zarr, tmp_path):
    store = tmp_path / "train.zarr"
    store.mkdir()
    with pytest.raises(BackendNotAvailableError, match=r"flexdownscale\[zarr\]"):
        SuperResolutionDataset(str(store), factor=4, variables=["t2m"])


def test_with_zarr_nothing_is_raised(tmp_path):
    pytest.importorskip("zarr")
    assert require_zarr(tmp_path / "x.zarr", "write") is None
