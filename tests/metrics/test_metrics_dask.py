"""Every metric stays lazy on dask input, computes nothing early, and equals the eager result."""

from __future__ import annotations

import contextlib
import warnings

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from metrics_helpers import grid_field, raising_scheduler

from flexdownscale.errors import EnsembleError, FlexDownscaleWarning, ShapeError, WeightsError
from flexdownscale.metrics import (
    area_weights,
    bias,
    crps_ensemble,
    ensemble_mean,
    ensemble_spread,
    kinetic_energy_spectrum,
    log_spectral_distance,
    mae,
    mse,
    pearson_r,
    power_spectrum,
    psnr,
    rank_histogram,
    rfne,
    rmse,
    spectral_ratio,
    spread_skill_ratio,
    ssim,
    zonal_spectrum,
)

SHAPE = (8, 12, 16)
DIMS = ("time", "lat", "lon")


def _data():
    fcst = grid_field(SHAPE, DIMS, seed=1, nan_frac=0.05)
    obs = grid_field(SHAPE, DIMS, seed=2, nan_frac=0.05, offset=0.2)
    rng = np.random.default_rng(3)
    ens = fcst + xr.DataArray(rng.normal(size=(5, *SHAPE)), dims=("member", *DIMS))
    ens.attrs["units"] = "K"
    w = np.cos(np.deg2rad(fcst.lat))
    return fcst, obs, ens, w


def _global_uv():
    lat = np.linspace(-87.5, 87.5, 15)
    lon = np.arange(0.0, 360.0, 15.0)
    rng = np.random.default_rng(4)
    coords = {
        "time": np.arange(6),
        "lat": ("lat", lat, {"units": "degrees_north"}),
        "lon": ("lon", lon, {"units": "degrees_east"}),
    }
    u = xr.DataArray(
        rng.normal(size=(6, 15, 24)),
        dims=("time", "lat", "lon"),
        coords=coords,
        attrs={"units": "m s-1"},
    )
    return u, u * 0.5 + 1.0


CASES = {
    "mse": lambda f, o, e, w: mse(f, o, weights=w, preserve_dims="lat"),
    "rmse": lambda f, o, e, w: rmse(f, o, weights=w),
    "mae": lambda f, o, e, w: mae(f, o, reduce_dims=["time", "lon"]),
    "bias": lambda f, o, e, w: bias(f, o, weights=w),
    "pearson_r": lambda f, o, e, w: pearson_r(f, o, weights=w, preserve_dims="time"),
    "psnr": lambda f, o, e, w: psnr(f, o, data_range=10.0),
    "rfne": lambda f, o, e, w: rfne(f.fillna(0), o, weights=w),
    "ssim": lambda f, o, e, w: ssim(f.fillna(0), o.fillna(0), data_range=8.0, window="uniform"),
    "crps_fair": lambda f, o, e, w: crps_ensemble(e, o, weights=w, preserve_dims="time"),
    "crps_ecdf_components": lambda f, o, e, w: crps_ensemble(
        e, o, fair=False, include_components=True
    ),
    "crps_member_weights": lambda f, o, e, w: crps_ensemble(
        e, o, member_weights=np.arange(1.0, 6.0)
    ),
    "spread_skill": lambda f, o, e, w: spread_skill_ratio(e, o, weights=w),
    "spread_skill_unbiased": lambda f, o, e, w: spread_skill_ratio(
        e, o, correction="unbiased", include_components=True
    ),
    "rank_histogram": lambda f, o, e, w: rank_histogram(e, o, weights=w),
    "ensemble_mean": lambda f, o, e, w: ensemble_mean(e),
    "ensemble_spread": lambda f, o, e, w: ensemble_spread(e),
    "power_spectrum": lambda f, o, e, w: power_spectrum(o.fillna(0)),
    "spectral_ratio": lambda f, o, e, w: spectral_ratio(
        power_spectrum(f.fillna(0)), power_spectrum(o.fillna(0))
    ),
    "lsd": lambda f, o, e, w: log_spectral_distance(
        power_spectrum(f.fillna(0), method="fft", window="hann"),
        power_spectrum(o.fillna(0), method="fft", window="hann"),
    ),
}


def _chunk(*objs):
    return [
        o.chunk({"time": 3}) if isinstance(o, xr.DataArray) and "time" in o.dims else o
        for o in objs
    ]


@pytest.mark.parametrize("name", list(CASES))
def test_lazy_and_equal_to_eager(name):
    fcst, obs, ens, w = _data()
    eager = CASES[name](fcst, obs, ens, w)
    f, o, e = _chunk(fcst, obs, ens)
    wl = w.chunk({"lat": 5})  # dask-backed weights too
    with dask.config.set(scheduler=raising_scheduler):
        lazy = CASES[name](f, o, e, wl)
    assert lazy.chunks is not None, f"{name} returned an eager result"
    with dask.config.set(scheduler="sync"):
        computed = lazy.compute()
    xr.testing.assert_allclose(computed, eager, rtol=1e-10, atol=1e-12)


def _global_warning(kind: str):
    """The isotropic spectrum of a global grid warns that its wavenumbers are nominal."""
    if kind == "zonal":
        return contextlib.nullcontext()
    return pytest.warns(FlexDownscaleWarning, match="spans the whole circle")


