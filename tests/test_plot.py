"""Plot helpers return Figures with the expected axes and lines, on real data."""

from __future__ import annotations

import io

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from flexdownscale.errors import (
    ConfigError,
    DataError,
    FlexDownscaleWarning,
    GridError,
    ShapeError,
    UnitsError,
)
from flexdownscale.metrics import (
    kinetic_energy_spectrum,
    mean_spectrum,
    power_spectrum,
    rank_histogram,
)
from flexdownscale.plot import plot_panels, plot_rank_histogram, plot_spectra, plot_spread_skill


@pytest.fixture(scope="module")
def era5(shared_data):
    """Real truth (ERA5 t2m), its 4x area-mean coarsening and a 6-member noisy 'ensemble'."""
    ds = xr.open_dataset(shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc")
    truth = ds.t2m.isel(time=slice(0, 6), latitude=slice(0, 32), longitude=slice(0, 48)).load()
    coarse = truth.coarsen(latitude=4, longitude=4).mean()
    coarse.attrs = truth.attrs
    rng = np.random.default_rng(0)
    noise = xr.DataArray(
        rng.normal(scale=0.7, size=(6, *truth.shape)), dims=("member", *truth.dims)
    )
    ensemble = (truth + noise).assign_attrs(truth.attrs)
    return coarse, truth, ensemble


def _renders(fig: Figure) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_plot_spectra_fields_with_reference(era5):
    _, truth, ensemble = era5
    smooth = truth.rolling(latitude=3, longitude=3, center=True, min_periods=1).mean()
    fig = plot_spectra(
        {"truth": truth, "ensemble": ensemble, "smoothed": smooth}, reference="truth"
    )
    assert isinstance(fig, Figure)
    top, bottom = fig.axes[:2]
    assert len(top.lines) == 3
    assert len(bottom.lines) == 3  # two ratios and the line at 1
    assert top.get_xscale() == "log"
    assert top.get_yscale() == "log"
    # the smoothed field loses variance at small scales: its ratio ends below 1
    ratio_smooth = bottom.lines[1].get_ydata()
    assert ratio_smooth[-1] < 0.5
    _renders(fig)


def test_plot_spectra_precomputed_zonal_real_winds(shared_data):
    ds = xr.open_dataset(shared_data / "era_interim" / "eraint_uv_monthly.nc").isel(month=0)
    band = ds.sel(latitude=slice(60, 30))
    specs = {
        f"{int(p)} hPa": kinetic_energy_spectrum(
            band.u.sel(level=p), band.v.sel(level=p), kind="zonal"
        )
        for p in (200, 500, 850)
    }
    fig = plot_spectra(specs, title="ERA-Interim KE, 30-60N")
    assert len(fig.axes) == 1
    assert len(fig.axes[0].lines) == 3
    # the coordinate's and the spectrum's own names (were "zonal wavenumber" and "power
    # spectral density" whatever the data said)
    assert fig.axes[0].get_xlabel() == "zonal wavenumber (cycles per latitude circle)"
    assert fig.axes[0].get_ylabel().startswith("kinetic energy spectral density [")
    _renders(fig)


def test_plot_rank_histogram(era5):
    _, truth, ensemble = era5
    fig = plot_rank_histogram(ensemble, truth)
    ax = fig.axes[0]
    assert len(ax.patches) == 7  # M + 1 bars
    assert len(ax.lines) == 1
    heights = np.array([p.get_height() for p in ax.patches])
    assert heights.sum() == pytest.approx(1.0)
    # precomputed histogram input, Dataset variable selection
    hist = rank_histogram(ensemble, truth, preserve_dims="time")
    fig2 = plot_rank_histogram(xr.Dataset({"t2m": hist}), variable="t2m")
    assert len(fig2.axes[0].patches) == 7
    with pytest.raises(ConfigError):
        plot_rank_histogram(ensemble)
    _renders(fig)


def test_plot_spread_skill(era5):
    _, truth, ensemble = era5
    fig = plot_spread_skill(ensemble, truth, n_bins=8)
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    assert len(ax.lines[0].get_xdata()) == 8
    # the noise ensemble is over-dispersed around the truth (truth is its centre)
    x, y = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    assert np.all(x > y)
    assert "spread-skill ratio" in ax.get_title()
    _renders(fig)


def test_plot_panels(era5):
    coarse, truth, ensemble = era5
    fig = plot_panels(coarse, truth, ensemble, n_members=3, time=2)
    meshes = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in meshes]
    assert titles == [
        "coarse",
        "truth",
        "member 1",
        "member 2",
        "member 3",
        "ensemble mean",
        "spread (M = 6)",
        "mean - truth",
    ]
    assert len(fig.axes) == 8 + 3  # panels and three colour bars
    assert "2019-03-01T02:00" in fig.get_suptitle()
    # the coarse panel is drawn on its own (coarser) grid
    coarse_mesh = meshes[0].collections[0].get_array()
    assert coarse_mesh.size == coarse.isel(time=0).size
    _renders(fig)
    # Dataset inputs, a time label, no coarse panel
    fig2 = plot_panels(
        None,
        truth.to_dataset(),
        ensemble.to_dataset(name="t2m"),
        n_members=1,
        time=truth.time.values[0],
    )
    assert [ax.get_title() for ax in fig2.axes if ax.get_title()][:2] == ["truth", "member 1"]
    with pytest.raises(ShapeError):
        plot_panels(None, truth, ensemble.expand_dims(level=2), time=0)


