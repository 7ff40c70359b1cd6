"""Figures as a reader sees them (reviewer-106): centred diverging colours, panels with their
coordinates and proportions, readable log ticks, labels from the data, the FFT on periodic
boxes, rank histograms with whole ranks, and one member said plainly.

The checks read the matplotlib objects (norms, tick labels, aspect, legend texts), not pixels.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from flexdownscale.errors import ConfigError, EnsembleError
from flexdownscale.metrics import kinetic_energy_spectrum
from flexdownscale.plot import plot_panels, plot_rank_histogram, plot_spectra


def _field_truth(values: np.ndarray, *, latlon: bool = True) -> xr.DataArray:
    ny, nx = values.shape
    if latlon:
        coords = {
            "latitude": ("latitude", 50.0 + 0.25 * np.arange(ny), {"units": "degrees_north"}),
            "longitude": ("longitude", -10.0 + 0.25 * np.arange(nx), {"units": "degrees_east"}),
        }
        dims = ("latitude", "longitude")
    else:
        x = np.arange(nx) * 2 * np.pi / nx
        attrs = {"units": "1", "periodic": "true"}
        coords = {"y": ("y", x[:ny], {**attrs, "axis": "Y"}), "x": ("x", x, {**attrs, "axis": "X"})}
        dims = ("y", "x")
    return xr.DataArray(
        values, dims=dims, coords=coords, name="u", attrs={"units": "m s-1", "long_name": "wind"}
    )


def _ensemble(truth: xr.DataArray, members: int = 4, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(scale=0.5, size=(members, *truth.shape))
    return (truth + xr.DataArray(noise, dims=("member", *truth.dims))).assign_attrs(truth.attrs)


def _skewed(shape: tuple[int, int] = (24, 32)) -> np.ndarray:
    """Values from about -4 to +12: a percentile scale puts white well above 0."""
    ny, nx = shape
    ramp = np.linspace(-4.0, 12.0, nx)[None, :] * np.ones((ny, 1))
    return ramp + 0.1 * np.random.default_rng(1).normal(size=shape)


def _field_meshes(fig: Figure) -> dict[str, object]:
    """Title -> mesh of every panel that has one."""
    return {
        ax.get_title(): ax.collections[0] for ax in fig.axes if ax.get_title() and ax.collections
    }


def _render(fig: Figure) -> object:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


# ---------------------------------------------------------------------------------------------
# (3) a diverging colour map is centred on 0


@pytest.mark.parametrize("cmap", ["RdBu_r", "coolwarm", "seismic", "PuOr"])
def test_a_diverging_cmap_puts_white_at_zero(cmap):
    """The demo's vorticity in RdBu_r had limits -11.9..14.1 (white at +1.1); July u200, white
    at 14.5 m/s. The field panels' limits are now symmetric about 0 (truth, members, mean)."""
    truth = _field_truth(_skewed())
    fig = plot_panels(None, truth, _ensemble(truth), cmap=cmap)
    meshes = _field_meshes(fig)
    for title in ("truth", "member 1", "ensemble mean"):
        norm = meshes[title].norm
        assert norm.vmin == pytest.approx(-norm.vmax), (title, norm.vmin, norm.vmax)
        assert norm.vmax > 11.0  # the wider side of the data sets both limits


def test_centring_is_for_diverging_maps_on_data_straddling_zero():
    truth = _field_truth(_skewed())
    ens = _ensemble(truth)
    # a sequential map keeps the data's percentiles
    norm = _field_meshes(plot_panels(None, truth, ens))["truth"].norm
    assert norm.vmin == pytest.approx(float(np.percentile(ens.isel(member=slice(0, 3)), 1)), 0.05)
    assert norm.vmin > -norm.vmax + 1.0
    # a diverging map on a temperature in K (all positive) is not centred on 0 K
    kelvin = (truth + 280.0).assign_attrs(units="K")
    norm = _field_meshes(plot_panels(None, kelvin, _ensemble(kelvin), cmap="RdBu_r"))["truth"].norm
    assert norm.vmin > 270.0
    # ... unless asked: center=value, with any map (also a Colormap object)
    custom = LinearSegmentedColormap.from_list("mine", ["blue", "white", "red"])
    norm = _field_meshes(plot_panels(None, kelvin, _ensemble(kelvin), cmap=custom, center=280.0))[
        "truth"
    ].norm
    assert (norm.vmin + norm.vmax) / 2 == pytest.approx(280.0)
    # center=False: the data's percentiles even with a diverging map
    norm = _field_meshes(plot_panels(None, truth, ens, cmap="RdBu_r", center=False))["truth"].norm
    assert norm.vmin > -norm.vmax + 1.0


