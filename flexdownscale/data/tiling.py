"""Tiling: split a field into overlapping tiles and fuse tiles back with blend windows.

A :class:`TileLayout` fixes the tile positions over a (H, W) field: tiles of ``tile`` cells with
``overlap`` cells shared between neighbours, starting at 0 with stride ``tile - overlap``; the last
tile of a row or column is shifted back so that it ends exactly at the border (edges that do not
divide evenly are covered without padding; it then shares more than ``overlap`` cells with its
neighbour, and with ``overlap=0`` the cosine ramps take the width of that forced overlap, so the
two tiles are blended smoothly instead of averaged between two jumps). Fusion is the normalised
weighted mean

    fused = sum_k w_k * tile_k / sum_k w_k

with strictly positive blend weights (``uniform``, ``cosine`` or ``gaussian`` windows), so every
cell is covered and the division is exact. It is computed as ``ref + sum_k w_k (tile_k - ref) /
sum_k w_k``, where ``ref`` is the first tile covering each cell: mathematically the same mean, and
bit-exact when the tiles agree, so ``untile(*tile(x)) == x`` exactly. The same code runs on numpy
arrays and torch tensors (any leading dimensions, any device), which is what per-step
MultiDiffusion fusion of tile estimates needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

import numpy as np
import torch
import xarray as xr

from .._keywords import keyword_hints
from ..errors import ConfigError, ShapeError

__all__ = [
    "Blend",
    "TileAccumulator",
    "TileLayout",
    "blend_weights",
    "tile",
    "tile_layout",
    "tile_slices",
    "untile",
]

Blend = Literal["uniform", "cosine", "gaussian"]
Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: Floor of the cosine ramp and of the Gaussian window, so weights stay strictly positive.
_MIN_WEIGHT = 1e-3


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return (int(value), int(value))
    try:
        a, b = value  # type: ignore[misc]
    except (TypeError, ValueError) as err:
        raise ShapeError(f"{name}={value!r}; expected an int or a pair of ints") from err
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in (a, b)):
        raise ShapeError(f"{name}={value!r}; expected an int or a pair of ints")
    return (int(a), int(b))


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


@keyword_hints
def tile_slices(
    shape: Sequence[int], tile: int | Sequence[int], *, overlap: int | Sequence[int] = 0
) -> list[tuple[slice, slice]]:
    """Slices of the tiles covering a field.

    Parameters
    ----------
    shape
        (H, W) of the field (extra leading entries are ignored).
    tile
        Tile size (int or (th, tw)); clipped to the field when the field is smaller.
    overlap
        Cells shared by neighbouring tiles (int or pair), ``0 <= overlap < tile``.

    Returns
    -------
    list of (slice, slice)
        Row-major order; every tile has the same shape; the last tile of each row / column ends
        at the border.

    Raises
    ------
    ShapeError
        For non-positive tiles, negative overlaps or overlaps not smaller than the tile.

    Examples
    --------
    >>> [(s.start, s.stop) for s, _ in tile_slices((10, 4), 4, overlap=1)]
    [(0, 4), (3, 7), (6, 10)]
    """
    if len(shape) < 2:
        raise ShapeError(f"shape={tuple(shape)}; expected (..., H, W)")
    h, w = int(shape[-2]), int(shape[-1])
    th, tw = _pair(tile, "tile")
    oh, ow = _pair(overlap, "overlap")
    if th < 1 or tw < 1:
        raise ShapeError(f"tile={tile!r}; expected positive sizes")
    if oh < 0 or ow < 0:
        raise ShapeError(f"overlap={overlap!r}; expected non-negative values")
    th, tw = min(th, h), min(tw, w)
    if (oh >= th and h > th) or (ow >= tw and w > tw):
        raise ShapeError(
            f"overlap={overlap!r} must be smaller than the tile {(th, tw)}; expected e.g. "
            f"overlap = tile // 4"
        )
    return [
        (slice(y, y + th), slice(x, x + tw)) for y in _starts(h, th, oh) for x in _starts(w, tw, ow)
    ]


def _window_1d(n: int, overlap: int, kind: Blend) -> np.ndarray:
    if kind == "uniform" or n == 1:
        return np.ones(n)
    i = np.arange(n, dtype=np.float64)
    if kind == "cosine":
        if overlap <= 0:
            return np.ones(n)
        ramp = min(overlap, max(1, n // 2))
        rise = np.where(i < ramp, np.sin(0.5 * math.pi * (i + 0.5) / ramp) ** 2, 1.0)
        return np.maximum(np.minimum(rise, rise[::-1]), _MIN_WEIGHT)
    centre = 0.5 * (n - 1)
    sigma = max(n / 4.0, 0.5)
    return np.maximum(np.exp(-0.5 * ((i - centre) / sigma) ** 2), _MIN_WEIGHT)


@keyword_hints
def blend_weights(
    tile_shape: Sequence[int], overlap: int | Sequence[int] = 0, kind: Blend = "cosine"
) -> np.ndarray:
    """Blend window of one tile, strictly positive everywhere.

    ``uniform``: ones. ``cosine``: ``sin^2`` ramps of ``overlap`` cells at each side (from about
    ``sin^2(pi / (4 overlap))`` up to 1), 1 in the middle. ``gaussian``: ``exp(-d^2 / (2 s^2))``
    with ``s`` a quarter of the tile side, about the tile centre. Cosine and Gaussian windows are
    floored at 1e-3.

    Parameters
    ----------
    tile_shape
        (th, tw).
    overlap
        Overlap (int or pair) setting the width of the cosine ramps.
    kind
        ``"uniform"``, ``"cosine"`` or ``"gaussian"``.

    Returns
    -------
    numpy.ndarray
        (th, tw) float64 weights, all > 0.

    Examples
    --------
    A row of six cells with ramps of two cells at either end (``sin^2`` at the cell centres,
    a quarter and three quarters of the way up); the uniform window is flat:

    >>> blend_weights((1, 6), 2).round(3)
    array([[0.146, 0.854, 1.   , 1.   , 0.854, 0.146]])
    >>> blend_weights((2, 3), 1, kind="uniform")
    array([[1., 1., 1.],
           [1., 1., 1.]])
    """
    if kind not in get_args(Blend):
        raise ConfigError(
            f"blend={kind!r} is not a valid option; expected one of "
            f"{', '.join(repr(o) for o in get_args(Blend))}"
        )
    th, tw = _pair(tuple(tile_shape), "tile_shape")
    oh, ow = _pair(overlap, "overlap")
    return np.outer(_window_1d(th, oh, kind), _window_1d(tw, ow, kind))


@dataclass(frozen=True, eq=False)
class TileLayout:
    """Tile positions and blend weights over a (H, W) field.

    Attributes
    ----------
    shape : tuple of (int, int)
        ``(H, W)`` of the field, in cells.
    tile_shape : tuple of (int, int)
        ``(th, tw)`` of every tile, in cells.
    overlap : tuple of (int, int)
        ``(oh, ow)``: nominal overlap of neighbouring tiles, in cells.
    blend : {"uniform", "cosine", "gaussian"}
        Kind of blend window.
    slices : tuple of tuple of (slice, slice)
        One (row slice, column slice) per tile, row-major.
    weights : numpy.ndarray
        ``(th, tw)`` float64 blend window (strictly positive).

    Notes
    -----
    A layout is a value: two are ``==`` (and hash alike) when their fields and weights are
    equal, so one built again, copied or pickled equals the original.

    Examples
    --------
    Six 8 x 8 tiles over a 10 x 16 field (built by :func:`tile_layout`); split and fused
    back, a field is unchanged, and tiles that disagree (0 in the first, 1 in the second)
    cross-fade smoothly over the four columns they share:

    >>> import numpy as np
    >>> layout = tile_layout((10, 16), 8, overlap=4)
    >>> len(layout), layout.tile_shape, layout.weights.shape
    (6, (8, 8), (8, 8))
    >>> x = np.random.default_rng(0).normal(size=(10, 16))
    >>> bool((layout.fuse(layout.split(x)) == x).all())
    True
    >>> tiles = [np.full(layout.tile_shape, float(k)) for k in range(len(layout))]
    >>> layout.fuse(tiles)[0, 3:9].round(2)
    array([0.  , 0.04, 0.31, 0.69, 0.96, 1.04])
    """

    shape: tuple[int, int]
    tile_shape: tuple[int, int]
    overlap: tuple[int, int]
    blend: Blend
    slices: tuple[tuple[slice, slice], ...]
    weights: np.ndarray = field(repr=False)
    _norm: np.ndarray = field(init=False, repr=False)  # weight_sum, from slices and weights

    def __post_init__(self) -> None:
        norm = np.zeros(self.shape)
        for sy, sx in self.slices:
            norm[sy, sx] += self.weights
        object.__setattr__(self, "_norm", norm)

    def __len__(self) -> int:
        return len(self.slices)

    def _key(self) -> tuple[Any, ...]:
        """The fields that fix the layout (the weights aside), hashable: slices as
        ``(start, stop, step)``, which Python 3.11's slices are not."""
        cells = tuple((s.start, s.stop, s.step) for pair in self.slices for s in pair)
        return (self.shape, self.tile_shape, self.overlap, self.blend, cells)

    def __eq__(self, other: object) -> bool:
        """Equal values: the same field, tiles and blend weights (a pickled or copied layout
        is equal to its original)."""
        if not isinstance(other, TileLayout):
            return NotImplemented
        return self._key() == other._key() and np.array_equal(self.weights, other.weights)

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def weight_sum(self) -> np.ndarray:
        """(H, W) sum of the blend weights of all tiles covering each cell (> 0)."""
        return self._norm

    def split(self, x: Array) -> list[Array]:
        """Tiles of ``x`` (..., H, W): views (numpy) or slices (torch), row-major.

        Parameters
        ----------
        x : numpy.ndarray or torch.Tensor
            Field of shape (..., H, W) with ``(H, W) == self.shape``.

        Returns
        -------
        list of numpy.ndarray or torch.Tensor
            ``len(self)`` tiles of shape (..., th, tw).
        """
        if tuple(x.shape[-2:]) != self.shape:
            raise ShapeError(f"field has shape {tuple(x.shape[-2:])}; layout expects {self.shape}")
        return [x[..., sy, sx] for sy, sx in self.slices]

    def fuse(self, tiles: Sequence[Array] | Array) -> Array:
        """Blend tiles (a sequence, or an array with the tile index first) into one field.

        Parameters
        ----------
        tiles
            ``len(self)`` arrays of shape (..., th, tw), numpy or torch (same type / device).

        Returns
        -------
        numpy.ndarray or torch.Tensor
            The field (..., H, W), of the tiles' type, dtype and device.
        """
        n = len(tiles)
        if n != len(self.slices):
            raise ShapeError(f"got {n} tiles; the layout has {len(self.slices)}")
        acc = TileAccumulator(self)
        for k in range(n):
            acc.add(k, tiles[k])
        return acc.result()


