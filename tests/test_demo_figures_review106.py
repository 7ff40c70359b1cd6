"""The demo's Kolmogorov figures (reviewer-106): each Reynolds number on its own, spectra by
FFT on the doubly periodic box (as `flexdownscale evaluate` and docs/metrics.md have it)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


def test_demo_draws_each_reynolds_number_apart_with_the_fft(tmp_path, monkeypatch):
    """The demo averaged Re = 1000 and 4000 into one DCT spectrum (first bin half a cycle per
    box), where `flexdownscale evaluate` and docs/metrics.md take the FFT on a periodic box."""
    from flexdownscale import demo, plot
    from flexdownscale.data.degrade import degrade, up

    case = next(c for c in demo.CASES if c.condition_dim is not None)
    fine = demo.load_case(case)
    coarse = degrade(fine, case.factor)
    coarse[case.variable].attrs = dict(fine[case.variable].attrs)
    noise = np.random.default_rng(5).normal(scale=0.3, size=(2, *fine[case.variable].shape))
    ens = fine + xr.Dataset({case.variable: (("member", *fine[case.variable].dims), noise)})
    ens[case.variable].attrs = dict(fine[case.variable].attrs)
    exact = {d: fine[d] for d in ("y", "x")}
    baselines = {"bilinear": up(coarse, case.factor, method="bilinear").assign_coords(exact)}
    drawn = []
    real = plot.plot_spectra

    def spy(spectra, **kwargs):
        fig = real(spectra, **kwargs)
        drawn.append((spectra, fig))
        return fig

    monkeypatch.setattr(plot, "plot_spectra", spy)
    files = demo._plots(case, fine, coarse, ens, baselines, tmp_path)
    assert [p.name for p in files] == [
        f"{case.name}_panels_0.png",
        f"{case.name}_spectra_0.png",
        f"{case.name}_panels_1.png",
        f"{case.name}_spectra_1.png",
    ]
    values = fine[case.condition_dim].values
    for (spectra, fig), value in zip(drawn, values, strict=True):
        for da in spectra.values():
            assert case.condition_dim not in da.dims
            assert float(da[case.condition_dim]) == value
        assert f"{case.condition_dim} = {value:g}" in fig.axes[0].get_title()
        k = fig.axes[0].lines[0].get_xdata()
        assert k[0] == pytest.approx(1.0 / (2 * np.pi))  # the FFT's first bin: 1 per box
    report = demo._figure_names(case)
    assert f"`{case.name}_spectra_<i>.png`" in report