# ---------------------------------------------------------------------------------------------
# curves and histograms with no finite value are not left out silently


def test_plot_spectra_warns_about_a_curve_with_no_finite_value(era5):
    _, truth, ensemble = era5
    masked = truth.copy()
    masked[:, :4, :4] = np.nan  # e.g. a land mask: the spectrum of a field with NaNs is NaN
    with pytest.warns(
        FlexDownscaleWarning, match=r"spectra\['masked'\] has no finite value and is not"
    ) as caught:
        fig = plot_spectra({"truth": truth, "masked": masked, "ensemble": ensemble})
    assert caught[0].filename == __file__
    assert len(fig.axes[0].lines) == 3
    with pytest.warns(
        FlexDownscaleWarning, match=r"spectra\['truth'\] .* \(nor the ratios to it\)"
    ):
        plot_spectra({"truth": masked, "ensemble": ensemble}, reference="truth")
    with pytest.raises(DataError, match=r"no spectrum to plot: 'truth', 'masked' have no finite"):
        plot_spectra({"truth": truth * np.nan, "masked": masked})


def test_plot_spectra_says_so_for_a_curve_with_zero_power(era5, recwarn):
    """A constant field (a collapsed prediction) has zero power everywhere: log axes drew an
    empty panel, with only matplotlib's generic warning; now the curve is named, kept in the
    legend, left out of the ratio panel, and a plot of nothing is refused."""
    _, truth, _ = era5
    constant = truth * 0 + 280.0
    with pytest.warns(
        FlexDownscaleWarning, match=r"spectra\['flat'\] has no positive value and is not drawn: "
    ):
        fig = plot_spectra({"truth": truth, "flat": constant}, reference="truth")
    assert not [w for w in recwarn if "log-scaled" in str(w.message)]  # matplotlib's own
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["truth", "flat"]
    assert np.isnan(fig.axes[0].lines[1].get_ydata()).all()
    assert np.isfinite(fig.axes[0].lines[0].get_ydata()).all()
    assert not any(np.isfinite(line.get_ydata()).any() for line in fig.axes[1].lines[:1])
    with pytest.warns(FlexDownscaleWarning, match=r"spectra\['truth'\] .* \(nor the ratios"):
        plot_spectra({"truth": constant, "model": truth}, reference="truth")
    with pytest.raises(
        DataError,
        match=r"no spectrum to plot: 'a' has no finite value; .*; and 'b' has no positive value",
    ):
        plot_spectra({"a": truth * np.nan, "b": constant})


def test_plot_rank_histogram_refuses_all_nan_observations(era5):
    _, truth, ensemble = era5
    with pytest.raises(DataError, match="nothing to rank: no point has a finite observation"):
        plot_rank_histogram(ensemble, truth * np.nan)
    hist = rank_histogram(ensemble, truth * np.nan)
    with pytest.raises(DataError, match="the rank histogram has no finite value"):
        plot_rank_histogram(hist)
    partly = truth.copy()
    partly[:, :4, :4] = np.nan  # points with NaNs are left out; the rest is ranked
    heights = [p.get_height() for p in plot_rank_histogram(ensemble, partly).axes[0].patches]
    assert sum(heights) == pytest.approx(1.0)


def test_plot_spread_skill_refuses_all_nan_observations_like_the_rank_histogram(era5):
    _, truth, ensemble = era5
    with pytest.raises(DataError, match=r"a finite spread and a finite error \(obs has no"):
        plot_spread_skill(ensemble, truth * np.nan)
    with pytest.raises(DataError, match=r"\(fcst has no finite value"):
        plot_spread_skill(ensemble * np.nan, truth)


