"""The validation figures of a training run say what they show.

The spectra were drawn with a one-metre grid step (``spacing=1.0`` in the default metres), so a
run on 28 km ERA5 cells labelled its wavenumbers in m-1 and its wavelengths as 2 to 60 m; the
panels had no title, unlabelled normalized colour bars and the upsampled field in the panel
called "coarse".
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.train import Trainer
from tests.train_runs import tiny_run_values

matplotlib.use("Agg")


def test_validation_figures_name_their_units_field_and_step(tmp_path, shared_data, monkeypatch):
    saved: dict[str, Figure] = {}
    original = Figure.savefig

    def keep(self, fname, *args, **kwargs):
        saved[str(fname).rsplit("/", 1)[-1]] = self
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    values = tiny_run_values(tmp_path, shared_data, steps=2, eval_every=2, plot_every=1)
    Trainer(from_dict(TrainConfig, values)).fit()

    spectra = saved["spectra_step00000002.png"]
    # the wavelength (or cycles per domain) axis is a secondary axis: a child of the main one
    every = [*spectra.axes, *(child for ax in spectra.axes for child in ax.child_axes)]
    labels = [ax.get_xlabel() for ax in every]
    assert all("m-1" not in label and "km" not in label for label in labels), labels
    assert any("cycles per coordinate unit" in label for label in labels)
    assert any("cycles per domain length" in label for label in labels)

    panels = saved["panels_step00000002.png"]
    assert panels.get_suptitle() == "t2m (normalized), validation item 2, step 2"
    titles = [ax.get_title() for ax in panels.axes]
    assert "coarse" in titles
    coarse = panels.axes[titles.index("coarse")].collections[0].get_array()
    truth = panels.axes[titles.index("truth")].collections[0].get_array()
    # the coarse panel shows the 8 x 8 coarse crop (factor 4 of the 32 x 32 crop), not the
    # upsampled base on the fine grid
    assert np.size(coarse) == 8 * 8
    assert np.size(truth) == 32 * 32
