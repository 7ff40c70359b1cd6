"""The xarray-facing data layer: grids, regridding, degradation, normalization, tiling, datasets.

Everything a model sees comes through here, and everything a user hands to ``ds.flex`` is checked
here first. Submodules:

- :mod:`~flexdownscale.data.grid`: CF-aware discovery, validation and normalization of grids.
- :mod:`~flexdownscale.data.regrid`: one ``regrid`` over the xarray-regrid and xesmf backends.
- :mod:`~flexdownscale.data.degrade`: fine -> coarse operators and the coarse -> fine base field.
- :mod:`~flexdownscale.data.normalize`: per-variable statistics with an exact inverse.
- :mod:`~flexdownscale.data.tiling`: overlapping tiles and blended fusion.
- :mod:`~flexdownscale.data.datasets`: lazy torch datasets for training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .degrade import (
    DEGRADATIONS,
    UPSAMPLINGS,
    degrade,
    degrade_array,
    grid_row_weights,
    up,
    upsample_array,
)
from .grid import (
    GridAxes,
    GridSpec,
    add_bounds,
    cell_bounds,
    coarsen_grid,
    find_axes,
    grid_spec,
    normalize_grid,
    refine_grid,
    rotated_pole_to_geographic,
    row_area_weights,
)
from .regrid import Regridder, regrid

if TYPE_CHECKING:
    from .datasets import ForecastDataset, SuperResolutionDataset, from_config, split_positions
    from .normalize import Normalizer, VariableStats
    from .tiling import (
        TileAccumulator,
        TileLayout,
        blend_weights,
        tile,
        tile_layout,
        tile_slices,
        untile,
    )

#: The names of the submodules that need torch (the training datasets, the normalizer's and the
#: tiles' tensor paths), loaded on first use: grids, regridding and degradation load without
#: torch, so the metrics, the plots and ``flexdownscale evaluate`` do not import it.
_LAZY = {
    **dict.fromkeys(
        ("ForecastDataset", "SuperResolutionDataset", "from_config", "split_positions"),
        "datasets",
    ),
    **dict.fromkeys(("Normalizer", "VariableStats"), "normalize"),
    **{name: "tiling" for name in ("TileAccumulator", "TileLayout", "blend_weights", "tile")},
    **{name: "tiling" for name in ("tile_layout", "tile_slices", "untile")},
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY.values():  # the submodule itself: fd.data.normalize
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    """The public names, the lazily loaded ones included (for ``dir()`` and tab completion)."""
    return sorted({*globals(), *_LAZY, *_LAZY.values()})


__all__ = [
    "DEGRADATIONS",
    "UPSAMPLINGS",
    "ForecastDataset",
    "GridAxes",
    "GridSpec",
    "Normalizer",
    "Regridder",
    "SuperResolutionDataset",
    "TileAccumulator",
    "TileLayout",
    "VariableStats",
    "add_bounds",
    "blend_weights",
    "cell_bounds",
    "coarsen_grid",
    "degrade",
    "degrade_array",
    "find_axes",
    "from_config",
    "grid_row_weights",
    "grid_spec",
    "normalize_grid",
    "refine_grid",
    "regrid",
    "rotated_pole_to_geographic",
    "row_area_weights",
    "split_positions",
    "tile",
    "tile_layout",
    "tile_slices",
    "untile",
    "up",
    "upsample_array",
]
