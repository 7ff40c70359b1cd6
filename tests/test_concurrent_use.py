"""Concurrent use (reviewer-143): a model folder loaded while it is saved again, netCDF opens
from threads, and processes forked after torch ran.

- A folder replaced (``save_pretrained(F, overwrite=True)``) while it is read loaded as a mix
  of its two versions with no error (Y's weights with X's normalization): every file is now
  read once, checked on those bytes against the one ``config.json`` read, and a read the
  folder was replaced during is made again. The replacement is made here at each file open of
  the load in turn, not by racing threads.
- netCDF-C / HDF5 are not thread-safe: ``evaluate`` and ``demo.open_sample`` from threads
  crashed the process. The opens now hold one process-wide lock, which the files' later reads
  take too; checked by looking at the lock during the open, not by provoking a crash.
- A child forked after the parent ran threaded torch work hung in its first convolution
  (torch's OpenMP pool does not survive fork): the child now runs torch on one thread.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors.torch import load_file, save_file

from flexdownscale import _inputs, hub
from flexdownscale.errors import ModelFolderError
from flexdownscale.hub import load_model_folder, resolve_model_path, shipped_models

# -- a model folder replaced while it is read ------------------------------------------------


def _two_versions(tmp_path: Path) -> tuple[Path, Path]:
    """Two versions of one model folder: X (the shipped era5-t2m-x4) and Y, which differs in
    every file: weights + 0.01, normalization mean + 5 K, sampler steps 3 and its card."""
    x = Path(shutil.copytree(shipped_models()["era5-t2m-x4"], tmp_path / "x"))
    (x / hub.CARD_FILE).write_text("# X card\n", encoding="utf-8")
    y = Path(shutil.copytree(x, tmp_path / "y"))
    weights = {
        k: v + 0.01 if v.is_floating_point() else v
        for k, v in load_file(y / hub.WEIGHTS_FILE).items()
    }
    save_file(weights, y / hub.WEIGHTS_FILE, metadata={"format": hub.FORMAT_NAME})
    norm = json.loads((y / hub.NORMALIZATION_FILE).read_text())
    norm["variables"][0]["mean"] += 5.0
    (y / hub.NORMALIZATION_FILE).write_text(json.dumps(norm, indent=2))
    (y / hub.CARD_FILE).write_text("# Y card\n", encoding="utf-8")
    config = json.loads((y / hub.CONFIG_FILE).read_text())
    config["sampler"]["steps"] = 3
    for name in config["sha256"]:
        config["sha256"][name] = hashlib.sha256((y / name).read_bytes()).hexdigest()
    (y / hub.CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return x, y


def _version(folder: hub.ModelFolder, x_weight: float) -> tuple[str, ...]:
    """Which version ("X" or "Y") each part of a loaded folder comes from."""
    first = next(iter(sorted(folder.state_dict)))
    weight = float(folder.state_dict[first].double().sum())
    return (
        "X" if weight == x_weight else "Y",
        "X" if folder.normalization["variables"][0]["mean"] < 283 else "Y",
        "X" if folder.sampler.steps == 2 else "Y",
        "X" if "X card" in folder.card else "Y",
    )


class _SwapAtOpen:
    """Replaces the folder ``target`` (as ``save_pretrained(..., overwrite=True)`` does, through
    ``hub._replace``) by a copy of the next of ``sources`` just before the files of ``target``
    are opened for the ``at``-th time."""

    def __init__(self, target: Path, sources: list[Path], at: int):
        self.target, self.sources, self.at = target, sources, at
        self.opens = self.swaps = 0
        self._open = io.open

    def __call__(self, file, *args, **kwargs):
        if isinstance(file, str | Path) and Path(file).parent == self.target:
            self.opens += 1
            if self.opens == self.at:
                source = self.sources[self.swaps % len(self.sources)]
                new = self.target.parent / f".new{self.swaps}"
                shutil.copytree(source, new)  # shutil opens through builtins.open: not counted
                hub._replace(self.target, new)
                self.swaps += 1
        return self._open(file, *args, **kwargs)


def test_a_folder_replaced_at_any_file_read_loads_as_one_whole_version(tmp_path, monkeypatch):
    x, y = _two_versions(tmp_path)
    target = tmp_path / "model"
    x_weight = float(
        load_file(x / hub.WEIGHTS_FILE)[sorted(load_file(x / hub.WEIGHTS_FILE))[0]].double().sum()
    )
    # how many times one load opens the folder's files
    shutil.copytree(x, target)
    counter = _SwapAtOpen(target, [y], at=0)
    monkeypatch.setattr(io, "open", counter)
    assert _version(load_model_folder(target), x_weight) == ("X",) * 4
    opens = counter.opens
    assert opens >= 5  # config, weights, normalization, grid, card
    found = {}
    for at in range(1, opens + 1):
        shutil.rmtree(target)
        shutil.copytree(x, target)
        swap = _SwapAtOpen(target, [y], at=at)
        monkeypatch.setattr(io, "open", swap)
        try:  # never an error: the load is made again on the new folder
            found[at] = "".join(_version(load_model_folder(target), x_weight))
        except ModelFolderError as err:
            found[at] = " ".join(str(err).split()[2:12])
        assert swap.swaps == 1
    # Y whole after a swap before any open: before the fix, a swap before a checksum was a
    # "damaged" error and one before the normalization's second read loaded X's weights with
    # Y's normalization
    assert found == dict.fromkeys(range(1, opens + 1), "YYYY")


def test_a_folder_replaced_during_every_read_says_so_rather_than_damaged(tmp_path, monkeypatch):
    x, y = _two_versions(tmp_path)
    target = tmp_path / "model"
    shutil.copytree(x, target)
    monkeypatch.setattr(hub, "_RELOAD_PAUSES", (0.0, 0.0), raising=False)
    # the folder is saved again (Y, X, Y, ...) each time the load opens its second file
    swapper = _SwapAtOpen(target, [y, x], at=2)

    def every_load(file, *args, **kwargs):
        if isinstance(file, str | Path) and Path(file).name == hub.CONFIG_FILE:
            swapper.opens = 0  # count the opens of each read of the folder from 1
        return swapper(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", every_load)
    with pytest.raises(ModelFolderError) as caught:
        load_model_folder(target)
    message = str(caught.value)
    assert "was being replaced" in message
    assert "while it was read, 3 times in a row" in message
    assert "load it again once the save is done" in message
    assert "modified or damaged after export" not in message.split(" (the last try found")[0]
    assert swapper.swaps == 3


def test_a_file_changed_in_place_is_still_a_damaged_file(tmp_path):
    """No retry when the folder itself was not replaced: the checksum error as before."""
    x, _ = _two_versions(tmp_path)
    (x / hub.GRID_FILE).write_text("{}")
    with pytest.raises(ModelFolderError, match="modified or damaged after export"):
        load_model_folder(x)


def test_a_folder_seen_mid_rename_is_looked_at_again(tmp_path, monkeypatch):
    """``save_model_folder`` renames the old folder away, then the new one in: a look between
    the two found no folder, or "a file, not a model folder" once the new one was in."""
    x, _ = _two_versions(tmp_path)
    target = tmp_path / "model"
    shutil.copytree(x, target)
    real_is_dir = Path.is_dir
    seen = []

    def mid_rename(self):  # the first look at the folder falls between the two renames
        if self == target and not seen:
            seen.append(self)
            return False
        return real_is_dir(self)

    monkeypatch.setattr(Path, "is_dir", mid_rename)
    assert resolve_model_path(target) == target  # was: "... is a file, not a model folder"
    monkeypatch.setattr(Path, "is_dir", real_is_dir)

    # the folder missing for a moment: the save's hidden holder of the old folder is there
    shutil.rmtree(target)
    holder = tmp_path / ".model.previous.abc123"
    holder.mkdir()
    monkeypatch.setattr(
        hub.time, "sleep", lambda seconds: shutil.copytree(x, target, dirs_exist_ok=True)
    )
    assert resolve_model_path(target) == target  # was: "no model folder at ..."
    assert _version(load_model_folder(target), 0.0)[1:] == ("X",) * 3


def test_the_model_cache_keeps_no_model_of_a_folder_replaced_during_its_load(tmp_path, monkeypatch):
    from flexdownscale import pipeline
    from flexdownscale.pipeline import Downscaler, clear_model_cache

    x, y = _two_versions(tmp_path)
    target = tmp_path / "model"
    shutil.copytree(x, target)
    real = Downscaler.from_pretrained.__func__
    loads = []

    def load_then_resave(cls, ref, *args, **kwargs):
        model = real(cls, ref, *args, **kwargs)
        if not loads:  # the folder is saved again (as Y) just after the first load read it
            new = tmp_path / ".new"
            shutil.copytree(y, new)
            hub._replace(target, new)
        loads.append(ref)
        return model

    monkeypatch.setattr(Downscaler, "from_pretrained", classmethod(load_then_resave))
    clear_model_cache()
    try:
        first = pipeline._cached(target)
        assert first.sampler.steps == 2  # X, read before the save
        # not cached under the key of the files it was not read from
        assert not any(key[0] == str(target.resolve()) for key in pipeline._CACHE)
        second = pipeline._cached(target)
        assert second.sampler.steps == 3
        assert len(loads) == 2
        assert pipeline._cached(target) is second
        assert len(loads) == 2
    finally:
        clear_model_cache()


# -- one lock around netCDF opens --------------------------------------------------------


@pytest.fixture
def netcdf_file(tmp_path):
    path = tmp_path / "t.nc"
    xr.Dataset(
        {"t2m": (("lat", "lon"), np.arange(12.0).reshape(3, 4), {"units": "K"})},
        coords={"lat": [50.0, 51.0, 52.0], "lon": [0.0, 1.0, 2.0, 3.0]},
    ).to_netcdf(path)
    return path


def _record_open(monkeypatch, module):
    """Patch ``module``'s ``xr.open_dataset`` to record, per call, whether this thread held the
    netCDF lock and the ``lock`` xarray was given for the file's reads."""
    calls = []
    real = xr.open_dataset

    def recording(*args, **kwargs):
        calls.append((_inputs.netcdf_lock().held_here(), kwargs.get("lock")))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "open_dataset", recording)
    return calls