def test_explicit_colour_limits():
    truth = _field_truth(_skewed())
    ens = _ensemble(truth)
    norm = _field_meshes(plot_panels(None, truth, ens, vmin=-1.0, vmax=3.0))["truth"].norm
    assert (norm.vmin, norm.vmax) == (-1.0, 3.0)
    # with a centre one limit is enough: the other mirrors it
    norm = _field_meshes(plot_panels(None, truth, ens, cmap="RdBu_r", vmax=5.0))["member 2"].norm
    assert (norm.vmin, norm.vmax) == (-5.0, 5.0)
    norm = _field_meshes(plot_panels(None, truth, ens, center=2.0, vmin=0.0))["truth"].norm
    assert (norm.vmin, norm.vmax) == (0.0, 4.0)
    with pytest.raises(ConfigError, match="vmin must be below vmax"):
        plot_panels(None, truth, ens, vmin=3.0, vmax=1.0)
    with pytest.raises(ConfigError, match="give at most one of them"):
        plot_panels(None, truth, ens, vmin=-1.0, vmax=3.0, center=0.0)
    with pytest.raises(ConfigError, match="wrong side of the centre"):
        plot_panels(None, truth, ens, center=2.0, vmin=5.0)
    with pytest.raises(ConfigError, match="finite number"):
        plot_panels(None, truth, ens, vmax=np.nan)


# ---------------------------------------------------------------------------------------------
# (5) coordinates, proportions, colour bar label, layout


def _panels(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_title()]


def test_latlon_panels_have_coordinates_and_true_proportions():
    truth = _field_truth(_skewed((32, 48)))  # 50 to 57.75 N: 1 / cos(53.9 N) = 1.70
    coarse = truth.coarsen(latitude=4, longitude=4).mean().assign_attrs(truth.attrs)
    fig = plot_panels(coarse, truth, _ensemble(truth))
    panels = _panels(fig)
    assert len(panels) == 8
    expected = 1.0 / np.cos(np.deg2rad(0.5 * (50.0 + 57.75)))
    for ax in panels:
        assert ax.get_aspect() == pytest.approx(expected)
    # 8 panels on 2 rows of 4: no empty cell (they were 2 x 5 with two left empty)
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in panels} == {(2, 4)}
    _render(fig)
    # coordinates named with their units on the outer panels, tick labels there only
    first_col = [ax for ax in panels if ax.get_subplotspec().colspan.start == 0]
    bottom = [ax for ax in panels if ax.get_subplotspec().rowspan.start == 1]
    for ax in first_col:
        assert ax.get_ylabel() == "latitude [degrees_north]"
        assert any(t.get_text() for t in ax.get_yticklabels())
    for ax in bottom:
        assert ax.get_xlabel() == "longitude [degrees_east]"
        assert any(t.get_text() and t.get_visible() for t in ax.get_xticklabels())
    inner = [ax for ax in panels if ax not in first_col]
    assert all(ax.get_ylabel() == "" for ax in inner)
    # ... the same extent everywhere (the coarse grid too: its cells cover the same box)
    limits = {tuple(np.round(ax.get_xlim(), 6)) for ax in panels}
    assert len(limits) == 1
    # the shared colour bar names the variable and its units
    labels = [ax.get_ylabel() for ax in fig.axes if ax not in panels]
    assert "wind [m s-1]" in labels


