"""``import flexdownscale.metrics`` loads no torch and none of scipy's modules that only one
option uses: ``scipy.signal`` (the spectra's ``window=``) and ``scipy.ndimage`` (``ssim``) took
about half of the metrics' import time (0.83-0.88 s against 0.37-0.48 s without them, three
alternated runs on this 2-core CPU, session 33)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import xarray as xr

from flexdownscale import metrics


def test_importing_the_metrics_loads_neither_torch_nor_scipy_signal_nor_ndimage():
    code = (
        "import sys, flexdownscale.metrics; "
        "loaded = [m for m in ('torch', 'scipy.signal', 'scipy.ndimage') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_window_and_ssim_still_load_what_they_need():
    cells = np.arange(32.0)
    rng = np.random.default_rng(0)
    field = xr.DataArray(
        rng.normal(size=(32, 32)), dims=("y", "x"), coords={"y": cells, "x": cells}
    )
    plain = metrics.power_spectrum(field, method="fft")
    hann = metrics.power_spectrum(field, method="fft", window="hann")
    assert hann.shape == plain.shape
    assert not np.allclose(hann.values, plain.values)  # the taper changes the estimate
    assert float(metrics.ssim(field, field, data_range=float(np.ptp(field.values)))) == 1.0
