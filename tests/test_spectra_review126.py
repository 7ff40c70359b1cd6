"""Review 126 (spectra): one rule for the spectrum method, and the LSD over complete annuli.

F1: ``power_spectrum`` / ``mean_spectrum`` / ``kinetic_energy_spectrum`` / ``downscaling_skill``
took the DCT on a doubly periodic box whose coordinates say ``periodic = "true"``, while
``flexdownscale evaluate`` and ``plot_spectra`` took the FFT there: the same files scored 9.81 dB
in Python and 12.67 dB in the report. ``method=None`` now follows the periodic attributes
everywhere (``metrics.spectra.default_method``).

F2: the LSD averaged over every bin, the partly filled corner bins beyond the Nyquist wavenumber
included (53 of the 181 FFT bins of a 256 x 256 box, with 1e-4 of the variance, weighed 29% of
the mean), although the spectrum figure stops at Nyquist. It now runs over the complete annuli
only; the references below are computed with numpy alone, bin by bin.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from flexdownscale import metrics
from flexdownscale.errors import FlexDownscaleWarning
from flexdownscale.metrics.spectra import complete_bins, default_method

N = 32


def _box(values: np.ndarray, *, periodic: object = "true", name: str = "w") -> xr.DataArray:
    """Fields on the doubly periodic box [0, 2 pi)^2 with N x N cells (last two dims y, x)."""
    axis = np.arange(N) * 2.0 * np.pi / N
    dims = ("time", "y", "x") if values.ndim == 3 else ("member", "time", "y", "x")
    time = np.datetime64("2020-01-01T00") + np.arange(values.shape[-3]) * np.timedelta64(1, "h")
    coords = {"time": time, "y": axis, "x": axis}
    da = xr.DataArray(values, dims=dims, coords=coords, name=name)
    for c, label in (("x", "X"), ("y", "Y")):
        da[c].attrs = {"axis": label, "units": "1"}
        if periodic is not None:
            da[c].attrs["periodic"] = periodic
    da.attrs["units"] = "1"
    return da


def _red_fields(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random fields with a k^-3 spectrum (periodic), so that small scales carry little power."""
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(N) * N, np.fft.fftfreq(N) * N, indexing="ij"))
    amp = np.where(k > 0, k, np.inf) ** -2.0
    noise = np.fft.fft2(rng.normal(size=shape))
    return np.real(np.fft.ifft2(noise * amp))


def _truth_and_pred(seed: int = 0) -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(seed)
    truth = _red_fields(rng, (3, N, N))
    pred = truth[None] + 0.05 * truth.std() * rng.normal(size=(4, 3, N, N))  # white noise
    return _box(truth), _box(pred)


