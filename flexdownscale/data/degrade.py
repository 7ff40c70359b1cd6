"""Fine -> coarse degradation operators and the coarse -> fine base field ``up``.

Each operator is written once, at the array level, as a separable linear map along the last two
axes ``(..., H, W)``: every output cell is a weighted sum of a few input cells ("taps") along y,
then along x. The same code runs on numpy arrays and on torch tensors (CPU or GPU). A NaN or
inf reaches exactly the outputs that give it a non-zero weight (never silently filled, never
spread further: taps whose weight is zero, such as the Gaussian's beyond its radius or the next
coarse value at an interpolation node, are pointed at a tap of the same output, so an inf can
arrive as NaN). The
xarray-level functions :func:`degrade` and :func:`up` wrap the array functions with
:func:`xarray.apply_ufunc` (lazy with dask), keep attributes and non-spatial coordinates and put
the result on the coarse / refined grid of :mod:`flexdownscale.data.grid`.

Degradations (recorded by name in a model's ``grid.json``, see :data:`DEGRADATIONS`):

``"area_mean"``
    Conservative block mean over ``factor`` x ``factor`` cells. On latitude / longitude (and
    rotated-pole) grids every fine row is weighted by its cell area, ``sin(lat_upper) -
    sin(lat_lower)``, so the area-weighted mean of any region made of whole blocks is preserved
    exactly; on projected and periodic physics grids all cells weigh the same.
``"strided"``
    ``x[..., ::factor, ::factor]``: the value of the first fine cell of each block, the
    reference implementation's degradation (aliasing, and a phase shift of half a block because
    the value is labelled at the block centre). Offered for parity only.
``"gaussian"``
    Gaussian blur then decimation: each coarse value is the Gaussian-weighted mean of the fine
    cells around the block centre, ``w_j ~ exp(-(j - c)^2 / (2 sigma^2))`` in fine-cell units,
    with ``sigma = factor / 2`` by default (response ``exp(-pi^2 / 8) ~ 0.29`` at the coarse
    Nyquist wavenumber), taps out to ``3 sigma + factor / 2``, mirror-symmetric boundaries (or
    wrap-around on periodic axes).

Upsamplings (the base field of the residual models, see :data:`UPSAMPLINGS`):

``"bilinear"``
    Identical to ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``
    (edge values clamped) on non-periodic axes; wrap-around on periodic axes.
``"bicubic"``
    Keys' cubic convolution with a = -1/2, the third-order accurate choice (it reproduces
    quadratics), on the same sample positions and edge clamping as torch. Note that torch's
    ``mode="bicubic"`` uses a = -0.75, which is only first-order accurate on smooth fields.
``"conservative"``
    Bilinear plus a per-block constant correction, so that ``area_mean(up(x)) == x`` (to
    rounding): the base field has exactly the coarse cell means. The correction can take
    values outside the coarse field's range next to a steep gradient: coarse precipitation
    rows ``[0, 0, 8]`` mm at factor 2 give ``[0, 0, -1, 1, 7, 9]`` (bilinear gives
    ``[0, 0, 0, 2, 6, 8]``); ``"nearest"`` keeps the range and the cell means.
``"nearest"``
    Each coarse value repeated over its block (first-order conservative).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, get_args

import numpy as np
import xarray as xr

from .._attributes import Spacing, cell_extent, drop_dangling_references, regridded_attrs
from .._duck import plain_arrays
from .._keywords import keyword_hints
from ..errors import ConfigError, DataError, ShapeError, UnsupportedFactorError
from .grid import (
    SPHERICAL_KINDS,
    Boundary,
    GridSpec,
    XrObj,
    XrT,
    _drop_axis_bounds,
    _on_grid,
    _trim_coordinates_attr,
    cell_bounds,
    coarsen_grid,
    grid_spec,
    normalize_grid,
    refine_grid,
    row_area_weights,
)

__all__ = [
    "DEGRADATIONS",
    "UPSAMPLINGS",
    "Degradation",
    "Upsampling",
    "degrade",
    "degrade_array",
    "grid_row_weights",
    "up",
    "upsample_array",
]

if TYPE_CHECKING:  # torch is imported by whoever passes a tensor: not needed to load this module
    import torch

Degradation = Literal["area_mean", "strided", "gaussian"]
Upsampling = Literal["bilinear", "bicubic", "conservative", "nearest"]
Array = TypeVar("Array", np.ndarray, "torch.Tensor")

#: Keys (1981) cubic-convolution parameter; -1/2 makes the interpolant third-order accurate.
_CUBIC_A = -0.5


def _check_option(name: str, value: Any, options: Any) -> None:
    allowed = get_args(options)
    if value not in allowed:
        raise ConfigError(
            f"{name}={value!r} is not a valid option; expected one of "
            f"{', '.join(repr(o) for o in allowed)}"
        )


def _check_factor(factor: Any) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or factor < 1:
        raise UnsupportedFactorError(
            f"factor={factor!r} is not supported; expected a positive integer such as 2, 4 or 8"
        )
    return int(factor)


def _periodic(periodic: bool | Sequence[bool]) -> tuple[bool, bool]:
    if isinstance(periodic, bool | np.bool_):
        return (bool(periodic), bool(periodic))
    py, px = periodic
    return (bool(py), bool(px))


# --------------------------------------------------------------------------------------------
# 1-D taps: (index, weight) arrays of shape (n_out, K)
# --------------------------------------------------------------------------------------------


def _taps_block_mean(n: int, factor: int, weights: np.ndarray | None) -> tuple:
    idx = np.arange(n).reshape(-1, factor)
    if weights is None:
        w = np.full(idx.shape, 1.0 / factor)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1, factor)
        total = w.sum(axis=1, keepdims=True)
        if np.any(~(total > 0)):
            raise DataError("area weights of a block sum to zero or are not finite")
        w = w / total
    return idx, w


def _reflect(j: np.ndarray, n: int) -> np.ndarray:
    r = np.mod(j, 2 * n)
    return np.where(r >= n, 2 * n - 1 - r, r)


def _taps_gaussian(n: int, factor: int, sigma: float, periodic: bool) -> tuple:
    m = n // factor
    centres = np.arange(m) * factor + 0.5 * (factor - 1)
    radius = 3.0 * sigma + 0.5 * factor
    lo = np.floor(centres - radius).astype(np.int64)
    k = int(np.ceil(2 * radius)) + 2
    j = lo[:, None] + np.arange(k)[None, :]
    w = np.exp(-0.5 * ((j - centres[:, None]) / sigma) ** 2)
    w[np.abs(j - centres[:, None]) > radius] = 0.0
    w = w / w.sum(axis=1, keepdims=True)
    idx = np.mod(j, n) if periodic else _reflect(j, n)
    return idx, w


def _source_positions(n: int, factor: int) -> np.ndarray:
    # torch's align_corners=False mapping from output index to input coordinate
    return (np.arange(n * factor) + 0.5) / factor - 0.5


def _taps_linear(n: int, factor: int, periodic: bool) -> tuple:
    src = _source_positions(n, factor)
    if not periodic:
        src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    t = src - i0
    idx = np.stack([i0, i0 + 1], axis=1)
    w = np.stack([1.0 - t, t], axis=1)
    idx = np.mod(idx, n) if periodic else np.clip(idx, 0, n - 1)
    return idx, w


def _taps_cubic(n: int, factor: int, periodic: bool) -> tuple:
    src = _source_positions(n, factor)
    i0 = np.floor(src).astype(np.int64)
    t = src - i0
    a = _CUBIC_A

    def near(s: np.ndarray) -> np.ndarray:  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s: np.ndarray) -> np.ndarray:  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    w = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
    idx = i0[:, None] + np.arange(-1, 3)[None, :]
    idx = np.mod(idx, n) if periodic else np.clip(idx, 0, n - 1)
    return idx, w


def _taps_nearest(n: int, factor: int) -> tuple:
    idx = (np.arange(n * factor) // factor)[:, None]
    return idx, np.ones_like(idx, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Applying taps to numpy arrays and torch tensors
# --------------------------------------------------------------------------------------------


def _is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch: a tensor exists only once
    torch is imported (so ``flexdownscale.data`` loads without it: the metrics, plots and
    ``flexdownscale evaluate`` need no torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_float(x: Array) -> Array:
    if _is_tensor(x):
        torch = sys.modules["torch"]
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float64)
    return x


def _widened(x: Array) -> tuple[Array, Any]:
    """``x`` in float32 when it is in a half-precision dtype (float16, bfloat16), and that dtype
    (else ``x`` and ``None``): sums of 16 to 64 taps in float16 lose up to 0.3 K at 280 K, more
    than twice the 0.125 K that rounding the exact result to float16 costs."""
    if _is_tensor(x):
        torch = sys.modules["torch"]
        if x.dtype in (torch.float16, torch.bfloat16):
            return x.float(), x.dtype
        return x, None
    if x.dtype == np.float16:
        return x.astype(np.float32), x.dtype
    return x, None


def _narrowed(out: Array, dtype: Any) -> Array:
    """``out`` back in the input's half-precision ``dtype`` (``None``: as it is)."""
    if dtype is None:
        return out
    return out.to(dtype) if _is_tensor(out) else out.astype(dtype)


