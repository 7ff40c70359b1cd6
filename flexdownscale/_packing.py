"""CF packing attributes left on a variable: the check shared by the data layer and the metrics
(which may not import each other; neither this module imports torch)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .errors import DataError

__all__ = ["PACKING_ATTRS", "check_decoded", "check_decoded_variable", "packing_left"]

#: Attributes that xarray's CF decoding (``mask_and_scale``) consumes: left on a variable, they
#: say that its values are still packed integers or that its missing cells are not masked.
PACKING_ATTRS = ("scale_factor", "add_offset", "_FillValue", "missing_value")


def packing_left(attrs: Mapping[Hashable, Any]) -> dict[str, Any]:
    """The CF packing attributes of ``attrs`` that decoding would still apply, by name.

    ``scale_factor = 1`` and ``add_offset = 0`` change nothing and are left out; so is a NaN
    fill value (NaN is what decoding puts in missing cells). ``_Unsigned`` (netCDF's mark of
    unsigned bytes or shorts stored in a signed type, or the reverse) is found whatever its
    value: decoding reads the integers with the other sign and moves it to ``encoding``.

    Parameters
    ----------
    attrs : mapping
        A variable's attributes.

    Returns
    -------
    dict
        ``{name: value}`` (values as Python scalars or lists); empty for a decoded variable.

    Examples
    --------
    >>> packing_left({"units": "K", "scale_factor": 0.0005, "add_offset": 280.0})
    {'scale_factor': 0.0005, 'add_offset': 280.0}
    >>> packing_left({"scale_factor": 1.0, "_FillValue": float("nan")})
    {}
    >>> packing_left({"_Unsigned": "true"})
    {'_Unsigned': 'true'}
    """
    found: dict[str, Any] = {}
    for key in (*PACKING_ATTRS, "_Unsigned"):
        if key not in attrs:
            continue
        if key == "_Unsigned":  # decoding moves it to .encoding once the sign is fixed
            found[key] = str(attrs[key])
            continue
        value = np.asarray(attrs[key])
        if value.dtype.kind in "fc" and np.all(np.isnan(value)):
            continue  # masked already
        if key == "scale_factor" and np.all(value == 1):
            continue
        if key == "add_offset" and np.all(value == 0):
            continue
        found[key] = value.tolist()
    return found


def check_decoded_variable(name: Hashable, attrs: Mapping[Hashable, Any]) -> None:
    """Raise :class:`DataError` when the variable ``name`` with ``attrs`` is still packed.

    Parameters
    ----------
    name : hashable
        The variable's name, as the message shows it.
    attrs : mapping
        Its attributes.

    Raises
    ------
    DataError
        When :func:`packing_left` finds any attribute; the message names them and the fix
        (``xr.decode_cf``).
    """
    found = packing_left(attrs)
    if not found:
        return
    shown = ", ".join(f"{key} = {value!r}" for key, value in found.items())
    raise DataError(
        f"variable {name!r} still carries the CF packing attributes {shown}: its values are "
        "the file's raw numbers (packed integers, integers read with the wrong sign, or "
        "missing cells holding the fill value), "
        "not decoded ones, as when a file is opened with mask_and_scale=False or "
        "decode_cf=False. Decode it first: ds = xr.decode_cf(ds) (or open the file with "
        "xarray's defaults)"
    )


def check_decoded(ds: xr.Dataset, names: Sequence[Hashable]) -> None:
    """Raise :class:`DataError` for a variable of ``names`` that still carries CF packing
    attributes (a file opened with ``mask_and_scale=False`` or ``decode_cf=False``): its values
    are raw counts (an int16 ERA5 file holds -32766 ... 32767 "K") or hold unmasked fill values,
    which would be used as data.

    ``scale_factor = 1`` and ``add_offset = 0`` change nothing and pass; so does a NaN fill value
    (NaN is what decoding puts in missing cells).

    Parameters
    ----------
    ds : Dataset
        The data.
    names : sequence of hashable
        The variables of ``ds`` to check.

    Raises
    ------
    DataError
        For the first variable still packed.
    """
    for name in names:
        check_decoded_variable(name, ds[name].attrs)
