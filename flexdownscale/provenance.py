"""Outputs of several calls joined into one dataset whose provenance is true for every part.

Each ``ds.flex.downscale`` / ``ds.flex.forecast`` call records what made its output in
``flexdownscale_*`` attributes (model, sampler, seed, the physical condition, ...) and a CF
``history`` line. ``xr.concat`` keeps the first part's attributes (``combine_attrs="override"``),
so forecasts from several starts at Re = 1000 and 4000 were recorded as all at 1000. This
module's one job is the concatenation that keeps them all.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .errors import ConfigError, DataError

__all__ = ["concat_outputs"]

_PREFIX = "flexdownscale_"

#: The largest integer a netCDF-3 / netCDF-4 classic attribute holds (32-bit signed): xarray
#: refuses to write a larger one to those formats.
_INT32_MAX = 2**31 - 1

#: Between the parts' values of a text attribute that differs by part (netCDF-3 and netCDF-4
#: classic have no arrays of strings).
PART_SEPARATOR = " | "


def integer_attr(value: int) -> int | str:
    """An integer as an attribute every netCDF format and zarr can hold: itself up to
    2**31 - 1, its decimal text above (a seed drawn from a ``torch.Generator`` is up to
    2**63 - 1; netCDF-3 and netCDF-4 classic files have no 64-bit attributes).
    ``int(value)`` reads both back.

    Examples
    --------
    >>> integer_attr(7), integer_attr(2**40)
    (7, '1099511627776')
    """
    value = int(value)
    return value if -_INT32_MAX - 1 <= value <= _INT32_MAX else str(value)


def _same(a: Any, b: Any) -> bool:
    """Whether two attribute values are equal (arrays element-wise, NaN equal to NaN)."""
    if isinstance(a, np.ndarray | list | tuple) or isinstance(b, np.ndarray | list | tuple):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
        except TypeError:  # strings: no NaN
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return bool(a == b) if type(a) is type(b) else False


def _label(value: Any) -> str:
    """A part's value along the concatenation dimension, in words for a ``history`` line."""
    value = np.asarray(value)
    if value.ndim:
        value = value.reshape(-1)[0]
    if np.issubdtype(value.dtype, np.datetime64):
        return str(np.datetime_as_string(value, unit="s"))
    if np.issubdtype(value.dtype, np.number):
        return f"{value.item():g}"
    return str(value.item() if hasattr(value, "item") else value)


def recorded_seed(value: Any) -> int | list[int | None] | Any:
    """A ``flexdownscale_seed`` attribute read back as integers: an integer, or the decimal
    text :func:`integer_attr` writes above 2**31 - 1, as an ``int``; the seeds of joined parts
    (an integer array, or text joined with :data:`PART_SEPARATOR`) as a list (``None`` for a
    part without one). Anything else is returned as it is.

    Examples
    --------
    >>> recorded_seed("6838803925648402110"), recorded_seed(np.array([0, 7], dtype=np.int32))
    (6838803925648402110, [0, 7])
    >>> recorded_seed("6838803925648402110 | 5 | ")
    [6838803925648402110, 5, None]
    """

    def one(item: Any) -> Any:
        if _is_integer(item):
            return int(item)
        text = str(item).strip()
        if text == "":
            return None
        return int(text) if text.isdecimal() and text.isascii() else item

    if isinstance(value, np.ndarray):
        return [one(v) for v in value.reshape(-1).tolist()] if value.ndim else one(value.item())
    if isinstance(value, str) and PART_SEPARATOR in value:
        return [one(v) for v in value.split(PART_SEPARATOR)]
    return one(value) if isinstance(value, str) or _is_integer(value) else value