def test_plot_panels_takes_the_grid_dims_by_name(era5):
    """Dims that neither CF attributes nor the usual names tell (row / col) are named with
    ``dims=``, as the metrics take them (the error suggested an argument plot_panels lacked)."""
    _, truth, ensemble = era5
    bare = {"latitude": "row", "longitude": "col"}
    t, e = truth.rename(bare).drop_vars(["row", "col"]), ensemble.rename(bare)
    e = e.drop_vars([c for c in ("row", "col") if c in e.coords])
    with pytest.raises(GridError, match=r"pass dims=\(y_dim, x_dim\)"):
        plot_panels(None, t, e)
    fig = plot_panels(None, t, e, dims=("row", "col"), n_members=1)
    reference = plot_panels(None, truth, ensemble, n_members=1)
    for ax, ref in zip(fig.axes[:4], reference.axes[:4], strict=True):
        np.testing.assert_array_equal(ax.collections[0].get_array(), ref.collections[0].get_array())


def test_plot_spectra_labels_leave_out_empty_and_unitless_units():
    values = np.random.default_rng(1).normal(size=(32, 32))
    field = xr.DataArray(
        values, dims=("y", "x"), coords={"y": np.arange(32.0), "x": np.arange(32.0)}
    )
    ax = plot_spectra({"field": field}).axes[0]
    assert ax.get_xlabel() == "wavenumber [cycles per coordinate unit]"  # was "[1]", then none
    assert ax.get_ylabel() == "power spectral density"  # no units; was "[]"
    km = field.assign_coords(y=("y", np.arange(32.0), {"units": "km"}))
    km = km.assign_coords(x=("x", np.arange(32.0), {"units": "km"})).assign_attrs(units="K")
    ax = plot_spectra({"field": km}).axes[0]
    assert ax.get_xlabel() == "wavenumber [m-1]"  # spectra are per metre
    assert ax.get_ylabel() == "power spectral density [m K^2]"


@pytest.mark.parametrize("method", ["fft", "dct"])
def test_a_dimensionless_box_gets_its_mode_number_on_top(method):
    """On a box with dimensionless coordinates the wavenumbers are cycles per coordinate unit,
    so a 2 pi box's forcing at wavenumber 4 sat at 0.64 under a bare "wavenumber" label
    (reviewer-61, the Kolmogorov report); the top axis now gives cycles per domain length,
    where it is 4 (the DCT's dk is 1 / (2 L), the FFT's 1 / L)."""
    n = 64
    x = np.arange(n) * 2 * np.pi / n
    attrs = {"units": "1", "periodic": "true"}
    field = xr.DataArray(
        np.sin(4 * x)[None, :] + np.cos(4 * x)[:, None],
        dims=("y", "x"),
        coords={"y": ("y", x, attrs), "x": ("x", x, attrs)},
    )
    fig = plot_spectra({"field": field}, spectrum_kwargs={"method": method})
    ax = fig.axes[0]
    (top,) = ax.child_axes
    assert top.get_xlabel() == "cycles per domain length"
    k, power = ax.lines[0].get_data()
    peak = k[np.argmax(power)]
    _renders(fig)  # the top axis takes its limits from the bottom one when drawn
    # the mode number 4 on top stands over the spectrum's peak below
    at_four = top.transData.transform((4.0, 1.0))[0]
    np.testing.assert_allclose(at_four, ax.transData.transform((peak, 1.0))[0], rtol=1e-6)
    np.testing.assert_allclose(peak * 2 * np.pi, 4.0)  # 4 cycles per 2 pi: the box's length


def test_spectra_of_float32_and_float64_copies_of_a_grid_are_compared_bin_by_bin():
    """Truth read from a file (float32 coordinates) against a prediction on the same grid in
    float64: their wavenumbers differ by round-off; the ratio panel drew no point at all, and
    spectral_ratio / log_spectral_distance raised ShapeError."""
    import flexdownscale.metrics as fm

    rng = np.random.default_rng(0)
    lat, lon = 50 + 0.1 * np.arange(64), -10 + 0.1 * np.arange(64)

    def field(y, x):
        coords = {
            "lat": ("lat", y, {"units": "degrees_north"}),
            "lon": ("lon", x, {"units": "degrees_east"}),
        }
        return xr.DataArray(rng.normal(size=(64, 64)), dims=("lat", "lon"), coords=coords)

    truth = field(lat.astype(np.float32), lon.astype(np.float32))
    pred = field(lat, lon)
    st, sp = fm.power_spectrum(truth), fm.power_spectrum(pred)
    assert not np.array_equal(st.wavenumber.values, sp.wavenumber.values)
    ratio = fm.spectral_ratio(sp, st)
    np.testing.assert_allclose(ratio.values, sp.values / st.values, rtol=1e-12)
    assert np.isfinite(float(fm.log_spectral_distance(sp, st)))
    fig = plot_spectra({"truth": truth, "pred": pred}, reference="truth")
    top = {line.get_label(): line for line in fig.axes[0].get_lines()}
    (drawn,) = [line for line in fig.axes[1].get_lines() if line.get_label() == "pred"]
    assert len(drawn.get_xdata()) >= len(top["truth"].get_xdata()) - 1  # Nyquist edge bin