class TileAccumulator:
    """Incremental normalised fusion of tile estimates over a :class:`TileLayout`.

    Add tile estimates one at a time (any order, numpy or torch on any device), then read the
    fused field; memory is two fields plus the coverage mask, whatever the number of tiles. This
    is the per-step fusion of MultiDiffusion-style tiled sampling.

    Parameters
    ----------
    layout : TileLayout
        The layout the tiles come from (:func:`tile_layout`).

    Examples
    --------
    >>> import numpy as np
    >>> layout = tile_layout((40, 40), 24, overlap=8)
    >>> x = np.random.default_rng(0).normal(size=(2, 40, 40))
    >>> acc = TileAccumulator(layout)
    >>> for k, t in enumerate(layout.split(x)):
    ...     acc.add(k, t)
    >>> bool((acc.result() == x).all())
    True
    """

    def __init__(self, layout: TileLayout) -> None:
        self.layout = layout
        self._ref: Any = None
        self._acc: Any = None
        self._covered: Any = None
        self._wsum = np.zeros(layout.shape)
        self._w: Any = None

    def _allocate(self, tile: Any) -> None:
        lead = tuple(tile.shape[:-2])
        shape = (*lead, *self.layout.shape)
        if isinstance(tile, torch.Tensor):
            dtype = tile.dtype if tile.is_floating_point() else torch.get_default_dtype()
            self._ref = torch.zeros(shape, dtype=dtype, device=tile.device)
            self._acc = torch.zeros(shape, dtype=dtype, device=tile.device)
            self._covered = torch.zeros(self.layout.shape, dtype=torch.bool, device=tile.device)
            self._w = torch.as_tensor(self.layout.weights, dtype=dtype, device=tile.device)
        else:
            dtype = np.result_type(tile.dtype, np.float32)
            self._ref = np.zeros(shape, dtype=dtype)
            self._acc = np.zeros(shape, dtype=dtype)
            self._covered = np.zeros(self.layout.shape, dtype=bool)
            self._w = self.layout.weights.astype(dtype)

    def add(self, k: int, tile: Array) -> None:
        """Add the estimate of tile ``k`` (shape (..., th, tw)).

        Parameters
        ----------
        k : int
            Index of the tile in ``layout.slices`` (0 to ``len(layout) - 1``).
        tile : numpy.ndarray or torch.Tensor
            The tile's estimate, shape (..., th, tw), the same leading shape for every tile.
        """
        if not 0 <= k < len(self.layout):
            raise ShapeError(
                f"tile index {k} out of range; the layout has {len(self.layout)} tiles"
            )
        if tuple(tile.shape[-2:]) != self.layout.tile_shape:
            raise ShapeError(
                f"a tile has shape {tuple(tile.shape[-2:])}; the layout expects "
                f"{self.layout.tile_shape}"
            )
        if self._ref is None:
            self._allocate(tile)
        if tuple(tile.shape[:-2]) != tuple(self._ref.shape[:-2]):
            raise ShapeError(
                f"tile {k} has leading shape {tuple(tile.shape[:-2])}; earlier tiles had "
                f"{tuple(self._ref.shape[:-2])}"
            )
        sy, sx = self.layout.slices[k]
        covered = self._covered[sy, sx]
        if isinstance(tile, torch.Tensor):
            ref = torch.where(covered, self._ref[..., sy, sx], tile.to(self._ref.dtype))
        else:
            ref = np.where(covered, self._ref[..., sy, sx], tile)
        # ref is the value of the first tile that covered each cell: tiles that agree with it add
        # exactly zero, which makes the fusion of identical tiles bit-exact
        self._ref[..., sy, sx] = ref
        self._acc[..., sy, sx] += self._w * (tile - ref)
        self._covered[sy, sx] = True
        self._wsum[sy, sx] += self.layout.weights

    def result(self) -> Any:
        """The fused field ``ref + sum_k w_k (tile_k - ref) / sum_k w_k`` over the added tiles.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Shape (..., H, W), the tiles' type (at least float32) and device.

        Raises
        ------
        ShapeError
            When no tile was added or some cells are covered by none of the added tiles.
        """
        if self._ref is None or not np.all(self._wsum > 0):
            raise ShapeError(
                "some cells are not covered by the tiles added so far; add every tile of the "
                "layout before reading the result"
            )
        if isinstance(self._ref, torch.Tensor):
            norm = torch.as_tensor(self._wsum, dtype=self._ref.dtype, device=self._ref.device)
        else:
            norm = self._wsum.astype(self._ref.dtype)
        return self._ref + self._acc / norm