def test_a_box_in_equal_units_is_drawn_square_and_the_orientation_is_kept():
    values = _skewed((32, 32))
    truth = _field_truth(values, latlon=False)
    stored_xy = truth.transpose("x", "y")  # the Kolmogorov files store (x, y)
    fig = plot_panels(None, stored_xy, _ensemble(stored_xy), cmap="RdBu_r")
    truth_ax = next(ax for ax in fig.axes if ax.get_title() == "truth")
    assert truth_ax.get_aspect() == pytest.approx(1.0)
    # rows of the drawn array are y (upwards), columns x: as the (y, x) field
    drawn = np.asarray(truth_ax.collections[0].get_array()).reshape(values.shape)
    np.testing.assert_array_equal(drawn, values)
    assert truth_ax.get_ylim()[0] < truth_ax.get_ylim()[1]


# ---------------------------------------------------------------------------------------------
# (6), (7) log-axis ticks, labels from the data


def _visible_labels(axis_labels) -> list:
    return [t for t in axis_labels if t.get_visible() and t.get_text()]


def _no_overlap(renderer, labels) -> bool:
    boxes = [t.get_window_extent(renderer) for t in labels]
    return not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def test_a_ratio_within_a_decade_gets_plain_ticks():
    """A ratio from 0.6 to 1 was labelled 9x10^-1 8x10^-1 7x10^-1 6x10^-1 (minor ticks)."""
    rng = np.random.default_rng(2)
    truth = _field_truth(rng.normal(size=(32, 48)))
    smooth = 0.6 * truth + 0.4 * truth.rolling(latitude=2, longitude=2, min_periods=1).mean()
    fig = plot_spectra({"truth": truth, "smooth": smooth}, reference="truth")
    ratio_ax = fig.axes[1]
    lo, hi = ratio_ax.get_ylim()
    assert hi / lo < 10.0
    renderer = _render(fig)
    assert not _visible_labels(ratio_ax.get_yticklabels(minor=True))
    major = _visible_labels(ratio_ax.get_yticklabels())
    assert len(major) >= 2
    for t in major:
        float(t.get_text())  # plain numbers: "0.8", "1"
    assert _no_overlap(renderer, major)


def test_no_tick_labels_overlap_on_the_wavelength_axis():
    """A spectrum over a decade and a half (a training crop in metres) labelled every minor
    tick of the top wavelength axis: "4x10^-3 3x10^-3" ran into each other."""
    n = 32  # a crop of 32 cells 1 m apart: 2 m to 64 m, 2e-3 to 6e-2 km
    rng = np.random.default_rng(3)
    field = xr.DataArray(
        rng.normal(size=(n, n)),
        dims=("y", "x"),
        coords={d: (d, 1.0 * np.arange(n), {"units": "m"}) for d in ("y", "x")},
        attrs={"units": "K"},
    )
    fig = plot_spectra({"truth": field, "other": 0.5 * field}, reference="truth")
    top, ratio_ax = fig.axes[:2]
    (wavelength,) = top.child_axes
    renderer = _render(fig)
    for axis_labels in (
        wavelength.get_xticklabels(),
        wavelength.get_xticklabels(minor=True),
        ratio_ax.get_xticklabels(),
        ratio_ax.get_xticklabels(minor=True),
    ):
        labels = _visible_labels(axis_labels)
        assert _no_overlap(renderer, labels), [t.get_text() for t in labels]
    both = _visible_labels(wavelength.get_xticklabels()) + _visible_labels(
        wavelength.get_xticklabels(minor=True)
    )
    assert _no_overlap(renderer, both)
    assert len(_visible_labels(wavelength.get_xticklabels())) >= 2


def test_spectrum_axis_labels_come_from_the_data(shared_data):
    ds = xr.open_dataset(shared_data / "era_interim" / "eraint_uv_monthly.nc").isel(month=0)
    band = ds.sel(latitude=slice(60, 30), level=500)
    ke = kinetic_energy_spectrum(band.u, band.v, kind="zonal")
    ax = plot_spectra({"KE": ke}).axes[0]
    assert ax.get_ylabel() == f"kinetic energy spectral density [{ke.attrs['units']}]"
    assert ax.get_xlabel() == "zonal wavenumber (cycles per latitude circle)"


