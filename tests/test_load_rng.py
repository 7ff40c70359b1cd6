"""Loading a model leaves torch's global random state as it was (reviewer-117).

The backbone was built with random initialization before its weights were loaded, which drew
from torch's global generator: ``torch.manual_seed(0); ds.flex.downscale(...); torch.randn(...)``
drew other numbers depending on whether the model was cached. It is now built on the meta
device and takes the folder's tensors (``load_state_dict(..., assign=True)``).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from test_forecast_fixes import box_grid, tiny_forecaster

import flexdownscale as fd
from flexdownscale import pipeline
from flexdownscale.data import degrade
from flexdownscale.hub import load_model_folder
from flexdownscale.models import registry


def _rng_states() -> list[torch.Tensor]:
    """torch's global random states: the CPU generator's, and each CUDA device's where any."""
    states = [torch.get_rng_state()]
    if torch.cuda.is_available():
        states += torch.cuda.get_rng_state_all()
    return states


def _assert_leaves_rng(load: Callable[[], Any]) -> Any:
    """``load()``'s result, after checking that it left the global random states as they were
    (and that the numbers drawn next are those drawn without it)."""
    torch.manual_seed(123)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(123)
    before = _rng_states()
    result = load()
    after = _rng_states()
    assert len(after) == len(before)
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b)
    drawn = torch.randn(4)
    torch.manual_seed(123)
    assert torch.equal(drawn, torch.randn(4))
    return result


@pytest.fixture(scope="module")
def coarse(shared_data) -> xr.Dataset:
    """Two coarse ERA5 fields (x4) for the shipped ERA5 model."""
    path = shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc"
    with xr.open_dataset(path) as ds:
        fine = ds.isel(time=slice(400, 412, 6)).load()
    return degrade(fine, 4, boundary="trim")


@pytest.mark.parametrize("name", ["era5-t2m-x4", "kolmogorov-x8"])
def test_from_pretrained_leaves_the_global_rng(name):
    model = _assert_leaves_rng(lambda: fd.Downscaler.from_pretrained(name))
    assert isinstance(model, fd.Downscaler)


def test_accessor_first_call_leaves_the_global_rng(coarse, monkeypatch):
    monkeypatch.setattr(pipeline, "_CACHE", {})  # the first call loads the model
    out = _assert_leaves_rng(lambda: coarse.flex.downscale("era5-t2m-x4", members=2, steps=1))
    assert len(pipeline._CACHE) == 1
    # cached: the same numbers, and still nothing drawn from the global generator
    again = _assert_leaves_rng(lambda: coarse.flex.downscale("era5-t2m-x4", members=2, steps=1))
    np.testing.assert_array_equal(out["t2m"].values, again["t2m"].values)


def test_unpickling_a_folder_model_leaves_the_global_rng(monkeypatch):
    # a model sent to a dask worker travels as its folder and is loaded there (_cached)
    sent = pickle.dumps(fd.Downscaler.from_pretrained("era5-t2m-x4"))
    monkeypatch.setattr(pipeline, "_CACHE", {})
    model = _assert_leaves_rng(lambda: pickle.loads(sent))
    assert model.path is not None


def test_forecaster_from_pretrained_leaves_the_global_rng(tmp_path):
    path = tiny_forecaster(box_grid()).save_pretrained(tmp_path / "tiny-box")
    model = _assert_leaves_rng(lambda: fd.Forecaster.from_pretrained(path))
    assert isinstance(model, fd.Forecaster)


@pytest.mark.parametrize("name", ["era5-t2m-x4", "kolmogorov-x8"])
def test_loaded_backbone_holds_the_folder_tensors(name):
    """No tensor is left without values (the time embeddings' frequencies included), every
    one is the folder's, float32, and parameters still require gradients (as a backbone built
    and then loaded did)."""
    folder = load_model_folder(name)
    backbone = fd.Downscaler.from_pretrained(name).backbone
    assert registry.meta_tensor_names(backbone) == []
    state = backbone.state_dict()
    assert state.keys() == folder.state_dict.keys()
    assert any(key.endswith(".freqs") for key in state)
    for key, tensor in state.items():
        assert tensor.device.type == "cpu"
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, folder.state_dict[key].float()), key
    assert all(p.requires_grad for p in backbone.parameters())


class _WithComputedBuffer(torch.nn.Module):
    """A module with a buffer computed when it is built and not saved (no backbone has one)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.register_buffer("grid", torch.linspace(0.0, 1.0, 5), persistent=False)


def _build(device: str | None = None) -> torch.nn.Module:
    with torch.device(device or "cpu"):
        return _WithComputedBuffer()


def test_a_buffer_not_in_the_weights_gets_its_computed_values():
    weights = {"linear.weight": torch.full((2, 3), 0.5), "linear.bias": torch.tensor([1.0, 2.0])}
    module = _assert_leaves_rng(lambda: registry.module_with_weights(_build, weights))
    assert registry.meta_tensor_names(module) == []
    assert torch.equal(module.grid, torch.linspace(0.0, 1.0, 5))
    assert torch.equal(module.linear.weight, weights["linear.weight"])
    assert torch.equal(module.linear.bias, weights["linear.bias"])


def test_meta_tensor_names_sees_plain_tensor_attributes():
    module = _build("meta")
    module.linear.cached = torch.empty(2, device="meta")  # neither parameter nor buffer
    names = registry.meta_tensor_names(module)
    assert {"linear.weight", "linear.bias", "grid", "linear.cached"} <= set(names)
