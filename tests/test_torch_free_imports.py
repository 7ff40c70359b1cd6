"""The xarray side (grids, regridding, degradation, metrics, plots, ``flexdownscale
evaluate``) loads and runs without torch; the data layer's torch parts load on first use.

Importing torch costs about a second and a few hundred MB: reviewer-110 measured an
``evaluate`` run at the ERA5 report's size 1.5x slower (2.94-3.04 s against 1.85-2.03 s) and
at 1.6x the peak memory with it than without it (session 33, 2-core CPU).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import flexdownscale as fd


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True)


def test_the_data_layer_plots_and_evaluate_run_without_importing_torch(tmp_path):
    _run(
        f"""
        import sys
        import numpy as np, xarray as xr
        import flexdownscale as fd
        from flexdownscale.data import degrade, grid_spec, regrid, up
        from flexdownscale.evaluation import evaluate
        from flexdownscale.plot import plot_spectra

        lat = xr.DataArray(np.arange(40.0, 56.0), dims="lat", attrs={{"units": "degrees_north"}})
        lon = xr.DataArray(np.arange(0.0, 16.0), dims="lon", attrs={{"units": "degrees_east"}})
        time = xr.DataArray(np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[ns]"),
                            dims="time")
        rng = np.random.default_rng(0)
        truth = xr.Dataset({{"t2m": (("time", "lat", "lon"), 280 + rng.normal(size=(2, 16, 16)),
                                    {{"units": "K"}})}}, coords={{"time": time, "lat": lat,
                                                                "lon": lon}})
        pred = (truth + xr.DataArray(rng.normal(size=4), dims="member")).transpose("member", ...)
        pred["t2m"].attrs["units"] = "K"
        truth.to_netcdf({str(tmp_path / "truth.nc")!r})
        pred.to_netcdf({str(tmp_path / "pred.nc")!r})
        coarse = degrade(truth.t2m, 4)
        fine = up(coarse, 4)
        assert fine.shape == truth.t2m.shape and grid_spec(coarse).nx == 4
        plot_spectra({{"truth": truth.t2m, "up": fine}})
        evaluate({str(tmp_path / "pred.nc")!r}, {str(tmp_path / "truth.nc")!r},
                 out={str(tmp_path / "report")!r})
        assert "torch" not in sys.modules, "torch was imported"
        """
    )
    assert (tmp_path / "report" / "metrics.md").is_file()


def test_the_lazy_names_of_the_data_layer_resolve():
    """Every public name of ``flexdownscale.data`` (those that load torch included), the
    submodules by name, and the functions named like their submodules (``degrade``,
    ``regrid``), which stay the functions after their modules are imported."""

    data = fd.data
    assert all(hasattr(data, name) for name in data.__all__)
    assert set(data.__all__) <= set(dir(data))
    assert data.degrade.__module__ == "flexdownscale.data.degrade"  # the function
    assert data.regrid.__module__ == "flexdownscale.data.regrid"
    assert data.Normalizer.__module__ == "flexdownscale.data.normalize"
    assert data.normalize.__name__ == "flexdownscale.data.normalize"  # the submodule
    assert data.tiling.tile is data.tile
    from flexdownscale.data import SuperResolutionDataset, TileLayout

    assert SuperResolutionDataset.__module__ == "flexdownscale.data.datasets"
    assert TileLayout is data.tiling.TileLayout
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        data.no_such_name


def test_degrade_still_takes_tensors():
    import torch

    x = torch.arange(16.0).reshape(1, 4, 4)
    out = fd.data.degrade_array(x, 2)
    assert isinstance(out, torch.Tensor)
    assert torch.allclose(out, torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))
    half = fd.data.upsample_array(torch.ones(1, 2, 2, dtype=torch.bfloat16), 2)
    assert half.dtype == torch.bfloat16
    assert bool((half == 1).all())
