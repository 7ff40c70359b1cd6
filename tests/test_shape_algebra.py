"""Shape algebra of downscaling (reviewer-149): an input ``member`` dim run as time, a bbox run's
fine coordinates against the full run's, crop messages of factors whose crops are not multiples
of 16, and periodic axes that the factor does not divide."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale.config import DataConfig, DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import (
    ForecastDataset,
    Normalizer,
    SuperResolutionDataset,
    degrade,
    from_config,
    grid_spec,
    refine_grid,
)
from flexdownscale.diffusion import VPDiffusion
from flexdownscale.errors import DataError, FlexDownscaleWarning, ShapeError
from flexdownscale.models import Backbone
from flexdownscale.pipeline import DEFAULT_TILE, Downscaler, _lattice, _round_up

_VP = VPDiffusion()


class ZeroSample(Backbone):
    """Predicts ``v = alpha / sigma * x_t``, whose clean residual is 0: the output is exactly
    the upsampled, normalized coarse input, an exact probe of where cells land."""

    grid_multiple = 16

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.task_shapes: list[tuple[int, int]] = []
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def _encode_task(self, cond: torch.Tensor) -> list[torch.Tensor]:
        return []

    def _forward(
        self, x_t: torch.Tensor, t: torch.Tensor, phys: torch.Tensor | None, features: list
    ) -> torch.Tensor:
        alpha, sigma = _VP.alpha_sigma(t)
        return x_t * (alpha / sigma)[:, None, None, None] + 0 * self.unused


def fine_field(
    ny: int, nx: int, step: float, *, lat0: float = 40.0, lon0: float = -10.0, times: int = 1
) -> xr.Dataset:
    """A smooth temperature field on cells of ``step`` degrees starting at (lat0, lon0)."""
    lat = lat0 + step / 2 + step * np.arange(ny)
    lon = lon0 + step / 2 + step * np.arange(nx)
    rng = np.random.default_rng(0)
    base = 280 + 5 * np.sin(np.deg2rad(lon))[None, :] + 3 * np.cos(lat / 7)[:, None]
    data = base[None] + rng.normal(0, 0.5, (times, ny, nx))
    return xr.Dataset(
        {"t2m": (("time", "lat", "lon"), data.astype("float32"), {"units": "K"})},
        coords={
            "time": np.datetime64("2020-01-01") + np.arange(times) * np.timedelta64(6, "h"),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )


def zero_downscaler(fine: xr.Dataset, factor: int) -> Downscaler:
    """A Downscaler x ``factor`` on ``fine``'s grid whose output is the upsampled input."""
    grid = {
        "grid": grid_spec(fine).to_dict(),
        "degradation": "area_mean",
        "sigma": None,
        "upsample": "bilinear",
        "factor": factor,
    }
    return Downscaler(
        ZeroSample(ModelConfig(in_channels=1)),
        DiffusionConfig(target="v"),
        normalizer=Normalizer.fit(fine[["t2m"]]),
        grid=grid,
        variables=["t2m"],
        units={"t2m": "K"},
        factor=factor,
        sampler=SamplerConfig(sampler="ddim", steps=2),
        name="zero-test",
    )


# -- an input member dim ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def members_input() -> tuple[Downscaler, xr.Dataset]:
    fine = fine_field(32, 32, 0.25)
    coarse = degrade(fine, 4)
    two = xr.concat([coarse, coarse + 1], "member").assign_coords(member=[10, 11])
    return zero_downscaler(fine, 4), two.isel(time=0, drop=True)


@pytest.mark.parametrize("members", [None, 2, 3])
def test_member_dim_as_time_is_refused_with_a_rename(members_input, members):
    """Run as time, an input 'member' dim collided with the output's ensemble dim: the first
    field alone came back (members=None), a doubled dim (2) or xarray's ValueError (3)."""
    down, two = members_input
    with pytest.raises(DataError, match=r"rename\(member='driving_member'\)") as err:
        down(two, dims={"time": "member"}, members=members)
    assert "dims={'time': 'driving_member'}" in str(err.value)


def test_member_dim_hint_names_another_dim(members_input):
    """The extra-dim message suggests running a 'member' dim as time under another name."""
    down, two = members_input
    with pytest.raises(DataError) as err:
        down(two)
    message = str(err.value)
    assert "dims={'time': 'member'}" not in message
    assert "ds.rename(member='driving_member')" in message
    assert "dims={'time': 'driving_member'}" in message