def _ramp_width(starts: Sequence[int], size: int, overlap: int) -> int:
    """Width of the blend ramps along one axis: the nominal ``overlap``, or, when that is 0,
    the overlap forced by shifting the last tile back to the border (the last two tiles share
    those cells; without a ramp their estimates would be averaged with a jump at both ends)."""
    if overlap > 0 or len(starts) < 2:
        return overlap
    return max(0, starts[-2] + size - starts[-1])


@keyword_hints
def tile_layout(
    shape: Sequence[int],
    tile: int | Sequence[int],
    *,
    overlap: int | Sequence[int] = 0,
    blend: Blend = "cosine",
) -> TileLayout:
    """Build the :class:`TileLayout` of a (H, W) field (see :func:`tile_slices`).

    The blend window's cosine ramps are ``overlap`` cells wide; with ``overlap=0`` they are as
    wide as the overlap forced by the last tile of a row or column (shifted back to end at the
    border), so that overlap is blended smoothly instead of averaged with jumps at its ends
    (``layout.overlap`` stays the nominal one).

    Parameters
    ----------
    shape : sequence of int
        Shape of the field; its last two entries are (H, W).
    tile : int or (int, int)
        Tile size (th, tw), or one int for square tiles.
    overlap : int or (int, int), default 0
        Nominal overlap between neighbouring tiles, in cells.
    blend : {"uniform", "cosine", "gaussian"}, default "cosine"
        Blend window of the tiles.

    Returns
    -------
    TileLayout
        The tiles' slices and blend weights; :meth:`TileLayout.split` and
        :meth:`TileLayout.fuse` cut a field into tiles and blend them back.

    Examples
    --------
    Tiles of 8 with an overlap of 4 start every 4 cells; along the 10 rows the last tile is
    shifted back to end at the border (rows 2 to 10), so every cell is covered:

    >>> layout = tile_layout((10, 16), 8, overlap=4)
    >>> sorted({(sy.start, sy.stop) for sy, _ in layout.slices})
    [(0, 8), (2, 10)]
    >>> sorted({(sx.start, sx.stop) for _, sx in layout.slices})
    [(0, 8), (4, 12), (8, 16)]
    >>> layout.weight_sum.shape, bool((layout.weight_sum > 0).all())
    ((10, 16), True)
    """
    if blend not in get_args(Blend):
        raise ConfigError(
            f"blend={blend!r} is not a valid option; expected one of "
            f"{', '.join(repr(o) for o in get_args(Blend))}"
        )
    slices = tile_slices(shape, tile, overlap=overlap)
    h, w = int(shape[-2]), int(shape[-1])
    sy0, sx0 = slices[0]
    tshape = (sy0.stop - sy0.start, sx0.stop - sx0.start)
    ov = _pair(overlap, "overlap")
    ov = (min(ov[0], tshape[0] - 1), min(ov[1], tshape[1] - 1))
    ramp = (
        _ramp_width(sorted({sy.start for sy, _ in slices}), tshape[0], ov[0]),
        _ramp_width(sorted({sx.start for _, sx in slices}), tshape[1], ov[1]),
    )
    weights = blend_weights(tshape, ramp, blend)
    return TileLayout(
        shape=(h, w),
        tile_shape=tshape,
        overlap=ov,
        blend=blend,
        slices=tuple(slices),
        weights=weights,
    )


