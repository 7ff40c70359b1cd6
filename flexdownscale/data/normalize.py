"""Per-variable normalization: statistics fitted with dask, exact inverse, JSON round trip.

A :class:`Normalizer` holds, for every variable, an optional pointwise transform and the mean
and standard deviation of the transformed values over the training data:

    z = (T(x) - mean) / std,        x = T^-1(z * std + mean)

with ``T`` the identity (``"none"``) or ``log1p`` (``"log1p"``, for precipitation-like,
non-negative heavy-tailed variables; its inverse is ``expm1``). Statistics are computed over all
dimensions with NaNs skipped (NaNs are never filled; they stay NaN through the transforms), with
dask when the data are dask-backed, and pooled over several datasets with Chan's formula.
The same statistics apply to xarray objects (:meth:`Normalizer.transform`) and to (..., C, H, W)
numpy arrays or torch tensors (:meth:`Normalizer.transform_array`).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, cast, get_args

import dask
import numpy as np
import torch
import xarray as xr

from .._duck import dataset_of, plain_arrays
from .._stack import user_stacklevel
from ..errors import (
    ConfigError,
    DataError,
    FlexDownscaleWarning,
    GridError,
    MissingVariableError,
    ShapeError,
    UnitsError,
)
from .degrade import _narrowed, _widened
from .grid import XrObj, XrT, _grid_mapping_names, find_axes

__all__ = ["Normalizer", "Transform", "VariableStats", "auto_transform"]

Transform = Literal["none", "log1p"]
Array = TypeVar("Array", np.ndarray, torch.Tensor)

_PRECIP_WORDS = ("precipitation", "rainfall", "snowfall", "rain_rate", "precip")
_PRECIP_NAMES = {"pr", "tp", "prcp", "precip", "precipitation", "rain", "rainfall", "rr"}


def auto_transform(da: xr.DataArray) -> Transform:
    """``"log1p"`` for precipitation-like variables, else ``"none"``.

    A variable is precipitation-like when its ``standard_name`` or ``long_name`` mentions
    precipitation, rainfall or snowfall (not precipitable water), or its name is one of ``pr``,
    ``tp``, ``prcp``, ``precip``, ``precipitation``, ``rain``, ``rainfall``, ``rr``.
    """
    text = " ".join(str(da.attrs.get(k, "")).lower() for k in ("standard_name", "long_name"))
    # precipitable water (a column of vapour, not a rate; e.g. NCEP pr_wtr) is not precipitation
    text = text.replace("precipitable", "")
    if any(word in text for word in _PRECIP_WORDS):
        return "log1p"
    if str(da.name).lower() in _PRECIP_NAMES:
        return "log1p"
    return "none"


#: Attribute of a normalized variable saying how it was normalized (its units are "1").
NORMALIZED_ATTR = "flexdownscale_normalization"


@dataclass(frozen=True)
class VariableStats:
    """Statistics of one variable.

    Attributes
    ----------
    mean : float
        Mean of the transformed values (in the variable's units for ``transform="none"``).
    std : float
        Population standard deviation of the transformed values (finite, positive, above the
        round-off of a constant variable).
    transform : {"none", "log1p"}, default "none"
        Transform applied before the statistics (``log1p`` for positive, skewed variables such
        as precipitation).
    units : str or None, default None
        Units of the variable when fitted: :meth:`Normalizer.transform` takes values in these
        units (compared as units: ``K`` and ``kelvin`` agree) and refuses others, a convertible
        unit (``degC`` for ``K``) with the code that converts it (the ``Downscaler`` converts
        its inputs itself).

    Examples
    --------
    Temperatures of mean 280 K and standard deviation 5 K: a :class:`Normalizer` with these
    statistics maps 275, 280 and 285 K to -1, 0 and 1:

    >>> import numpy as np, xarray as xr
    >>> stats = VariableStats(mean=280.0, std=5.0, units="K")
    >>> stats.describe("t2m")
    '(t2m [K] - 280) / 5'
    >>> ds = xr.Dataset({"t2m": ("x", np.array([275.0, 280, 285]), {"units": "K"})})
    >>> Normalizer({"t2m": stats}).transform(ds)["t2m"].values
    array([-1.,  0.,  1.])
    """

    mean: float
    std: float
    transform: Transform = "none"
    units: str | None = None

    def __post_init__(self) -> None:
        if self.transform not in get_args(Transform):
            raise ConfigError(
                f"transform={self.transform!r} is not a valid option; expected one of "
                f"{', '.join(repr(o) for o in get_args(Transform))}"
            )
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise DataError(
                f"statistics mean={self.mean}, std={self.std} are unusable; expected a finite mean "
                f"and a positive finite std (is the variable constant or all NaN?)"
            )
        if _round_off_only(self.mean, self.std):
            raise DataError(
                f"statistics mean={self.mean}, std={self.std} are unusable: a std this small "
                f"next to the mean (at most {_CONSTANT_RTOL:g} |mean|) is the round-off of a "
                f"constant variable, and any other value would normalize to about "
                f"{1 / _CONSTANT_RTOL:.0e}; expected a std above {_CONSTANT_RTOL:g} |mean| "
                f"(is the variable constant?)"
            )

    def describe(self, name: str) -> str:
        """The normalization in words: ``"(log1p(tp [m]) - 0.0012) / 0.0031"``.

        Parameters
        ----------
        name : str
            The variable's name, as it should appear in the text.

        Returns
        -------
        str
            The formula, with the units when known.
        """
        x = f"{name} [{self.units}]" if self.units else name
        if self.transform == "log1p":
            x = f"log1p({x})"
        return f"({x} - {self.mean:.6g}) / {self.std:.6g}"


#: A standard deviation at most this fraction of ``|mean|`` is round-off, not variation: the
#: variance of a constant field of value ``c`` computes to ``(eps c)**2`` or so (``c = 280.1``
#: gives ``std = 5.7e-14``), and such a "std" would blow a later value up by ``1e12`` or more.
_CONSTANT_RTOL = 1e-12


def _round_off_only(mean: float, std: float) -> bool:
    """Whether ``std`` is no more than the round-off a constant field of value ``mean`` leaves."""
    return std <= _CONSTANT_RTOL * abs(mean)


#: Below this scale (the fitted ``mean + 3 std`` of a variable's ``log1p`` values, which covers
#: all but its rarest values) ``log1p`` is nearly the identity: ``log1p(x) = x - x**2 / 2 + ...``
#: differs from ``x`` by less than ``x / 2`` relative, so by under 2.5 % on values up to 0.05. That
#: is precipitation in m (ERA5's ``tp``) or kg m-2 s-1 (CMIP's ``pr``), where log1p leaves the
#: skewed field as it is (normalized skewness 6.6 for hourly totals in m, against 2.7 for the same
#: totals in mm); in mm, mm/h or mm/day the bulk of wet values lies where log1p bends.
LOG1P_SMALL_SCALE = 0.05
#: ... and only when the largest value is below this too: precipitation in m or kg m-2 s-1 stays
#: far below 1 (1 m of rain in an hour, 3600 mm/h), while a dry hour of correct mm data fits
#: below the scale above with a shower of a few mm in it (radar, 21:00-21:50 on 2020-10-31:
#: largest 7.9 kg m-2, mean + 3 std of log1p 0.0498)
LOG1P_SMALL_LARGEST = 1.0
#: Units of which one is at most this many mm (amounts, kg m-2 as water) or mm h-1 (rates) are
#: the units log1p expects (mm, kg m-2, mm h-1, mm/day, cm): small values in them are dry
#: weather, not a unit to convert, and get no warning.
_MM_SIZED = 100.0


def _mm_per_unit(units: Any) -> float | None:
    """How many mm (an amount) or mm h-1 (a rate) of liquid water one ``units`` is: 1 for
    ``mm`` and ``kg m-2``, 1000 for ``m``, 3600 for ``kg m-2 s-1``; ``None`` for units that are
    no precipitation amount or rate (or none, or text that is no unit)."""
    from ..units import linear_conversion, water_equivalent

    if units is None or not str(units).strip():
        return None
    for target in ("mm", "mm h-1"):
        conversion = linear_conversion(str(units), target)
        if conversion is not None and conversion[1] == 0:
            return conversion[0]
        scale = water_equivalent(str(units), target)
        if scale is not None:
            return scale
    return None


def _too_small_for_log1p(units: Any, mean: float, std: float, highest: float) -> bool:
    """Whether a log1p variable's values look like precipitation in m or kg m-2 s-1, where
    log1p is nearly the identity: the fitted ``mean + 3 std`` of the log1p values below
    :data:`LOG1P_SMALL_SCALE` and the largest value below :data:`LOG1P_SMALL_LARGEST`, unless
    the units are mm-sized (mm, kg m-2, mm h-1, mm/day: a dry period, not a unit to convert)."""
    if not (mean + 3 * std < LOG1P_SMALL_SCALE and highest < LOG1P_SMALL_LARGEST):
        return False
    scale = _mm_per_unit(units)
    return scale is None or scale >= _MM_SIZED


def _no_log1p_hint(name: str, in_config: bool) -> str:
    """How to normalize ``name`` without log1p: the run's TOML key for a dataset built from a
    :class:`~flexdownscale.config.DataConfig`, else the keyword of :meth:`Normalizer.fit`."""
    if in_config:
        return (
            f'data.transforms = {{{name} = "none"}} in the run\'s TOML '
            f"(DataConfig(transforms={{{name!r}: 'none'}}) in Python)"
        )
    return f"transforms={{{name!r}: 'none'}}"


#: Numbers that files write for "no value" without declaring them (no ``_FillValue``): -9999,
#: -999, the int16 fills -32767 and -32768, netCDF's default fill of floats and doubles
#: (9.96921e36) and the 1e20 / 1e30 of climate models. With the float32 spelling of each.
FILL_NUMBERS = tuple(
    sorted(
        {
            float(t(v))
            for v in (-9999.0, -999.0, -32767.0, -32768.0, 9.969209968386869e36, 1e20, 1e30)
            for t in (np.float64, np.float32)
        }
    )
)
#: Values at least this large (in absolute value) are taken for fill values too: no field the
#: package downscales has them (a column of ozone in molecules cm-2 stays near 1e19).
HUGE_VALUE = 1e20
#: The fill numbers below :data:`HUGE_VALUE` in size (the others are caught by their size):
#: the fit counts them, with the huge and infinite values, in its one pass over the data, and
#: looks closer (a second pass) only where it found some.
_SMALL_FILLS = tuple(v for v in FILL_NUMBERS if abs(v) < HUGE_VALUE)
#: A fill-like value lies further than this many standard deviations of the other values from
#: their mean (ERA5 t2m: -9999 is 2000 of them away, -999 some 250).
FAR_SIGMAS = 20.0
#: A value repeated in the same cells needs at least this many fields to count as a mask.
MASK_FIELDS = 10
#: Warn when one value carries more than this share of a variable's variance (the ambiguous
#: case: a glitch or a fill value of a number of its own, or a real extreme) ...
DOMINANT_SHARE = 0.25
#: ... in data of at least this many values (a few values may share the variance naturally) ...
DOMINANT_MIN_VALUES = 1000
#: ... when the value is fill-like, or lies beyond the next value by more than this many times
#: the range of the other values (a -8888 among temperatures of 260-290 K: 300 times; the
#: largest rain rate of a few wet pixels in a dry window lies within their range).
DOMINANT_GAP = 2.0
#: A single field (no sample dims) of at most this many values is kept whole by the fit's
#: reductions, as its own lowest and highest per cell, for that comparison.
_ONE_FIELD_VALUES = 2**22


def _fill_like(x: xr.DataArray) -> xr.DataArray:
    """Where ``x`` is finite and one of :data:`FILL_NUMBERS` or at least :data:`HUGE_VALUE`."""
    finite = np.isfinite(x)
    return finite & (x.isin(FILL_NUMBERS) | (abs(x) >= HUGE_VALUE))


def _fill_like_values(values: np.ndarray) -> np.ndarray:
    """:func:`_fill_like` of a numpy array."""
    values = np.asarray(values, float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (np.isin(values, FILL_NUMBERS) | (abs(values) >= HUGE_VALUE))


def _fill_fix(name: str, low: float, high: float) -> str:
    """Code that marks the fill values ``low`` .. ``high`` of ``name`` missing."""
    v = f"ds[{name!r}]"
    if low == high:
        return f"{v} = {v}.where({v} != {_written(low)})"
    if min(abs(low), abs(high)) >= HUGE_VALUE:
        return f"{v} = {v}.where(abs({v}) < {HUGE_VALUE:g})"
    pair = f"[{_written(low)}, {_written(high)}]"
    return f"{v} = {v}.where(~{v}.isin({pair}) & (abs({v}) < {HUGE_VALUE:g}))"


def _written(value: float) -> str:
    """``value`` as short as it can be written and still compare equal to it, in float64 or
    (the spelling of a float32 fill such as 1e30) in float32: ``-9999``, ``1e+30``."""
    for digits in range(1, 18):
        text = f"{value:.{digits}g}"
        if float(text) == value or float(np.float32(float(text))) == value:
            return text
    return repr(value)


def _fill_advice(name: str, low: float, high: float) -> str:
    """How to mark undeclared fill values missing (they become NaN, refused or dropped as
    ``nan_fields`` says): in the data, or (one fill value) declared in a file written anew."""
    advice = (
        f"Mark them missing before training: {_fill_fix(name, low, high)} (they become NaN, "
        "refused or left out as data.nan_fields says)"
    )
    if low != high:
        return advice
    # xarray refuses a _FillValue attribute on a variable read from a file it wrote ("Key
    # '_FillValue' already exists in attrs"): the encoding declares it
    value = _written(low)
    return (
        f"{advice}, or declare it in a copy of the file: "
        f"ds.to_netcdf(new_path, encoding={{{name!r}: {{'_FillValue': {value}}}}}), and open "
        "that one"
    )


def _inf_advice(name: str) -> str:
    """How to turn ``name``'s infinite values into NaN."""
    return (
        f"replace them: ds[{name!r}] = ds[{name!r}].where(np.isfinite(ds[{name!r}])) (they "
        "become NaN, refused or left out as data.nan_fields says), or fix the data's source"
    )


def far_fills(values: np.ndarray, stats: VariableStats) -> np.ndarray:
    """Where ``values`` are fill values (:data:`FILL_NUMBERS` or at least :data:`HUGE_VALUE` in
    size) that ``stats`` would normalize to more than :data:`FAR_SIGMAS` (or that its transform
    cannot take): the array form of :func:`_far` and :func:`_fill_like_values` together.

    Parameters
    ----------
    values : numpy.ndarray
        Values in the variable's own units.
    stats : VariableStats
        The statistics they would be normalized with.

    Returns
    -------
    numpy.ndarray
        A boolean array of the shape of ``values``.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # log1p(-1) = -inf
        z = (np.asarray(_forward(values, stats.transform), float) - stats.mean) / stats.std
        return _fill_like_values(values) & ~(np.abs(z) <= FAR_SIGMAS)


def _far(value: float, mean: float, std: float) -> bool:
    """Whether ``value`` lies more than :data:`FAR_SIGMAS` ``std`` from ``mean``."""
    if not math.isfinite(value):
        return True
    return abs(value - mean) > FAR_SIGMAS * std if std > 0 else value != mean


def _cells_text(cells: np.ndarray, coords: tuple[Any, Any] | None) -> str:
    """Where the True cells of a (y, x) mask lie: their coordinates, else rows and columns."""
    rows, cols = np.nonzero(cells)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())

    def span(word: str, a: int, b: int) -> str:
        return f"{word} {a}" if a == b else f"{word}s {a}-{b}"

    if coords is None:
        return f"{span('row', r0, r1)}, {span('column', c0, c1)}"
    (ydim, ys), (xdim, xs) = coords

    def at(dim: str, values: np.ndarray, a: int, b: int) -> str:
        if a == b:
            return f"{dim} {float(values[a]):g}"
        return f"{dim} {float(values[a]):g} to {float(values[b]):g}"

    return f"{at(ydim, ys, r0, r1)}, {at(xdim, xs, c0, c1)}"


def _forward(x: Any, transform: str) -> Any:
    if transform == "log1p":
        return torch.log1p(x) if isinstance(x, torch.Tensor) else np.log1p(x)
    return x


def _backward(x: Any, transform: str) -> Any:
    if transform == "log1p":
        return torch.expm1(x) if isinstance(x, torch.Tensor) else np.expm1(x)
    return x


class Normalizer:
    """Per-variable normalization with an exact inverse.

    Parameters
    ----------
    stats
        Mapping variable name -> :class:`VariableStats`, in channel order.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"t2m": (("y", "x"), np.arange(6.0).reshape(2, 3))})
    >>> norm = Normalizer.fit(ds)
    >>> z = norm.transform(ds)
    >>> bool(abs(z.t2m.mean()) < 1e-12), float(z.t2m.std())
    (True, 1.0)
    >>> bool(np.allclose(norm.inverse_transform(z).t2m, ds.t2m))
    True
    """

    format_version: ClassVar[int] = 1

    def __init__(self, stats: Mapping[str, VariableStats]) -> None:
        if not stats:
            raise DataError(
                f"a Normalizer needs statistics for at least one variable, got {stats!r}; fit "
                "them with Normalizer.fit(ds, variables=['t2m']), give them as "
                "Normalizer({'t2m': VariableStats(mean=280.0, std=10.0, units='K')}), or read "
                "a model folder's with Normalizer.from_json(folder / 'normalization.json')"
            )
        self.stats: dict[str, VariableStats] = {str(k): v for k, v in stats.items()}

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}: {v.transform} mean={v.mean:.4g} std={v.std:.4g}" for k, v in self.stats.items()
        )
        return f"Normalizer({inner})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Normalizer) and self.stats == other.stats

    __hash__ = None  # type: ignore[assignment]

    @property
    def variables(self) -> tuple[str, ...]:
        """Variable names in channel order."""
        return tuple(self.stats)

    # -- fitting ------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        data: XrObj | Sequence[XrObj],
        *,
        variables: Sequence[str] | None = None,
        transforms: Mapping[str, Transform] | Literal["auto"] = "auto",
    ) -> Normalizer:
        """Fit statistics over every dimension of one or several datasets.

        Parameters
        ----------
        data
            Dataset, DataArray (named) or a sequence of them (statistics are pooled). Dask-backed
            data are reduced with dask in one pass per dataset.
        variables
            Variables to fit. Default: the numeric data variables that have both horizontal grid
            dimensions, in order; grid-mapping variables (``rotated_pole``, ``crs``), CF bounds
            (``lat_bnds``) and scalars are left out. When no grid is found, every numeric data
            variable with at least one dimension that is not a bounds or grid-mapping variable.
        transforms
            ``"auto"`` (``log1p`` for precipitation-like variables, see :func:`auto_transform`)
            or a mapping name -> ``"none"`` / ``"log1p"`` (unlisted variables get ``"none"``;
            a name that is not among the variables fitted is refused). ``log1p`` expects
            amounts in mm (kg m-2) or rates in mm/h or mm/day: on values in m or kg m-2 s-1
            it is nearly the identity, and a :class:`~flexdownscale.errors.FlexDownscaleWarning`
            says so.

        Returns
        -------
        Normalizer
            The fitted normalizer.

        Raises
        ------
        ConfigError
            When ``transforms`` is neither ``"auto"`` nor a mapping, gives a transform other
            than ``"none"`` / ``"log1p"``, or names a variable that is not fitted.
        MissingVariableError
            When a requested variable is absent from a dataset.
        DataError
            When a variable is constant or all NaN, or has values <= -1 under ``log1p``,
            infinite values or fill values its file does not declare (-9999, 1e30, ... far
            from its other values; a value held in fixed cells that is such a number or one
            its units rule out, 0 K).

        Warns
        -----
        FlexDownscaleWarning
            When one value held in fixed cells at every field (10 or more) lies far from the
            other values: a mask written as a number, or a real value (open water at 0 in a
            sea-ice concentration); the warning says how to mark it missing, or to silence it.
            When one value carries over a quarter of the variance and lies far beyond the
            others (a glitch?).
            When a ``log1p`` variable's values are so small that ``log1p`` is nearly the
            identity on them (the fitted ``mean + 3 std`` of its log1p values below 0.05 and its
            largest value below 1), unless its ``units`` are ones log1p expects (mm, kg m-2,
            mm h-1, mm/day, ...: small values in them are a dry period, not a unit to convert).
        """
        plan = _FitPlan(data, variables=variables, transforms=transforms)
        (computed,) = dask.compute(plan.lazy)
        return cls(plan.finish(computed))

    # -- xarray -------------------------------------------------------------------------------

    def _apply_xr(self, obj: XrObj, forward: bool, variables: Sequence[str] | None) -> XrObj:
        if isinstance(obj, xr.DataArray | xr.Dataset):  # pint quantities: magnitudes + units
            obj = plain_arrays(obj, "the data")

        def one(da: xr.DataArray, name: str) -> xr.DataArray:
            s = self.stats[name]
            _check_input(da, name, s, forward)
            with xr.set_options(keep_attrs=True):
                if forward:
                    out = (_forward(da, s.transform) - s.mean) / s.std
                    # normalized values are numbers, not kelvins: say so, and how they were made
                    out.attrs["units"] = "1"
                    out.attrs[NORMALIZED_ATTR] = s.describe(name)
                    return out
                out = _backward(da * s.std + s.mean, s.transform)
                out.attrs.pop(NORMALIZED_ATTR, None)
                if s.units is not None:
                    out.attrs["units"] = s.units
                elif out.attrs.get("units") == "1":
                    del out.attrs["units"]  # the fitted data had none
                return out

        if isinstance(obj, xr.DataArray):
            name = variables[0] if variables else obj.name
            if name not in self.stats:
                raise MissingVariableError(
                    f"DataArray {obj.name!r} has no statistics; the normalizer knows "
                    f"{list(self.stats)}. Name it (da.rename('t2m')) or pass variables=['t2m']"
                )
            return one(obj, str(name))
        names = list(variables) if variables is not None else list(self.stats)
        missing = [n for n in names if n not in obj.data_vars]
        if missing:
            raise MissingVariableError(
                f"variables {missing} are missing from the dataset; the normalizer needs "
                f"{names}; the dataset has {sorted(map(str, obj.data_vars))}"
            )
        for n in names:
            if n not in self.stats:
                raise MissingVariableError(f"no statistics for {n!r}; known: {list(self.stats)}")
        return obj.assign({n: one(obj[n], n) for n in names})

    def transform(self, obj: XrT, *, variables: Sequence[str] | None = None) -> XrT:
        """Normalize the variables of ``obj`` (others pass through). Lazy for dask data.

        The normalized variables have ``units = "1"`` and a ``flexdownscale_normalization``
        attribute saying how they were made (e.g. ``"(t2m [K] - 279.2) / 3.41"``);
        :meth:`inverse_transform` puts the fitted units back and drops it.

        Parameters
        ----------
        obj : xarray.Dataset or xarray.DataArray
            Data in physical units (a DataArray is taken as the variable it is named after).
        variables : sequence of str, optional
            Variables to normalize; default None: every variable of the normalizer.

        Returns
        -------
        xarray.Dataset or xarray.DataArray
            Like ``obj``, with the variables normalized (``units = "1"``).

        Raises
        ------
        MissingVariableError
            When a variable the normalizer needs is absent.
        UnitsError
            When a variable's ``units`` are other than those the statistics were fitted in
            (``degC`` for statistics in ``K``: the error gives the conversion); a variable
            without a ``units`` attribute is taken as it is.
        DataError
            When a variable is normalized already (it has the ``flexdownscale_normalization``
            attribute).
        """
        return cast(XrT, self._apply_xr(obj, True, variables))  # obj's type

    def inverse_transform(self, obj: XrT, *, variables: Sequence[str] | None = None) -> XrT:
        """Exact inverse of :meth:`transform` (no clipping: see :meth:`lower_bounds`).

        Parameters
        ----------
        obj : xarray.Dataset or xarray.DataArray
            Normalized data, as :meth:`transform` gives it.
        variables : sequence of str, optional
            Variables to bring back; default None: every variable of the normalizer.

        Returns
        -------
        xarray.Dataset or xarray.DataArray
            Like ``obj``, with the variables in their fitted physical units.

        Raises
        ------
        MissingVariableError
            When a variable the normalizer needs is absent.
        DataError
            When a variable is in physical units (a ``units`` attribute other than ``"1"``
            and no ``flexdownscale_normalization`` attribute: it is not normalized), or was
            normalized with other statistics.
        """
        return cast(XrT, self._apply_xr(obj, False, variables))  # obj's type

    # -- arrays -------------------------------------------------------------------------------

    def _apply_array(
        self, x: Array, forward: bool, variables: Sequence[str] | None, channel_axis: int
    ) -> Array:
        names = list(variables) if variables is not None else list(self.stats)
        for n in names:
            if n not in self.stats:
                raise MissingVariableError(f"no statistics for {n!r}; known: {list(self.stats)}")
        axis = channel_axis % x.ndim
        if x.shape[axis] != len(names):
            raise ShapeError(
                f"array has {x.shape[axis]} channels on axis {channel_axis}; expected "
                f"{len(names)} ({names})"
            )
        # float16 / bfloat16 are computed in float32 and rounded back once, as degrade_array
        # does: in bfloat16 a mean of 280.3 is 280 (z off by 0.3 / std), and x - mean cancels
        wide, narrow = _widened(x)
        if not forward:
            # physical values stay in float32: float16 overflows at 65504 (a pressure of 1e5 Pa
            # came back inf) and bfloat16 steps by 512 there
            narrow = None
        chans = []
        for i, name in enumerate(names):
            s = self.stats[name]
            c = wide.select(axis, i) if isinstance(wide, torch.Tensor) else np.take(wide, i, axis)
            if forward:
                c = (_forward(c, s.transform) - s.mean) / s.std
            else:
                c = _backward(c * s.std + s.mean, s.transform)
            chans.append(c)
        if isinstance(x, torch.Tensor):
            return _narrowed(torch.stack(chans, dim=axis), narrow)
        out = np.stack(chans, axis=axis)
        if np.issubdtype(x.dtype, np.floating):
            out = out.astype(x.dtype if forward else wide.dtype, copy=False)
        return out

    def lower_bounds(self, variables: Sequence[str] | None = None) -> np.ndarray:
        """``(C,)`` the lowest physical value of each variable: 0 for a variable normalized
        with ``log1p`` (precipitation-like: non-negative, though the inverse ``expm1`` of a
        generated value reaches down to -1), ``-inf`` for the others. Generated fields are
        clipped there (:class:`~flexdownscale.pipeline.Downscaler`); pass them through
        :meth:`transform_array` for the bounds in normalized units.

        Parameters
        ----------
        variables : sequence of str, optional
            Variables, in channel order; default None: every variable of the normalizer.

        Returns
        -------
        numpy.ndarray
            Shape ``(C,)``: 0.0 or ``-inf`` per variable.
        """
        names = list(variables) if variables is not None else list(self.stats)
        return np.array([0.0 if self.stats[n].transform == "log1p" else -np.inf for n in names])

    def transform_array(
        self, x: Array, *, variables: Sequence[str] | None = None, channel_axis: int = -3
    ) -> Array:
        """Normalize a (..., C, H, W) numpy array or torch tensor (channels = ``variables``).

        Parameters
        ----------
        x : numpy.ndarray or torch.Tensor
            Array whose axis ``channel_axis`` holds the variables in the order of ``variables``
            (default: :attr:`variables`).
        variables : sequence of str, optional
            Channel names; default None: every variable of the normalizer.
        channel_axis : int, default -3
            Axis of the channels.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Same type and shape as ``x``, normalized; floating input keeps its dtype (and a
            tensor its device). Half precision (float16, bfloat16) is computed in float32 and
            rounded to the input's dtype once at the end, as
            :func:`~flexdownscale.data.degrade_array` does; integer input comes back in
            float64 (numpy) or the default torch dtype.
        """
        return self._apply_array(x, True, variables, channel_axis)

    def inverse_transform_array(
        self, x: Array, *, variables: Sequence[str] | None = None, channel_axis: int = -3
    ) -> Array:
        """Exact inverse of :meth:`transform_array`: no clipping, so a generated ``log1p``
        variable can come back below 0 (down to -1); clip at :meth:`lower_bounds` for
        physical values, as the Downscaler does.

        Parameters
        ----------
        x : numpy.ndarray or torch.Tensor
            Normalized array whose axis ``channel_axis`` holds the variables.
        variables : sequence of str, optional
            Channel names; default None: every variable of the normalizer.
        channel_axis : int, default -3
            Axis of the channels.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Same type and shape as ``x``, in physical units, with the dtype rules of
            :meth:`transform_array` except half precision: float16 and bfloat16 input is
            computed in float32 and returned in float32 (physical values overflow float16
            beyond 65504, and bfloat16 steps by 512 near 1e5).
        """
        return self._apply_array(x, False, variables, channel_axis)

    # -- serialization ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (variables as an ordered list, so key sorting keeps the order).

        Returns
        -------
        dict
            ``{"format_version": 1, "variables": [{"name", "transform", "mean", "std",
            "units"}, ...]}``.
        """
        return {
            "format_version": self.format_version,
            "variables": [
                {
                    "name": name,
                    "transform": s.transform,
                    "mean": s.mean,
                    "std": s.std,
                    "units": s.units,
                }
                for name, s in self.stats.items()
            ],
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Normalizer:
        """Inverse of :meth:`to_dict`.

        Parameters
        ----------
        values : mapping
            A dict as :meth:`to_dict` writes it (``format_version`` 1).

        Returns
        -------
        Normalizer
            The normalizer the dict describes, ready to transform.

        Raises
        ------
        DataError
            For another format version or malformed entries.
        """
        version = values.get("format_version")
        if version != cls.format_version:
            raise DataError(
                f"normalization statistics have format_version {version!r}; expected "
                f"{cls.format_version}"
            )
        try:
            items = values["variables"]
            stats = {
                str(v["name"]): VariableStats(
                    mean=float(v["mean"]),
                    std=float(v["std"]),
                    transform=v.get("transform", "none"),
                    units=v.get("units"),
                )
                for v in items
            }
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"malformed normalization statistics ({type(err).__name__}: {err}); expected "
                f"{{'format_version': 1, 'variables': [{{'name', 'mean', 'std', 'transform'}}]}}"
            ) from err
        return cls(stats)

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of :meth:`to_dict` (floats round-trip exactly); written to ``path`` if given.

        Parameters
        ----------
        path : str or pathlib.Path, optional
            File to write the text to (UTF-8); default None: nothing is written.

        Returns
        -------
        str
            The JSON text.
        """
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> Normalizer:
        """Read from JSON text or a path to a JSON file.

        Parameters
        ----------
        source : str or pathlib.Path
            JSON text (a string starting with ``{``) or the path of a file holding it.

        Returns
        -------
        Normalizer
            The normalizer the JSON describes (as :meth:`from_dict`).
        """
        text = str(source)
        if isinstance(source, Path) or not text.lstrip().startswith("{"):
            text = Path(source).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))


class _FitPlan:
    """The reductions of :meth:`Normalizer.fit`, built lazily, and how they become statistics.

    Split from :meth:`Normalizer.fit` so that a caller can compute them in one pass together with
    reductions of its own over the same data (the training datasets check for NaN there).
    ``grids``: the (y, x) grid dims of each dataset (default: found from its coordinates, else
    a variable's last two dims), over which the screen for fill values counts cells;
    ``scope``: where the data come from, for the messages (``" in the train split"``).

    Besides the statistics, the same pass screens each variable for values that would make
    them meaningless: infinite values, and fill values the file does not declare (a number of
    :data:`FILL_NUMBERS` or one of at least :data:`HUGE_VALUE`, further than
    :data:`FAR_SIGMAS` standard deviations from the other values) are refused; it counts them,
    and a second pass finds them where there are some. One value held in the same cells at
    every one of at least :data:`MASK_FIELDS` fields as far from the rest (a mask written as a
    number) is refused when it is a fill number or one its units rule out (0 K), and warned
    about otherwise (it may be real: open water in a sea-ice concentration). One value
    carrying more than :data:`DOMINANT_SHARE` of the variance is warned about when it is
    fill-like or far beyond the others (:data:`DOMINANT_GAP`).
    """

    def __init__(
        self,
        data: XrObj | Sequence[XrObj],
        *,
        variables: Sequence[str] | None,
        transforms: Mapping[str, Transform] | Literal["auto"],
        in_config: bool = False,
        grids: Sequence[tuple[str, str] | None] | None = None,
        scope: str = "",
    ) -> None:
        datasets = [data] if isinstance(data, xr.Dataset | xr.DataArray) else list(data)
        if not datasets:
            raise DataError(
                f"Normalizer.fit got no data: an empty {type(data).__name__}; pass a Dataset or "
                "DataArray, or a non-empty list of them (e.g. one per file: "
                "Normalizer.fit([xr.open_dataset(p) for p in paths]))"
            )
        datasets = [_as_dataset(d) for d in datasets]
        names = list(variables) if variables is not None else _default_variables(datasets[0])
        if not names:
            raise DataError(
                f"Normalizer.fit found no data variables to fit among "
                f"{sorted(map(str, datasets[0].data_vars))}; by default only numeric variables "
                f"on the horizontal grid are fitted. Name them with variables=[...]"
            )
        #: messages name the run's ``data.transforms`` (a dataset built from a DataConfig)
        self.in_config = in_config
        self.transforms = _chosen_transforms(datasets[0], names, transforms, in_config)
        for name in names:
            for ds in datasets:
                if name not in ds.data_vars:
                    raise MissingVariableError(
                        f"variable {name!r} is not in the dataset; available: "
                        f"{sorted(map(str, ds.data_vars))}"
                    )
        chosen = self.transforms
        self.scope = scope
        lazy = []
        #: per dataset and variable: the float64 values and their (y, x) grid dims (None when
        #: unknown), for the second pass of the screen (:func:`_screen`), and how many fields
        self.values: list[dict[str, tuple[xr.DataArray, tuple[str, str] | None]]] = []
        self.fields: list[dict[str, int]] = []
        #: per dataset: the (y, x) coordinates of the grid, for the messages
        self.coords: list[tuple[Any, Any] | None] = []
        for k, ds in enumerate(datasets):
            per = {}
            grid = grids[k] if grids is not None else _grid_dims_of(ds)
            self.coords.append(_grid_coords(ds, grid))
            self.values.append({})
            self.fields.append({})
            for name in names:
                x = ds[name]
                if not np.issubdtype(x.dtype, np.number):
                    raise DataError(f"variable {name!r} has dtype {x.dtype}; expected numbers")
                x = x.astype(np.float64)
                # values outside the transform's domain are reported below, not warned about here
                t = _forward(x.where(x > -1) if chosen[name] == "log1p" else x, chosen[name])
                here = grid if grid is not None and all(d in x.dims for d in grid) else None
                if here is None and x.ndim >= 3:
                    here = (str(x.dims[-2]), str(x.dims[-1]))
                sample = [d for d in x.dims if here is not None and d not in here]
                self.values[-1][name] = (x, here)
                self.fields[-1][name] = int(np.prod([x.sizes[d] for d in sample]))

                # count, lowest and highest per cell (over the fields): the screen for a value
                # held in the same cells reads them, and their totals are the variable's; the
                # warning about one value carrying the variance compares it with the next
                if sample:
                    count, low, high = (
                        _arranged(r, here) for r in (x.count(sample), x.min(sample), x.max(sample))
                    )
                elif here is not None and x.size <= _ONE_FIELD_VALUES:
                    count, low, high = _arranged(x.notnull(), here), _arranged(x, here), None
                else:
                    count, low, high = x.count(), x.min(skipna=True), x.max(skipna=True)
                # infinite and fill-like values (a second pass looks closer where there are)
                suspect = ((abs(x) >= HUGE_VALUE) | x.isin(_SMALL_FILLS)).sum()
                # inf - inf in the variance of data holding inf: numpy's "invalid value"
                # RuntimeWarning came ahead of the DataError that names those values
                with np.errstate(invalid="ignore", over="ignore"):
                    moments = (t.mean(skipna=True), t.var(skipna=True))
                per[name] = (count, low, *moments, low if high is None else high, suspect)
            lazy.append(per)
        self.names = names
        self.lazy = lazy
        self.units = {name: datasets[0][name].attrs.get("units") for name in names}

    def finish(self, computed: Sequence[Mapping[str, Any]]) -> dict[str, VariableStats]:
        """The statistics from the computed reductions (pooled over the datasets)."""
        chosen = self.transforms
        stats = {}
        for name in self.names:
            parts = [per[name] for per in computed if float(np.sum(per[name][0])) != 0]
            n_tot, mean_tot, m2_tot = _pooled([(np.sum(p[0]), p[2], p[3]) for p in parts])
            lowest = min((math.inf, *(float(np.nanmin(p[1])) for p in parts)))
            highest = max((-math.inf, *(float(np.nanmax(p[4])) for p in parts)))
            if n_tot == 0:
                raise DataError(
                    f"variable {name!r} is all NaN{self.scope}; cannot fit statistics"
                    + (
                        " on it: choose a train split where it has values, or leave it out of "
                        "the variables"
                        if self.scope
                        else ""
                    )
                )
            if sum(int(per[name][5]) for per in computed):
                # infinite or fill-like values are there: look closer (a second pass)
                (screens,) = dask.compute([_screen(*per[name]) for per in self.values])
                self._screen_values(name, screens)
            if chosen[name] == "log1p" and lowest <= -1:
                raise DataError(
                    f"variable {name!r} has values down to {lowest:g}; log1p needs values > -1. "
                    f"Clean the data (precipitation is not negative: e.g. "
                    f"ds[{name!r}].clip(min=0)), or normalize it without log1p: "
                    f"{_no_log1p_hint(name, self.in_config)}"
                )
            for k, per in enumerate(computed):
                self._screen_mask(name, k, per[name], (n_tot, mean_tot, m2_tot))
            std = math.sqrt(m2_tot / n_tot)
            if not std > 0:
                raise DataError(
                    f"variable {name!r} is constant (std 0); it cannot be normalized. Drop it from "
                    f"the variables"
                )
            if _round_off_only(mean_tot, std):
                # a constant 0.1 or 280.1 leaves a std of 1e-17 or 6e-14 from round-off
                raise DataError(
                    f"variable {name!r} is constant (std {std:.3g} around a mean of "
                    f"{mean_tot:.10g} is round-off, at most {_CONSTANT_RTOL:g} |mean|); it cannot "
                    f"be normalized. Drop it from the variables"
                )
            units = self.units[name]
            self._warn_dominant(
                name, [per[name] for per in computed], (n_tot, mean_tot, std), lowest, highest
            )
            if chosen[name] == "log1p" and _too_small_for_log1p(units, mean_tot, std, highest):
                self._warn_small(name, units, mean_tot, std, highest)
            stats[name] = VariableStats(
                mean=mean_tot,
                std=std,
                transform=chosen[name],
                units=None if units is None else str(units),
            )
        return stats

    def _screen_values(self, name: str, screens: Sequence[Mapping[str, Any]]) -> None:
        """Refuse infinite values and undeclared fill values of ``name`` (the screen's
        reductions of each dataset, see :func:`_screen`)."""
        infs = sum(int(sc["inf"]) for sc in screens)
        if infs:
            raise DataError(
                f"variable {name!r} holds {infs} infinite value{'s' if infs != 1 else ''} "
                f"(+inf or -inf){self.scope}; they cannot be normalized (its mean and std would "
                f"be infinite or NaN): {_inf_advice(name)}"
            )
        n, mean, m2 = _pooled([sc["clean"] for sc in screens])
        fills = sum(int(sc["fill"]) for sc in screens)
        if n == 0 or not fills:
            return  # no fill-like values, or nothing else to compare them with
        std = math.sqrt(m2 / n)
        low = min(float(sc["fill_low"]) for sc in screens)
        high = max(float(sc["fill_high"]) for sc in screens)
        if _far(low, mean, std) or _far(high, mean, std):
            k = next(k for k, sc in enumerate(screens) if int(sc["fill"]))
            where = ""
            if "cell_fill" in screens[k]:
                where = self._where(name, k, np.asarray(screens[k]["cell_fill"]))
            value = f"{low:g}" if low == high else f"values from {low:g} to {high:g}"
            away = max(abs(low - mean), abs(high - mean))
            self._refuse_fill(name, value, fills, where, (mean, std, away), low, high)

    def _screen_mask(
        self, name: str, k: int, cells: Sequence[Any], moments: tuple[float, float, float]
    ) -> None:
        """Screen for one value held in the same cells at every field of dataset ``k`` (at
        least :data:`MASK_FIELDS` of them) far from the other values (as transformed:
        ``moments`` are the count, mean and summed squared deviations of all of them): a mask
        written as a number. Refused when the value is a fill number (:func:`_fill_like`) or
        one the variable's units rule out (0 K); any other value may be real (open water at 0
        in a sea-ice concentration) and is warned about. ``cells``: the dataset's count,
        lowest, -, -, highest per cell."""
        fields = self.fields[k][name]
        lo, hi = np.asarray(cells[1]), np.asarray(cells[4])
        if fields < MASK_FIELDS or lo.ndim != 2:
            return
        held = (np.asarray(cells[0]) == fields) & (lo == hi)
        if not held.any():
            return
        values = np.asarray(_forward(lo[held], self.transforms[name]), float)
        n, mean, m2 = moments
        n1 = fields * values.size
        m1 = float(values.mean())
        rest = n - n1
        if rest < 0.1 * n:  # hardly anything else: a static field, not a mask
            return
        rest_mean = (n * mean - n1 * m1) / rest
        rest_m2 = m2 - fields * float(((values - m1) ** 2).sum())
        rest_m2 -= (rest_mean - m1) ** 2 * n1 * rest / n
        rest_std = math.sqrt(max(rest_m2, 0.0) / rest)
        far = [v for v in np.unique(values) if _far(float(v), rest_mean, rest_std)]
        if not far:
            return
        chosen = max(far, key=lambda v: int((values == v).sum()))
        value = float(lo[held][values == chosen][0])  # as the data hold it
        where = self._where(name, k, np.where(held & (lo == value), fields, 0))
        space = " (their log1p)" if self.transforms[name] == "log1p" else ""
        count = int((held & (lo == value)).sum()) * fields
        away = abs(float(chosen) - rest_mean)
        others = (rest_mean, rest_std, away)
        impossible = _impossible(value, self.units[name])
        if bool(_fill_like_values(np.array([value]))[0]) or impossible:
            self._refuse_fill(
                name, f"{value:g}", count, where, others, value, value, space, impossible
            )
        self._warn_mask(name, value, count, where, others, space)

    def _warn_mask(
        self,
        name: str,
        value: float,
        count: int,
        where: str,
        others: tuple[float, float, float],
        space: str,
    ) -> None:
        """Warn that ``value``, held in fixed cells far from the other values, may be a mask
        written as a number: how to mark it missing, and how to silence the warning when it
        is a real value of the variable."""
        mean, std, away = others
        apart = f"{away / std:.3g} std away" if std > 0 else "the others are constant"
        start = f"variable {name!r} holds {value:g} in fixed cells"
        pattern = re.sub(r"([.^$*+?{}()\[\]\\|])", r"\\\1", start)  # as a regex
        warnings.warn(
            f"{start}{self.scope}: {count} value{'s' if count != 1 else ''}{where}, far from "
            f"its other values{space} (mean {mean:.6g}, std {std:.4g}: {apart}). A mask "
            "written as a number (cells where the variable has no value), or a value the "
            "variable really takes there (open water at 0 in a sea-ice concentration, a region "
            "that stays dry)? If it marks cells without a value, mark them missing before "
            f"training: {_fill_fix(name, value, value)} (they become NaN, refused or left out "
            "as data.nan_fields says). If it is real, the statistics are right as fitted and "
            f'this warning can be silenced: warnings.filterwarnings("ignore", message=r"'
            f'{pattern}") in Python, or for the flexdownscale command '
            f'PYTHONWARNINGS="ignore:{start}" in its environment',
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )

    def _where(self, name: str, k: int, counts: np.ndarray) -> str:
        """Where the cells with ``counts > 0`` (fields per cell) of dataset ``k`` lie."""
        cells = counts > 0
        fields = self.fields[k][name]
        every = bool(np.all(counts[cells] == fields))
        how = f"each at every one of {fields} fields" if every else "in some fields only"
        return (
            f"; in {int(cells.sum())} of {cells.size} cells, {how} ("
            f"{_cells_text(cells, self.coords[k])})"
        )

    def _refuse_fill(
        self,
        name: str,
        value: str,
        count: int,
        where: str,
        others: tuple[float, float, float],
        low: float,
        high: float,
        space: str = "",
        impossible: str = "",
    ) -> None:
        """Refuse the fill ``value`` (text; the values ``low`` .. ``high``), ``others``: the
        mean and std of the other values (of their log1p with ``space``) and how far from that
        mean the fill lies; ``impossible``: why the variable cannot take the value (its units
        rule it out), if they do."""
        mean, std, away = others
        apart = f"{away / std:.3g} std away" if std > 0 else "the others are constant"
        raise DataError(
            f"variable {name!r} holds {value} in {count} value{'s' if count != 1 else ''}"
            f"{self.scope}{where}, far from its other values{space} (mean {mean:.6g}, std "
            f"{std:.4g}: {apart}). {impossible}That looks like a fill value the file does not "
            f"declare (no _FillValue attribute), and it would swamp the normalization (the "
            f"model would learn the fill, not the field). {_fill_advice(name, low, high)}"
        )

    def _warn_dominant(
        self,
        name: str,
        parts: Sequence[Sequence[Any]],
        moments: tuple[float, float, float],
        lowest: float,
        highest: float,
    ) -> None:
        """Warn when one value carries more than :data:`DOMINANT_SHARE` of the variance and is
        fill-like or far beyond the others (:data:`DOMINANT_GAP`). ``parts``: each dataset's
        reductions (count, lowest, -, -, highest per cell); ``moments``: the count, mean and
        std of all the values (as transformed)."""
        n, mean, std = moments
        transform = self.transforms[name]
        if n < DOMINANT_MIN_VALUES:
            return
        value = max((lowest, highest), key=lambda v: abs(float(_forward(v, transform)) - mean))
        share = (float(_forward(value, transform)) - mean) ** 2 / (n * std**2)
        if share <= DOMINANT_SHARE:
            return
        if not _fill_like_values(np.array([value]))[0]:
            gap = _beyond(parts, value, lowest if value == highest else highest, transform)
            if gap is not None and gap <= DOMINANT_GAP:
                return  # within reach of the other values: a real extreme (a wet pixel)
        space = " (of its log1p values)" if transform == "log1p" else ""
        warnings.warn(
            f"variable {name!r}{self.scope}: one value, {value:g}, carries {share:.0%} of its "
            f"variance{space} among {int(n)} values, so the fitted std ({std:.4g}) measures "
            f"it, not the field. A fill value or a glitch? If it is not real, mark it missing "
            f"before training ({_fill_fix(name, value, value)}); a real extreme can stay",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )

    def _warn_small(self, name: str, units: Any, mean: float, std: float, highest: float) -> None:
        """Say that log1p is nearly the identity on ``name``'s values (they are too small)."""
        in_units = f"in {units!r}" if units else "without units"
        fix = _no_log1p_hint(name, self.in_config)
        warnings.warn(
            f"variable {name!r} ({in_units}) is normalized with log1p, but its values are so "
            f"small (largest {highest:.3g}, below {LOG1P_SMALL_LARGEST:g}; mean + 3 std of "
            f"log1p {mean + 3 * std:.3g}, below {LOG1P_SMALL_SCALE:g}) that log1p is nearly the "
            f"identity on them (it differs from x by less than x / 2 relative): the model gets "
            f"the skewed field as it is. log1p expects amounts in mm (kg m-2) or rates in mm/h "
            f"or mm/day: convert first (m: ds[{name!r}] * 1000 with units 'mm'; kg m-2 s-1: "
            f"ds[{name!r}] * 3600 with units 'mm h-1'). If the values are in such units already "
            f"(a dry period), say so with their units attribute (e.g. 'mm'), which silences "
            f"this warning; log1p still does little on them: {fix} gives nearly the same "
            "normalization",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )


def _screen(x: xr.DataArray, grid: tuple[str, str] | None) -> dict[str, Any]:
    """Lazy reductions of ``x`` (float64) for the second pass of :class:`_FitPlan`'s screen,
    run when its lowest or highest value may be infinite or a fill: how many infinite values;
    fill-like values (:func:`_fill_like`: how many, the lowest and highest, and with a ``grid``
    how many per cell); count, mean and variance of the other finite values."""
    fill = _fill_like(x)
    clean = x.where(np.isfinite(x) & ~fill)
    out: dict[str, Any] = {
        "inf": (x.notnull() & ~np.isfinite(x)).sum(),
        "fill": fill.sum(),
        "fill_low": x.where(fill, np.inf).min(),
        "fill_high": x.where(fill, -np.inf).max(),
        "clean": (clean.count(), clean.mean(skipna=True), clean.var(skipna=True)),
    }
    sample = [d for d in x.dims if grid is not None and d not in grid]
    if grid is not None and sample:
        out["cell_fill"] = fill.sum(sample).transpose(*grid)
    return out


def _beyond(
    parts: Sequence[Sequence[Any]], value: float, other_end: float, transform: str
) -> float | None:
    """How far ``value`` (the lowest or the highest value) lies beyond the next value, in
    units of the range of the other values (from the next to ``other_end``), as transformed;
    0 when the others are constant (no scale to measure it by: one wet pixel in a dry
    window is as likely as one glitch in a constant field), None when ``parts`` do not tell (no
    lowest and highest per cell). The next value is taken over the cells' own extremes after
    one occurrence of ``value``: a bound, so the gap found may be too wide, never too narrow."""
    which = 4 if value >= other_end else 1
    extremes = [np.asarray(part[which], float) for part in parts]
    if any(e.ndim == 0 for e in extremes):
        return None
    values = np.concatenate([e.ravel() for e in extremes])
    values = values[~np.isnan(values)]
    hit = np.flatnonzero(values == value)
    if values.size < 2 or not hit.size:
        return None
    rest = np.delete(values, hit[0])
    following = float(rest.max() if which == 4 else rest.min())
    v, f, o = (float(_forward(np.float64(u), transform)) for u in (value, following, other_end))
    span = abs(f - o)
    return abs(v - f) / span if span > 0 else 0.0


#: -273.15 degC is 0 K to within this (-273.15 in float32 is 6e-6 K above it).
_KELVIN_ROUND_OFF = 1e-3


def _impossible(value: float, units: Any) -> str:
    """Why a variable in ``units`` cannot hold ``value`` (a temperature at or below absolute
    zero, ``"0 K is absolute zero, no temperature a field holds. "``), else ``""``."""
    if not isinstance(units, str) or not units.strip():
        return ""
    from ..units import linear_conversion

    to_kelvin = linear_conversion(units, "K")
    if to_kelvin is None or to_kelvin[0] <= 0:
        return ""
    kelvin = value * to_kelvin[0] + to_kelvin[1]
    if kelvin > _KELVIN_ROUND_OFF:
        return ""
    below = "" if kelvin >= -_KELVIN_ROUND_OFF else "below "
    return f"{value:g} {units} is {below}absolute zero, no temperature a field holds. "


def _arranged(r: xr.DataArray, grid: tuple[str, str] | None) -> xr.DataArray:
    """``r`` with its dims in ``grid`` order (as it is without a grid)."""
    return r.transpose(*grid) if grid is not None else r


def _pooled(parts: Sequence[Sequence[Any]]) -> tuple[float, float, float]:
    """Count, mean and sum of squared deviations pooled from (count, mean, variance) parts."""
    n_tot, mean_tot, m2_tot = 0.0, 0.0, 0.0
    for count, mean, var in ((float(c), float(m), float(v)) for c, m, v in parts):
        if count == 0:
            continue
        delta = mean - mean_tot
        n_new = n_tot + count
        mean_tot += delta * count / n_new
        m2_tot += var * count + delta * delta * n_tot * count / n_new
        n_tot = n_new
    return n_tot, mean_tot, m2_tot


def _grid_dims_of(ds: xr.Dataset) -> tuple[str, str] | None:
    """The (y, x) dims of ``ds`` when its coordinates tell them, else ``None``."""
    try:
        axes = find_axes(ds)
    except GridError:
        return None
    return (axes.y, axes.x)


def _grid_coords(ds: xr.Dataset, grid: tuple[str, str] | None) -> tuple[Any, Any] | None:
    """``((ydim, y values), (xdim, x values))`` when both are numeric coordinates, else None."""
    if grid is None or not all(d in ds.coords for d in grid):
        return None
    values = [np.asarray(ds[d].values) for d in grid]
    if not all(np.issubdtype(v.dtype, np.number) for v in values):
        return None
    return ((grid[0], values[0]), (grid[1], values[1]))


def _check_input(da: xr.DataArray, name: str, stats: VariableStats, forward: bool) -> None:
    """Refuse values the statistics do not apply to, before they give silently wrong numbers.

    :meth:`Normalizer.transform` takes values in the fitted units (compared as units: ``K`` and
    ``kelvin`` agree; ``degC`` is refused with the code that converts it) and not yet
    normalized;
    :meth:`Normalizer.inverse_transform` takes normalized values: a variable in physical units
    (a ``units`` attribute other than ``"1"``), or one normalized with other statistics (its
    ``flexdownscale_normalization`` attribute), is refused. Values without attributes (the
    output of plain numpy, say) are taken as they are.
    """
    from ..units import compare_units, linear_conversion

    units = da.attrs.get("units") or None  # an empty string says nothing either
    made = da.attrs.get(NORMALIZED_ATTR)
    if forward:
        if made is not None:
            raise DataError(
                f"variable {name!r} is normalized already ({NORMALIZED_ATTR} = {made!r}); "
                "transform takes values in physical units: pass the data before "
                "normalizing, or inverse_transform it first"
            )
        if units is None or stats.units is None:
            return
        comparison = compare_units(str(units), stats.units)
        if comparison.outcome == "same":
            return
        if comparison.outcome != "convertible":
            have, want = comparison.found_kind, comparison.expected_kind
            if have is None:  # the attribute names no unit: the metadata is wrong
                raise UnitsError(
                    f"variable {name!r} has units {units!r}, not a unit flexdownscale reads; the "
                    f"statistics were fitted in {stats.units!r}: set the attribute to what the "
                    f"values are in (ds[{name!r}].attrs['units'] = {stats.units!r} if they are "
                    f"in {stats.units})"
                )
            water = comparison.water_hint(name)
            if want is not None and water is not None:  # mm against kg m-2: never assumed
                raise UnitsError(
                    f"variable {name!r} is {have} ({units!r}) but the statistics were fitted "
                    f"on {want} ({stats.units!r}): not the same kind of quantity, but {water}. "
                    "Otherwise check that this is the variable the normalizer was fitted on, "
                    "or fit it on these data"
                )
            if want is not None:
                raise UnitsError(
                    f"variable {name!r} is {have} ({units!r}) but the statistics were fitted "
                    f"on {want} ({stats.units!r}): not the same kind of quantity, so no "
                    "conversion joins them; check that this is the variable the normalizer was "
                    "fitted on, or fit it on these data"
                )
            raise UnitsError(
                f"variable {name!r} is in {units!r} but the statistics were fitted in "
                f"{stats.units!r}: convert the values and set attrs['units'] = {stats.units!r}, "
                "or fit the normalizer on data in these units"
            )
        raise UnitsError(
            f"variable {name!r} is in {units!r} but the statistics were fitted in "
            f"{stats.units!r} ({comparison.rule}); convert first: {comparison.code(name)}"
        )
    if made is not None and made != stats.describe(name):
        raise DataError(
            f"variable {name!r} was normalized with other statistics ({NORMALIZED_ATTR} = "
            f"{made!r}; these are {stats.describe(name)!r}): inverse_transform it with the "
            "normalizer that made it"
        )
    if made is None and units is not None and linear_conversion(str(units), "1") != (1.0, 0.0):
        raise DataError(
            f"variable {name!r} is in {units!r}, not normalized (units '1'): "
            "inverse_transform takes the output of transform (or of a model working in "
            "normalized units); these values need no inverse"
        )


def _chosen_transforms(
    ds: xr.Dataset,
    names: Sequence[str],
    transforms: Mapping[str, Transform] | Literal["auto"],
    in_config: bool = False,
) -> dict[str, Transform]:
    """The transform of each of ``names``: ``auto_transform`` of ``ds[name]`` for ``"auto"``,
    else the mapping's entry (``"none"`` for unlisted names). Checks the mapping's values, and
    refuses a name that is not among ``names`` (its transform would be ignored without a word,
    and the variable meant normalized without it). ``in_config``: messages name the run's
    ``data.transforms``."""
    setting = "data.transforms (DataConfig.transforms)" if in_config else "transforms"
    if transforms != "auto":
        if not isinstance(transforms, Mapping):
            raise ConfigError(f"{setting}={transforms!r}; expected 'auto' or a mapping")
        for name, t in transforms.items():
            if t not in get_args(Transform):
                raise ConfigError(
                    f"transform {t!r} for {name!r} is not valid; expected one of "
                    f"{', '.join(repr(o) for o in get_args(Transform))}"
                )
        unknown = [str(k) for k in transforms if k not in names]
        if unknown:
            which = "it is" if len(unknown) == 1 else "they are"
            raise ConfigError(
                f"{setting} names {_quoted(unknown)}, but {which} not among the variables "
                f"normalized ({_quoted(names)}), so the transform would be ignored"
                f"{_name_hint(unknown, names)}; name the variables as the data do"
            )
    chosen: dict[str, Transform] = {}
    for name in names:
        if transforms == "auto":
            if name not in ds.data_vars:
                raise MissingVariableError(
                    f"variable {name!r} is not in the dataset; available: "
                    f"{sorted(map(str, ds.data_vars))}"
                )
            chosen[name] = auto_transform(ds[name])
        else:
            chosen[name] = transforms.get(name, "none")
    return chosen


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(str(n)) for n in names)


