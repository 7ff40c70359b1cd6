"""Inputs that are not a Dataset or DataArray get one message that says how to get one.

An ``xarray.DataTree`` was refused by the Downscaler with "expected an xarray Dataset or
DataArray, got DataTree" (no fix), by the metrics with a hint to wrap numpy arrays, and the data
layer and the Forecaster failed with AttributeErrors ("'DataTree' object has no attribute 'cf'")
(reviewer-86). They name one node's ``to_dataset()`` and ``map_over_datasets`` now, and numpy
values are told to be wrapped with their coordinates.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale import data, metrics, plot
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.errors import DataError
from flexdownscale.models import build_model
from flexdownscale.pipeline import Downscaler, Forecaster

TREE_FIX = r"dt\['region'\]\.to_dataset\(\), or run on every node with dt\.map_over_datasets"


def _field() -> xr.Dataset:
    lat, lon = np.linspace(50.0, 57.5, 16), np.linspace(-8.0, -0.5, 16)
    values = 280.0 + np.random.default_rng(0).normal(size=(2, 16, 16))
    return xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), values, {"units": "K"})},
        coords={"time": np.arange(2), "latitude": lat, "longitude": lon},
    )


@pytest.fixture(scope="module")
def tree() -> xr.DataTree:
    return xr.DataTree.from_dict({"uk": _field()})


def test_metrics_and_plots_name_the_node_of_a_tree(tree):
    with pytest.raises(TypeError, match="obs must be an xarray Dataset or DataArray, got DataTr"):
        metrics.rmse(_field(), tree)
    with pytest.raises(TypeError, match=TREE_FIX):
        metrics.crps_ensemble(tree, _field())
    with pytest.raises(TypeError, match=r"got ndarray; wrap the values with xr\.DataArray"):
        metrics.rmse(np.zeros(3), _field()["t2m"])
    with pytest.raises(TypeError, match=TREE_FIX):
        plot.plot_spectra({"truth": tree})


def test_the_data_layer_refuses_a_tree_with_the_fix(tree):
    with pytest.raises(DataError, match=TREE_FIX):
        data.degrade(tree, 4)
    with pytest.raises(DataError, match=r"got ndarray; wrap the values"):
        data.normalize_grid(np.zeros((4, 4)))
    # the fix works
    node = data.degrade(tree["uk"].to_dataset(), 4)
    xr.testing.assert_identical(node, data.degrade(_field(), 4))


def test_the_downscaler_and_the_forecaster_refuse_a_tree_with_the_fix(tree):
    field = _field()
    net = build_model(ModelConfig(preset="tiny", dropout=0.0))
    down = Downscaler(
        net,
        DiffusionConfig(),
        normalizer=data.Normalizer.fit(field),
        grid={"grid": None, "factor": 4},
        variables=["t2m"],
        units={"t2m": "K"},
        factor=4,
        sampler=SamplerConfig(steps=1),
    )
    with pytest.raises(DataError, match=TREE_FIX):
        down(tree)
    torch.manual_seed(0)
    forecaster = Forecaster(
        build_model(ModelConfig(preset="tiny", task="forecast", past_frames=1, dropout=0.0)),
        DiffusionConfig(),
        normalizer=data.Normalizer.fit(field),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(steps=1),
    )
    with pytest.raises(DataError, match=TREE_FIX):
        forecaster(tree, lead_steps=1)
