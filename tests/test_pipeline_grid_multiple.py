"""The Downscaler and the Forecaster pad and tile to the backbone's ``grid_multiple``.

A backbone of one's own may need H and W to be multiples of another number than the built-in
backbones' 16 (one more downsampling level: 32; a stride-3 stem: 12). The pipeline padded every
field to multiples of 16, so such a backbone failed with its own ShapeError on a grid the user
never chose (48 x 64 for a 40 x 56 field). A pointwise backbone (whose output does not depend on
the padding) gives the same field for every multiple, which pins the crop back too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from test_pipeline import make_downscaler

from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import Normalizer
from flexdownscale.errors import ConfigError
from flexdownscale.models import Backbone
from flexdownscale.pipeline import Downscaler, Forecaster, _lattice, _periodic_halo, _tiling

FACTOR = 4


def pointwise(multiple: int, config: ModelConfig | None = None) -> Backbone:
    """A 1x1-convolution backbone that insists on grids of ``multiple``."""

    class Pointwise(Backbone):
        grid_multiple = multiple

        def __init__(self, config):
            super().__init__(config)
            self.task = torch.nn.Conv2d(self.cond_channels, 4, 1)
            self.net = torch.nn.Conv2d(self.out_channels + 4, self.out_channels, 1)
            self.task_shapes = [(4, 1)]

        def _encode_task(self, cond):
            return [self.task(cond)]

        def _forward(self, x_t, t, phys, features):
            h = torch.cat([x_t, features[0]], dim=1)
            return self.net(h) * t[:, None, None, None]

    torch.manual_seed(0)
    return Pointwise(config or ModelConfig(in_channels=1))


def fields(ny: int = 40, nx: int = 56) -> tuple[xr.Dataset, xr.Dataset]:
    """A smooth fine field on a regular lat/lon grid and its 4x coarser input."""
    lat = 50.0 + 0.25 * np.arange(ny)
    lon = -5.0 + 0.25 * np.arange(nx)
    t2m = 280 + 3 * np.sin(lat[:, None] / 3) * np.cos(lon[None, :] / 2)
    fine = xr.Dataset(
        {"t2m": (("latitude", "longitude"), t2m, {"units": "K"})},
        coords={
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )
    coarse = fine.coarsen(latitude=FACTOR, longitude=FACTOR).mean()
    coarse["t2m"].attrs = {"units": "K"}
    return fine, coarse


def downscaler(multiple: int, fine: xr.Dataset) -> Downscaler:
    return make_downscaler(fine, model=pointwise(multiple), name=f"pointwise-{multiple}")


def test_lattice_and_halos_follow_the_multiple():
    assert _lattice(4, 32) == 32
    assert _lattice(3, 32) == 96
    assert _lattice(4, 12) == 12
    assert _lattice(4) == 16  # the built-in backbones' 16 by default
    for multiple in (12, 32):
        before, after = _periodic_halo(40, FACTOR, multiple)
        assert (40 + before + after) % _lattice(FACTOR, multiple) == 0
        _, end_pad, layout = _tiling((40, 56), FACTOR, (False, False), 256, 0, multiple=multiple)
        assert all((n + pad) % multiple == 0 for n, pad in zip((40, 56), end_pad))
        assert all(side % multiple == 0 for side in layout.tile_shape)


@pytest.mark.parametrize("multiple", [12, 32])
def test_a_backbone_of_another_multiple_runs_on_any_grid(multiple):
    fine, coarse = fields()  # 40 x 56 fine cells: padded to 48 x 64 before, which 12 and 32
    out = downscaler(multiple, fine)(coarse, members=2, seed=3)  # do not both divide
    assert out["t2m"].dims == ("member", "latitude", "longitude")
    assert out["t2m"].shape == (2, 40, 56)
    assert np.isfinite(out["t2m"]).all()
    np.testing.assert_array_equal(out["latitude"], fine["latitude"])


def test_same_padded_grid_same_field():
    """64 x 64 fine cells need no padding for 16 or 32: the same model weights give the same
    ensemble bit for bit, so the 32 path crops and places the field as the 16 one does."""
    fine, coarse = fields(64, 64)
    reference = downscaler(16, fine)
    other = downscaler(32, fine)
    other.backbone.load_state_dict(reference.backbone.state_dict())
    a = reference(coarse, members=2, seed=5)
    b = other(coarse, members=2, seed=5)
    xr.testing.assert_identical(a["t2m"].drop_attrs(), b["t2m"].drop_attrs())


def test_tiles_of_the_multiple_only_and_the_message_names_it():
    fine, coarse = fields()
    model = downscaler(32, fine)
    with pytest.raises(ConfigError, match=r"tile = 48 must be a positive multiple of 32"):
        model(coarse, tile=48)
    # a tiled run (tile 32 < field) pads and tiles on the 32 lattice
    tiled = model(coarse, tile=32, overlap=8, seed=0)
    assert tiled["t2m"].shape == (40, 56)
    assert np.isfinite(tiled["t2m"]).all()


def test_a_forecaster_on_a_backbone_of_another_multiple():
    """The Forecaster pads each lead's input to the backbone's multiple (48 x 64 before, which
    a 32 backbone refused)."""
    fine, _ = fields()
    model = pointwise(32, ModelConfig(in_channels=1, task="forecast", past_frames=2))
    series = xr.concat([fine + k for k in range(3)], "time").assign_coords(time=[0.0, 1.0, 2.0])
    forecaster = Forecaster(
        model,
        DiffusionConfig(),
        normalizer=Normalizer.fit(series[["t2m"]]),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(sampler="ddim", steps=2),
    )
    out = forecaster(series, lead_steps=2, seed=0)
    assert out["t2m"].shape == (2, 40, 56)
    assert np.isfinite(out["t2m"]).all()
