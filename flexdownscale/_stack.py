"""Where a warning raised inside the package should point: the user's line that led to it."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """``stacklevel`` for ``warnings.warn`` that names the first frame outside the package.

    Call it as the ``stacklevel`` argument of ``warnings.warn`` inside flexdownscale: the warning
    then points at the user's call (``refine_grid(ds, 2)``, ``ds.flex.downscale(...)``) however
    many package functions lie between, rather than at a line inside the package.
    """
    frame = sys._getframe(1)  # the package function that calls warnings.warn
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def outer_user_stacklevel() -> int:
    """``stacklevel`` for ``warnings.warn`` in code that xarray or dask call back (a kernel run
    by ``xr.apply_ufunc``): the caller of the outermost package frame, i.e. the user's line of
    an eager call. :func:`user_stacklevel` stops at the first frame
    outside the package, which there is xarray's. In a dask worker thread (a lazy call
    computed) the stack holds no user line, and the warning names the scheduler's."""
    frame = sys._getframe(1)  # the package function that calls warnings.warn
    level, found = 1, 2
    while frame is not None:
        if os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
            found = level + 1
        frame = frame.f_back
        level += 1
    return found
