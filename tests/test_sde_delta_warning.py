"""``sampler="sde"`` with a Langevin strength of 0 is the Euler ODE, and says so (reviewer-90).

A model trained without ``[sampler] delta`` stores delta 0, so the documented calibrated call
``model(coarse, sampler="sde", steps=20)`` gave exactly the deterministic ``sampler="euler"``
samples (difference 0.0) without a word.
"""

from __future__ import annotations

import warnings

import pytest
import xarray as xr
from test_pipeline import era5_pair, make_downscaler

from flexdownscale.cli import cli_spelling
from flexdownscale.errors import SkillWarning


@pytest.fixture(scope="module")
def setup(shared_data):
    fine, coarse = era5_pair(shared_data, times=1, ny=32, nx=32)
    return make_downscaler(fine), coarse  # stores ddim, 2 steps, delta 0


def test_a_stored_delta_of_zero_warns_and_equals_euler(setup):
    model, coarse = setup
    with pytest.warns(SkillWarning) as caught:
        sde = model(coarse, sampler="sde", steps=3, members=2, seed=1)
    text = str(caught[0].message)
    assert text.startswith(
        "sampler 'sde' with the Langevin strength stored in the model (delta: 0) is the "
        "deterministic probability-flow ODE (the same samples as sampler='euler', steps=3)"
    )
    assert "sampler_options={'delta': 0.5}" in text
    assert caught[0].filename == __file__  # points at the user's call
    euler = model(coarse, sampler="euler", steps=3, members=2, seed=1)
    xr.testing.assert_equal(sde["t2m"], euler["t2m"])  # what the warning says
    said = cli_spelling(text)
    assert "--sampler-option delta=0.5" in said
    assert "(delta: 0)" in said  # not rewritten into an option


def test_an_explicit_zero_warns_and_a_strength_does_not(setup):
    model, coarse = setup
    with pytest.warns(SkillWarning, match=r"with sampler_options=\{'delta': 0\} is the determ"):
        model(coarse, sampler="sde", steps=3, sampler_options={"delta": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(coarse, sampler="sde", steps=3, members=2, sampler_options={"delta": 0.5})
        model(coarse, sampler="sde", steps=1)  # one step: no Langevin step to take anyway
