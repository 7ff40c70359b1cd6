"""End-to-end tests of ``flexdownscale downscale`` and ``flexdownscale evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from test_pipeline import FACTOR, era5_pair, make_downscaler

from flexdownscale.cli import main
from flexdownscale.data import refine_grid


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    fine, coarse = era5_pair(shared_data, times=2)
    coarse.to_netcdf(root / "coarse.nc")
    fine.to_netcdf(root / "truth.nc")
    model = make_downscaler(fine).save_pretrained(root / "model")
    return root, model


def test_downscale_netcdf_and_zarr(files, capsys):
    root, model = files
    args = ["--model", str(model), "--factor", "4", "--members", "3", "--steps", "2"]
    assert main(["downscale", str(root / "coarse.nc"), str(root / "out.nc"), *args]) == 0
    assert "wrote" in capsys.readouterr().out
    out = xr.open_dataset(root / "out.nc")
    coarse = xr.open_dataset(root / "coarse.nc")
    assert out["t2m"].dims == ("member", "time", "latitude", "longitude")
    assert out.sizes["member"] == 3
    ref = refine_grid(coarse, FACTOR)
    np.testing.assert_array_equal(out["latitude"].values, ref["latitude"].values)
    np.testing.assert_array_equal(out["longitude_bnds"].values, ref["longitude_bnds"].values)
    assert out.attrs["flexdownscale_members"] == 3
    assert out["t2m"].attrs["units"] == "K"
    # zarr output, lazily in time chunks: the same numbers (per-time-step seeds)
    zarr_out = root / "out.zarr"
    zargs = [str(root / "coarse.nc"), str(zarr_out), *args, "--time-chunk", "1", "--quiet"]
    assert main(["downscale", *zargs]) == 0
    z = xr.open_zarr(zarr_out, consolidated=False)
    np.testing.assert_array_equal(z["t2m"].values, out["t2m"].values)


def test_downscale_errors_exit_2(files, capsys):
    root, model = files
    code = main(
        [
            "downscale",
            str(root / "coarse.nc"),
            str(root / "x.nc"),
            "--model",
            str(model),
            "--factor",
            "8",
        ]
    )
    assert code == 2
    assert "downscales by 4 only" in capsys.readouterr().err
    assert not (root / "x.nc").exists()
    code = main(["downscale", str(root / "missing.nc"), str(root / "x.nc"), "--model", str(model)])
    assert code == 2


def test_evaluate(files, tmp_path, capsys):
    root, model = files
    pred = tmp_path / "pred.nc"
    assert (
        main(
            [
                "downscale",
                str(root / "coarse.nc"),
                str(pred),
                "--model",
                str(model),
                "--members",
                "4",
                "--quiet",
            ]
        )
        == 0
    )
    out = tmp_path / "eval"
    assert main(["evaluate", str(pred), str(root / "truth.nc"), "--out", str(out)]) == 0
    table = (out / "metrics.md").read_text()
    assert "| t2m | K |" in table
    rows = json.loads((out / "metrics.json").read_text())
    # cross-check the RMSE of the ensemble mean by hand
    p = xr.open_dataset(pred)["t2m"].mean("member")
    t = xr.open_dataset(root / "truth.nc")["t2m"]
    expected = float(np.sqrt(((p.values - t.values) ** 2).mean()))
    assert rows[0]["RMSE (ens. mean)"] == pytest.approx(expected, rel=1e-5)
    # fair ensemble CRPS by hand: mean |x_i - y| - sum_ij |x_i - x_j| / (2 M (M - 1))
    x = xr.open_dataset(pred)["t2m"].values
    m = x.shape[0]
    skill = np.abs(x - t.values[None]).mean(axis=0)
    spread = np.abs(x[:, None] - x[None]).sum(axis=(0, 1)) / (2 * m * (m - 1))
    assert rows[0]["CRPS"] == pytest.approx(float((skill - spread).mean()), rel=1e-5)
    assert (out / "spectra_t2m.png").stat().st_size > 1000
    assert (out / "rank_histogram_t2m.png").stat().st_size > 1000
