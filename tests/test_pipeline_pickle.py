"""A model sent to dask.distributed workers is the model the caller holds.

Workers receive the model pickled with the task graph (a ``LocalCluster`` pickles it even with
``processes=False``). A model loaded from a folder travelled as the folder's path alone, so
weights edited in memory (or a ``.double()`` backbone) were silently replaced by the folder's on
every cluster (reviewer-86: 0.5605 K from the caller's model, provenance unchanged), and a
relative path was resolved again in the worker's directory (another folder of that name was
used without a word). Unedited weights still travel as the absolute path.
"""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from test_pipeline import era5_pair, make_downscaler

from flexdownscale.errors import ModelFolderError
from flexdownscale.pipeline import Downscaler, _weights_fingerprint


@pytest.fixture(scope="module")
def pair(shared_data):
    return era5_pair(shared_data)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, pair):
    fine, _ = pair
    return make_downscaler(fine).save_pretrained(tmp_path_factory.mktemp("m") / "model")


def _run(model: Downscaler, coarse) -> np.ndarray:
    return model(coarse, members=2, seed=4)["t2m"].values


def test_unedited_weights_travel_as_the_absolute_folder_path(saved, pair):
    _, coarse = pair
    loaded = Downscaler.from_pretrained(saved)
    sent = pickle.dumps(loaded)
    weights = sum(p.numel() * p.element_size() for p in loaded.backbone.parameters())
    assert len(sent) < weights / 10  # the path, not the weights
    clone = pickle.loads(sent)
    assert clone.path == saved.resolve()
    np.testing.assert_array_equal(_run(clone, coarse), _run(loaded, coarse))


def test_edited_weights_travel_with_the_model(saved, pair):
    _, coarse = pair
    edited = Downscaler.from_pretrained(saved)
    edited.backbone = pickle.loads(pickle.dumps(edited.backbone))  # not the cached object's
    with torch.no_grad():
        for p in edited.backbone.parameters():
            p.mul_(1.05)
    edited.clear_device_copies()
    clone = pickle.loads(pickle.dumps(edited))
    expected = _run(edited, coarse)
    assert not np.array_equal(expected, _run(Downscaler.from_pretrained(saved), coarse))
    np.testing.assert_array_equal(_run(clone, coarse), expected)
    wide = Downscaler.from_pretrained(saved)
    wide.backbone = pickle.loads(pickle.dumps(wide.backbone)).double()
    assert next(pickle.loads(pickle.dumps(wide)).backbone.parameters()).dtype == torch.float64


def test_a_relative_path_names_the_same_folder_in_another_directory(
    saved, pair, tmp_path, monkeypatch
):
    _, coarse = pair
    monkeypatch.chdir(saved.parent)
    loaded = Downscaler.from_pretrained("model")
    sent = pickle.dumps(loaded)
    other = tmp_path / "model"  # another folder of the same name where the worker starts
    shutil.copytree(saved, other)
    twin = Downscaler.from_pretrained(other)
    with torch.no_grad():
        for p in twin.backbone.parameters():
            p.add_(0.1)
    twin.save_pretrained(other, overwrite=True)
    os.chdir(tmp_path)
    np.testing.assert_array_equal(_run(pickle.loads(sent), coarse), _run(loaded, coarse))


def test_a_folder_replaced_after_sending_is_refused_at_first_use(saved, pair, tmp_path):
    fine, coarse = pair
    path = shutil.copytree(saved, tmp_path / "model")
    sent = pickle.dumps(Downscaler.from_pretrained(path))
    make_downscaler(fine, seed=3).save_pretrained(path, overwrite=True)  # other weights, same place
    received = pickle.loads(sent)  # an error here killed a process pool's worker
    assert received.factor == 4  # what travelled with it is there
    for _ in range(2):  # said at every use, the same
        with pytest.raises(ModelFolderError, match="not the ones it was loaded with"):
            _run(received, coarse)
    with pytest.raises(ModelFolderError, match="not the ones it was loaded with"):
        received.backbone
    with pytest.raises(AttributeError, match="no attribute 'other'"):
        received.other
    # sent on, it is the folder again: loaded where the folder holds the weights it had
    shutil.rmtree(path)
    shutil.copytree(saved, path)
    np.testing.assert_array_equal(
        _run(pickle.loads(pickle.dumps(received)), coarse),
        _run(Downscaler.from_pretrained(saved), coarse),
    )


def _downscale_in_worker(model: Downscaler, coarse) -> np.ndarray:
    return _run(model, coarse)


def test_a_folder_deleted_after_loading_gives_the_pool_a_typed_error(saved, pair, tmp_path):
    """A loaded model sent to a process pool once its folder was deleted: the caller gets the
    ModelFolderError (before: a bare BrokenProcessPool, the typed error on the worker's
    stderr only)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _, coarse = pair
    path = shutil.copytree(saved, tmp_path / "gone")
    model = Downscaler.from_pretrained(path)
    shutil.rmtree(path)
    context = multiprocessing.get_context("fork")  # cheap; the folder is gone for it too
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(_downscale_in_worker, model, coarse)
        with pytest.raises(ModelFolderError, match=r"sent to this process as its folder .*gone"):
            future.result(timeout=120)


def test_weights_fingerprint_sees_values_dtypes_and_devices_alike():
    net = torch.nn.Linear(3, 2)
    same = pickle.loads(pickle.dumps(net))
    assert _weights_fingerprint(same) == _weights_fingerprint(net)
    with torch.no_grad():
        same.bias[0] += 1e-7
    assert _weights_fingerprint(same) != _weights_fingerprint(net)
    assert _weights_fingerprint(pickle.loads(pickle.dumps(net)).double()) != _weights_fingerprint(
        net
    )
    assert _weights_fingerprint(pickle.loads(pickle.dumps(net)).bfloat16())  # any dtype
