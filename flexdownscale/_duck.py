"""The array types flexdownscale computes on, and pint quantities taken at the entry points.

flexdownscale computes on numpy arrays (and lazily on dask arrays of numpy chunks). An xarray
object whose data are a pint ``Quantity`` (as ``ds.pint.quantify()`` of pint-xarray makes them:
the units on the data, no ``units`` attribute) is taken as the same object with the
quantity's magnitude as its data and its units as the ``units`` attribute
(:func:`plain_arrays`), so that the package's unit checks (:mod:`flexdownscale.units`) see
them: a kelvin ensemble against a Celsius truth is a :class:`~flexdownscale.errors.UnitsError`,
as it is for ``units`` attributes, not a CRPS of 273. Other array types (cupy, sparse, jax,
...) are refused with a :class:`~flexdownscale.errors.DataError` that says what was found and
how to convert it.

pint and pint-xarray are not imported: a quantity is recognised by its ``magnitude`` and
``units``. The inputs are never changed.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from .errors import DataError, UnitsError
from .units import parse_units, same_units

__all__ = ["dataset_of", "plain_arrays", "units_spelling"]

XarrayT = TypeVar("XarrayT", xr.DataArray, xr.Dataset)

#: pint's symbols for temperatures, in the spelling of CF files (``degC``, not ``°C``)
_DEGREE_SYMBOLS = re.compile(r"\u00b0(?P<scale>[CF])(?![A-Za-z])")


def _is_quantity(data: Any) -> bool:
    """Whether ``data`` is a pint ``Quantity`` (duck typed: ``magnitude`` and ``units``)."""
    return (
        not isinstance(data, np.ndarray) and hasattr(data, "magnitude") and hasattr(data, "units")
    )


def _is_dask(data: Any) -> bool:
    """Whether ``data`` is a dask collection (the ``__dask_graph__`` protocol)."""
    return callable(getattr(data, "__dask_graph__", None))


def _magnitude(block: Any) -> Any:
    """A dask block's magnitude (a block of a dask array of pint quantities)."""
    return block.magnitude


def _type_name(data: Any) -> str:
    kind = type(data)
    return f"{kind.__module__}.{kind.__qualname__}"


def units_spelling(units: Any) -> str:
    """A pint unit as a CF ``units`` string that :func:`~flexdownscale.units.parse_units` reads
    back as the same unit (``K``, ``degC``, ``m s-1``, ``1``).

    Parameters
    ----------
    units : pint.Unit
        The ``units`` of a pint quantity (of any registry).

    Returns
    -------
    str
        The CF spelling (cf-xarray's ``cf`` format, with ``degC`` / ``degF`` for pint's degree
        symbols) when it reads back as the same unit, else pint's own (``degree_Celsius``).

    Examples
    --------
    >>> from cf_xarray.units import units as ureg
    >>> [units_spelling(ureg.Unit(u)) for u in ("kelvin", "degC", "m/s", "dimensionless")]
    ['K', 'degC', 'm s-1', '1']
    """
    plain = str(units)
    try:
        spelled = _DEGREE_SYMBOLS.sub(r"deg\g<scale>", format(units, "cf"))
    except (ValueError, KeyError, TypeError):  # a registry without cf-xarray's format
        return plain
    if spelled == plain or (parse_units(spelled) is not None and same_units(spelled, plain)):
        return spelled
    return plain


def _unsupported(data: Any, label: str, name: str) -> DataError:
    return DataError(
        f"{label} holds a {_type_name(data)} array; flexdownscale computes on numpy arrays "
        "(and on dask arrays of them). Convert it first, e.g. "
        f"{name} = {name}.as_numpy() (cupy, sparse, jax, ...; it loads dask data), or, for "
        "a pint-xarray object, "
        f"{name} = {name}.pint.dequantify()."
    )


def _plain_variable(var: xr.Variable, label: str, code: str, name: str) -> xr.Variable | None:
    """``var`` with a pint quantity's magnitude as data and its units as the ``units`` attribute
    (``None``: already plain). Raises for an array type flexdownscale does not compute on.
    ``label`` names the variable in words, ``code`` in code, ``name`` the whole object."""
    # the wrapped array itself: ``Variable.data`` would load a lazily opened file
    data = getattr(var, "_data", None)
    if data is None:
        return None
    units = None
    if _is_quantity(data):
        units, data = data.units, data.magnitude
    if _is_dask(data):
        meta = getattr(data, "_meta", None)
        if _is_quantity(meta):  # a dask array of pint quantities
            units = meta.units if units is None else units
            data = data.map_blocks(_magnitude, dtype=data.dtype, meta=np.asarray(meta.magnitude))
        elif meta is not None and not isinstance(meta, np.ndarray):
            raise _unsupported(meta, f"{label} (a dask array of blocks)", name)
    elif not isinstance(data, np.ndarray) and not _type_name(data).startswith("xarray."):
        # xarray's own wrappers: a lazily opened file, a pandas index
        raise _unsupported(data, label, name)
    if units is None:
        return None
    spelled = units_spelling(units)
    attrs = dict(var.attrs)
    given = attrs.get("units")
    if given is not None and not (isinstance(given, str) and same_units(given, spelled)):
        raise UnitsError(
            f"{label} is a pint quantity in {spelled!r} but its 'units' attribute says "
            f"{given!r}; the two disagree, so which one the values are in is unknown. Drop the "
            f"attribute if the quantity's units are right (del {code}.attrs['units']); else "
            "give the values as plain numbers in the attribute's units."
        )
    attrs.setdefault("units", spelled)
    return xr.Variable(var.dims, data, attrs, encoding=dict(var.encoding))


