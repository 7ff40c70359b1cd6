"""Verification and physics metrics as xarray functions (no torch).

All scores share one convention: ``score(fcst, obs, *, reduce_dims=None, preserve_dims=None,
weights=None, ...)`` with the forecast first; ensemble scores take the member dim by name
(``member_dim="member"``). Dataset and DataArray inputs work; dask inputs stay lazy. See
``docs/metrics.md`` for the conventions that differ between libraries.
"""

from __future__ import annotations

from flexdownscale.metrics.deterministic import (
    bias,
    exceedance_frequency,
    fss,
    mae,
    mse,
    pearson_r,
    psnr,
    rfne,
    rmse,
    ssim,
)
from flexdownscale.metrics.probabilistic import (
    crps_ensemble,
    ensemble_mean,
    ensemble_spread,
    rank_histogram,
    spread_skill_ratio,
)
from flexdownscale.metrics.spectra import (
    complete_bins,
    default_method,
    kinetic_energy_spectrum,
    log_spectral_distance,
    power_spectrum,
    spectral_ratio,
    spread_skill_spectrum,
    zonal_spectrum,
)
from flexdownscale.metrics.summary import (
    SKILL_COLUMNS,
    downscaling_skill,
    mean_spectrum,
    sample_mean_spectrum,
)
from flexdownscale.metrics.weights import area_weights, cell_edges

__all__ = [
    "SKILL_COLUMNS",
    "area_weights",
    "bias",
    "cell_edges",
    "complete_bins",
    "crps_ensemble",
    "default_method",
    "downscaling_skill",
    "ensemble_mean",
    "ensemble_spread",
    "exceedance_frequency",
    "fss",
    "kinetic_energy_spectrum",
    "log_spectral_distance",
    "mae",
    "mean_spectrum",
    "mse",
    "pearson_r",
    "power_spectrum",
    "psnr",
    "rank_histogram",
    "rfne",
    "rmse",
    "sample_mean_spectrum",
    "spectral_ratio",
    "spread_skill_ratio",
    "spread_skill_spectrum",
    "ssim",
    "zonal_spectrum",
]
