"""The generative objective a prediction came from, in its attributes and the evaluate report.

A prediction recorded its model, sampler and steps but not the objective that trained the
model (VP diffusion, flow matching with a Gaussian or coarse-plus-noise base, IDFF), though
samplers and the spread they give differ by objective; a report apart from the model folder
could not say. ``flexdownscale_objective`` now holds
:attr:`~flexdownscale.diffusion.objectives.Objective.summary`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import Normalizer, grid_spec, refine_grid
from flexdownscale.diffusion import build_objective
from flexdownscale.evaluation import _prediction_provenance, _provenance_words
from flexdownscale.models import build_model
from flexdownscale.pipeline import Downscaler, Forecaster


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({}, "vp (target v)"),
        ({"target": "eps"}, "vp (target eps)"),
        ({"objective": "flow"}, "flow (base gaussian)"),
        (
            {"objective": "flow", "base": "coarse_plus_noise", "base_sigma": 0.25},
            "flow (base coarse_plus_noise, base_sigma 0.25)",
        ),
        ({"objective": "idff", "idff_sigma": 0.3}, "idff (sigma 0.3, base gaussian)"),
    ],
)
def test_summary_names_the_objective_and_what_sets_its_models_apart(settings, words):
    assert build_objective(DiffusionConfig(**settings)).summary == words


def _fields(times: int = 3) -> xr.Dataset:
    rng = np.random.default_rng(3)
    ds = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), 280 + rng.normal(size=(times, 8, 8)))},
        coords={
            "time": np.datetime64("2019-03-01T00") + np.arange(times) * np.timedelta64(1, "h"),
            "latitude": ("latitude", 50 + np.arange(8.0), {"units": "degrees_north"}),
            "longitude": ("longitude", np.arange(8.0), {"units": "degrees_east"}),
        },
    )
    ds["t2m"].attrs["units"] = "K"
    return ds


def test_downscale_and_forecast_outputs_record_the_objective():
    coarse = _fields()
    torch.manual_seed(0)
    flow = DiffusionConfig(objective="flow", base="coarse_plus_noise", base_sigma=0.1)
    downscaler = Downscaler(
        build_model(ModelConfig(preset="tiny", dropout=0.0)),
        flow,
        normalizer=Normalizer.fit(coarse[["t2m"]]),
        grid={
            "grid": grid_spec(refine_grid(coarse, 2)).to_dict(),
            "degradation": "area_mean",
            "sigma": None,
            "upsample": "bilinear",
            "factor": 2,
        },
        variables=["t2m"],
        units={"t2m": "K"},
        factor=2,
        sampler=SamplerConfig(sampler="euler", steps=2),
        name="tiny-flow",
    )
    out = downscaler(coarse.isel(time=[0]), seed=0)
    assert out.attrs["flexdownscale_objective"] == "flow (base coarse_plus_noise, base_sigma 0.1)"
    found = _prediction_provenance(out.attrs)
    assert found["objective"] == "flow (base coarse_plus_noise, base_sigma 0.1)"
    assert ", objective flow (base coarse_plus_noise, base_sigma 0.1), sampler euler, " in (
        _provenance_words(found, 1)
    )
    forecaster = Forecaster(
        build_model(ModelConfig(preset="tiny", task="forecast", past_frames=2, dropout=0.0)),
        DiffusionConfig(target="eps"),
        normalizer=Normalizer.fit(coarse[["t2m"]]),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(sampler="ddim", steps=2),
        name="tiny-eps",
    )
    ahead = coarse.flex.forecast(forecaster, 1, seed=0)
    assert ahead.attrs["flexdownscale_objective"] == "vp (target eps)"