# ----------------------------------------------------------------------------------------------
# independent references (numpy only): bin sums of the modal power, complete annuli only
# ----------------------------------------------------------------------------------------------
def _fft_bins(fields: np.ndarray) -> np.ndarray:
    """Annulus sums of |F|^2 / N^4 over the full 2-D FFT, bins j = 1 .. N/2 (complete)."""
    f = fields - fields.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(f)) ** 2 / N**4
    kx, ky = np.meshgrid(np.fft.fftfreq(N) * N, np.fft.fftfreq(N) * N, indexing="ij")
    j = np.floor(np.hypot(kx, ky) + 0.5).astype(int).ravel()
    flat = power.reshape(-1, N * N)
    sums = np.stack([np.bincount(j, weights=row, minlength=2 * N) for row in flat])
    return sums.reshape((*power.shape[:-2], -1))[..., 1 : N // 2 + 1]


def _dct_matrix() -> np.ndarray:
    """Orthonormal DCT-II: C[k, n] = sqrt((2 - [k = 0]) / N) cos(pi k (2 n + 1) / (2 N))."""
    k, n = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    c = np.cos(np.pi * k * (2 * n + 1) / (2 * N)) * np.sqrt(2.0 / N)
    c[0] /= np.sqrt(2.0)
    return c


def _dct_bins(fields: np.ndarray) -> np.ndarray:
    """Annulus sums of the DCT-II modal power, bins j = 1 .. N - 1 (in half-cycles: complete)."""
    c = _dct_matrix()
    f = fields - fields.mean(axis=(-2, -1), keepdims=True)
    power = (c @ f @ c.T) ** 2 / N**2
    kx, ky = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    j = np.floor(np.hypot(kx, ky) + 0.5).astype(int).ravel()
    flat = power.reshape(-1, N * N)
    sums = np.stack([np.bincount(j, weights=row, minlength=2 * N) for row in flat])
    return sums.reshape((*power.shape[:-2], -1))[..., 1:N]


def _lsd(pred_bins: np.ndarray, truth_bins: np.ndarray) -> float:
    """10 sqrt(mean_j log10(P / P_ref)^2) of the sample-averaged bins."""
    p = pred_bins.reshape(-1, pred_bins.shape[-1]).mean(axis=0)
    t = truth_bins.reshape(-1, truth_bins.shape[-1]).mean(axis=0)
    return float(10.0 * np.sqrt(np.mean(np.log10(p / t) ** 2)))


def _small_ratio(pred_bins: np.ndarray, truth_bins: np.ndarray) -> float:
    """Mean ratio over the top quarter of the complete bins (j > 0.75 j_max)."""
    p = pred_bins.reshape(-1, pred_bins.shape[-1]).mean(axis=0)
    t = truth_bins.reshape(-1, truth_bins.shape[-1]).mean(axis=0)
    j = np.arange(1, p.size + 1)
    return float(np.mean((p / t)[j > 0.75 * p.size]))


# ----------------------------------------------------------------------------------------------
# F1: one rule for the method
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["true", "True", " yes ", "1", True, np.bool_(True), 1])
def test_a_periodic_box_gets_the_fft_by_default(flag):
    truth, _ = _truth_and_pred()
    box = _box(truth.values, periodic=flag)
    assert default_method(box) == "fft"
    assert metrics.power_spectrum(box).attrs["spectrum_method"] == "FFT"
    assert metrics.mean_spectrum(box).attrs["spectrum_method"] == "FFT"
    ke = metrics.kinetic_energy_spectrum(box, box)
    assert ke.attrs["spectrum_method"] == "FFT"
    xr.testing.assert_allclose(
        metrics.power_spectrum(box), metrics.power_spectrum(box, method="fft")
    )


@pytest.mark.parametrize("flag", [None, "false", "no", False, 0])
def test_a_box_not_marked_periodic_keeps_the_dct(flag):
    truth, _ = _truth_and_pred()
    box = _box(truth.values, periodic=flag)
    assert default_method(box) == "dct"
    assert metrics.power_spectrum(box).attrs["spectrum_method"].startswith("DCT")
    assert default_method(box, window="hann") == "fft"  # a window asks for the FFT, as before


def test_one_periodic_axis_is_not_a_periodic_domain():
    truth, _ = _truth_and_pred()
    box = _box(truth.values)
    box["y"].attrs.pop("periodic")
    assert default_method(box) == "dct"
    assert default_method(box, dims="x") == "fft"  # a 1-D spectrum along the periodic axis


def test_the_metrics_read_the_periodic_attribute_as_the_grid_does():
    """The metrics may not import the data layer; both read the flag with flexdownscale._attributes."""
    from flexdownscale.data.grid import _is_periodic_attr

    for value in ["true", "TRUE", "t", "y", "yes", "1", "false", "0", "no", "", "periodic"]:
        for v in (value, f" {value} "):
            box = _box(np.zeros((1, N, N)), periodic=v)
            expected = _is_periodic_attr({"periodic": v})
            assert (default_method(box) == "fft") is expected, repr(v)


