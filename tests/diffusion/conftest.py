"""Diffusion tests work on tiny tensors: one intra-op thread avoids thread start-up and
contention overhead (on a busy 2-core machine two threads make each small op ~100x slower)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
