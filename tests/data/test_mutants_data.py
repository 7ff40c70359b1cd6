"""Closed-form checks that pin data-layer numerics a mutation audit found untested (helper-180).

Each test names the small code change ("mutant") it fails on: the Gaussian blend window's
width, the ramp of the overlap forced by the shifted last tile, the overlap of the second axis
taken from the first.
"""

from __future__ import annotations

import math

import numpy as np

from flexdownscale.data.tiling import blend_weights, tile_layout


def test_gaussian_blend_window_is_a_quarter_of_the_tile_wide():
    """``exp(-d^2 / (2 s^2))`` about the tile centre with ``s`` a quarter of the tile side (the
    docstring), floored at 1e-3; a window of half the side passed every other test."""
    n = 12
    d = np.arange(n) - 0.5 * (n - 1)
    expected = np.maximum(np.exp(-0.5 * (d / (n / 4.0)) ** 2), 1e-3)
    np.testing.assert_allclose(blend_weights((1, n), 0, "gaussian")[0], expected, rtol=1e-12)
    np.testing.assert_allclose(blend_weights((n, 1), 0, "gaussian")[:, 0], expected, rtol=1e-12)


def test_overlap_forced_by_the_shifted_last_tile_ramps_over_every_shared_cell():
    """Tiles 4 wide with no overlap over 10 columns start at 0, 4 and 6 (the last shifted back
    to the border), so the last two share 2 columns: the cosine ramps are 2 cells, ``sin^2`` at
    a quarter and three quarters of the way up, as ``blend_weights`` with an overlap of 2. One
    cell short, the ramp was a single cell of weight 0.5."""
    layout = tile_layout((8, 10), (8, 4), overlap=0, blend="cosine")
    assert sorted({sx.start for _, sx in layout.slices}) == [0, 4, 6]
    np.testing.assert_allclose(layout.weights, blend_weights((8, 4), (0, 2), "cosine"))
    quarter = math.sin(0.25 * math.pi / 2) ** 2
    np.testing.assert_allclose(layout.weights[0], [quarter, 1 - quarter, 1 - quarter, quarter])


def test_each_axis_keeps_its_own_overlap():
    """An overlap of (2, 4) gives ramps of 2 rows and 4 columns, and the layout reports both;
    the columns took the rows' overlap when the clamp to ``tile - 1`` read the wrong entry."""
    layout = tile_layout((20, 30), (8, 10), overlap=(2, 4), blend="cosine")
    assert layout.overlap == (2, 4)
    np.testing.assert_allclose(layout.weights, blend_weights((8, 10), (2, 4), "cosine"))
    starts = sorted({sx.start for _, sx in layout.slices})
    assert starts[:3] == [0, 6, 12]  # a stride of 10 - 4 columns