def _name_hint(unknown: Sequence[str], names: Sequence[str]) -> str:
    """``" (did you mean 'prate'?)"`` for the first unknown name close to a known one (case
    aside first: ``PRATE`` is ``prate``), else ``""``."""
    lower = {n.lower(): n for n in map(str, names)}
    for name in unknown:
        if name.lower() in lower:
            return f" (did you mean {lower[name.lower()]!r}?)"
        close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
        if close:
            return f" (did you mean {lower[close[0]]!r}?)"
    return ""


def _default_variables(ds: xr.Dataset) -> list[str]:
    """Data variables fitted by default: numeric fields on the horizontal grid.

    Variables named by another variable's ``bounds`` or ``grid_mapping`` attribute (or encoding)
    are metadata and never fitted.
    """
    metadata: set[str] = set()
    for var in ds.variables.values():
        bounds = var.attrs.get("bounds") or var.encoding.get("bounds")
        if isinstance(bounds, str):
            metadata.add(bounds.strip())
        gm = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
        metadata.update(_grid_mapping_names(gm))
    try:
        axes = find_axes(ds)
        grid_dims: tuple[str, ...] | None = (axes.x, axes.y)
    except GridError:
        grid_dims = None
    names = []
    for name, var in ds.data_vars.items():
        if str(name) in metadata or not np.issubdtype(var.dtype, np.number):
            continue
        if var.ndim == 0:
            continue
        if grid_dims is not None and not all(d in var.dims for d in grid_dims):
            continue
        names.append(str(name))
    return names


def _as_dataset(obj: XrObj) -> xr.Dataset:
    """``obj`` (an input of :meth:`Normalizer.fit`) as a Dataset of numpy or dask arrays (pint
    quantities taken as their magnitudes with ``units`` attributes: :func:`plain_arrays`)."""
    if isinstance(obj, xr.DataArray | xr.Dataset):
        obj = plain_arrays(obj, "the data")
    if isinstance(obj, xr.Dataset):
        return obj
    if obj.name is None:
        raise DataError("a DataArray passed to Normalizer.fit needs a name (da.rename('t2m'))")
    return dataset_of(obj, obj.name)