def _axes(obj: xr.DataArray, dims: Mapping[str, str] | None) -> tuple[str, str]:
    from .grid import find_axes

    axes = find_axes(obj, dims=dims)
    return axes.y, axes.x


@keyword_hints
def tile(
    x: Any,
    size: int | Sequence[int],
    *,
    overlap: int | Sequence[int] = 0,
    blend: Blend = "cosine",
    dims: Mapping[str, str] | None = None,
) -> tuple[list[Any], TileLayout]:
    """Split ``x`` into overlapping tiles.

    Parameters
    ----------
    x
        (..., H, W) numpy array or torch tensor, or a DataArray (its x / y dimensions are found
        with :func:`~flexdownscale.data.grid.find_axes`; tiles keep their coordinates).
    size
        Tile size (int or (th, tw)).
    overlap
        Overlap between neighbouring tiles.
    blend
        Blend window used by :func:`untile`.
    dims
        Dimension-name override for DataArrays.

    Returns
    -------
    tiles, layout
        ``untile(tiles, layout)`` returns ``x`` exactly.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(3, 50, 70))
    >>> tiles, layout = tile(x, 32, overlap=8)
    >>> len(tiles), tiles[0].shape
    (6, (3, 32, 32))
    >>> bool((untile(tiles, layout) == x).all())
    True
    """
    if isinstance(x, xr.DataArray):
        ydim, xdim = _axes(x, dims)
        layout = tile_layout((x.sizes[ydim], x.sizes[xdim]), size, overlap=overlap, blend=blend)
        return [x.isel({ydim: sy, xdim: sx}) for sy, sx in layout.slices], layout
    if isinstance(x, xr.Dataset):
        raise ShapeError("tile() takes a DataArray, numpy array or tensor; select a variable first")
    if not isinstance(x, np.ndarray | torch.Tensor):
        x = np.asarray(x)
    if x.ndim < 2:
        raise ShapeError(f"x has shape {tuple(x.shape)}; expected (..., H, W)")
    layout = tile_layout(tuple(x.shape[-2:]), size, overlap=overlap, blend=blend)
    return layout.split(x), layout


