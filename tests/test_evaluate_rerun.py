"""Re-running ``evaluate`` into an earlier report's folder leaves no file of the earlier report
that the new one does not write: figures of scores it no longer draws, a baseline sub-report."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import normalize_grid
from flexdownscale.evaluation import BASELINE_FOLDER, evaluate

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    """Truth (3 hours of a 16 x 16 corner), a 3-member and a 1-member prediction, as files."""
    folder = tmp_path_factory.mktemp("rerun")
    with xr.open_dataset(shared_data / ERA5) as ds:
        truth = normalize_grid(ds[["t2m"]].isel(time=slice(300, 303)))
        truth = truth.isel(latitude=slice(0, 16), longitude=slice(0, 16)).load()
    da = truth["t2m"]
    noise = np.random.default_rng(0).normal(scale=0.3, size=(3, *da.shape))
    ens = xr.Dataset(
        {"t2m": (("member", *da.dims), da.values[None] + noise, dict(da.attrs))},
        coords=truth.coords,
    )
    truth.to_netcdf(folder / "truth.nc")
    ens.to_netcdf(folder / "ens.nc")
    ens.isel(member=[0]).to_netcdf(folder / "one.nc")
    return folder


def test_figures_not_drawn_again_are_removed(files, tmp_path):
    out = tmp_path / "report"
    evaluate(files / "ens.nc", files / "truth.nc", out=out)
    assert (out / "rank_histogram_t2m.png").is_file()
    assert (out / "spread_skill_spectrum_t2m.png").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "my_plot.png").write_bytes(b"mine")
    evaluate(files / "one.nc", files / "truth.nc", out=out)  # no ensemble scores now
    names = sorted(p.name for p in out.iterdir())
    assert names == ["metrics.json", "metrics.md", "my_plot.png", "notes.txt", "spectra_t2m.png"]


def test_an_earlier_baseline_report_is_removed(files, tmp_path):
    out = tmp_path / "report"
    evaluate(files / "ens.nc", files / "truth.nc", out=out, baseline=files / "one.nc")
    assert (out / BASELINE_FOLDER / "metrics.md").is_file()
    evaluate(files / "ens.nc", files / "truth.nc", out=out)
    assert not (out / BASELINE_FOLDER).exists()
    assert "baseline" not in (out / "metrics.md").read_text()


def test_a_baseline_folder_of_other_files_is_left_alone(files, tmp_path):
    out = tmp_path / "report"
    evaluate(files / "ens.nc", files / "truth.nc", out=out, baseline=files / "one.nc")
    (out / BASELINE_FOLDER / "keep.txt").write_text("mine")
    evaluate(files / "ens.nc", files / "truth.nc", out=out)
    assert sorted(p.name for p in (out / BASELINE_FOLDER).iterdir()) == ["keep.txt"]
    mine = tmp_path / "mine"
    (mine / BASELINE_FOLDER).mkdir(parents=True)
    (mine / BASELINE_FOLDER / "metrics.md").write_text("my own notes\n")
    evaluate(files / "ens.nc", files / "truth.nc", out=mine)
    assert (mine / BASELINE_FOLDER / "metrics.md").read_text() == "my own notes\n"