def test_downscaling_skill_takes_the_fft_on_a_periodic_box():
    truth, pred = _truth_and_pred()
    skill = metrics.downscaling_skill(pred, truth)
    fft = {"method": "fft"}
    expected = metrics.log_spectral_distance(
        metrics.mean_spectrum(pred, spectrum_kwargs=fft),
        metrics.mean_spectrum(truth, spectrum_kwargs=fft),
    )
    assert skill["lsd"] == pytest.approx(float(expected), rel=1e-12)
    dct = metrics.downscaling_skill(pred, truth, spectrum_kwargs={"method": "dct"})
    assert abs(dct["lsd"] - skill["lsd"]) > 1e-3  # the two methods do differ here


def test_downscaling_skill_takes_the_truths_method_for_both():
    """A prediction whose coordinates lost the periodic flag is scored with the truth's FFT
    (its own default, the DCT, would give other bins)."""
    truth, pred = _truth_and_pred()
    bare = _box(pred.values, periodic=None)
    assert default_method(bare) == "dct"
    assert metrics.downscaling_skill(bare, truth) == pytest.approx(
        metrics.downscaling_skill(pred, truth), rel=1e-12
    )


# ----------------------------------------------------------------------------------------------
# F2: complete annuli
# ----------------------------------------------------------------------------------------------
def test_complete_wavenumber_is_the_smaller_axis_highest_mode():
    rng = np.random.default_rng(1)
    da = xr.DataArray(rng.normal(size=(24, 40)), dims=("y", "x"))
    da = da.assign_coords(y=np.arange(24) * 3.0, x=np.arange(40) * 1.0)
    fft = metrics.power_spectrum(da, method="fft")
    dct = metrics.power_spectrum(da, method="dct")
    # FFT: Nyquist of the coarser axis (y, 1/6); DCT: y's highest mode, 23 half-cycles over 72
    assert fft.attrs["complete_wavenumber"] == pytest.approx(1.0 / 6.0)
    assert fft.attrs["complete_wavenumber"] == pytest.approx(fft.attrs["nyquist_wavenumber"])
    assert dct.attrs["complete_wavenumber"] == pytest.approx(23.0 / (2 * 24 * 3.0))
    odd = metrics.power_spectrum(da.isel(y=slice(0, 23)), method="fft")
    assert odd.attrs["complete_wavenumber"] == pytest.approx(11.0 / 69.0)  # below Nyquist


