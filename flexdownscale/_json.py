"""Values for strict JSON files (metrics.json, validation.jsonl): no NaN, no infinity."""

from __future__ import annotations

import math
from typing import Any


def finite_or_null(value: Any) -> Any:
    """``value``, or ``None`` (JSON ``null``) for a non-finite float.

    A score that does not apply (the spread of a one-member ensemble, a spectrum of a masked
    field) is NaN; strict JSON readers reject ``NaN`` and ``Infinity``, so files hold ``null``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def non_finite_word(value: Any) -> str | None:
    """``"inf"``, ``"-inf"`` or ``"nan"`` for a non-finite float (what :func:`finite_or_null`
    writes as ``null``), else ``None``: for a file that says which non-finite value a ``null``
    stood for."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return None