@pytest.mark.parametrize("members", [None, 2])
def test_renamed_member_dim_gives_a_field_per_member(members_input, members):
    down, two = members_input
    out = down(
        two.rename(member="driving_member"), dims={"time": "driving_member"}, members=members
    )
    field = out["t2m"] if members is None else out["t2m"].isel(member=0)
    assert field.dims == ("driving_member", "lat", "lon")
    np.testing.assert_array_equal(out["driving_member"].values, [10, 11])
    for k, label in enumerate((10, 11)):
        alone = down(two.sel(member=label, drop=True))["t2m"]
        np.testing.assert_allclose(field.isel(driving_member=k).values, alone.values, atol=1e-4)


def test_singleton_extra_dim_hint_squeezes(members_input):
    down, two = members_input
    with pytest.raises(DataError, match=r"ds\.squeeze\('height'\)") as err:
        down(two.isel(member=0).expand_dims(height=[2.0]))
    assert "dims={'time': 'height'}" not in str(err.value)


# -- bbox coordinates --------------------------------------------------------------------------


BOXES = [(-9.9, 40.2, -5.1, 44.9), (-8.0, 43.0, 0.0, 60.0), (0.0, 50.0, 10.0, 60.0)]


@pytest.mark.parametrize("factor", [3, 5, 6])
def test_bbox_coordinates_are_the_full_runs(factor):
    """A bbox run's fine centres and bounds are the full run's (refine_grid of the whole input)
    cut to its cells, bit for bit; they were refined from the cut coarse centres, a few ulps
    off (f=6: 780 of 3600 cells left in full - part, full.sel(lat=part.lat) a KeyError)."""
    fine = fine_field(37 * factor, 53 * factor, 1 / factor)
    coarse = degrade(fine, factor)
    down = zero_downscaler(fine, factor)
    full = down(coarse)
    reference = refine_grid(coarse, factor)
    for name in ("lat", "lon", "lat_bnds", "lon_bnds"):
        np.testing.assert_array_equal(full[name].values, reference[name].values)
    for box in BOXES:
        part = down(coarse, bbox=box)
        rows = np.flatnonzero((coarse.lat.values >= box[1]) & (coarse.lat.values <= box[3]))
        cols = np.flatnonzero((coarse.lon.values >= box[0]) & (coarse.lon.values <= box[2]))
        ys = slice(rows[0] * factor, (rows[-1] + 1) * factor)
        xs = slice(cols[0] * factor, (cols[-1] + 1) * factor)
        cut = full.isel(lat=ys, lon=xs)
        for name in ("lat", "lon", "lat_bnds", "lon_bnds"):
            np.testing.assert_array_equal(part[name].values, cut[name].values)
        assert (full["t2m"] - part["t2m"]).sizes == part["t2m"].sizes
        # the values agree to float32 rounding (the upsampling runs on another array)
        np.testing.assert_allclose(part["t2m"].values, cut["t2m"].values, rtol=0, atol=1e-4)


@pytest.mark.parametrize("factor", [3, 6])
def test_bbox_across_a_periodic_seam_moves_by_whole_periods(factor):
    """On a global grid a bbox across the seam keeps its own longitude convention: its
    longitudes are the full run's, moved by whole periods (360 degrees) where needed."""
    fine = fine_field(16 * factor, 180 * factor, 2 / factor, lat0=20.0, lon0=0.0)
    coarse = degrade(fine, factor)
    down = zero_downscaler(fine, factor)
    full = down(coarse)
    for box in [(350.0, 30.0, 10.0, 40.0), (100.0, 30.0, 120.0, 40.0)]:
        part = down(coarse, bbox=box)
        lon = part["lon"].values
        at = np.searchsorted(full["lon"].values, np.mod(lon, 360.0) - 1e-9)
        shift = lon - full["lon"].values[at]
        np.testing.assert_array_equal(shift, np.round(shift / 360.0) * 360.0)
        np.testing.assert_array_equal(
            part["lon_bnds"].values, full["lon_bnds"].values[at] + shift[:, None]
        )
        np.testing.assert_array_equal(part["lat"].values, full.sel(lat=part["lat"])["lat"].values)


# -- training data -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("shape") / "small.nc"
    fine_field(33, 49, 0.2, times=2).to_netcdf(path)
    return str(path)


@pytest.mark.parametrize("factor", [3, 5])
def test_from_config_crop_that_cannot_fit_says_why(small_file, factor):
    """No crop of lcm(16, factor) fits a 33 x 49 field: the message said 'expected crop_size
    <= 30' (a crop from_config refuses) instead of why none fits."""
    crop = math.lcm(16, factor)
    config = DataConfig(paths=(small_file,), variables=("t2m",), factor=factor, crop_size=crop)
    with pytest.raises(ShapeError, match="no crop fits") as err:
        from_config(config, "train")
    assert "multiples of 16 (2, 4, 8 or 16)" in str(err.value)
    assert "expected" not in str(err.value)


