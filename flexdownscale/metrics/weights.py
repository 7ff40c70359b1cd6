"""Area weights for global, regional and projected grids."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
import xarray as xr

from flexdownscale._keywords import keyword_hints
from flexdownscale.errors import GridError
from flexdownscale.metrics._utils import (
    EARTH_RADIUS,
    check_option,
    check_xarray,
    coord_units_kind,
    find_yx_dims,
    regular_step,
)

__all__ = ["area_weights", "cell_edges"]


@keyword_hints
def cell_edges(
    centres: np.ndarray, *, lower: float | None = None, upper: float | None = None
) -> np.ndarray:
    """Edges of cells around 1-D ``centres``: midpoints inside, half a cell beyond the ends.

    ``centres`` may ascend or descend; the result has ``n + 1`` entries in the same order,
    clipped to ``[lower, upper]`` when given (e.g. +-90 for latitudes). The outer edges are
    never moved to the poles: a regional 50-58N grid gets edges 49.875 and 58.125 (for
    0.25 degree cells), not -90 and 90.

    Parameters
    ----------
    centres : array_like
        1-D cell centres (at least 2), ascending or descending, any units.
    lower, upper : float, optional
        Clip the edges to these values (in the centres' units); default None: no clipping.

    Returns
    -------
    numpy.ndarray
        ``n + 1`` float64 edges, in the order of ``centres``.

    Examples
    --------
    A regional 0.25 degree grid keeps cells of a quarter degree at its ends; a global grid
    with points at the poles, clipped to +-90, gets polar cells of half height:

    >>> import numpy as np
    >>> cell_edges(np.arange(50.0, 51.0, 0.25))
    array([49.875, 50.125, 50.375, 50.625, 50.875])
    >>> cell_edges([90.0, 45, 0, -45, -90], lower=-90, upper=90)
    array([ 90. ,  67.5,  22.5, -22.5, -67.5, -90. ])
    """
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise GridError("cell edges need a 1-D coordinate with at least 2 points.")
    mid = 0.5 * (c[:-1] + c[1:])
    edges = np.concatenate([[c[0] - 0.5 * (c[1] - c[0])], mid, [c[-1] + 0.5 * (c[-1] - c[-2])]])
    if lower is not None or upper is not None:
        edges = np.clip(edges, lower, upper)
    return edges


def _bounds(grid: xr.DataArray | xr.Dataset, dim: Hashable) -> np.ndarray | None:
    """CF bounds of ``dim`` as ``n + 1`` edges, when the grid carries contiguous ones
    (``None`` for bounds with gaps or overlaps: see :func:`area_weights`)."""
    if not isinstance(grid, xr.Dataset) or dim not in grid.coords:
        return None
    name = grid[dim].attrs.get("bounds")
    if name is None or name not in grid.variables:
        return None
    b = np.asarray(grid[name].transpose(dim, ...).values, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 2:
        return None
    c = np.asarray(grid[dim].values, dtype=np.float64)
    b = np.sort(b, axis=1)
    if c[-1] < c[0]:  # descending: order each pair the same way as the centres
        b = b[:, ::-1]
    if not np.allclose(b[1:, 0], b[:-1, 1]):
        return None
    return np.concatenate([b[:, 0], b[-1:, 1]])


@keyword_hints
def area_weights(
    grid: xr.DataArray | xr.Dataset,
    *,
    dims: Sequence[Hashable] | None = None,
    normalize: Literal["mean", "sum"] | None = "mean",
    map_factor: xr.DataArray | None = None,
    radius: float = EARTH_RADIUS,
) -> xr.DataArray:
    """Cell-area weights of a grid, for the ``weights=`` of every metric.

    - Latitude/longitude grids (also rotated-pole ``rlat``/``rlon`` in degrees): the area of a
      cell between latitude edges ``phi_-`` and ``phi_+`` is proportional to
      ``sin(phi_+) - sin(phi_-)`` (equal to ``cos(phi) dphi`` up to normalisation). Edges are
      the CF bounds when the Dataset carries them, else midpoints between centres, with the
      outer edges half a cell beyond the first and last centres, clipped to +-90. Bounds that
      leave gaps or overlap between neighbouring cells (a subsampled grid keeps its source
      cells' bounds) are not used: each point then stands for the band up to the midpoints,
      which is what a mean over its values needs. A regional
      grid therefore keeps honest edge rows (treating the first row as reaching the pole
      would inflate its weight about 6x on a 30-50N grid); a global grid with points at the
      poles gets polar cells of half height. Returned 1-D over the latitude dim (constant
      along longitude; broadcasts against the data).
    - Projected grids (``x``/``y`` in m or km) and unitless grids: uniform ``dx dy``,
      divided by ``map_factor**2`` when a map-factor field is given (for conformal
      projections); returned over (Y, X).

    Parameters
    ----------
    grid : DataArray or Dataset
        Anything carrying the grid's coordinates.
    dims : pair of str, optional
        (Y, X) dims; default: found from CF attrs or names.
    normalize : {"mean", "sum", None}, default "mean"
        Scale to mean 1 or sum 1 over the returned dims; ``None``: physical areas in m^2
        (needs metric or degree coordinates).
    map_factor : DataArray, optional
        Map factor ``m(y, x)`` of a projected grid (area = dx dy / m^2).
    radius : float, default 6371008.8
        Sphere radius in metres for degree grids (the mean Earth radius, IUGG); it matters
        with ``normalize=None`` only.

    Returns
    -------
    DataArray
        Non-negative weights (``units`` ``"1"``, or ``"m2"`` with ``normalize=None``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> lat = xr.DataArray(np.arange(50.0, 58.25, 0.25), dims="lat",
    ...                    attrs={"units": "degrees_north"})
    >>> w = area_weights(xr.Dataset(coords={"lat": lat, "lon": np.arange(0.0, 2.0, 0.25)}))
    >>> bool(abs(w[0] / w[1] - np.cos(np.deg2rad(50)) / np.cos(np.deg2rad(50.25))) < 1e-4)
    True
    """
    check_option("normalize", normalize, ("mean", "sum", None))
    grid = check_xarray(grid, "grid", decoded=False, grid=True)  # its coordinates only
    ydim, xdim = find_yx_dims(grid, dims)
    for d in (ydim, xdim):
        if d not in grid.coords:
            raise GridError(f"dim {d!r} has no coordinate; area weights need coordinates.")
    ykind, yfac = coord_units_kind(grid, ydim)
    xkind, xfac = coord_units_kind(grid, xdim)
    if ykind == "degrees":
        lat = np.asarray(grid[ydim].values, dtype=np.float64)
        if np.nanmax(np.abs(lat)) > 90.0 + 1e-6:
            raise GridError(
                f"latitudes in {ydim!r} go beyond +-90 (max |lat| {np.nanmax(np.abs(lat)):g}); "
                "check the coordinate or pass dims=... for the right one."
            )
        edges = _bounds(grid, ydim)
        if edges is None:
            edges = cell_edges(lat, lower=-90.0, upper=90.0)
        edges = np.clip(edges, -90.0, 90.0)
        band = np.abs(np.diff(np.sin(np.deg2rad(edges))))
        w = xr.DataArray(band, dims=[ydim], coords={ydim: grid[ydim]})
        method = "sin(lat_edge_upper) - sin(lat_edge_lower)"
        if normalize is None:
            if xkind != "degrees":
                raise GridError(
                    f"physical areas of a latitude grid need the longitude {xdim!r} in degrees."
                )
            dlon = np.deg2rad(regular_step(grid, xdim, period=360.0))
            w = w * radius**2 * dlon
    else:
        if ykind != xkind:
            raise GridError(
                f"the grid dims mix coordinate kinds ({ydim!r}: {ykind}, {xdim!r}: {xkind})."
            )
        if normalize is None and ykind != "length":
            raise GridError("physical areas need x/y coordinates in m or km (or degrees).")

        def widths(d: Hashable, fac: float) -> np.ndarray:
            e = _bounds(grid, d)
            if e is None:
                e = cell_edges(np.asarray(grid[d].values, dtype=np.float64))
            return np.abs(np.diff(e)) * fac

        dy = xr.DataArray(widths(ydim, yfac), dims=[ydim], coords={ydim: grid[ydim]})
        dx = xr.DataArray(widths(xdim, xfac), dims=[xdim], coords={xdim: grid[xdim]})
        w = (dy * dx.broadcast_like(dy)).transpose(ydim, xdim)  # under any arithmetic_broadcast
        method = "dx dy"
        if map_factor is not None:
            if not isinstance(map_factor, xr.DataArray):
                raise GridError("map_factor must be a DataArray over the grid's (Y, X) dims.")
            w = w / map_factor**2
            method = "dx dy / map_factor^2"
    if normalize == "mean":  # by a number (a 0-d DataArray would need arithmetic_broadcast)
        w = w / w.mean().item()
    elif normalize == "sum":
        w = w / w.sum().item()
    w.name = "area_weights"
    w.attrs = {
        "units": "m2" if normalize is None else "1",
        "long_name": "cell area" if normalize is None else f"relative cell area ({normalize} 1)",
        "area_method": method,
    }
    return w
