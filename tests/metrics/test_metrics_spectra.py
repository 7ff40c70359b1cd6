"""Spectra: sinusoids, Parseval, k^-3 slopes on aperiodic domains, periodogram, real winds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import xarray as xr
from metrics_helpers import fitted_slope, gaussian_random_field, metric_grid

from flexdownscale.errors import ConfigError, GridError, ShapeError
from flexdownscale.metrics import (
    kinetic_energy_spectrum,
    log_spectral_distance,
    power_spectrum,
    spectral_ratio,
    zonal_spectrum,
)
from flexdownscale.metrics._utils import EARTH_RADIUS


def _parseval_lhs(spec: xr.DataArray) -> xr.DataArray:
    return (spec * spec.attrs["dk"]).sum("wavenumber")


# ----------------------------------------------------------------------------------------------
# sinusoids and Parseval
# ----------------------------------------------------------------------------------------------
def test_plane_wave_peaks_at_its_wavenumber():
    ny, nx, step = 48, 64, 2000.0
    y = np.arange(ny)[:, None] * step
    x = np.arange(nx)[None, :] * step
    ky, kx = 3 / (ny * step), 8 / (nx * step)  # integer cycles: periodic
    da = metric_grid(np.cos(2 * np.pi * (kx * x + ky * y)), step=step)
    k_true = np.hypot(kx, ky)
    fft = power_spectrum(da, method="fft")
    peak = float(fft.wavenumber[fft.argmax("wavenumber")])
    assert abs(peak - k_true) <= 0.5 * fft.attrs["dk"]
    # all the variance (1/2) sits in that one bin
    assert float(fft.max() * fft.attrs["dk"]) == pytest.approx(0.5, rel=1e-10)
    dct = power_spectrum(da)  # default DCT: leakage, but the peak is within a bin
    peak_dct = float(dct.wavenumber[dct.argmax("wavenumber")])
    assert abs(peak_dct - k_true) <= 1.0 * dct.attrs["dk"]


@pytest.mark.parametrize("method", ["fft", "dct"])
def test_modes_on_a_ring_boundary_go_up(method):
    # ring j is [(j - 1/2) dk, (j + 1/2) dk). On a 32 x 64 grid the fundamental along x is half
    # dk, so odd x-modes sit exactly on boundaries: 1.5 dk belongs to ring 2, 2.5 dk to ring 3
    # (rounding half to even used to put both into ring 2)
    ny, nx, step = 32, 64, 1000.0
    x = np.arange(nx)
    for mode, ring in ((3, 2), (5, 3), (7, 4)):
        if method == "fft":
            row = np.cos(2 * np.pi * mode * x / nx)
        else:  # a DCT-II basis function: all its power in one mode
            row = np.cos(np.pi * mode * (2 * x + 1) / (2 * nx))
        da = metric_grid(np.ones((ny, 1)) * row[None, :], step=step)
        spec = power_spectrum(da, method=method, detrend=None)
        dk = spec.attrs["dk"]
        assert float(spec.wavenumber[spec.argmax("wavenumber")]) == pytest.approx(ring * dk)
        assert float(spec.max() * dk) == pytest.approx(float((da**2).mean()), rel=1e-10)


def test_linear_detrend_removes_the_least_squares_plane():
    ny, nx = 16, 20
    y, x = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(ny, nx))
    field = 4.0 + 0.3 * y - 0.7 * x + noise
    # the residual of numpy's least-squares fit of a + b y + c x
    design = np.stack([np.ones(y.size), y.ravel(), x.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, field.ravel(), rcond=None)
    resid = field - (design @ coef).reshape(ny, nx)
    for method in ("fft", "dct"):
        got = power_spectrum(metric_grid(field), method=method, detrend="linear")
        want = power_spectrum(metric_grid(resid), method=method, detrend="constant")
        np.testing.assert_allclose(got.values, want.values, rtol=1e-10, atol=1e-14)
    # a saddle is orthogonal to every plane: nothing of it is removed
    saddle = (y - y.mean()) * (x - x.mean())
    spec = power_spectrum(metric_grid(saddle), method="fft", detrend="linear")
    assert float(_parseval_lhs(spec)) == pytest.approx(float((saddle**2).mean()), rel=1e-10)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((32, 32), {"method": "fft"}),
        ((33, 50), {"method": "fft"}),
        ((31, 64), {"method": "dct"}),
        ((40, 24), {"method": "dct", "detrend": "linear"}),
        ((40, 24), {"method": "fft", "detrend": "errico"}),
        ((3, 21, 30), {"method": "fft", "detrend": None}),
    ],
)
def test_parseval_holds_to_round_off(shape, kwargs):
    rng = np.random.default_rng(len(shape) + shape[-1])
    da = metric_grid(rng.normal(size=shape) * 3 + 7, step=1500.0)
    spec = power_spectrum(da, **kwargs)
    # the detrended field the spectrum sees (mean always removed)
    if kwargs.get("detrend") in ("linear", "errico"):
        from flexdownscale.metrics.spectra import _detrend

        resid = _detrend(da.values, 2, kwargs["detrend"])
    else:
        resid = (da - da.mean(("y", "x"))).values
    expected = (resid**2).mean(axis=(-2, -1))
    np.testing.assert_allclose(_parseval_lhs(spec).values, expected, rtol=1e-10)


def test_windowed_spectrum_keeps_variance_on_average():
    rng = np.random.default_rng(1)
    da = metric_grid(rng.normal(size=(20, 64, 64)))
    spec = power_spectrum(da, method="fft", window="hann")
    # white noise: the mean(w^2) correction keeps the total variance in expectation
    assert float(_parseval_lhs(spec).mean()) == pytest.approx(1.0, rel=0.05)
    assert spec.attrs["spectrum_window"] == "hann"


# ----------------------------------------------------------------------------------------------
# k^-3 on an aperiodic sub-domain
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kminus3_subdomains() -> xr.DataArray:
    field = gaussian_random_field(1024, -3.0, seed=42)
    tiles = [field[i : i + 256, j : j + 256] for i in (37, 500) for j in (101, 650)]
    return metric_grid(np.stack(tiles), step=1000.0)


def _slope(spec: xr.DataArray) -> float:
    mean = spec.mean("s0")
    return fitted_slope(mean, 4.0 / 256e3, 0.25 / 1000.0)


def test_default_regional_method_recovers_minus_three(kminus3_subdomains):
    spec = power_spectrum(kminus3_subdomains)
    assert "DCT" in spec.attrs["spectrum_method"]
    assert _slope(spec) == pytest.approx(-3.0, abs=0.1)


def test_plain_fft_is_bent_by_the_edges_but_windows_fix_it(kminus3_subdomains):
    plain = _slope(power_spectrum(kminus3_subdomains, method="fft"))
    assert plain > -2.5  # leakage from the edge jump flattens it to about k^-2
    hann = _slope(power_spectrum(kminus3_subdomains, method="fft", window="hann"))
    errico = _slope(power_spectrum(kminus3_subdomains, method="fft", detrend="errico"))
    assert hann == pytest.approx(-3.0, abs=0.2)
    assert errico == pytest.approx(-3.0, abs=0.2)


def test_periodic_field_with_plain_fft():
    field = gaussian_random_field(256, -3.0, seed=7)
    spec = power_spectrum(metric_grid(field), method="fft")
    assert fitted_slope(spec, 4.0 / 256e3, 0.25 / 1000.0) == pytest.approx(-3.0, abs=0.15)


# ----------------------------------------------------------------------------------------------
# 1-D path = scipy.signal.periodogram
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [64, 75])
@pytest.mark.parametrize(
    ("detrend", "window"), [("constant", None), ("linear", None), ("constant", "hann")]
)
def test_one_dimensional_path_equals_periodogram(n, detrend, window):
    rng = np.random.default_rng(n)
    values = np.cumsum(rng.normal(size=(3, n)), axis=-1)
    step = 250.0
    da = xr.DataArray(values, dims=("t", "x"), coords={"x": np.arange(n) * step})
    da["x"].attrs["units"] = "m"
    spec = power_spectrum(da, dims="x", method="fft", detrend=detrend, window=window)
    f, pxx = scipy.signal.periodogram(
        values, fs=1 / step, detrend=detrend, window=window or "boxcar", scaling="density"
    )
    np.testing.assert_allclose(spec.wavenumber.values, f[1:], rtol=1e-12)
    np.testing.assert_allclose(spec.values, pxx[:, 1:], rtol=1e-10, atol=1e-12 * pxx.max())


# ----------------------------------------------------------------------------------------------
# spacing, units, attrs
# ----------------------------------------------------------------------------------------------
def test_spacing_from_degrees_projected_and_explicit():
    rng = np.random.default_rng(3)
    lat = np.arange(50.0, 58.25, 0.25)[::-1]
    lon = np.arange(-10.0, 2.25, 0.25)
    da = xr.DataArray(
        rng.normal(size=(lat.size, lon.size)),
        dims=("latitude", "longitude"),
        coords={"latitude": lat, "longitude": lon},
        attrs={"units": "K"},
    )
    da.latitude.attrs["units"] = "degrees_north"
    da.longitude.attrs["units"] = "degrees_east"
    spec = power_spectrum(da)
    dy = np.deg2rad(0.25) * EARTH_RADIUS
    dx = dy * np.cos(np.deg2rad(54.0))
    assert spec.attrs["dk"] == pytest.approx(max(1 / (2 * lat.size * dy), 1 / (2 * lon.size * dx)))
    assert spec.attrs["units"] == "m K^2"
    assert spec.wavenumber.attrs["units"] == "m-1"
    np.testing.assert_allclose(spec.wavelength.values, 1 / spec.wavenumber.values)
    # the same field with explicit metres gives the same spectrum
    explicit = power_spectrum(da, spacing={"latitude": dy, "longitude": dx})
    np.testing.assert_allclose(explicit.values, spec.values, rtol=1e-10)
    # km coordinates are converted to metres
    km = metric_grid(da.values, step=2.0, units="km")
    m = metric_grid(da.values, step=2000.0, units="m")
    np.testing.assert_allclose(power_spectrum(km).values, power_spectrum(m).values, rtol=1e-12)


def test_region_across_the_dateline_or_prime_meridian():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(12, 24))
    lat = np.linspace(40.0, 45.5, 12)
    wrapped = np.r_[np.arange(354.0, 360.0, 0.5), np.arange(0.0, 6.0, 0.5)]  # 354 ... 5.5

    def grid(lon):
        da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
        da.lat.attrs["units"] = "degrees_north"
        da.lon.attrs["units"] = "degrees_east"
        return da

    continuous = grid(np.where(wrapped > 180, wrapped - 360, wrapped))  # -6 ... 5.5
    for method in ("dct", "fft"):
        a = power_spectrum(grid(wrapped), method=method)
        b = power_spectrum(continuous, method=method)
        np.testing.assert_array_equal(a.values, b.values)
        assert a.attrs["dk"] == b.attrs["dk"]
    from flexdownscale.metrics import area_weights

    np.testing.assert_allclose(
        area_weights(grid(wrapped), normalize=None).values,
        area_weights(continuous, normalize=None).values,
        rtol=1e-14,
    )


def test_bad_grids_raise():
    da = metric_grid(np.zeros((16, 16)))
    irregular = da.assign_coords(x=np.r_[np.arange(15) * 1000.0, 20000.0])
    irregular.x.attrs["units"] = "m"
    with pytest.raises(GridError, match="not regularly spaced"):
        power_spectrum(irregular)
    with pytest.raises(ConfigError, match="window"):
        power_spectrum(da, method="dct", window="hann")  # the DCT takes no window
    with pytest.raises(ConfigError):
        power_spectrum(da, method="wavelet")
    with pytest.raises(GridError, match="Y and X"):
        power_spectrum(da.rename(y="a", x="b"))


def test_kolmogorov_flow_real_data(shared_data):
    """Doubly periodic turbulence (unitless box): FFT Parseval on real vorticity."""
    ds = xr.open_dataset(shared_data / "kolmogorov" / "kf_re1000.nc")
    w = ds.vorticity.isel(trajectory=0, time=slice(0, 2)).astype(np.float64).load()
    spec = power_spectrum(w, dims=("y", "x"), method="fft")
    assert spec.wavenumber.attrs["units"] == "1"
    resid = w - w.mean(("x", "y"))
    np.testing.assert_allclose(
        _parseval_lhs(spec).values, (resid**2).mean(("x", "y")).values, rtol=1e-10
    )
    # cycles per unit length on a 2 pi box: the first bin is one cycle per domain
    assert float(spec.wavenumber[0]) == pytest.approx(1 / (2 * np.pi), rel=1e-3)


# ----------------------------------------------------------------------------------------------
# zonal and kinetic-energy spectra on the real ERA-Interim winds
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eraint(shared_data) -> xr.Dataset:
    ds = xr.open_dataset(shared_data / "era_interim" / "eraint_uv_monthly.nc").load()
    return ds.assign_coords(latitude=ds.latitude.astype(np.float64)).assign_attrs()


def test_zonal_spectrum_parseval_and_periodogram(eraint):
    u = eraint.u.isel(month=0, level=1)
    spec = zonal_spectrum(u)
    assert spec.dims == ("latitude", "zonal_wavenumber")
    assert spec.sizes["zonal_wavenumber"] == 240
    assert spec.attrs["units"] == "m (m s**-1)^2"
    lat = np.deg2rad(u.latitude.values)
    circ = 2 * np.pi * EARTH_RADIUS * np.cos(lat)
    inner = slice(1, -1)  # not the poles
    lhs = (spec / xr.DataArray(circ, dims="latitude", coords={"latitude": u.latitude})).sum(
        "zonal_wavenumber"
    )
    var = u.astype(float).var("longitude")
    np.testing.assert_allclose(lhs.values[inner], var.values[inner], rtol=1e-10)
    for i in (30, 120, 200):
        _, pxx = scipy.signal.periodogram(u.values[i].astype(float), fs=480 / circ[i])
        np.testing.assert_allclose(spec.values[i], pxx[1:], rtol=1e-9)
    np.testing.assert_allclose(spec.wavelength.values[100], circ[100] / np.arange(1, 241))


def test_zonal_nyquist_counted_once():
    lon = np.arange(0.0, 360.0, 3.0)  # 120 points, even
    lat = np.array([-30.0, 0.0, 45.0])
    field = np.cos(np.pi * np.arange(lon.size))[None, :] * np.ones((3, 1))  # the Nyquist mode
    da = xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    spec = zonal_spectrum(da)
    circ = 2 * np.pi * EARTH_RADIUS * np.cos(np.deg2rad(lat))
    # variance 1, all in the last bin, once (WeatherBench2's doubling would give 2)
    np.testing.assert_allclose(spec.values[:, -1] / circ, 1.0, rtol=1e-12)
    np.testing.assert_allclose(spec.values[:, :-1], 0.0, atol=1e-12 * circ.max())


def test_kinetic_energy_spectrum_real_winds(eraint):
    ds = eraint.isel(month=0, level=1)
    ke = kinetic_energy_spectrum(ds.u, ds.v, kind="zonal")
    xr.testing.assert_allclose(ke, 0.5 * (zonal_spectrum(ds.u) + zonal_spectrum(ds.v)))
    mid = ke.sel(latitude=slice(60, 30)).mean("latitude")
    slope = np.polyfit(np.log(np.arange(8, 40)), np.log(mid.values[7:39]), 1)[0]
    assert slope < -2.5  # energy falls off steeply at sub-synoptic scales (monthly means)
    # a regional cut is refused by the zonal path, and works isotropically (DCT default)
    box = ds.sel(latitude=slice(60, 30), longitude=slice(-60, 0))
    with pytest.raises(GridError, match="full circle"):
        zonal_spectrum(box.u)
    iso = kinetic_energy_spectrum(box.u, box.v)
    assert iso.attrs["units"] == "m (m s**-1)^2"
    lhs = float((iso * iso.attrs["dk"]).sum())
    u2 = float(((box.u - box.u.mean()) ** 2).mean() + ((box.v - box.v.mean()) ** 2).mean())
    assert lhs == pytest.approx(0.5 * u2, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# ratio and log-spectral distance
# ----------------------------------------------------------------------------------------------
def test_spectral_ratio_and_log_spectral_distance():
    rng = np.random.default_rng(5)
    da = metric_grid(rng.normal(size=(2, 32, 32)))
    ref = power_spectrum(da)
    np.testing.assert_allclose(spectral_ratio(ref, ref).values, 1.0)
    np.testing.assert_allclose(spectral_ratio(power_spectrum(2 * da), ref).values, 4.0, rtol=1e-12)
    np.testing.assert_allclose(log_spectral_distance(ref, ref).values, 0.0, atol=1e-12)
    tenfold = power_spectrum(np.sqrt(10) * da)
    np.testing.assert_allclose(log_spectral_distance(tenfold, ref).values, 10.0, rtol=1e-10)
    assert log_spectral_distance(tenfold, ref).attrs["units"] == "dB"
    other = power_spectrum(metric_grid(rng.normal(size=(2, 32, 32)), step=500.0))
    with pytest.raises(ShapeError):
        spectral_ratio(other, ref)


def test_missing_scales_are_infinitely_far_not_skipped():
    """A prediction with no power at some scales was scored 0 dB when its other bins matched
    (zero bins were skipped); the definition 10 sqrt(mean log10(P/P_ref)^2) is infinite."""
    rng = np.random.default_rng(7)
    ref = power_spectrum(metric_grid(rng.normal(size=(2, 32, 32))))
    k = ref["wavenumber"]
    no_small_scales = ref.where(k < k.max() / 2, 0.0)
    assert np.isinf(log_spectral_distance(no_small_scales, ref).values).all()
    assert np.isinf(log_spectral_distance(ref, no_small_scales).values).all()
    # both without power in every bin (two constant fields): identical spectra, 0 dB (was NaN)
    zero = 0.0 * ref
    np.testing.assert_array_equal(log_spectral_distance(zero, zero).values, 0.0)
    constant = metric_grid(np.full((2, 32, 32), 280.0))
    lsd = log_spectral_distance(power_spectrum(constant), power_spectrum(constant + 1.0))
    np.testing.assert_array_equal(lsd.values, 0.0)
    # ... but a constant prediction of a varying truth lacks every scale: infinitely far
    assert np.isinf(log_spectral_distance(power_spectrum(constant), ref).values).all()
    # spectra that are NaN in every bin have nothing to compare: NaN
    assert np.isnan(log_spectral_distance(zero * np.nan, zero).values).all()
    # bins that are NaN (partly filled beyond the data) are still skipped
    gaps = ref.where(k != k[3])
    np.testing.assert_allclose(log_spectral_distance(gaps, ref).values, 0.0, atol=1e-12)


def test_dataset_input():
    rng = np.random.default_rng(6)
    a = metric_grid(rng.normal(size=(16, 20)))
    ds = xr.Dataset({"t": a, "q": (a * 2).assign_attrs(units="kg kg-1"), "scalar": 1.0})
    spec = power_spectrum(ds)
    assert set(spec.data_vars) == {"t", "q"}
    assert spec["q"].attrs["units"] == "m (kg kg-1)^2"
    np.testing.assert_allclose(spec["q"].values, 4 * spec["t"].values, rtol=1e-12)
    # the grid's attributes on the Dataset too: spec.attrs["dk"] as for a DataArray
    assert spec.attrs["dk"] == spec["t"].attrs["dk"] == power_spectrum(a).attrs["dk"]
    assert spec.attrs["nyquist_wavenumber"] == spec["q"].attrs["nyquist_wavenumber"]
    assert "units" not in spec.attrs


def test_a_window_selects_the_fft_path_as_in_the_documented_call():
    """``power_spectrum(field, dims=..., window="hann")`` (the architecture map's example) is the
    windowed FFT; it raised ConfigError because the default method was the DCT."""
    from flexdownscale.errors import ConfigError
    from flexdownscale.metrics import power_spectrum

    rng = np.random.default_rng(0)
    field = xr.DataArray(
        rng.normal(size=(32, 32)),
        dims=("lat", "lon"),
        coords={"lat": 40 + 0.25 * np.arange(32), "lon": 0.25 * np.arange(32)},
    )
    windowed = power_spectrum(field, dims=("lat", "lon"), window="hann")
    xr.testing.assert_identical(windowed, power_spectrum(field, method="fft", window="hann"))
    assert power_spectrum(field).attrs["spectrum_method"].startswith("DCT")
    with pytest.raises(ConfigError, match="window='hann' is for the FFT path"):
        power_spectrum(field, method="dct", window="hann")


def test_float32_coordinates_far_from_zero_give_the_same_bins_as_float64():
    """A 0.01-degree grid at 40 N / 100 E stored in float32 (as many files are) against the
    same grid in float64: RMSE took them as one grid, but the spacing was the median of the
    float32 steps, 2e-4 off, so the spectra's bins differed and ``log_spectral_distance`` /
    ``downscaling_skill`` raised ShapeError "regrid one onto the other" (reviewer-49). The
    spacing is now the least-squares slope: the bins agree and identical fields are 0 dB apart.
    """
    import flexdownscale.metrics as fm
    from flexdownscale.metrics._utils import regular_step

    lat = 40 + np.arange(64) * 0.01
    lon = 100 + np.arange(64) * 0.01
    rng = np.random.default_rng(0)
    truth = xr.DataArray(
        280 + rng.normal(size=(2, 64, 64)),
        dims=("time", "latitude", "longitude"),
        coords={"latitude": lat.astype(np.float32), "longitude": lon.astype(np.float32)},
        attrs={"units": "K"},
    )
    pred = truth.assign_coords(latitude=lat, longitude=lon)
    for dim in ("latitude", "longitude"):
        assert regular_step(truth, dim) == pytest.approx(0.01, rel=2e-5)
        assert regular_step(pred, dim) == pytest.approx(0.01, rel=1e-12)
    assert float(fm.log_spectral_distance(fm.mean_spectrum(pred), fm.mean_spectrum(truth))) < 1e-5
    skill = fm.downscaling_skill(pred + 0.1, truth)
    assert skill["rmse"] == pytest.approx(0.1)
    assert skill["lsd"] < 1e-5
    # a longitude across the dateline is still one regular step (wrapped by the period)
    across = xr.DataArray(np.zeros(6), dims="lon", coords={"lon": [350.0, 355, 0, 5, 10, 15]})
    assert regular_step(across, "lon", period=360.0) == pytest.approx(5.0, rel=1e-12)