# ---------------------------------------------------------------------------------------------
# periodic boxes: the FFT by default (as `flexdownscale evaluate`)


def test_plot_spectra_takes_the_fft_on_a_doubly_periodic_box():
    n = 64
    values = np.random.default_rng(4).normal(size=(n, n))
    box = _field_truth(values, latlon=False)
    ax = plot_spectra({"truth": box, "half": 0.5 * box}, reference="truth").axes[0]
    k0 = ax.lines[0].get_xdata()[0]
    assert k0 == pytest.approx(1.0 / (2 * np.pi))  # the FFT's first bin: 1 / L
    # a limited area keeps the DCT (first bin 1 / (2 L)), and an explicit method wins
    area = box.copy()
    for d in ("y", "x"):
        area[d].attrs = {"units": "1"}
    ax = plot_spectra({"truth": area}).axes[0]
    assert ax.lines[0].get_xdata()[0] == pytest.approx(1.0 / (4 * np.pi))
    ax = plot_spectra({"truth": box}, spectrum_kwargs={"method": "dct"}).axes[0]
    assert ax.lines[0].get_xdata()[0] == pytest.approx(1.0 / (4 * np.pi))


# ---------------------------------------------------------------------------------------------
# (8), (9) rank histograms and one member


def test_rank_histogram_has_whole_ranks_a_legend_and_ranks_one_to_m_plus_one():
    truth = _field_truth(_skewed())
    fig = plot_rank_histogram(_ensemble(truth, members=2), truth)
    ax = fig.axes[0]
    assert [p.get_x() + p.get_width() / 2 for p in ax.patches] == pytest.approx([1, 2, 3])
    _render(fig)
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [1, 2, 3]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["calibrated (1/3)"]
    assert ax.get_title() == "rank histogram (2 members)"
    many = plot_rank_histogram(_ensemble(truth, members=16), truth).axes[0]
    assert all(float(t).is_integer() for t in many.get_xticks())


def test_calibration_report_numbers_ranks_as_the_plots(monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import calibration

    drawn = []
    monkeypatch.setattr(calibration.plt, "close", drawn.append)
    monkeypatch.setattr(calibration.plt.Figure, "savefig", lambda *a, **k: None)
    res = {
        "histograms": {"a": [0.5, 0.2, 0.3], "b": [0.3, 0.4, 0.3]},
        "rows": {"a": {"spread_skill": 0.5}, "b": {"spread_skill": 1.0}},
    }
    calibration._figure("case", res, Path("."))
    (fig,) = drawn
    ax = fig.axes[0]
    assert [p.get_x() + p.get_width() / 2 for p in ax.patches] == pytest.approx([1, 2, 3])
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_one_member_is_said_plainly():
    truth = _field_truth(_skewed())
    one = _ensemble(truth, members=1)
    with pytest.raises(EnsembleError, match="a rank histogram needs at least 2 members, got 1"):
        plot_rank_histogram(one, truth)
    fig = plot_panels(None, truth, one)
    (spread,) = [ax for ax in fig.axes if ax.get_title() == "spread (M = 1)"]
    assert not spread.collections  # no empty map with a made-up 0..1 colour bar
    assert "no spread" in " ".join(t.get_text() for t in spread.texts)
    assert len(fig.axes) == 5 + 2  # truth, member, mean, spread note, error; two colour bars
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    # the argument is named as the user passed it
    with pytest.raises(EnsembleError, match=r"^ensemble has no member dim 'member'"):
        plot_panels(None, truth, one.isel(member=0))
    with pytest.raises(EnsembleError, match=r"ensemble\.expand_dims\(member=1\)"):
        plot_panels(None, truth, one.isel(member=0))
    with pytest.raises(EnsembleError, match=r"^truth has the member dim"):
        plot_panels(None, one, one)