@pytest.mark.parametrize("kind", ["zonal", "isotropic"])
def test_spectra_of_winds_lazy(kind):
    u, v = _global_uv()
    with _global_warning(kind):
        eager = kinetic_energy_spectrum(u, v, kind=kind)
    with dask.config.set(scheduler=raising_scheduler), _global_warning(kind):
        lazy = kinetic_energy_spectrum(u.chunk(time=2), v.chunk(time=2), kind=kind)
    with dask.config.set(scheduler=raising_scheduler):
        zonal = zonal_spectrum(u.chunk(time=2))
    assert lazy.chunks is not None
    assert zonal.chunks is not None
    xr.testing.assert_allclose(lazy.compute(scheduler="sync"), eager)


def test_datasets_stay_lazy():
    fcst, obs, ens, w = _data()
    fd = xr.Dataset({"t": fcst, "u": fcst * 2}).chunk(time=4)
    od = xr.Dataset({"t": obs, "u": obs * 2}).chunk(time=4)
    ed = xr.Dataset({"t": ens, "u": ens * 2}).chunk(time=4)
    with dask.config.set(scheduler=raising_scheduler):
        out = [
            rmse(fd, od, weights=w),
            crps_ensemble(ed, od),
            power_spectrum(od.fillna(0)),
            area_weights(od),
        ]
    for res in out[:3]:
        assert all(res[v].chunks is not None for v in res.data_vars)
    xr.testing.assert_allclose(
        out[1].compute(scheduler="sync"), crps_ensemble(ed.compute(), od.compute())
    )


def test_chunked_member_dim_is_refused_with_a_fix():
    _, obs, ens, _ = _data()
    with pytest.raises(EnsembleError, match=r"chunk\(\{'member': -1\}\)"):
        crps_ensemble(ens.chunk(member=2), obs)
    with pytest.raises(EnsembleError):
        rank_histogram(ens.chunk(member=2), obs)
    # the reduction-only scores accept a chunked member dim
    lazy = spread_skill_ratio(ens.chunk(member=2, time=3), obs)
    assert float(lazy) == pytest.approx(float(spread_skill_ratio(ens, obs)), rel=1e-12)


def test_lazy_nan_weights_raise_at_compute():
    fcst, obs, _, w = _data()
    bad = w.copy(data=dsa.from_array(np.where(np.arange(12) == 3, np.nan, w.values), chunks=6))
    with dask.config.set(scheduler=raising_scheduler):
        lazy = rmse(fcst.chunk(time=3), obs, weights=bad)
    with pytest.raises(WeightsError, match="NaN"):
        lazy.compute(scheduler="sync")


def test_masked_points_give_no_warning_from_dask_and_the_numpy_values():
    """A fixed mask (no valid member at some points) made dask's NaN-skipping variance warn
    "invalid value encountered in divide" (numpy's is silent), and ``flexdownscale evaluate``
    printed it for an ordinary masked store (reviewer-82)."""
    rng = np.random.default_rng(4)
    obs = xr.DataArray(rng.normal(size=(6, 8, 10)), dims=DIMS).astype("float32")
    fcst = obs + xr.DataArray(rng.normal(size=(5, 6, 8, 10)), dims=("member", *DIMS))
    land = xr.DataArray(np.arange(10) > 6, dims="lon")
    fcst = fcst.where(~land).astype("float32").transpose("member", *DIMS)
    obs = obs.where(~land)
    fcst[1:3, 0, 0, 0] = np.nan  # and a point with fewer members left
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's own word on the masked points
        by_hand = np.nanstd(fcst.values, axis=0, ddof=1)
    for name, (f, o) in {
        "numpy": (fcst, obs),
        "dask": (fcst.chunk(time=2), obs.chunk(time=2)),
    }.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ratio = float(spread_skill_ratio(f, o))
            spread = ensemble_spread(f).compute()
        assert spread.dtype == np.float32, name
        np.testing.assert_allclose(spread.values, by_hand, rtol=1e-6, err_msg=name)
        assert np.isnan(spread.values[..., 7:]).all()
        if name == "numpy":
            eager = ratio
    assert ratio == pytest.approx(eager, rel=1e-12)


def test_ssim_on_split_spatial_dims_names_the_argument():
    """The message said "of 'the input'" (quoted as a name) and "obj.chunk" (reviewer-82)."""
    field = xr.DataArray(np.random.default_rng(0).random((16, 16)), dims=("y", "x"))
    with pytest.raises(ShapeError) as info:
        ssim(field.chunk(x=8), field, data_range=1.0)
    assert str(info.value) == (
        "dim 'x' of fcst is split into 2 dask chunks, but SSIM (a sliding window) needs it in "
        "one chunk; rechunk first: fcst.chunk({'x': -1})."
    )
    with pytest.raises(ShapeError, match=r"of 't2m' is split .* obs\.chunk\(\{'y': -1\}\)"):
        ssim(field, field.rename("t2m").chunk(y=4), data_range=1.0)


def test_downscaling_skill_joins_split_members_and_grids():
    """``downscaling_skill`` returns numbers, yet refused an ensemble chunked in member (CRPS)
    or in space (the spectra) where ``flexdownscale evaluate`` rechunks: it joins those blocks
    itself now, and the scores equal the eager ones."""
    from flexdownscale.metrics import downscaling_skill

    _, obs, ens, w = _data()
    obs, ens = obs.fillna(0.2), ens.fillna(0.0)  # gap-free, for the spectral scores
    eager = downscaling_skill(ens, obs, weights=w)
    split = downscaling_skill(
        ens.chunk(member=2, time=3, lat=5, lon=8), obs.chunk(lat=6, lon=4), weights=w
    )
    assert split.keys() == eager.keys()
    for key, value in eager.items():
        assert split[key] == pytest.approx(value, rel=1e-12), key
    assert np.isfinite(list(eager.values())).all()