@keyword_hints
def untile(
    tiles: Sequence[Any], layout: TileLayout, *, dims: Mapping[str, str] | None = None
) -> Any:
    """Fuse tiles into one field with the layout's blend weights (see :meth:`TileLayout.fuse`).

    DataArray tiles are fused on their values; every coordinate along the tiled dimensions (the
    dimension coordinates, 2-D latitude / longitude, auxiliary coordinates) is assembled from the
    tiles' coordinates, the others are the first tile's; attributes and encodings are kept.

    Parameters
    ----------
    tiles : sequence of numpy.ndarray, torch.Tensor or DataArray
        ``len(layout)`` tiles of shape (..., th, tw), as :func:`tile` gives them.
    layout : TileLayout
        Their layout.
    dims : mapping of str to str, optional
        Dimension-name override for DataArray tiles; default None: found from CF attributes
        and names.

    Returns
    -------
    numpy.ndarray, torch.Tensor or DataArray
        The fused (..., H, W) field, of the tiles' type.

    Examples
    --------
    DataArray tiles, each processed on its own (here doubled), fuse into the processed
    field with the coordinates of the whole grid:

    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(60.0).reshape(6, 10), dims=("y", "x"),
    ...                   coords={"y": np.arange(6.0), "x": np.arange(10.0)})
    >>> tiles, layout = tile(da, 4, overlap=2)
    >>> len(tiles), tiles[1]["x"].values
    (8, array([2., 3., 4., 5.]))
    >>> fused = untile([2 * t for t in tiles], layout)
    >>> fused.dims, bool((fused == 2 * da).all()), fused["x"].values[[0, -1]]
    (('y', 'x'), True, array([0., 9.]))
    """
    if len(tiles) and isinstance(tiles[0], xr.DataArray):
        first = tiles[0]
        ydim, xdim = _axes(first, dims)
        moved = [t.transpose(..., ydim, xdim) for t in tiles]
        values = layout.fuse([np.asarray(t.values) for t in moved])
        sizes = {ydim: layout.shape[0], xdim: layout.shape[1]}
        coords: dict[Any, Any] = {}
        for name, coord in first.coords.items():
            if ydim not in coord.dims and xdim not in coord.dims:
                coords[name] = coord.variable
                continue
            shape = tuple(sizes.get(d, coord.sizes[d]) for d in coord.dims)
            full = np.empty(shape, dtype=coord.dtype)
            for (sy, sx), t in zip(layout.slices, moved):
                where = tuple({ydim: sy, xdim: sx}.get(d, slice(None)) for d in coord.dims)
                full[where] = t[name].values
            variable = xr.Variable(coord.dims, full, dict(coord.attrs))
            variable.encoding = dict(coord.encoding)
            coords[name] = variable
        out = xr.DataArray(
            values, dims=moved[0].dims, coords=coords, name=first.name, attrs=dict(first.attrs)
        )
        out.encoding = dict(first.encoding)
        return out.transpose(*first.dims)
    return layout.fuse(tiles)