def _plain_member(
    var: xr.Variable, name: str, key: Hashable, *, coordinate: bool
) -> xr.Variable | None:
    """:func:`_plain_variable` of the data variable or coordinate ``key`` of ``name``."""
    code = f"{name}[{str(key)!r}]"
    label = f"{name}'s coordinate {str(key)!r}" if coordinate else code
    return _plain_variable(var, label, code, name)


def plain_arrays(obj: XarrayT, name: str = "the input") -> XarrayT:
    """``obj`` with numpy (or dask) data only: a pint quantity's magnitude as the data and its
    units as the ``units`` attribute, for each data variable and coordinate.

    The package's one rule for duck arrays at its xarray entry points (the metrics, the
    Downscaler and Forecaster, the data helpers): a pint-xarray object is taken as
    ``obj.pint.dequantify()`` would give it, without importing pint-xarray.

    Parameters
    ----------
    obj : DataArray or Dataset
        The input; never changed (a new object is returned when something is converted).
    name : str, default "the input"
        How messages name ``obj`` (``"fcst"``, ``"obs"``, ...), in words and in code.

    Returns
    -------
    DataArray or Dataset
        ``obj`` itself when all its arrays are numpy or dask (or when it is no xarray object:
        the caller says what it needs); else a shallow copy with the
        quantities replaced (dask stays lazy; a quantity's ``units`` attribute, when it
        already had one of the same units, is kept as spelled).

    Raises
    ------
    UnitsError
        A quantity whose ``units`` attribute names other units (``degC`` data, ``K``
        attribute): which one the values are in is unknown.
    DataError
        An array that is neither numpy nor dask nor a pint quantity of them (cupy, sparse,
        jax, ...): the message says what was found and how to convert it.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from cf_xarray.units import units as ureg
    >>> da = xr.DataArray(ureg.Quantity(np.array([280.0, 281.0]), "kelvin"), dims="x")
    >>> plain = plain_arrays(da, "da")
    >>> type(plain.data).__name__, plain.attrs["units"]
    ('ndarray', 'K')
    """
    if not isinstance(obj, xr.DataArray | xr.Dataset):
        return obj  # the caller's own check names what it is
    if isinstance(obj, xr.DataArray):
        label = name if obj.name is None else f"{name} ({str(obj.name)!r})"
        own = _plain_variable(obj.variable, label, name, name)
        out = _plain_coords(obj, name)
        if own is not None:
            out = out.copy(deep=False, data=own.data)
            out.attrs = own.attrs
        return out
    out = _plain_coords(obj, name)
    new = {
        key: var
        for key, value in obj.data_vars.items()
        if (var := _plain_member(value.variable, name, key, coordinate=False)) is not None
    }
    return out.assign(new) if new else out


def _plain_coords(obj: XarrayT, name: str) -> XarrayT:
    new = {
        key: var
        for key, coord in obj.coords.items()
        if (var := _plain_member(coord.variable, name, key, coordinate=True)) is not None
    }
    return obj.assign_coords(new) if new else obj


def dataset_of(
    da: xr.DataArray, name: Hashable, *, rename_to: str = "t2m", hint: str = ""
) -> xr.Dataset:
    """The input DataArray ``da`` as a Dataset holding it as the data variable ``name``.

    One check for every entry point that takes a DataArray as a variable: a DataArray named
    like one of its coordinates (``ds["latitude"]`` with its coordinates kept) cannot be a
    variable of a Dataset beside that coordinate, and xarray's ``to_dataset`` says so with a
    bare ``ValueError``.

    Parameters
    ----------
    da : xarray.DataArray
        The input.
    name : Hashable
        The variable's name in the Dataset: ``da.name``, or the name an unnamed ``da`` is
        taken as.
    rename_to : str, default "t2m"
        The name the message suggests (the model's variable, where one is known).
    hint : str, default ""
        Words the message ends with (what else the fix needs, e.g. ``" (with no rename=
        for it)"``).

    Returns
    -------
    xarray.Dataset
        ``da.to_dataset(name=name)``.

    Raises
    ------
    DataError
        When ``name`` is the name of one of ``da``'s coordinates.

    Examples
    --------
    >>> da = xr.DataArray([1.0, 2.0], coords={"x": [0, 1]}, name="t2m")
    >>> list(dataset_of(da, da.name).data_vars)
    ['t2m']
    >>> dataset_of(da["x"], "x")
    Traceback (most recent call last):
    ...
    flexdownscale.errors.DataError: the DataArray is named 'x', as one of its coordinates, so ...
    """
    if name in da.coords:
        named = (
            f"is named {str(name)!r}, as one of its coordinates"
            if da.name == name
            else f"has no name, and the name it is taken as, {str(name)!r}, is a coordinate's"
        )
        raise DataError(
            f"the DataArray {named}, so it cannot be a variable of a Dataset. Name it after the "
            f"variable it holds: da.rename({rename_to!r}){hint}"
        )
    return da.to_dataset(name=name)
