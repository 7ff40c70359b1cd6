"""A :class:`~flexdownscale.data.tiling.TileLayout` is a value: a pickled, copied or rebuilt
layout is ``==`` to the original and hashes alike; another layout is not."""

from __future__ import annotations

import copy
import pickle

import numpy as np

from flexdownscale.data.tiling import TileLayout, tile_layout


def test_round_trips_and_rebuilds_are_equal() -> None:
    layout = tile_layout((10, 16), 8, overlap=4)
    for other in (
        pickle.loads(pickle.dumps(layout)),
        copy.deepcopy(layout),
        tile_layout((10, 16), 8, overlap=4),
    ):
        assert other == layout
        assert hash(other) == hash(layout)
    assert len({layout, pickle.loads(pickle.dumps(layout))}) == 1


def test_other_layouts_differ() -> None:
    layout = tile_layout((10, 16), 8, overlap=4)
    assert layout != tile_layout((10, 16), 8, overlap=2)
    assert layout != tile_layout((10, 16), 8, overlap=4, blend="uniform")
    assert layout != tile_layout((12, 16), 8, overlap=4)
    assert layout != "a layout"
    # the same slices with other weights: not the same layout
    doubled = TileLayout(
        shape=layout.shape,
        tile_shape=layout.tile_shape,
        overlap=layout.overlap,
        blend=layout.blend,
        slices=layout.slices,
        weights=2 * layout.weights,
    )
    assert doubled != layout
    assert np.array_equal(doubled.weights, 2 * layout.weights)
