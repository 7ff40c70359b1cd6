"""A zarr output that fails midway leaves no ``.partial`` folder: zarr writes an in-memory
array's chunks as tasks on its own event loop, and when one fails the error reaches the
command while the others still run; each of them makes its chunk's folders again. The command
waits for them before it removes the folder (it removed it at once, then again after 0.2 s and
1 s only when something was left right then: the chunks written after that brought it back).

The store is zarr's own; only its ``set`` is slowed (a chunk takes 0.3 s) and one chunk's fails
as on a full disk.
"""

from __future__ import annotations

import asyncio
import errno

import numpy as np
import pytest
import xarray as xr

zarr = pytest.importorskip("zarr", minversion="3")


def test_chunks_written_after_a_failure_do_not_leave_the_partial_folder(tmp_path, monkeypatch):
    from zarr.storage import LocalStore

    from flexdownscale import cli

    real = LocalStore.set
    failed = []

    async def slow_set(self, key, value):
        if key.startswith("t2m/c/"):
            if not failed:
                failed.append(key)
                raise OSError(errno.ENOSPC, "No space left on device")
            await asyncio.sleep(0.3)
        return await real(self, key, value)

    monkeypatch.setattr(LocalStore, "set", slow_set)
    values = np.random.default_rng(0).normal(size=(64, 256, 256)).astype("float32")
    ds = xr.Dataset({"t2m": (("time", "y", "x"), values)})  # zarr splits it into 32 chunks
    target = tmp_path / "out.zarr"
    with pytest.raises(OSError) as caught:
        cli._write_output(ds, str(target))
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    assert failed
    _wait_for_zarr()  # every chunk write zarr still had has ended
    assert list(tmp_path.iterdir()) == []


def _wait_for_zarr() -> None:
    """Wait until the tasks on zarr's event loop (its chunk writes) have ended."""
    from zarr.core import sync

    async def others() -> None:
        running = asyncio.all_tasks() - {asyncio.current_task()}
        if running:
            await asyncio.wait(running)

    sync.sync(others())
