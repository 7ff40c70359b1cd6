"""A process forked after torch ran multi-threaded work runs torch with one thread.

torch's CPU thread pool (OpenMP, libgomp) does not survive ``fork``: a child forked after the
parent ran a convolution or a matrix product on several threads hangs forever in its first
such operation (a ``multiprocessing.Pool`` under Python's default ``"fork"`` start method on
Linux, with one downscale made before it). Setting the child's torch threads to one before it
runs anything avoids that pool; its results are the same numbers.

Imported by :mod:`flexdownscale.pipeline` when it imports torch, which registers the hook once
per process; not part of the API. A child that wants more threads calls
``torch.set_num_threads(n)`` itself (safe only where the parent ran no threaded torch work) or
is started with the ``"spawn"`` or ``"forkserver"`` method instead.
"""

from __future__ import annotations

import os


def one_thread_in_child() -> None:
    """Run torch on one thread in this (just forked) process."""
    import torch

    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=one_thread_in_child)
