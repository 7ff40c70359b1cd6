"""A long session's process state (reviewer-138): the model cache stays bounded, one model per
folder; ``condition=`` leaves once-only warnings shown once; a Trainer leaves the caller's
random streams and default dtype as they were, and trains float32 under a float64 default."""

from __future__ import annotations

import random
import shutil
import warnings

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from test_pipeline import era5_pair, make_downscaler
from train_runs import tiny_run_config

import flexdownscale  # noqa: F401  (registers the accessor)
from flexdownscale import pipeline
from flexdownscale.data.degrade import degrade
from flexdownscale.demo import open_sample
from flexdownscale.train import Trainer

# -- the model cache -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(shared_data):
    fine, coarse = era5_pair(shared_data, times=1)
    return fine, coarse


@pytest.fixture
def empty_cache(monkeypatch):
    monkeypatch.setattr(pipeline, "_CACHE", {})
    return pipeline._CACHE


def test_a_folder_saved_again_keeps_one_entry_and_its_new_weights(pair, tmp_path, empty_cache):
    fine, coarse = pair
    folder = tmp_path / "m"
    outputs = []
    for seed in range(4):  # a notebook re-training and re-exporting into one folder
        shutil.rmtree(folder, ignore_errors=True)
        model = make_downscaler(fine, seed=seed)
        model.save_pretrained(folder)
        got = coarse.flex.downscale(folder, members=1, steps=1, seed=3)
        assert [key[0] for key in empty_cache] == [str(folder.resolve())]
        # the folder's new weights, not the first export's
        expected = pipeline.Downscaler.from_pretrained(folder)(coarse, members=1, steps=1, seed=3)
        np.testing.assert_array_equal(got["t2m"].values, expected["t2m"].values)
        outputs.append(got["t2m"].values)
    assert not np.array_equal(outputs[0], outputs[-1])


def test_the_cache_holds_at_most_model_cache_size_models(pair, tmp_path, empty_cache, monkeypatch):
    fine, coarse = pair
    monkeypatch.setattr(pipeline, "MODEL_CACHE_SIZE", 2)
    folders = [make_downscaler(fine).save_pretrained(tmp_path / f"m{i}") for i in range(3)]
    for folder in folders:
        coarse.flex.downscale(folder, members=1, steps=1)
    assert [key[0] for key in empty_cache] == [str(f.resolve()) for f in folders[1:]]
    # a use moves a model to the end: the other one goes first
    coarse.flex.downscale(folders[1], members=1, steps=1)
    coarse.flex.downscale(folders[0], members=1, steps=1)
    assert [key[0] for key in empty_cache] == [str(folders[i].resolve()) for i in (1, 0)]


def test_clear_model_cache_drops_every_model(pair, tmp_path, empty_cache):
    fine, coarse = pair
    folder = make_downscaler(fine).save_pretrained(tmp_path / "m")
    coarse.flex.downscale(folder, members=1, steps=1)
    first = next(iter(empty_cache.values()))
    assert "clear_model_cache" in pipeline.__all__
    assert pipeline.clear_model_cache() == 1
    assert not empty_cache
    coarse.flex.downscale(folder, members=1, steps=1)
    assert len(empty_cache) == 1
    assert next(iter(empty_cache.values())) is not first  # loaded again


# -- warnings shown once ---------------------------------------------------------------------------


def _shown(calls: int, action) -> list[str]:
    """The warnings shown by ``calls`` runs of ``action`` from one line, under the default
    filter (each warning once per place)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(calls):
            action()
    return [str(w.message) for w in seen]


def test_condition_leaves_once_only_warnings_shown_once():
    kf = open_sample("kolmogorov")
    coarse = degrade(kf[["vorticity"]], 8)
    coarse["vorticity"].attrs = dict(kf["vorticity"].attrs)
    held = coarse.isel(reynolds_number=1, x=slice(0, 8), y=slice(0, 8))  # Re = 4000 held
    other = float(coarse["reynolds_number"][0])

    def call():
        warnings.warn("the user's own warning", UserWarning, stacklevel=1)
        held.flex.downscale(factor=8, members=1, steps=1, condition=other)

    shown = _shown(3, call)
    assert shown.count("the user's own warning") == 1
    condition = [m for m in shown if m.startswith("condition = ")]
    assert len(condition) == 1, shown


# -- a Trainer and the caller's process state ------------------------------------------------------


def _draws() -> tuple[float, float, float]:
    return np.random.rand(), torch.rand(1).item(), random.random()  # noqa: NPY002


def _seed_all(seed: int) -> None:
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)
    random.seed(seed)


def _weights(path) -> dict[str, np.ndarray]:
    return load_file(str(path / "model.safetensors"))


def test_a_trainer_leaves_the_callers_random_streams(tmp_path, shared_data):
    _seed_all(99)
    expected = [_draws() for _ in range(3)]
    _seed_all(99)
    trainer = Trainer(tiny_run_config(tmp_path / "a", shared_data, steps=2))
    got = [_draws()]
    trained = trainer.fit()
    got.append(_draws())
    trainer.evaluate()
    got.append(_draws())
    assert got == expected
    # the trainer's own numbers do not depend on the caller's draws in between
    _seed_all(5)
    quiet = Trainer(tiny_run_config(tmp_path / "b", shared_data, steps=2)).fit()
    for name, array in _weights(trained).items():
        np.testing.assert_array_equal(array, _weights(quiet)[name], err_msg=name)


def test_a_float64_default_trains_and_exports_float32(tmp_path, shared_data):
    reference = Trainer(tiny_run_config(tmp_path / "a", shared_data, steps=2)).fit()
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        trainer = Trainer(tiny_run_config(tmp_path / "b", shared_data, steps=2))
        assert torch.get_default_dtype() == torch.float64  # the caller's, back
        model = trainer.accelerator.unwrap_model(trainer.model)
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert {b.dtype for b in model.buffers() if b.is_floating_point()} <= {torch.float32}
        batch = next(iter(trainer.loader))
        tensors = batch.values() if isinstance(batch, dict) else batch
        assert {t.dtype for t in tensors if torch.is_tensor(t) and t.is_floating_point()} == {
            torch.float32
        }
        trained = trainer.fit()
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(before)
    weights = _weights(trained)
    assert {a.dtype for a in weights.values()} == {np.dtype(np.float32)}
    # the same run as under the float32 default, to the bit
    for name, array in _weights(reference).items():
        np.testing.assert_array_equal(weights[name], array, err_msg=name)