def test_from_config_crop_too_large_names_the_largest_valid(small_file):
    config = DataConfig(paths=(small_file,), variables=("t2m",), factor=2, crop_size=64)
    with pytest.raises(ShapeError, match=r"<= 32 \(the largest crop that fits and is a multiple"):
        from_config(config, "train")


def test_forecast_crop_too_large_names_the_largest_that_fits(small_file):
    """A forecast dataset's crop too large said only 'does not fit': it names the largest crop
    (any size directly; a multiple of 16 through from_config) or why none fits."""
    with pytest.raises(ShapeError, match=r"expected crop_size <= 33, or crop_size=None"):
        ForecastDataset(small_file, variables=["t2m"], past_frames=1, crop_size=48)
    config = DataConfig(paths=(small_file,), variables=("t2m",), crop_size=48, past_frames=1)
    with pytest.raises(ShapeError, match=r"<= 32 \(the largest crop that fits and is a multiple "):
        from_config(config, "train", task="forecast")


def test_dataset_crop_too_large_names_a_crop_of_whole_cells(small_file):
    """Without from_config a crop need only be whole coarse cells."""
    with pytest.raises(ShapeError, match=r"crop_size <= 30 .*multiple of factor = 5"):
        SuperResolutionDataset(small_file, variables=["t2m"], factor=5, crop_size=80)


def periodic_file(path, nx: int) -> str:
    """A global field with ``nx`` longitudes (periodic by its extent)."""
    step = 360.0 / nx
    fine_field(48, nx, step, lat0=-48 * step / 2, lon0=0.0, times=2).to_netcdf(path)
    return str(path)


def test_periodic_axis_the_factor_does_not_divide_warns(tmp_path):
    path = periodic_file(tmp_path / "global.nc", 100)
    with pytest.warns(FlexDownscaleWarning, match=r"'lon' \(100 cells\), which factor = 3") as w:
        SuperResolutionDataset(path, variables=["t2m"], factor=3, crop_size=48)
    message = str(w[0].message)
    assert "never run periodic" in message
    assert "(2, 4, 5)" in message


def test_periodic_axis_the_factor_divides_is_quiet(tmp_path):
    path = periodic_file(tmp_path / "global.nc", 96)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        SuperResolutionDataset(path, variables=["t2m"], factor=3, crop_size=48)


# -- default tile ------------------------------------------------------------------------------


def test_default_tile_rule_is_documented():
    """The default tile is 256 rounded up to a multiple of lcm(16, factor): what the docstring
    and docs/inference.md say (they said "default 256" for every factor)."""
    doc = " ".join(Downscaler.__call__.__doc__.split())
    tiles = {f: _round_up(DEFAULT_TILE, _lattice(f)) for f in (2, 3, 4, 5, 6, 7, 8, 16)}
    assert {tiles[f] for f in (2, 4, 8, 16)} == {256}
    said = "288 for 3 and 6, 320 for 5, 336 for 7"
    assert (tiles[3], tiles[6], tiles[5], tiles[7]) == (288, 288, 320, 336)
    assert said in doc
    fine = fine_field(16 * 3, 20 * 3, 1 / 3)
    out = zero_downscaler(fine, 3)(degrade(fine, 3))
    assert out.attrs["flexdownscale_tile"] == 288


def test_adjacent_bbox_outputs_combine_into_the_whole_field():
    """docs/inference.md: two adjacent bbox runs put back together by coordinates give the
    whole-field run's grid (only their history and bbox attributes conflict)."""
    fine = fine_field(64, 64, 0.25)
    coarse = degrade(fine, 4)
    down = zero_downscaler(fine, 4)
    lon, lat = coarse["lon"].values, coarse["lat"].values
    cut = float(lon[7] + lon[8]) / 2
    west = down(coarse, bbox=(lon[0], lat[0], cut, lat[-1]))
    east = down(coarse, bbox=(cut, lat[0], lon[-1], lat[-1]))
    whole = down(coarse)
    with pytest.raises(xr.MergeError):
        xr.combine_by_coords([west, east])
    both = xr.combine_by_coords([west, east], combine_attrs="drop_conflicts")
    xr.testing.assert_identical(both["t2m"].drop_attrs(), whole["t2m"].drop_attrs())
    assert "history" not in both.attrs
    assert "flexdownscale_bbox" not in both.attrs
    assert both.attrs == {k: v for k, v in whole.attrs.items() if k != "history"}
