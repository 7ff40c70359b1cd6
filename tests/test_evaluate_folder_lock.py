"""One ``evaluate`` at a time per report folder.

Two evaluates writing into one ``--out`` at once mixed their files (one's figures beside the
other's metrics.md), or the second was refused with "not an earlier evaluation's folder" over
the first's half-written figures. Now each holds a lock on the folder itself (``flock``, no
file left in it) from before it looks at the folder's files until its report is whole; a second
is refused at once with a DataError saying the folder is in use.
"""

from __future__ import annotations

import fcntl
import os

import numpy as np
import pytest
import xarray as xr

from flexdownscale.errors import DataError
from flexdownscale.evaluation import evaluate


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    cells = np.arange(16.0)
    coords = {"y": ("y", cells, {"units": "km"}), "x": ("x", cells, {"units": "km"})}
    base = rng.normal(size=(3, 16, 16))
    truth = xr.Dataset({"t": (("time", "y", "x"), base, {"units": "K"})}, coords=coords)
    noise = rng.normal(scale=0.3, size=(4, *base.shape))
    pred = xr.Dataset(
        {"t": (("member", "time", "y", "x"), base[None] + noise, {"units": "K"})}, coords=coords
    )
    truth.to_netcdf(tmp_path / "truth.nc")
    pred.to_netcdf(tmp_path / "pred.nc")
    return tmp_path / "pred.nc", tmp_path / "truth.nc"


def _held(folder):
    """Take the folder's lock as another evaluate would (an fd of its own)."""
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _free(folder) -> bool:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_second_evaluate_into_a_folder_in_use_is_refused(files, tmp_path):
    pred, truth = files
    out = tmp_path / "report"
    evaluate(pred, truth, out=out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    fd = _held(out)  # an evaluate at work there
    try:
        with pytest.raises(DataError, match="is in use: another evaluate is writing its report"):
            evaluate(pred, truth, out=out)
        # the folder's files untouched, the earlier report's figures not removed
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
        # a half-written report (figures, no metrics.md yet) is not called "files in the way"
        text = (out / "metrics.md").read_text(encoding="utf-8")
        (out / "metrics.md").unlink()
        with pytest.raises(DataError, match="is in use"):
            evaluate(pred, truth, out=out)
        (out / "metrics.md").write_text(text, encoding="utf-8")
    finally:
        os.close(fd)
    evaluate(pred, truth, out=out)  # free again: the re-run writes its report
    assert (out / "metrics.md").read_text(encoding="utf-8").startswith("# Evaluation of ")


def test_the_lock_is_held_while_writing_and_dropped_after(files, tmp_path, monkeypatch):
    import flexdownscale.evaluation as evaluation

    pred, truth = files
    out = tmp_path / "new" / "report"  # made by evaluate: locked once made
    seen = []
    original = evaluation.write_text_atomically

    def spy(path, text, **keywords):
        seen.append(_free(out))
        return original(path, text, **keywords)

    monkeypatch.setattr(evaluation, "write_text_atomically", spy)
    evaluate(pred, truth, out=out, baseline=pred)
    assert seen  # metrics.md and metrics.json of the report and of baseline/, then the table
    assert not any(seen)  # never free while the report was written
    assert _free(out)
    assert _free(out / "baseline")
    # an evaluate that fails after taking the lock drops it too
    broken = tmp_path / "broken.nc"
    broken.write_bytes(b"not netCDF")
    with pytest.raises(DataError):
        evaluate(pred, truth, out=out, baseline=broken)
    assert _free(out)


def test_evaluates_in_threads_leave_the_warning_hooks_as_they_were(files, tmp_path, monkeypatch):
    """evaluate counts the fair CRPS's per-chunk warnings by replacing the process's
    ``warnings.showwarning`` for its compute; two threads doing so at once, interleaved, left
    one thread's hook installed for the rest of the process (later warnings of that kind were
    swallowed). The computes now take turns."""
    import threading
    import time
    import warnings

    import dask

    pred, truth = files
    before_hook = warnings.showwarning
    inside, overlaps = [], []
    compute = dask.compute
    barrier = threading.Barrier(2)

    def slow_compute(*args, **kwargs):
        overlaps.append(bool(inside))
        inside.append(1)
        time.sleep(0.3)  # long enough for the other thread to enter, were it let in
        inside.pop()
        return compute(*args, **kwargs)

    monkeypatch.setattr(dask, "compute", slow_compute)
    errors = []

    def run(name):
        try:
            barrier.wait()
            evaluate(pred, truth, out=tmp_path / name)
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(overlaps) >= 2
    assert not any(overlaps)
    assert warnings.showwarning is before_hook
    # evaluate's own "always" filter for the per-chunk counts is gone again (xarray adds
    # filters of its own on first use, so the list is not compared whole)
    assert not [f for f in warnings.filters if f[1] is not None and "point" in f[1].pattern]
    report_a = (tmp_path / "a" / "metrics.json").read_text(encoding="utf-8")
    assert report_a == (tmp_path / "b" / "metrics.json").read_text(encoding="utf-8")