def test_spread_skill_title_is_the_metric_with_missing_members():
    """Half the points with 2 of 4 members valid: the title's ratio is spread_skill_ratio's
    (the Fortin factor per point from its valid members, not the nominal M)."""
    from flexdownscale.metrics import spread_skill_ratio

    rng = np.random.default_rng(5)
    truth = rng.normal(size=400)
    obs = xr.DataArray(truth + rng.normal(size=400), dims="p")
    ens = truth[None, :] + rng.normal(size=(4, 400))
    ens[2:, :200] = np.nan
    fcst = xr.DataArray(ens, dims=("member", "p"))
    fig = plot_spread_skill(fcst, obs)
    expected = float(spread_skill_ratio(fcst, obs))
    assert fig.axes[0].get_title() == f"spread-skill ratio {expected:.2f} (M = 4)"


def test_spread_skill_and_panels_align_coordinates_like_the_metrics():
    """Truth with float32 coordinates (from a netCDF file) against float64 model output: the
    plots intersected the labels, so the spread-skill title used a few points (1.82 against
    the metric's 2.19) and the error panel showed 7 x 10 of a 33 x 48 field."""
    from flexdownscale.metrics import spread_skill_ratio

    rng = np.random.default_rng(0)
    lat, lon = np.round(np.arange(40.0, 43.2, 0.1), 1), np.round(np.arange(0.0, 4.8, 0.1), 1)
    coords32 = {"lat": lat.astype("float32"), "lon": lon.astype("float32")}
    truth = xr.DataArray(
        rng.normal(size=(lat.size, lon.size)), dims=("lat", "lon"), coords=coords32
    )
    ens = xr.concat([truth + rng.normal(size=truth.shape) for _ in range(4)], "member")
    ens = ens.assign_coords(lat=lat, lon=lon)
    ratio = float(spread_skill_ratio(ens, truth))
    title = plot_spread_skill(ens, truth).axes[0].get_title()
    assert title == f"spread-skill ratio {ratio:.2f} (M = 4)"
    fig = plot_panels(None, truth, ens)
    (error,) = [a for a in fig.axes if a.get_title() == "mean - truth"]
    assert error.collections[0].get_array().shape == truth.shape
    shifted = truth.assign_coords(
        lon=truth["lon"] + 0.05
    )  # other points: an error, as for the metrics
    with pytest.raises(ShapeError):
        plot_spread_skill(ens, shifted)
    with pytest.raises(ShapeError):
        plot_panels(None, shifted, ens)


def test_spread_skill_and_panels_refuse_other_units_like_the_metrics(era5):
    """An ensemble in K against a truth in degC: spread_skill_ratio raised UnitsError, but
    plot_spread_skill drew a ratio of 0.00 and plot_panels an error panel of +273 K
    (reviewer-49). Both now raise the metrics' UnitsError; kelvin against K is the same unit."""
    coarse, truth, ensemble = era5
    celsius = (truth - 273.15).assign_attrs(units="degC")
    with pytest.raises(UnitsError, match=r"fcst is in 'K' but obs is in 'degC'.*\+ 273\.15"):
        plot_spread_skill(ensemble, celsius)
    with pytest.raises(UnitsError, match=r"ensemble is in 'K' but truth is in 'degC'"):
        plot_panels(coarse, celsius, ensemble)
    in_celsius = ensemble.copy(data=ensemble.values - 273.15).assign_attrs(units="degC")
    with pytest.raises(UnitsError, match=r"coarse is in 'K' but truth is in 'degC'"):
        plot_panels(coarse, celsius, in_celsius)
    kelvin = truth.assign_attrs(units="kelvin")
    ratio = plot_spread_skill(ensemble, kelvin).axes[0].get_title()
    assert ratio == plot_spread_skill(ensemble, truth).axes[0].get_title()
    plot_panels(coarse, kelvin, ensemble)


