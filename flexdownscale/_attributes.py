"""Readings of netCDF / CF attributes shared by the data layer and the metrics (which may not
import each other)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Values of a coordinate's ``periodic`` attribute that say it wraps around (case and
#: surrounding blanks ignored).
PERIODIC_TRUE = frozenset({"true", "yes", "1", "t", "y"})


def says_periodic(attrs: Mapping[Any, Any]) -> bool:
    """Whether a coordinate's ``attrs`` hold ``periodic = "true"`` (or True, 1, ``"yes"``).

    >>> says_periodic({"periodic": " TRUE "}), says_periodic({"periodic": "false"}), says_periodic({})
    (True, False, False)
    """
    value = attrs.get("periodic")
    if value is None:
        return False
    if isinstance(value, bool | np.bool_):
        return bool(value)
    return str(value).strip().lower() in PERIODIC_TRUE