def test_lsd_over_complete_annuli_matches_a_numpy_reference_fft_and_dct():
    truth, pred = _truth_and_pred(2)
    for method, bins, n_complete in (("fft", _fft_bins, N // 2), ("dct", _dct_bins, N - 1)):
        kw = {"method": method}
        sp = metrics.mean_spectrum(pred, spectrum_kwargs=kw)
        st = metrics.mean_spectrum(truth, spectrum_kwargs=kw)
        assert int(complete_bins(st, "wavenumber").sum()) == n_complete
        assert st.sizes["wavenumber"] > n_complete  # there are corner bins to leave out
        # the bins themselves agree with the reference (the spectrum is the sum over dk)
        np.testing.assert_allclose(
            st.values[:n_complete] * st.attrs["dk"],
            bins(truth.values).mean(axis=0),
            rtol=1e-10,
        )
        expected = _lsd(bins(pred.values), bins(truth.values))
        assert float(metrics.log_spectral_distance(sp, st)) == pytest.approx(expected, rel=1e-9)
        skill = metrics.downscaling_skill(pred, truth, spectrum_kwargs=kw)
        assert skill["lsd"] == pytest.approx(expected, rel=1e-9)
        ratio = _small_ratio(bins(pred.values), bins(truth.values))
        assert skill["spectral_ratio_small"] == pytest.approx(ratio, rel=1e-9)
        # every bin (the old definition) is another number: the corners did weigh in
        everything = float(metrics.log_spectral_distance(sp, st, bins="all"))
        assert abs(everything - expected) > 0.01 * expected


def test_lsd_ignores_the_corner_bins_and_says_which_bins_it_used():
    truth, _ = _truth_and_pred(3)
    st = metrics.mean_spectrum(truth)
    corners = st.where(st.wavenumber <= st.attrs["complete_wavenumber"], 100.0 * st)
    lsd = metrics.log_spectral_distance(corners, st)
    assert float(lsd) == 0.0
    assert lsd.attrs["lsd_bins"].startswith(f"complete annuli: {N // 2} bins")
    assert float(metrics.log_spectral_distance(corners, st, bins="all")) > 0.0


def test_spectra_without_the_attribute_warn_and_use_every_bin():
    truth, pred = _truth_and_pred(4)
    sp, st = metrics.mean_spectrum(pred), metrics.mean_spectrum(truth)
    bare_p, bare_t = sp.copy(), st.copy()
    bare_p.attrs.pop("complete_wavenumber")
    bare_t.attrs.pop("complete_wavenumber")
    with pytest.warns(FlexDownscaleWarning, match="no 'complete_wavenumber' attribute"):
        lsd = metrics.log_spectral_distance(bare_p, bare_t)
    assert float(lsd) == pytest.approx(float(metrics.log_spectral_distance(sp, st, bins="all")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        metrics.log_spectral_distance(bare_p, bare_t, bins="all")  # said: no warning
        # one of the two with the attribute is enough
        assert float(metrics.log_spectral_distance(sp, bare_t)) == pytest.approx(
            float(metrics.log_spectral_distance(sp, st))
        )


def test_zonal_spectra_are_complete_in_every_bin():
    lon = np.arange(0.0, 360.0, 10.0)
    lat = np.array([-30.0, 0.0, 30.0])
    rng = np.random.default_rng(5)
    field = xr.DataArray(
        rng.normal(size=(3, lon.size)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    field["lat"].attrs["units"] = "degrees_north"
    field["lon"].attrs["units"] = "degrees_east"
    spec = metrics.zonal_spectrum(field)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        lsd = metrics.log_spectral_distance(metrics.zonal_spectrum(2 * field), spec)
    np.testing.assert_allclose(lsd.values, 10 * np.log10(4.0))


def test_evaluate_scores_the_periodic_box_as_downscaling_skill_and_the_reference(tmp_path, capsys):
    """The report's LSD, downscaling_skill's and the numpy reference: one number (FFT, complete
    annuli); the spectrum figure draws the same bins."""
    from flexdownscale.cli import main

    truth, pred = _truth_and_pred(6)
    truth.to_dataset().to_netcdf(tmp_path / "t.nc")
    pred.to_dataset().to_netcdf(tmp_path / "p.nc")
    argv = ["evaluate", str(tmp_path / "p.nc"), str(tmp_path / "t.nc"), "--out", str(tmp_path)]
    assert main([*argv[:-1], str(tmp_path / "r")]) == 0
    capsys.readouterr()
    row = json.loads((tmp_path / "r" / "metrics.json").read_text())[0]
    expected = _lsd(_fft_bins(pred.values), _fft_bins(truth.values))
    assert row["LSD (dB)"] == pytest.approx(expected, rel=1e-6)
    assert metrics.downscaling_skill(pred, truth)["lsd"] == pytest.approx(expected, rel=1e-9)
    text = (tmp_path / "r" / "metrics.md").read_text()
    assert "FFT power spectra" in text
    assert "The LSD averages over the complete annuli" in text
    assert "up to the smaller of the two axes' Nyquist wavenumbers" in text


def test_plot_spectra_draws_the_bins_the_lsd_uses():
    from flexdownscale.plot import plot_spectra

    truth, pred = _truth_and_pred(7)
    for periodic, n_complete in (("true", N // 2), (None, N - 1)):
        t = _box(truth.values, periodic=periodic)
        p = _box(pred.values, periodic=periodic)
        fig = plot_spectra({"truth": t, "pred": p}, reference="truth")
        lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) > 1]
        assert lines
        assert all(len(line.get_xdata()) == n_complete for line in lines)
