"""Shared fixtures: the real data in ``../shared/data`` and torch thread settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLEXDOWNSCALE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    # One intra-op thread per test process: pytest-xdist already runs one worker per core, and
    # oversubscribed torch threads make small kernels ~50x slower on a busy 2-core machine.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _skip_gpu_tests_without_cuda(items)
    if getattr(config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
        _name_the_xdist_groups(items)


def _skip_gpu_tests_without_cuda(items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    # FLEXDOWNSCALE_TEST_DEVICE=cpu rehearses on a CPU the gpu tests of the files that honour it
    rehearsal = os.environ.get("FLEXDOWNSCALE_TEST_DEVICE") == "cpu"
    honoured = {"test_devices.py", "test_data_degrade.py"}
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not (rehearsal and item.path.name in honoured):
            item.add_marker(skip_gpu)


def _name_the_xdist_groups(items: list[pytest.Item]) -> None:
    """Keep ``--dist loadgroup`` (``.ci/test``) grouping by ``xdist_group`` under pytest 9.2.

    pytest-xdist 3.8 names an item's group by appending ``@group`` to ``item._nodeid``; pytest
    9.2 reads the node id from ``item._id``, so the suffix never reached the scheduler and a
    group's tests spread over both workers, each building the module's fixtures (the API
    reference site twice; pytest-xdist issue 1386). The suffix goes where pytest reads it,
    unless xdist put it there already.
    """
    for item in items:
        marks = item.iter_markers("xdist_group")
        names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks}
        if not names or not hasattr(item, "_id"):
            continue
        suffix = "@" + "_".join(sorted(names))
        if not item.nodeid.endswith(suffix):
            item._id = type(item._id).parse(item.nodeid + suffix)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Every test runs with one intra-op thread (see ``pytest_configure``), whatever a test
    before it set: on a busy 2-core machine two threads make each small op ~20-100x slower."""
    import torch

    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the project's real data folder (read only); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA}")
    return SHARED_DATA
