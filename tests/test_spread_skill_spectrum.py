"""spread_skill_spectrum: the spread-skill ratio per wavenumber.

Anchors: a reliable (exchangeable) ensemble gives 1 in every bin whatever the spectral method;
an ensemble over-dispersed at small scales only is told apart from one right at every scale;
Parseval links the FFT version to the point-wise spread_skill_ratio of the demeaned fields
exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.errors import ConfigError, EnsembleError, GridError, UnitsError
from flexdownscale.metrics import power_spectrum, spread_skill_ratio, spread_skill_spectrum

N = 32
CELLS = np.arange(N, dtype=float)


def _red_noise(rng: np.random.Generator, shape: tuple[int, ...], slope: float) -> np.ndarray:
    """Gaussian random fields with an isotropic power ``|k|^slope`` on the last two axes."""
    white = rng.normal(size=shape)
    ky = np.fft.fftfreq(shape[-2])[:, None]
    kx = np.fft.fftfreq(shape[-1])[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    amp = k ** (slope / 2)
    return np.real(np.fft.ifft2(np.fft.fft2(white) * amp))


def _fields(values: np.ndarray, dims: tuple[str, ...]) -> xr.DataArray:
    return xr.DataArray(values, dims=dims, coords={"y": CELLS, "x": CELLS}, attrs={"units": "K"})


def _reliable(seed: int = 0, members: int = 8, times: int = 150):
    """Members and truth drawn from one distribution: a shared signal plus independent noise."""
    rng = np.random.default_rng(seed)
    signal = _red_noise(rng, (times, N, N), -3.0)
    noise = _red_noise(rng, (members + 1, times, N, N), -2.0)
    ens = _fields(signal + noise[:members], ("member", "time", "y", "x"))
    truth = _fields(signal + noise[members], ("time", "y", "x"))
    return ens, truth


def _complete(ratio: xr.DataArray) -> xr.DataArray:
    return ratio.sel(wavenumber=slice(None, ratio.attrs["complete_wavenumber"]))


@pytest.mark.parametrize(
    ("method", "window"), [("dct", None), ("fft", None), ("fft", "hann")], ids=str
)
def test_reliable_ensemble_is_one_at_every_scale(method, window):
    ens, truth = _reliable()
    ratio = _complete(spread_skill_spectrum(ens, truth, method=method, window=window))
    # 150 samples x 8 members: the sampling error of a bin's ratio is a few per cent
    assert float(abs(ratio - 1).max()) < 0.12
    assert float(abs(ratio.mean() - 1)) < 0.03
    raw = _complete(
        spread_skill_spectrum(ens, truth, method=method, window=window, correction=None)
    )
    np.testing.assert_allclose(raw.values, ratio.values * np.sqrt(8 / 9), rtol=1e-12)


def test_scale_dependent_dispersion_is_resolved():
    """Members with twice the truth's noise at small scales only: ratio 1 at large scales and,
    at small ones, the closed form sqrt(4 (M + 1) / (M + 4)) (member variance 4 s^2 against
    the mean's error 4 s^2 / M + s^2; sqrt(3) for M = 8); the point-wise ratio pools the two
    into one number in between."""
    rng = np.random.default_rng(1)
    m, times = 8, 120
    freq = np.abs(np.fft.fftfreq(N))
    reach = np.maximum(freq[:, None], freq[None, :])  # the larger of |k_y|, |k_x| of each mode

    def band(keep: np.ndarray) -> np.ndarray:
        white = np.fft.fft2(rng.normal(size=(m + 1, times, N, N)))
        return np.real(np.fft.ifft2(white * keep))

    large = 3.0 * band(reach < 0.15)  # modes below 0.15 cycles per cell, most variance
    small = band(reach > 0.25)  # modes above 0.25 cycles per cell
    ens = _fields(large[:m] + 2.0 * small[:m], ("member", "time", "y", "x"))
    truth = _fields(large[m] + small[m], ("time", "y", "x"))
    ratio = _complete(spread_skill_spectrum(ens, truth, method="fft"))
    k = ratio.wavenumber
    assert float(abs(ratio.where(k < 0.2, drop=True) - 1).max()) < 0.1
    expected = np.sqrt(4 * (m + 1) / (m + 4))
    assert float(abs(ratio.where(k > 0.3, drop=True) - expected).max()) < 0.1
    pooled = float(spread_skill_ratio(ens, truth))
    assert 1.1 < pooled < expected - 0.1


def test_parseval_links_it_to_the_pointwise_ratio_of_demeaned_fields():
    ens, truth = _reliable(seed=2, members=5, times=12)
    ens = ens * (1 + 0.3 * xr.DataArray(np.arange(5.0), dims="member"))  # unequal members
    spec = spread_skill_spectrum(ens, truth, method="fft", include_components=True)
    dk = spec.attrs["dk"]
    spread_var = float(spec.sel(component="spread").sum()) * dk
    error_var = float(spec.sel(component="error").sum()) * dk

    def demeaned(a):
        return a - a.mean(("y", "x"))

    point = spread_skill_ratio(
        demeaned(ens), demeaned(truth), correction=None, include_components=True
    )
    assert spread_var == pytest.approx(float(point.sel(component="spread")) ** 2, rel=1e-10)
    assert error_var == pytest.approx(float(point.sel(component="skill")) ** 2, rel=1e-10)
    # the components are power spectral densities in power_spectrum's units
    assert spec.attrs.get("units") is None
    mean_error = power_spectrum(ens.mean("member") - truth, method="fft").mean("time")
    np.testing.assert_allclose(spec.sel(component="error").values, mean_error.values, rtol=1e-12)


def test_corrections_follow_their_formulas():
    ens, truth = _reliable(seed=3, members=4, times=20)
    comp = spread_skill_spectrum(ens, truth, include_components=True)
    s, e = comp.sel(component="spread"), comp.sel(component="error")
    np.testing.assert_allclose(comp.sel(component="ratio"), np.sqrt(s * 5 / 4 / e), rtol=1e-12)
    unbiased = spread_skill_spectrum(ens, truth, correction="unbiased")
    np.testing.assert_allclose(unbiased, np.sqrt(s / (e - s / 4)), rtol=1e-12)


def test_invariances():
    ens, truth = _reliable(seed=4, members=6, times=10)
    base = spread_skill_spectrum(ens, truth)
    shuffled = spread_skill_spectrum(ens.isel(member=[3, 0, 5, 1, 4, 2]), truth)
    np.testing.assert_allclose(shuffled, base, rtol=1e-12)
    shared = xr.DataArray(np.random.default_rng(9).normal(size=(N, N)) * 5, dims=("y", "x"))
    moved = spread_skill_spectrum(ens + shared, truth + shared)  # a perfectly predicted part
    np.testing.assert_allclose(moved, base, rtol=1e-8)
    assert ens.attrs == {"units": "K"}  # inputs untouched
    assert "member" not in truth.dims


def test_preserve_dims_and_nan_samples():
    ens, truth = _reliable(seed=5, members=4, times=6)
    per_time = spread_skill_spectrum(ens, truth, preserve_dims="time")
    assert per_time.dims == ("time", "wavenumber") or set(per_time.dims) == {"time", "wavenumber"}
    holed = ens.copy(data=ens.values.copy())
    holed[2, 3, 5, 7] = np.nan  # one point of one member at time 3
    kept = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(
        spread_skill_spectrum(holed, truth),
        spread_skill_spectrum(ens.isel(time=kept), truth.isel(time=kept)),
        rtol=1e-12,
    )


def test_dataset_and_attrs():
    ens, truth = _reliable(seed=6, members=3, times=4)
    ds_ens = xr.Dataset({"t2m": ens, "t850": ens * 2})
    ds_truth = xr.Dataset({"t2m": truth, "t850": truth * 2})
    out = spread_skill_spectrum(ds_ens, ds_truth)
    np.testing.assert_allclose(out["t2m"], spread_skill_spectrum(ens, truth), rtol=1e-12)
    np.testing.assert_allclose(out["t850"], out["t2m"], rtol=1e-12)
    assert out["t2m"].attrs["units"] == "1"
    assert out.attrs["complete_wavenumber"] == out["t2m"].attrs["complete_wavenumber"]
    assert "wavelength" in out.coords


def test_lazy_inputs_stay_lazy_and_agree():
    ens, truth = _reliable(seed=7, members=3, times=4)
    lazy = spread_skill_spectrum(ens.chunk({"time": 2}), truth.chunk({"time": 2}))
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.compute(), spread_skill_spectrum(ens, truth), rtol=1e-12)


def test_refusals():
    ens, truth = _reliable(seed=8, members=3, times=2)
    with pytest.raises(EnsembleError, match="at least 2 members"):
        spread_skill_spectrum(ens.isel(member=[0]), truth)
    with pytest.raises(EnsembleError, match="no member dim"):
        spread_skill_spectrum(truth, truth)
    with pytest.raises(EnsembleError, match="observations are one realisation"):
        spread_skill_spectrum(ens, ens)
    with pytest.raises(UnitsError):
        spread_skill_spectrum(ens, truth.assign_attrs(units="degC"))
    with pytest.raises(ConfigError, match="correction"):
        spread_skill_spectrum(ens, truth, correction="wbx")


def test_plot_from_fields_and_from_a_ratio():
    from flexdownscale.plot import plot_spread_skill_spectrum

    ens, truth = _reliable(seed=10, members=4, times=8)
    fig = plot_spread_skill_spectrum(ens, truth)
    ax = fig.axes[0]
    ratio = _complete(spread_skill_spectrum(ens, truth))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ratio.values, rtol=1e-12)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), ratio.wavenumber.values)
    assert ax.get_title() == "spread-skill ratio per wavenumber (4 members)"
    assert list(ax.lines[1].get_ydata()) == [1.0, 1.0]  # the reliable level
    lo, hi = ax.get_ylim()
    assert lo < 1.0 < hi
    again = plot_spread_skill_spectrum(spread_skill_spectrum(ens, truth), truncate=False)
    assert len(again.axes[0].lines[0].get_ydata()) == spread_skill_spectrum(ens, truth).size
    # metres: wavelengths in km on a top axis
    metres = {"y": ("y", CELLS * 1e3, {"units": "m"}), "x": ("x", CELLS * 1e3, {"units": "m"})}
    fig = plot_spread_skill_spectrum(ens.assign_coords(metres), truth.assign_coords(metres))
    assert [a.get_xlabel() for a in fig.axes[0].child_axes] == ["wavelength [km]"]


def test_plot_refusals():
    from flexdownscale.errors import DataError
    from flexdownscale.plot import plot_spread_skill_spectrum

    ens, truth = _reliable(seed=11, members=3, times=3)
    per_time = spread_skill_spectrum(ens, truth, preserve_dims="time")
    with pytest.raises(ConfigError, match=r"'wavenumber' \(or 'zonal_wavenumber'\) only"):
        plot_spread_skill_spectrum(per_time)
    with pytest.raises(DataError, match="no spread-skill ratio to plot"):
        plot_spread_skill_spectrum(ens.where(ens.x > 0), truth)


# --- kind="zonal": global grids, the periodogram along each latitude circle -------------------

LAT = np.linspace(-87.5, 87.5, 36)
LON = np.arange(0.0, 360.0, 5.0)


def _global(values: np.ndarray, dims: tuple[str, ...]) -> xr.DataArray:
    coords = {
        "lat": ("lat", LAT, {"units": "degrees_north"}),
        "lon": ("lon", LON, {"units": "degrees_east"}),
    }
    return xr.DataArray(values, dims=dims, coords=coords, attrs={"units": "K"})


def _zonal_noise(rng: np.random.Generator, shape: tuple[int, ...], small: float) -> np.ndarray:
    """White noise along longitude whose zonal modes above wavenumber 12 are ``small`` times
    stronger than those below."""
    modes = np.fft.rfft(rng.normal(size=shape), axis=-1)
    modes[..., 13:] *= small
    return np.fft.irfft(modes, n=shape[-1], axis=-1)


def test_zonal_reliable_ensemble_is_one_and_parseval_gives_the_area_weighted_ratio():
    rng = np.random.default_rng(1)
    draw = rng.normal(size=(9, 100, LAT.size, LON.size))
    ens = _global(draw[:8], ("member", "time", "lat", "lon"))
    truth = _global(draw[8], ("time", "lat", "lon"))
    parts = spread_skill_spectrum(ens, truth, kind="zonal", include_components=True)
    ratio = parts.sel(component="ratio")
    assert ratio.dims == ("zonal_wavenumber",)
    assert ratio.sizes["zonal_wavenumber"] == LON.size // 2
    # 100 times x 36 circles x 8 members: a few per cent per wavenumber
    assert float(abs(ratio - 1).max()) < 0.06
    # Parseval per circle: the sums over j are the cos(lat)-weighted variance and squared
    # error of the fields without their zonal means, so the pooled ratio is the point-wise
    # spread_skill_ratio of those fields with area weights, to round-off
    spread = parts.sel(component="spread").sum("zonal_wavenumber")
    error = parts.sel(component="error").sum("zonal_wavenumber")
    pooled = float(np.sqrt(spread * 9 / 8 / error))
    weights = np.cos(np.deg2rad(ens["lat"]))
    pointwise = spread_skill_ratio(
        ens - ens.mean("lon"), truth - truth.mean("lon"), weights=weights
    )
    assert pooled == pytest.approx(float(pointwise), rel=1e-10)


def test_zonal_dispersion_at_small_scales_only_is_resolved():
    # members carry twice the truth's noise amplitude above zonal wavenumber 12 only: 1 below,
    # sqrt(4 (M + 1) / (M + 4)) = sqrt(3) above for M = 8 (as the isotropic test's closed form)
    rng = np.random.default_rng(2)
    shape = (100, LAT.size, LON.size)
    signal = rng.normal(size=shape)
    ens = _global(
        signal + np.stack([_zonal_noise(rng, shape, 2.0) for _ in range(8)]),
        ("member", "time", "lat", "lon"),
    )
    truth = _global(signal + _zonal_noise(rng, shape, 1.0), ("time", "lat", "lon"))
    ratio = spread_skill_spectrum(ens, truth, kind="zonal")
    large, small = (
        ratio.sel(zonal_wavenumber=slice(1, 12)),
        ratio.sel(zonal_wavenumber=slice(13, None)),
    )
    assert float(abs(large - 1).max()) < 0.08
    assert float(abs(small - np.sqrt(3.0)).max()) < 0.12
    # per latitude on request; the polar circles are shorter but the ratio is the same
    per_lat = spread_skill_spectrum(ens, truth, kind="zonal", preserve_dims="lat")
    assert per_lat.dims == ("lat", "zonal_wavenumber")
    assert (
        float(
            abs(
                per_lat.sel(zonal_wavenumber=slice(13, None)).mean("zonal_wavenumber")
                - np.sqrt(3.0)
            ).max()
        )
        < 0.15
    )


def test_zonal_refusals():
    rng = np.random.default_rng(3)
    draw = rng.normal(size=(3, 2, LAT.size, LON.size))
    ens = _global(draw[:2], ("member", "time", "lat", "lon"))
    truth = _global(draw[2], ("time", "lat", "lon"))
    with pytest.raises(ConfigError, match="method, window set the isotropic spectrum"):
        spread_skill_spectrum(ens, truth, kind="zonal", method="fft", window="hann")
    with pytest.raises(ConfigError, match="detrend set the isotropic"):
        spread_skill_spectrum(ens, truth, kind="zonal", detrend="linear")
    with pytest.raises(ConfigError, match="lat_dim / lon_dim name the latitude circles"):
        spread_skill_spectrum(ens, truth, lat_dim="lat")
    regional = ens.isel(lon=slice(0, 20))
    with pytest.raises(GridError, match="not a full circle"):
        spread_skill_spectrum(regional, truth.isel(lon=slice(0, 20)), kind="zonal")
    with pytest.raises(ConfigError, match="kind"):
        spread_skill_spectrum(ens, truth, kind="meridional")


def test_zonal_plot_from_fields_and_from_a_ratio():
    from flexdownscale.plot import plot_spread_skill_spectrum

    rng = np.random.default_rng(4)
    draw = rng.normal(size=(5, 6, LAT.size, LON.size))
    ens = _global(draw[:4], ("member", "time", "lat", "lon"))
    truth = _global(draw[4], ("time", "lat", "lon"))
    ratio = spread_skill_spectrum(ens, truth, kind="zonal")
    for fig in (
        plot_spread_skill_spectrum(ens, truth, spectrum_kwargs={"kind": "zonal"}),
        plot_spread_skill_spectrum(ratio),
    ):
        ax = fig.axes[0]
        np.testing.assert_allclose(ax.lines[0].get_ydata(), ratio.values, rtol=1e-12)
        np.testing.assert_allclose(ax.lines[0].get_xdata(), np.arange(1, LON.size // 2 + 1))
        assert ax.get_xlabel() == "zonal wavenumber (cycles per latitude circle)"
        assert ax.child_axes == []  # no wavelength axis: a zonal wavenumber's varies with latitude
