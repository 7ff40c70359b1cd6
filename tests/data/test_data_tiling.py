"""Tiling: exact identity, positive blend weights, normalised fusion, xarray tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from data_helpers import latlon_da
from hypothesis import given, settings
from hypothesis import strategies as st

from flexdownscale.data.grid import rotated_pole_to_geographic
from flexdownscale.data.tiling import (
    TileAccumulator,
    blend_weights,
    tile,
    tile_layout,
    tile_slices,
    untile,
)
from flexdownscale.errors import ConfigError, ShapeError


@st.composite
def layouts(draw):
    h = draw(st.integers(1, 70))
    w = draw(st.integers(1, 70))
    th = draw(st.integers(1, 40))
    tw = draw(st.integers(1, 40))
    oh = draw(st.integers(0, max(0, min(th, h) - 1)))
    ow = draw(st.integers(0, max(0, min(tw, w) - 1)))
    blend = draw(st.sampled_from(["uniform", "cosine", "gaussian"]))
    return h, w, (th, tw), (oh, ow), blend


@settings(max_examples=150, deadline=None)
@given(layouts(), st.integers(0, 2**31 - 1))
def test_untile_of_tile_is_exactly_the_identity(params, seed):
    h, w, size, overlap, blend = params
    x = np.random.default_rng(seed).normal(size=(2, h, w)) * 10 ** np.random.default_rng(
        seed
    ).uniform(-3, 3)
    tiles, layout = tile(x, size, overlap=overlap, blend=blend)
    np.testing.assert_array_equal(untile(tiles, layout), x)
    # every tile has the same shape, lies inside the field, and the cover is complete
    assert all(t.shape == (2, *layout.tile_shape) for t in tiles)
    assert np.all(layout.weight_sum > 0)
    assert all(sy.stop <= h and sx.stop <= w for sy, sx in layout.slices)
    assert max(sy.stop for sy, _ in layout.slices) == h
    assert max(sx.stop for _, sx in layout.slices) == w
    xt = torch.from_numpy(x).float()
    tt, lt = tile(xt, size, overlap=overlap, blend=blend)
    assert torch.equal(untile(tt, lt), xt)


@pytest.mark.parametrize("blend", ["uniform", "cosine", "gaussian"])
def test_blend_weights_are_strictly_positive_and_symmetric(blend):
    w = blend_weights((33, 20), (8, 5), blend)
    assert w.shape == (33, 20)
    assert np.all(w > 0)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w.max() == pytest.approx(1.0, abs=0.01)
    if blend == "cosine":
        np.testing.assert_array_equal(w[8:-8, 5:-5], 1.0)
        assert w[0, 10] < 0.1


def test_fusion_is_the_normalised_weighted_mean_of_different_tiles():
    layout = tile_layout((30, 41), 16, overlap=6, blend="cosine")
    rng = np.random.default_rng(0)
    tiles = [rng.normal(size=(3, 16, 16)) for _ in range(len(layout))]
    num = np.zeros((3, 30, 41))
    den = np.zeros((30, 41))
    for (sy, sx), t in zip(layout.slices, tiles):
        num[:, sy, sx] += layout.weights * t
        den[sy, sx] += layout.weights
    np.testing.assert_allclose(layout.fuse(tiles), num / den, rtol=1e-12, atol=1e-12)
    stacked = torch.from_numpy(np.stack(tiles))
    np.testing.assert_allclose(layout.fuse(stacked).numpy(), num / den, rtol=1e-12, atol=1e-12)


def test_accumulator_in_any_order_equals_fuse_and_checks_coverage():
    layout = tile_layout((50, 37), (16, 12), overlap=(5, 4), blend="gaussian")
    rng = np.random.default_rng(1)
    tiles = [torch.from_numpy(rng.normal(size=(2, 16, 12))) for _ in range(len(layout))]
    acc = TileAccumulator(layout)
    order = rng.permutation(len(layout))
    for k in order:
        acc.add(int(k), tiles[k])
    torch.testing.assert_close(acc.result(), layout.fuse(tiles), rtol=1e-12, atol=1e-12)
    with pytest.raises(ShapeError):
        acc.add(0, torch.zeros(3, 16, 12))
    partial = TileAccumulator(layout)
    partial.add(0, tiles[0])
    with pytest.raises(ShapeError, match="not covered"):
        partial.result()


def test_last_tile_is_shifted_back_to_the_border():
    starts = [(sy.start, sy.stop) for sy, _ in tile_slices((100, 10), 32, overlap=8)]
    assert starts == [(0, 32), (24, 56), (48, 80), (68, 100)]
    assert tile_slices((10, 10), 32) == [(slice(0, 10), slice(0, 10))]


def test_dataarray_tiles_keep_coordinates_and_untile_rebuilds_them():
    da = latlon_da(37, 50, ntime=2)
    tiles, layout = tile(da, 16, overlap=4)
    assert tiles[0].dims == da.dims
    np.testing.assert_array_equal(tiles[-1].lon.values, da.lon.values[-16:])
    back = untile(tiles, layout)
    xr.testing.assert_identical(back, da)


def test_untile_rebuilds_two_dimensional_and_auxiliary_coordinates(shared_data):
    """EURO-CORDEX tas (rotated pole, 2-D lat / lon): untile dropped every coordinate along the
    tiled dims but the dimension coordinates, and the encoding."""
    with xr.open_dataset(shared_data / "grids/tas_rotated_grid_EUR11.nc") as ds:
        da = ds["tas"].load()
        pole = dict(ds["rotated_pole"].attrs)
    lat, lon = rotated_pole_to_geographic(
        da["rlat"].values[:, None], da["rlon"].values[None, :], pole
    )
    da = da.assign_coords(
        lat=(("rlat", "rlon"), lat, {"units": "degrees_north"}),
        lon=(("rlat", "rlon"), lon, {"units": "degrees_east"}),
        row_id=("rlat", np.arange(da.sizes["rlat"])),
    )
    assert da["lat"].ndim == 2
    tiles, layout = tile(da, 128, overlap=32)
    assert len(tiles) > 1
    back = untile(tiles, layout)
    xr.testing.assert_identical(back, da)
    assert back.encoding == da.encoding


def test_bad_tiles_are_rejected():
    with pytest.raises(ShapeError, match="smaller than the tile"):
        tile_slices((64, 64), 16, overlap=16)
    with pytest.raises(ShapeError):
        tile_slices((64, 64), 0)
    with pytest.raises(ShapeError):
        tile_slices((64, 64), 16, overlap=-1)
    with pytest.raises(ConfigError):
        tile_layout((64, 64), 16, blend="hann")
    layout = tile_layout((64, 64), 32, overlap=8)
    with pytest.raises(ShapeError):
        layout.fuse([np.zeros((32, 32))])
    with pytest.raises(ShapeError):
        layout.split(np.zeros((10, 10)))


def test_overlap_forced_by_the_shifted_last_tile_is_blended_without_jumps():
    # a 288-wide field in tiles of 256: the last tile starts at 32 and shares 224 cells with the
    # first. Two tiles that disagree by a constant must blend smoothly across that band: with
    # overlap=0 the window used to be uniform there, so the fused field jumped by half the
    # disagreement where the second tile starts and where the first one ends.
    layout = tile_layout((4, 288), (4, 256), overlap=0, blend="cosine")
    assert [sx.start for _, sx in layout.slices] == [0, 32]
    assert layout.overlap == (0, 0)  # the nominal overlap is what the layout reports
    fused = layout.fuse([np.zeros((4, 256)), np.ones((4, 256))])
    steps = np.abs(np.diff(fused, axis=-1))
    assert fused[:, 0].max() == 0.0  # each border cell: its own tile's value
    assert fused[:, -1].min() == 1.0
    assert steps.max() < 0.02  # a smooth ramp from 0 to 1 (the jumps were 0.5)
    assert np.diff(fused, axis=-1).min() > -1e-3  # no visible overshoot


def test_zero_overlap_tiles_that_meet_edge_to_edge_stay_exact():
    # regular tiles that meet without overlap (the forced overlap only at the end) keep their own
    # values in the cells only they cover, whatever the ramp
    layout = tile_layout((4, 80), (4, 32), overlap=0, blend="cosine")
    assert [sx.start for _, sx in layout.slices] == [0, 32, 48]
    tiles = [np.full((4, 32), float(k)) for k in range(3)]
    fused = layout.fuse(tiles)
    np.testing.assert_array_equal(fused[:, :32], 0.0)
    np.testing.assert_array_equal(fused[:, 64:], 2.0)
    assert np.abs(np.diff(fused[:, 32:], axis=-1)).max() < 0.2  # blended over 16 cells