def _is_integer(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _per_part(values: list[Any]) -> Any:
    """One attribute from the parts' differing ``values`` (``None`` where a part lacks it), in
    a form every netCDF format holds: integers that fit 32 bits as an integer array (seeds stay
    seeds), other real numbers as a float array (NaN where missing), anything else as one text
    with the parts' values (``""`` where missing) separated by :data:`PART_SEPARATOR`."""
    given = [v for v in values if v is not None]
    if all(_is_integer(v) for v in values) and all(abs(int(v)) <= _INT32_MAX for v in values):
        return np.array([int(v) for v in values], dtype=np.int32)
    numbers = all(
        np.ndim(v) == 0
        and np.issubdtype(np.asarray(v).dtype, np.number)
        and not np.issubdtype(np.asarray(v).dtype, np.complexfloating)
        for v in given
    )
    exact = all(not _is_integer(v) or abs(int(v)) <= 2**53 for v in given)
    if numbers and exact:
        return np.array([np.nan if v is None else float(v) for v in values])
    return PART_SEPARATOR.join("" if v is None else str(v) for v in values)


def concat_outputs(parts: Sequence[xr.Dataset], dim: Hashable, **concat_kwargs: Any) -> xr.Dataset:
    """Concatenate the outputs of several flexdownscale calls along ``dim``, provenance kept.

    ``xr.concat`` keeps the first part's attributes, so a file of forecasts from several starts
    records the first start's condition, seed and history for all of them. Here, attributes
    equal in every part are kept; a ``flexdownscale_*`` attribute that differs (or that only
    some parts have) keeps one value per part, in the order of ``dim``, so ``flexdownscale
    evaluate`` and readers see every value: integers (seeds) as an integer array, other numbers
    as a float array (NaN where a part lacks it), text as one string with the parts' values
    separated by ``" | "`` (``""`` where a part lacks it: netCDF-3 and netCDF-4 classic files
    hold no arrays of strings), so the joined output is written to every format a single one
    is; the parts' ``history`` lines are kept, newest first, each with its ``dim`` value,
    followed once by the input's own history; other attributes that differ are dropped.

    Parameters
    ----------
    parts
        Outputs of ``ds.flex.downscale`` / ``ds.flex.forecast`` (or ``Downscaler`` /
        ``Forecaster`` calls), each holding ``dim`` as a scalar or length-1 coordinate.
    dim
        The dimension to concatenate along (``"forecast_reference_time"`` for forecasts from
        several starts, ``"reynolds_number"`` for one call per condition).
    **concat_kwargs
        Passed to :func:`xarray.concat` (e.g. ``coords=["valid_time"]`` for forecasts, so that
        ``valid_time`` gets one row per start). ``combine_attrs`` is this function's.

    Returns
    -------
    xarray.Dataset
        The concatenation along ``dim``, with the attributes combined as above.

    Raises
    ------
    ~flexdownscale.errors.DataError
        When ``parts`` is empty.
    ~flexdownscale.errors.ConfigError
        When ``combine_attrs`` is given.

    Examples
    --------
    Two outputs whose seeds differ keep both (forecasts from several starts are joined with
    ``concat_outputs(forecasts, "forecast_reference_time", coords=["valid_time"])``):

    >>> import numpy as np, xarray as xr
    >>> parts = [
    ...     xr.Dataset({"v": ("x", np.zeros(2))}, coords={"start": s}, attrs={"flexdownscale_seed": s})
    ...     for s in (1, 2)
    ... ]
    >>> concat_outputs(parts, "start").attrs["flexdownscale_seed"]
    array([1, 2], dtype=int32)
    """
    parts = list(parts)
    if not parts:
        raise DataError(
            f"concat_outputs got no outputs to concatenate along {dim!r} (an empty sequence); "
            "pass at least one output, e.g. concat_outputs([ds.flex.downscale(seed=s) for s in "
            f"seeds], {dim!r})"
        )
    if "combine_attrs" in concat_kwargs:
        raise ConfigError(
            f"concat_outputs got combine_attrs={concat_kwargs['combine_attrs']!r}, but it "
            "combines the attributes itself (provenance kept per part); leave combine_attrs "
            "out, or call xarray.concat directly"
        )
    out = xr.concat(parts, dim, combine_attrs="drop_conflicts", **concat_kwargs)
    keys = dict.fromkeys(k for p in parts for k in p.attrs if str(k).startswith(_PREFIX))
    for key in keys:
        values = [p.attrs.get(key) for p in parts]
        if all(key in p.attrs for p in parts) and all(_same(v, values[0]) for v in values[1:]):
            out.attrs[key] = values[0]
            continue
        out.attrs[key] = _per_part(values)
    histories = [str(p.attrs.get("history", "")).split("\n", 1) for p in parts]
    if len(parts) > 1 and all(h[0] for h in histories):
        lines = [f"{h[0]}; {dim} = {_label(p[dim].values)}" for h, p in zip(histories, parts)]
        earlier = histories[0][1:]  # the input's own history, the same for every call
        out.attrs["history"] = "\n".join([*reversed(lines), *earlier])
    return out