def _check_array(x: Any, name: str) -> Any:
    if not (isinstance(x, np.ndarray) or _is_tensor(x)):
        if isinstance(x, xr.DataArray | xr.Dataset):
            raise DataError(
                f"{name} is an xarray object; use the xarray-level functions degrade / up, or "
                f"pass .values"
            )
        x = np.asarray(x)
    if x.ndim < 2:
        raise ShapeError(f"{name} has shape {tuple(x.shape)}; expected (..., H, W)")
    return _as_float(x)


def _nonzero_taps(idx: np.ndarray, zero: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``idx`` with the taps whose weight is zero (where ``zero``) pointed at the heaviest tap of
    their output (largest ``|w|``).

    A tap of weight zero still multiplies its input, and ``0 * nan`` and ``0 * inf`` are NaN:
    pointed there, a NaN or inf reaches exactly the outputs that give it a non-zero weight (an
    inf on the heaviest tap arrives as NaN: ``w * inf + 0 * inf``). On finite input ``0 * x`` is
    zero wherever the tap points, so the sums are unchanged. Only the indices change, at no cost
    per element (zeroing the gathered inputs of those taps would keep an inf an inf, but costs a
    pass over them: up to 18% more time with torch on the CPU).
    """
    heaviest = idx[np.arange(len(idx)), np.abs(w).argmax(axis=1)]
    return np.where(zero, heaviest[:, None], idx)


def _apply_taps(x: Array, taps: tuple, axis: int) -> Array:
    idx, w = taps
    m, k = idx.shape
    if _is_tensor(x):
        torch = sys.modules["torch"]
        weights = torch.as_tensor(w, dtype=x.dtype)  # zero in x's dtype is what counts
        idx = _nonzero_taps(idx, (weights == 0).numpy(), w)
        weights = weights.to(x.device)
        index = torch.as_tensor(idx.reshape(-1), dtype=torch.long, device=x.device)
        gathered = torch.index_select(x, axis % x.ndim, index)
    else:
        weights = w.astype(x.dtype, copy=False)
        idx = _nonzero_taps(idx, weights == 0, w)
        gathered = np.take(x, idx.reshape(-1), axis=axis)
    if axis == -2:
        gathered = gathered.reshape(*x.shape[:-2], m, k, x.shape[-1])
        out = (gathered * weights[:, :, None]).sum(-2)
    else:
        gathered = gathered.reshape(*x.shape[:-1], m, k)
        out = (gathered * weights).sum(-1)
    return out


def _separable(x: Array, taps_y: tuple, taps_x: tuple) -> Array:
    return _apply_taps(_apply_taps(x, taps_y, -2), taps_x, -1)


# --------------------------------------------------------------------------------------------
# Registered operators (array level)
# --------------------------------------------------------------------------------------------


def _area_mean(
    x: Array,
    factor: int,
    *,
    row_weights: np.ndarray | None = None,
    sigma: float | None = None,
    periodic: tuple[bool, bool] = (False, False),
) -> Array:
    h, w = x.shape[-2:]
    return _separable(
        x, _taps_block_mean(h, factor, row_weights), _taps_block_mean(w, factor, None)
    )


def _strided(
    x: Array,
    factor: int,
    *,
    row_weights: np.ndarray | None = None,
    sigma: float | None = None,
    periodic: tuple[bool, bool] = (False, False),
) -> Array:
    return x[..., ::factor, ::factor]


def _gaussian(
    x: Array,
    factor: int,
    *,
    row_weights: np.ndarray | None = None,
    sigma: float | None = None,
    periodic: tuple[bool, bool] = (False, False),
) -> Array:
    sigma = 0.5 * factor if sigma is None else float(sigma)
    if not sigma > 0 or not math.isfinite(sigma):
        raise ConfigError(f"sigma={sigma!r} must be a positive number of fine cells")
    h, w = x.shape[-2:]
    return _separable(
        x,
        _taps_gaussian(h, factor, sigma, periodic[0]),
        _taps_gaussian(w, factor, sigma, periodic[1]),
    )


def _up_interp(kind: str) -> Callable[..., Any]:
    def op(
        coarse: Array,
        factor: int,
        *,
        row_weights: np.ndarray | None = None,
        periodic: tuple[bool, bool] = (False, False),
    ) -> Array:
        h, w = coarse.shape[-2:]
        make = _taps_linear if kind == "linear" else _taps_cubic
        return _separable(coarse, make(h, factor, periodic[0]), make(w, factor, periodic[1]))

    return op


def _up_nearest(
    coarse: Array,
    factor: int,
    *,
    row_weights: np.ndarray | None = None,
    periodic: tuple[bool, bool] = (False, False),
) -> Array:
    h, w = coarse.shape[-2:]
    return _separable(coarse, _taps_nearest(h, factor), _taps_nearest(w, factor))


def _up_conservative(
    coarse: Array,
    factor: int,
    *,
    row_weights: np.ndarray | None = None,
    periodic: tuple[bool, bool] = (False, False),
) -> Array:
    base = _up_interp("linear")(coarse, factor, periodic=periodic)
    correction = coarse - _area_mean(base, factor, row_weights=row_weights)
    return base + _up_nearest(correction, factor)


DEGRADATIONS: Mapping[str, Callable[..., Any]] = {
    "area_mean": _area_mean,
    "strided": _strided,
    "gaussian": _gaussian,
}
"""Degradation operators by name: ``fn(x, factor, *, row_weights, sigma, periodic)``."""

UPSAMPLINGS: Mapping[str, Callable[..., Any]] = {
    "bilinear": _up_interp("linear"),
    "bicubic": _up_interp("cubic"),
    "conservative": _up_conservative,
    "nearest": _up_nearest,
}
"""Upsampling operators by name: ``fn(coarse, factor, *, row_weights, periodic)``."""


@keyword_hints
def degrade_array(
    x: Array,
    factor: int,
    *,
    method: Degradation = "area_mean",
    row_weights: np.ndarray | None = None,
    sigma: float | None = None,
    periodic: bool | Sequence[bool] = False,
) -> Array:
    """Degrade a fine field to the coarse grid, over the last two axes.

    Parameters
    ----------
    x
        (..., H, W) numpy array or torch tensor; H and W divisible by ``factor``. Integer input
        is converted to float64 (numpy) or the default torch dtype.
    factor
        Coarsening factor.
    method
        ``"area_mean"``, ``"strided"`` or ``"gaussian"`` (see the module docstring).
    row_weights
        (H,) non-negative weights of the fine rows (cell areas, e.g. from
        :func:`grid_row_weights`) for ``"area_mean"``; ``None`` weighs all rows equally.
    sigma
        Standard deviation of the ``"gaussian"`` blur in fine cells (default ``factor / 2``).
    periodic
        Whether the (y, x) axes wrap around (one bool for both); used by ``"gaussian"``.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, dtype and device as ``x``, shape (..., H / factor, W / factor).

    Raises
    ------
    UnsupportedFactorError
        When H or W is not divisible by ``factor``.
    ShapeError
        When ``x`` has fewer than two dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(4, 4)
    >>> degrade_array(x, 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    >>> degrade_array(x, 2, method="strided")
    array([[ 0.,  2.],
           [ 8., 10.]])
    """
    _check_option("method", method, Degradation)
    factor = _check_factor(factor)
    x = _check_array(x, "x")
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise UnsupportedFactorError(
            f"field of shape (H, W) = {(h, w)} cannot be degraded by factor {factor}; expected "
            f"H and W divisible by the factor (crop or trim the field first)"
        )
    if row_weights is not None:
        row_weights = np.asarray(row_weights, dtype=np.float64)
        if row_weights.shape != (h,):
            raise ShapeError(f"row_weights has shape {row_weights.shape}; expected ({h},)")
        if np.any(~np.isfinite(row_weights)) or np.any(row_weights < 0):
            raise DataError("row_weights must be finite and non-negative")
    wide, narrow = _widened(x)
    out = DEGRADATIONS[method](
        wide, factor, row_weights=row_weights, sigma=sigma, periodic=_periodic(periodic)
    )
    return _narrowed(out, narrow)


@keyword_hints
def upsample_array(
    coarse: Array,
    factor: int,
    *,
    method: Upsampling = "bilinear",
    row_weights: np.ndarray | None = None,
    periodic: bool | Sequence[bool] = False,
) -> Array:
    """Interpolate a coarse field to the grid refined by ``factor``, over the last two axes.

    The coarse values are taken at the centres of their blocks (as :func:`degrade_array` and
    ``torch.nn.functional.interpolate(..., align_corners=False)`` assume).

    Parameters
    ----------
    coarse
        (..., h, w) numpy array or torch tensor.
    factor
        Refinement factor.
    method
        ``"bilinear"``, ``"bicubic"``, ``"conservative"`` or ``"nearest"``.
    row_weights
        (h * factor,) fine-row area weights used by ``"conservative"`` (``None``: equal areas).
    periodic
        Whether the (y, x) axes wrap around.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, dtype and device as ``coarse``, shape (..., h * factor, w * factor).

    Examples
    --------
    >>> import numpy as np
    >>> upsample_array(np.array([[0.0, 4.0]]), 2)
    array([[0., 1., 3., 4.],
           [0., 1., 3., 4.]])
    """
    _check_option("method", method, Upsampling)
    factor = _check_factor(factor)
    coarse = _check_array(coarse, "coarse")
    h = coarse.shape[-2]
    if row_weights is not None:
        row_weights = np.asarray(row_weights, dtype=np.float64)
        if row_weights.shape != (h * factor,):
            raise ShapeError(
                f"row_weights has shape {row_weights.shape}; expected ({h * factor},) fine rows"
            )
    wide, narrow = _widened(coarse)
    out = UPSAMPLINGS[method](wide, factor, row_weights=row_weights, periodic=_periodic(periodic))
    return _narrowed(out, narrow)


# --------------------------------------------------------------------------------------------
# xarray level
# --------------------------------------------------------------------------------------------


@keyword_hints
def grid_row_weights(spec: GridSpec, y: np.ndarray) -> np.ndarray | None:
    """Area weights of the rows at latitudes ``y`` (``None`` for projected grids).

    Parameters
    ----------
    spec
        The grid's description (its ``kind`` decides).
    y
        (n,) ascending row centres in degrees.

    Returns
    -------
    numpy.ndarray or None
        (n,) relative row areas (:func:`~flexdownscale.data.grid.row_area_weights` of the rows'
        cell bounds, clipped at the poles on a latitude-longitude grid); ``None`` for a
        projected grid (equal areas).

    Examples
    --------
    Rows 30 degrees apart from the equator to the pole shrink with the cosine of the
    latitude, and the polar row, half a cell, holds little area; a projected grid's rows
    are all equal:

    >>> import numpy as np
    >>> from flexdownscale.data import GridSpec
    >>> latlon = GridSpec(x="lon", y="lat", kind="latlon", nx=12, ny=4, x0=0.0, y0=0.0,
    ...                   dx=30.0, dy=30.0)
    >>> grid_row_weights(latlon, np.array([0.0, 30.0, 60.0, 90.0])).round(4)
    array([0.5176, 0.4483, 0.2588, 0.0341])
    >>> km = GridSpec(x="x", y="y", kind="projected", nx=4, ny=4, x0=0.0, y0=0.0,
    ...               dx=2.5, dy=2.5, x_units="km", y_units="km")
    >>> grid_row_weights(km, np.arange(4) * 2.5) is None
    True
    """
    if spec.kind == "projected":
        return None
    return row_area_weights(
        cell_bounds(np.asarray(y, dtype=np.float64), latitude=spec.kind in SPHERICAL_KINDS)
    )


def _apply_spatial(
    da: xr.DataArray,
    fn: Callable[[np.ndarray], np.ndarray],
    spec: GridSpec,
    ny: int,
    nx: int,
) -> xr.DataArray:
    y, x = spec.y, spec.x
    if da.chunks is not None:
        da = da.chunk({y: -1, x: -1})
    dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.dtype(np.float64)
    out = xr.apply_ufunc(
        fn,
        da,
        input_core_dims=[[y, x]],
        output_core_dims=[[y, x]],
        exclude_dims={y, x},
        dask="parallelized",
        output_dtypes=[dtype],
        dask_gufunc_kwargs={"output_sizes": {y: ny, x: nx}},
        keep_attrs=True,
    )
    return out.transpose(*da.dims)


def _map_spatial(
    obj: XrObj,
    fn: Callable[[np.ndarray], np.ndarray],
    spec: GridSpec,
    grid: xr.Dataset,
    spacings: tuple[Spacing, Spacing],
) -> XrObj:
    """``fn`` (from the fine or coarse values of one field to the others) applied to the
    variables of ``obj`` on the grid ``spec``, put on ``grid``; the attributes that describe
    the grid are those of ``grid``, whose spacing is that of ``spec`` as ``spacings`` say
    (:func:`~flexdownscale._attributes.regridded_attrs`; the ACDD extent that of ``grid``'s
    cells on a latitude / longitude grid, else left out)."""
    ny, nx = grid.sizes[spec.y], grid.sizes[spec.x]
    extent = None
    along_y, along_x = spacings
    if spec.kind == "latlon" and along_y is not None and along_x is not None:
        extent = cell_extent(
            grid[spec.y].values,
            grid[spec.x].values,
            spec.dy * along_y[1] / along_y[0],
            spec.dx * along_x[1] / along_x[0],
        )

    def one(da: xr.DataArray, name: Any) -> xr.DataArray:
        keep = [c for c in da.coords if spec.x not in da[c].dims and spec.y not in da[c].dims]
        dropped = [c for c in da.coords if c not in keep and c not in da.dims]
        da = da.reset_coords(dropped, drop=True)
        out = _apply_spatial(da, fn, spec, ny, nx)
        out.attrs = regridded_attrs(out.attrs, spacings, extent)
        if dropped:
            # auxiliary coordinates on the old grid are not carried over (the 2-D lat/lon of a
            # rotated-pole grid come back recomputed on the new grid, in ``grid``), so the CF
            # attribute must not name the others any more
            out.attrs = _trim_coordinates_attr(
                out.attrs, lambda c: c not in dropped or c in grid.coords
            )
        return out

    if isinstance(obj, xr.DataArray):
        out = one(obj, obj.name)
        # a DataArray cannot hold the (n, 2) bounds: keep the centres, drop the bounds pointer
        centres = {}
        for name in (spec.y, spec.x):
            attrs = {k: v for k, v in grid[name].attrs.items() if k != "bounds"}
            centres[name] = xr.Variable((name,), grid[name].values, attrs=attrs)
        auxiliary = {
            name: coord.variable
            for name, coord in grid.coords.items()
            if coord.ndim == 2 and set(coord.dims) == {spec.y, spec.x}
        }
        return drop_dangling_references(out.assign_coords({**centres, **auxiliary}))
    data_vars = {}
    for name, var in obj.data_vars.items():
        data_vars[name] = one(var, name) if _on_grid(name, var, spec.y, spec.x) else var
    out = xr.Dataset(data_vars, attrs=regridded_attrs(obj.attrs, spacings, extent))
    # coordinates that no variable carries (scalar or non-spatial) come along too
    extra = {
        name: coord.variable
        for name, coord in obj.coords.items()
        if name not in out.coords and spec.x not in coord.dims and spec.y not in coord.dims
    }
    return drop_dangling_references(out.assign_coords({**extra, **dict(grid.coords)}))


@keyword_hints
def degrade(
    obj: XrT,
    factor: int,
    *,
    method: Degradation = "area_mean",
    dims: Mapping[str, str] | None = None,
    boundary: Boundary = "exact",
    sigma: float | None = None,
) -> XrT:
    """Degrade a fine xarray object to the coarse grid of ``factor`` x ``factor`` blocks.

    The grid is validated and normalized first (:func:`~flexdownscale.data.grid.normalize_grid`:
    ascending axes, one longitude convention); the result is on the coarse grid of
    :func:`~flexdownscale.data.grid.coarsen_grid` (block-mean centres, CF bounds), for every
    method. Variables without the grid dimensions pass through; attributes are kept, but those
    that describe the fine grid describe the coarse one
    (:func:`~flexdownscale._attributes.regridded_attrs`: cfgrib's ``GRIB_*`` grid attributes
    left out, ``geospatial_lat_resolution`` / ``geospatial_lon_resolution`` times ``factor``,
    the ACDD ``geospatial_lat_min`` ... ``geospatial_lon_max`` the extent of the coarse cells on
    a latitude / longitude grid, else left out), and ``cell_measures`` / ``ancillary_variables`` name no variable left behind. Dask-backed
    input stays lazy (the grid dimensions are put in one chunk).

    Parameters
    ----------
    obj
        Dataset or DataArray on a regular grid.
    factor
        Coarsening factor.
    method
        ``"area_mean"`` (default), ``"strided"`` or ``"gaussian"``.
    dims
        Optional dimension-name override, e.g. ``{"x": "lon", "y": "lat"}``.
    boundary
        ``"exact"`` (sizes must be divisible by ``factor``) or ``"trim"`` (drop trailing cells).
    sigma
        Gaussian standard deviation in fine cells (``"gaussian"`` only; default ``factor / 2``).

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as ``obj``, on the coarse grid.

    Raises
    ------
    UnsupportedFactorError
        When the grid is not divisible by ``factor`` and ``boundary="exact"``.
    GridError, UnitsError
        For invalid grids.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(
    ...     np.arange(16.0).reshape(4, 4),
    ...     coords={"y": ("y", np.arange(4.0), {"units": "km"}),
    ...             "x": ("x", np.arange(4.0), {"units": "km"})},
    ... )
    >>> degrade(da, 2).values
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    _check_option("method", method, Degradation)
    factor = _check_factor(factor)
    obj = plain_arrays(obj, "obj")  # pint quantities: magnitudes, units as the attribute
    spec = grid_spec(obj, dims=dims)
    grid = coarsen_grid(obj, factor, dims=dims, boundary=boundary)
    # the coarse grid's bounds replace the fine ones (lat_bnds / lon_bnds data variables)
    norm = normalize_grid(_drop_axis_bounds(obj, (spec.x, spec.y)), dims=dims)
    ny, nx = grid.sizes[spec.y] * factor, grid.sizes[spec.x] * factor
    if (ny, nx) != (spec.ny, spec.nx):
        norm = norm.isel({spec.y: slice(0, ny), spec.x: slice(0, nx)})
    coarse_spec = spec.coarsen(factor, boundary=boundary)
    periodic = (
        spec.periodic_y and coarse_spec.periodic_y,
        spec.periodic_x and coarse_spec.periodic_x,
    )
    weights = (
        grid_row_weights(spec, np.asarray(norm[spec.y].values)) if method == "area_mean" else None
    )

    def fn(a: np.ndarray) -> np.ndarray:
        return degrade_array(
            a, factor, method=method, row_weights=weights, sigma=sigma, periodic=periodic
        )

    # the coarse spacing is factor times the fine one, for every method and boundary
    spacings = ((1.0, float(factor)), (1.0, float(factor)))
    return cast(XrT, _map_spatial(norm, fn, spec, grid, spacings))  # obj's type, as kept


@keyword_hints
def up(
    obj: XrT,
    factor: int,
    *,
    method: Upsampling = "bilinear",
    dims: Mapping[str, str] | None = None,
) -> XrT:
    """Interpolate a coarse xarray object to the grid refined by ``factor`` (the base field).

    The result is on :func:`~flexdownscale.data.grid.refine_grid` of the (normalized) input grid,
    with CF coordinate attributes and bounds; the attributes that describe the coarse grid
    describe the fine one, as in :func:`degrade` (``geospatial_*_resolution`` divided by
    ``factor``; the ACDD extent that of the fine cells, the coarse cells' edges). Dask-backed
    input stays lazy.

    Parameters
    ----------
    obj
        Dataset or DataArray on the coarse grid.
    factor
        Refinement factor.
    method
        ``"bilinear"`` (default), ``"bicubic"``, ``"conservative"`` or ``"nearest"``.
    dims
        Optional dimension-name override.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as ``obj``, on the fine grid.

    Raises
    ------
    GridError
        When refined latitudes would lie beyond a pole, or the grid is invalid.

    Examples
    --------
    A 2 degree field to 1 degree: a constant stays the constant, bilinear interpolation
    puts the fine values between the coarse ones (the ends held), and the conservative
    method gives back the coarse field when degraded again:

    >>> import numpy as np, xarray as xr
    >>> lat = xr.DataArray([48.0, 50], dims="lat", attrs={"units": "degrees_north"})
    >>> lon = xr.DataArray([0.0, 2, 4], dims="lon", attrs={"units": "degrees_east"})
    >>> coarse = xr.DataArray([[0.0, 4, 8], [0, 4, 8]], coords={"lat": lat, "lon": lon})
    >>> fine = up(xr.full_like(coarse, 280.0), 2)
    >>> fine["lat"].values, float(fine.min()), float(fine.max())
    (array([47.5, 48.5, 49.5, 50.5]), 280.0, 280.0)
    >>> up(coarse, 2)[0].values
    array([0., 1., 3., 5., 7., 8.])
    >>> from flexdownscale.data import degrade
    >>> degrade(up(coarse, 2, method="conservative"), 2).values
    array([[0., 4., 8.],
           [0., 4., 8.]])
    """
    _check_option("method", method, Upsampling)
    factor = _check_factor(factor)
    obj = plain_arrays(obj, "obj")  # pint quantities: magnitudes, units as the attribute
    spec = grid_spec(obj, dims=dims)
    grid = refine_grid(obj, factor, dims=dims)
    # the fine grid's bounds replace the coarse ones (lat_bnds / lon_bnds data variables)
    norm = normalize_grid(_drop_axis_bounds(obj, (spec.x, spec.y)), dims=dims)
    weights = None
    if method == "conservative" and spec.kind != "projected":
        weights = row_area_weights(grid[f"{spec.y}_bnds"].values)
    periodic = (spec.periodic_y, spec.periodic_x)

    def fn(a: np.ndarray) -> np.ndarray:
        return upsample_array(a, factor, method=method, row_weights=weights, periodic=periodic)

    spacings = ((float(factor), 1.0), (float(factor), 1.0))  # the fine spacing: 1 / factor
    return cast(XrT, _map_spatial(norm, fn, spec, grid, spacings))  # obj's type, as kept
