"""Files that the tests of ``flexdownscale evaluate`` score: an ERA5 truth and a noisy
ensemble of it (not a test module; imported by the tests as ``evaluate_files``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"


def write_noisy_pair(shared_data: Path, root: Path, times: int) -> Path:
    """Write ``root/truth.nc`` (the first ``times`` ERA5 hours, 16 x 24 cells) and
    ``root/pred.nc`` (two members: the truth plus N(0, 0.5 K) noise, seed 0); returns ``root``."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        truth = ds.isel(time=list(range(times)), latitude=slice(0, 16), longitude=slice(0, 24))
        truth = truth.load()
    truth.to_netcdf(root / "truth.nc")
    noise = np.random.default_rng(0).normal(0.0, 0.5, (2, *truth["t2m"].shape))
    pred = (truth["t2m"].expand_dims(member=2) + noise.astype("float32")).to_dataset()
    pred["t2m"].attrs = dict(truth["t2m"].attrs)
    pred.to_netcdf(root / "pred.nc")
    return root