def test_open_input_holds_the_netcdf_lock_and_hands_it_to_the_reads(netcdf_file, monkeypatch):
    calls = _record_open(monkeypatch, xr)
    ds = _inputs.open_input(str(netcdf_file))
    assert calls == [(True, _inputs.netcdf_lock())]
    assert not _inputs.netcdf_lock().locked()
    lock = _inputs.netcdf_lock()
    taken = []
    real_acquire = lock.acquire

    def counting(*args, **kwargs):
        taken.append(threading.get_ident())
        return real_acquire(*args, **kwargs)

    monkeypatch.setattr(lock, "acquire", counting)
    values = ds["t2m"].values  # a lazy read after the open takes the lock too
    assert taken
    assert values.sum() == 66.0
    ds.close()


def test_open_sample_holds_the_netcdf_lock(monkeypatch):
    from flexdownscale import demo

    calls = _record_open(monkeypatch, xr)
    ds = demo.open_sample("era5_t2m_uk")
    assert calls == [(True, _inputs.netcdf_lock())]
    assert dict(ds.sizes)["time"] == 4


def test_a_training_source_opens_its_netcdf_under_the_lock(netcdf_file, monkeypatch):
    from flexdownscale.data.datasets import _XarraySource

    calls = _record_open(monkeypatch, xr)
    source = _XarraySource(netcdf_file, variables=None, dims=None, label="t")
    assert calls
    assert all(call == (True, _inputs.netcdf_lock()) for call in calls)
    assert source.channels == ("t2m",)


