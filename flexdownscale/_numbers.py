"""The package's one test of a finite real number, for settings given from Python or read from JSON.

A setting that must be a finite number (a diffusion schedule's ``shift``, a sampler's ``delta``,
a grid's ``x0`` in a model folder's ``grid.json``) is taken when it is a real number that is not a
boolean: a Python ``int``, ``float`` or ``fractions.Fraction``, a numpy integer or floating
scalar (``np.float32(0.5)``, ``np.int64(2)``), or a 0-d numpy array or torch tensor of an integer
or floating dtype (``torch.tensor(0.5)``, as a computation in torch gives it); and when its value
is finite. Booleans (``True``, ``np.True_``, a boolean tensor), complex numbers, texts (``"0.5"``),
arrays or tensors of one or more dimensions (``np.array([0.5])`` too), NaN, infinities and integers too large for a float are
refused.

Pure Python: neither numpy nor torch is imported here (an array or tensor is recognised only
when its library is imported already, as it is wherever one exists).
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

__all__ = ["finite_real"]


def _zero_d_real(value: Any) -> Any:
    """The Python number a 0-d numpy array or torch tensor of a real (integer or floating,
    not boolean) dtype holds; ``None`` for anything else."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        if value.ndim == 0 and value.dtype.kind in "iuf":
            return value.item()
        return None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        dtype = value.dtype
        if value.dim() == 0 and not dtype.is_complex and dtype != torch.bool:
            try:
                return value.item()
            except (RuntimeError, NotImplementedError):  # a meta tensor holds no value
                return None
    return None


def finite_real(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number, else ``None``.

    Parameters
    ----------
    value : object
        A Python or numpy real number (not a boolean), or a 0-d numpy array or torch tensor of
        an integer or floating dtype.

    Returns
    -------
    float or None
        Its value as a Python float when it is finite; ``None`` for a boolean, a complex
        number, a text, an array of more than one value, NaN, an infinity or an integer too
        large for a float.

    Examples
    --------
    >>> finite_real(0.5), finite_real(2), finite_real(True), finite_real("0.5")
    (0.5, 2.0, None, None)
    >>> finite_real(float("inf")) is None, finite_real(10**400) is None
    (True, True)
    """
    if isinstance(value, bool):
        return None
    if not isinstance(value, numbers.Real):  # numpy's bool is no numbers.Real either
        value = _zero_d_real(value)
        if value is None or isinstance(value, bool):
            return None
    try:
        number = float(value)
    except (OverflowError, TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