def test_panels_with_a_time_the_data_lack_say_what_they_have(era5):
    """A time label or position the data lack raised xarray's KeyError / numpy's IndexError
    (reviewer-49): a ConfigError naming the range."""
    coarse, truth, ensemble = era5
    with pytest.raises(ConfigError) as err:
        plot_panels(coarse, truth, ensemble, time=np.datetime64("2019-03-05T01"))
    assert str(err.value) == (
        "time = np.datetime64('2019-03-05T01','h') is not a label of the truth's 'time' "
        "(6 values from 2019-03-01T00:00:00.000000000 to 2019-03-01T05:00:00.000000000); pass "
        "one of its labels or a position (an int)"
    )
    with pytest.raises(ConfigError, match=r"^time = 10 is no position along the truth's 'time' "):
        plot_panels(coarse, truth, ensemble, time=10)
    # positions from the end and labels that exist still work
    last = plot_panels(coarse, truth, ensemble, time=-1)
    by_label = plot_panels(coarse, truth, ensemble, time=truth.time.values[-1])
    assert [a.get_title() for a in last.axes] == [a.get_title() for a in by_label.axes]


def test_spectra_in_other_units_are_refused_by_plot_ratio_and_lsd(era5):
    """A field in K against one in mK (or m s-1 against km h-1): plot_spectra drew the curve
    1e6 times off the truth and a ratio panel of 1e6, and spectral_ratio and
    log_spectral_distance scored it (60 dB for a field identical to the truth). All three now
    raise UnitsError naming the units and the conversion; K against degC agree (a spectrum is
    that of the differences), so that pair is drawn and scored as the same field."""
    from flexdownscale.metrics import log_spectral_distance, mean_spectrum, spectral_ratio

    _, truth, _ = era5
    milli = (truth * 1000.0).assign_attrs(units="mK")
    dims = ["latitude", "longitude"]
    with pytest.raises(UnitsError) as err:
        plot_spectra({"truth": truth, "model": milli}, reference="truth", dims=dims)
    assert str(err.value).startswith("spectra['truth'] is in 'K' but spectra['model'] is in 'mK'; ")
    assert "convert spectra['model'] first (values in K = values in mK x 0.001)" in str(err.value)
    with pytest.raises(UnitsError, match=r"spectra\['truth'\] is in 'K'"):  # first entry
        plot_spectra({"truth": truth, "model": milli}, dims=dims)
    s_truth, s_milli = (mean_spectrum(f, dims=dims) for f in (truth, milli))
    # a field against a given spectrum: by the units of the spectra
    with pytest.raises(UnitsError, match=r"^spectra\['truth'\] is in 'm K\^2' but spectra\['m"):
        plot_spectra({"truth": truth, "model": s_milli}, reference="truth", dims=dims)
    for score in (spectral_ratio, log_spectral_distance):
        with pytest.raises(UnitsError, match=r"^pred is in 'm mK\^2' but ref is in 'm K\^2'"):
            score(s_milli, s_truth)
    # the same field in degC: the same spectrum, drawn and scored as such
    celsius = (truth - 273.15).assign_attrs(units="degC")
    fig = plot_spectra({"truth": truth, "model": celsius}, reference="truth", dims=dims)
    ratio = fig.axes[1].get_lines()[0].get_ydata()
    np.testing.assert_allclose(ratio[np.isfinite(ratio)], 1.0, rtol=1e-6)
    assert float(log_spectral_distance(mean_spectrum(celsius, dims=dims), s_truth)) < 1e-4
    # without units on one side nothing is checked, as in the metrics
    plot_spectra({"truth": truth, "model": milli.assign_attrs(units=None)}, dims=dims)


def test_a_field_with_gaps_in_some_times_is_a_missing_curve_not_fewer_samples(era5):
    """``mean_spectrum`` (and so ``plot_spectra``) skipped the NaN spectra of the samples with a
    gap and drew the mean of the others without a word: one missing cell in 12 of 24 hours gave
    the spectrum of the 12 gap-free hours (reviewer-82)."""
    truth = era5[1].astype("float64")
    gappy = truth.copy()
    gappy[0:3, 5, 5] = np.nan  # one cell missing in half the times
    assert bool(mean_spectrum(gappy).isnull().all())
    np.testing.assert_allclose(  # a gap-free selection is the mean of its own samples
        mean_spectrum(gappy.isel(time=slice(3, None))).values,
        power_spectrum(truth.isel(time=slice(3, None))).mean("time").values,
        rtol=1e-12,
    )
    with pytest.warns(FlexDownscaleWarning, match=r"'gappy'.*NaNs"):
        plot_spectra({"truth": truth, "gappy": gappy}, reference="truth")