def test_the_netcdf_lock_is_reentrant_excludes_other_threads_and_xarray_reads():
    from xarray.backends.locks import HDF5_LOCK

    lock = _inputs.netcdf_lock()
    others = []
    with lock, lock:  # its holder may take it again (the open given lock= takes it inside)
        assert lock.held_here()
        assert HDF5_LOCK.locked()
        thread = threading.Thread(target=lambda: others.append(lock.acquire(blocking=False)))
        thread.start()
        thread.join()
    assert others == [False]
    assert not lock.locked()
    assert not HDF5_LOCK.locked()
    assert pickle.loads(pickle.dumps(lock)) is lock  # a dask process takes its own
    with pytest.raises(RuntimeError, match="does not hold it"):
        lock.release()


# -- a process forked after torch ran on threads -------------------------------------------


def _conv(queue) -> None:
    out = torch.nn.functional.conv2d(torch.ones(1, 4, 64, 64), torch.ones(8, 4, 3, 3))
    queue.put((float(out.sum()), torch.get_num_threads()))


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(multiprocessing, "get_context"), reason="no multiprocessing")
def test_a_child_forked_after_a_threaded_convolution_does_not_hang():
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    import flexdownscale.pipeline  # noqa: F401  (what registers the fork hook)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a threaded pool in the parent, as on any multi-core machine
    try:
        expected = float(
            torch.nn.functional.conv2d(torch.ones(1, 4, 64, 64), torch.ones(8, 4, 3, 3)).sum()
        )
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_conv, args=(queue,))
        child.start()
        child.join(30)
        hung = child.is_alive()
        if hung:
            child.kill()
            child.join()
        assert not hung, "the forked child hung in its first convolution"
        value, child_threads = queue.get(timeout=5)
        assert value == expected
        assert child_threads == 1
    finally:
        torch.set_num_threads(threads)
