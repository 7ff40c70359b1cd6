"""Tests of the inference pipeline (Downscaler, tiled sampling, laziness, bad inputs)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import (
    Normalizer,
    VariableStats,
    degrade,
    grid_spec,
    normalize_grid,
    refine_grid,
)
from flexdownscale.data.tiling import tile_layout
from flexdownscale.errors import (
    ConfigError,
    DataError,
    FlexDownscaleWarning,
    GridError,
    MissingVariableError,
    ModelFolderError,
    SkillWarning,
    UnitsError,
    UnsupportedFactorError,
)
from flexdownscale.models import build_model
from flexdownscale.pipeline import (
    Downscaler,
    TiledDenoiser,
    _lattice,
    _periodic_halo,
    _physical_values,
    _tile_overlap,
)

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"
FACTOR = 4


def make_downscaler(
    fine: xr.Dataset,
    *,
    seed: int = 0,
    variables: Sequence[str] = ("t2m",),
    units: Mapping[str, str] | None = None,
    model: torch.nn.Module | None = None,
    name: str = "tiny-test",
    **fit: Any,
) -> Downscaler:
    """A Downscaler x4 for ``fine``'s grid and ``variables`` (``units``: K for t2m), its
    normalization fitted on ``fine`` (``fit``: :meth:`Normalizer.fit`'s keywords): on ``model``,
    or a tiny FLEX with randomly perturbed weights (so every layer matters)."""
    if model is None:
        torch.manual_seed(seed)
        model = build_model(ModelConfig(preset="tiny", dropout=0.0, in_channels=len(variables)))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
    grid = {
        "grid": grid_spec(fine).to_dict(),
        "degradation": "area_mean",
        "sigma": None,
        "upsample": "bilinear",
        "factor": FACTOR,
    }
    return Downscaler(
        model,
        DiffusionConfig(),
        normalizer=Normalizer.fit(fine[list(variables)], **fit),
        grid=grid,
        variables=list(variables),
        units=dict(units or {"t2m": "K"}),
        factor=FACTOR,
        sampler=SamplerConfig(sampler="ddim", steps=2),
        name=name,
    )


def era5_pair(shared_data, *, times: int = 2, ny: int = 32, nx: int = 48):
    """(fine truth, coarse input) from the ERA5 file: fine normalized, coarse = area mean x4."""
    ds = xr.open_dataset(shared_data / ERA5)
    fine = normalize_grid(ds.isel(time=slice(0, times), latitude=slice(0, ny))).isel(
        longitude=slice(0, nx)
    )
    fine = fine.load()
    coarse = degrade(fine, FACTOR)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    return fine, coarse


@pytest.fixture(scope="module")
def pair(shared_data):
    return era5_pair(shared_data)


@pytest.fixture(scope="module")
def downscaler(pair):
    return make_downscaler(pair[0])


def test_output_grid_attrs_and_no_mutation(pair, downscaler):
    _, coarse = pair
    before = coarse.copy(deep=True)
    out = downscaler(coarse, members=2, seed=1)
    xr.testing.assert_identical(coarse, before)
    ref = refine_grid(coarse, FACTOR)
    for name in ref.coords:
        np.testing.assert_array_equal(out[name].values, ref[name].values)
        assert out[name].attrs == ref[name].attrs
    assert out["t2m"].dims == ("member", "time", "latitude", "longitude")
    assert out.sizes == {"member": 2, "time": 2, "latitude": 32, "longitude": 48, "bnds": 2}
    np.testing.assert_array_equal(out["time"].values, coarse["time"].values)
    assert out["t2m"].attrs["units"] == "K"
    assert out["t2m"].attrs["long_name"] == coarse["t2m"].attrs["long_name"]
    assert "flexdownscale_transform" not in out["t2m"].attrs  # normalized with none
    # an earlier output's transform attribute (another model's) is not carried over
    marked = coarse.assign(t2m=coarse["t2m"].assign_attrs(flexdownscale_transform="log1p"))
    assert "flexdownscale_transform" not in downscaler(marked, seed=1)["t2m"].attrs
    assert out.attrs["flexdownscale_model"] == "tiny-test"
    assert out["member"].attrs["standard_name"] == "realization"
    assert out.attrs["flexdownscale_factor"] == FACTOR
    assert out.attrs["flexdownscale_steps"] == 2
    assert out.attrs["flexdownscale_seed"] == 1
    assert "flexdownscale" in out.attrs["history"].splitlines()[0]
    assert out.attrs["Conventions"] == coarse.attrs["Conventions"]
    # an untrained residual is a perturbation of the base field: temperatures stay plausible
    assert float(abs(out["t2m"] - out["t2m"].mean()).max()) < 100
    assert np.isfinite(out["t2m"].values).all()


def test_members_none_drops_member_and_no_time(pair, downscaler):
    _, coarse = pair
    out = downscaler(coarse.isel(time=0), seed=3)
    assert out["t2m"].dims == ("latitude", "longitude")
    # a single field keeps its scalar coordinates: its time, a height, ...
    assert out["time"].values == coarse["time"].values[0]
    tall = downscaler(coarse.assign_coords(height=2.0).isel(time=0), seed=3)
    assert float(tall["height"]) == 2.0
    # a time dim without a coordinate gets none invented
    bare = downscaler(coarse.drop_vars("time"), seed=3)
    assert "time" in bare.dims
    assert "time" not in bare.coords
    np.testing.assert_array_equal(bare["t2m"].values, downscaler(coarse, seed=3)["t2m"].values)
    full = downscaler(coarse, seed=3)
    assert full["t2m"].dims == ("time", "latitude", "longitude")
    # time step i is seeded by (seed, i): a lone first step equals step 0 of the full run (to
    # float32 rounding: the full run samples its two steps in one network call)
    np.testing.assert_allclose(out["t2m"].values, full["t2m"].isel(time=0).values, rtol=1e-6)


def test_reproducible_batch_size_and_dask(pair, downscaler):
    _, coarse = pair
    kw = dict(members=2, seed=7, tile=32, overlap=8)
    eager = downscaler(coarse, batch_size=1, **kw)
    big = downscaler(coarse, batch_size=64, **kw)
    # the random numbers are batch-invariant; float32 CPU kernels round differently for
    # different batch shapes (last bit), so compare to float32 rounding here ...
    np.testing.assert_allclose(eager["t2m"].values, big["t2m"].values, rtol=1e-6, atol=0)
    lazy = downscaler(coarse.chunk(time=1), batch_size=1, **kw)
    assert isinstance(lazy["t2m"].data, dask.array.Array)
    np.testing.assert_array_equal(eager["t2m"].values, lazy["t2m"].values)
    lazy2 = downscaler(coarse.chunk(time=2), batch_size=64, **kw)
    np.testing.assert_array_equal(big["t2m"].values, lazy2["t2m"].values)
    other = downscaler(coarse, batch_size=1, **{**kw, "seed": 8})
    assert not np.array_equal(eager["t2m"].values, other["t2m"].values)
    # members differ from each other
    assert not np.array_equal(eager["t2m"][0].values, eager["t2m"][1].values)


def test_reproducible_batch_size_float64(pair):
    # ... and bit for bit with a float64 network, whose rounding never reaches float32 outputs
    fine, coarse = pair
    model = make_downscaler(fine)
    model.backbone.double()
    kw = dict(members=2, seed=7, tile=32, overlap=8)
    a = model(coarse.isel(time=[0]), batch_size=1, **kw)["t2m"].values
    b = model(coarse.isel(time=[0]), batch_size=64, **kw)["t2m"].values
    np.testing.assert_array_equal(a, b)


def test_batch_invariant_is_bit_identical_for_any_batch_size(pair, downscaler):
    # the network sees one tile at a time, so no batch shape reaches its kernels: the output
    # of every batch size (and of eager and dask input) is the same bit for bit
    _, coarse = pair
    kw = dict(members=3, seed=7, tile=32, overlap=8, batch_invariant=True)
    runs = [downscaler(coarse, batch_size=b, **kw)["t2m"].values for b in (1, 3, 8, 64)]
    runs.append(downscaler(coarse.chunk(time=1), batch_size=5, **kw)["t2m"].values)
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)
    # the same samples as the batched default up to float32 rounding, and marked in the output
    out = downscaler(coarse, batch_size=64, **kw)
    batched = downscaler(coarse, batch_size=64, **{**kw, "batch_invariant": False})
    np.testing.assert_allclose(out["t2m"].values, batched["t2m"].values, rtol=1e-6, atol=0)
    assert out.attrs["flexdownscale_batch_invariant"] == 1
    assert batched.attrs["flexdownscale_batch_invariant"] == 0
    with pytest.raises(ConfigError, match=r"batch_invariant = 'no' must be True or False"):
        downscaler(coarse, batch_invariant="no")


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("something was computed before .compute()")


def test_lazy_nothing_computes(pair, downscaler):
    _, coarse = pair
    lazy_in = coarse.chunk(time=1, latitude=4)  # chunked spatial dims are rechunked
    with dask.config.set(scheduler=_raise_on_compute):
        out = downscaler(lazy_in, members=2, seed=0)
    assert out["t2m"].chunks[1] == (1, 1)
    eager = downscaler(coarse, members=2, seed=0)
    np.testing.assert_array_equal(out["t2m"].compute().values, eager["t2m"].values)


def _seam_ratio(d: np.ndarray, borders: list[int]) -> float:
    jumps = np.abs(np.diff(d, axis=-1)).mean(axis=tuple(range(d.ndim - 1)))  # jump j -> j+1
    at = np.zeros(jumps.shape, dtype=bool)
    at[[b - 1 for b in borders]] = True
    return float(jumps[at].mean() / jumps[~at].mean())


def test_seams(shared_data):
    fine, coarse = era5_pair(shared_data, times=2, ny=32, nx=48)
    model = make_downscaler(fine)
    kw = dict(members=2, seed=0)
    whole = model(coarse, tile=48, **kw)["t2m"].values
    tiled = model(coarse, tile=16, overlap=4, blend="cosine", **kw)["t2m"].values
    layout = tile_layout((32, 48), 16, overlap=4)
    borders = sorted(
        {sx.start for _, sx in layout.slices if sx.start > 0}
        | {sx.stop for _, sx in layout.slices if sx.stop < 48}
    )
    assert len({sx.start for _, sx in layout.slices}) == 4  # four tiles wide
    error = tiled - whole
    assert np.abs(error).max() > 0  # the tiles do see different context
    assert _seam_ratio(error, borders) < 1.1
    # the same measure does catch seams: naive tiles (no overlap, uniform weights)
    naive = model(coarse, tile=16, overlap=0, blend="uniform", **kw)["t2m"].values
    naive_borders = [16, 32]
    assert _seam_ratio(naive - whole, naive_borders) > 1.5
    # the overlap is used as asked (it was cut to tile - 16 = 0: both runs were identical)
    assert not np.array_equal(tiled, naive)


def test_tiles_start_on_the_coarse_lattice(shared_data):
    """Tiles starting inside coarse cells cost the x8 model 6-9 % RMSE (the alignment it was
    never trained on): the default overlap keeps the stride a multiple of the factor, a given
    overlap that does not is refused with the nearest ones that do, and the output records the
    overlap actually used."""
    fine, coarse = era5_pair(shared_data, times=1, ny=32, nx=48)
    model = make_downscaler(fine)
    with pytest.raises(ConfigError, match=r"stride of 10 .* Use overlap = 4 or 8"):
        model(coarse, tile=16, overlap=6)
    out = model(coarse, tile=32, members=1, seed=0)  # default: 32 // 4 = 8, stride 24
    assert out.attrs["flexdownscale_overlap"] == 8
    for tile, expected in ((48, 12), (80, 20), (16, 4)):
        assert _tile_overlap(tile, None, 4) == expected
    for tile, expected in ((48, 16), (80, 24), (64, 16), (16, 8), (256, 64)):
        overlap = _tile_overlap(tile, None, 8)
        assert overlap == expected
        assert (tile - overlap) % 8 == 0
    with pytest.raises(ConfigError, match=r"Use overlap = 16 or 24"):
        _tile_overlap(64, 18, 8)
    # factors that do not divide 16: tiles, halos and padded fields on lcm(16, factor)
    for factor in (1, 2, 3, 4, 5, 6, 8, 12, 16):
        for n in (factor * 7, factor * 16, factor * 33):
            before, after = _periodic_halo(n, factor)
            assert before >= 16
            assert after >= 16
            assert before % factor == 0
            assert (n + before + after) % _lattice(factor) == 0
    assert _lattice(3) == 48
    assert _lattice(8) == 16


def test_non_finite_input_is_refused_with_its_position(shared_data):
    """inf passed the NaN check (every output cell came out non-finite), and so did values that
    the normalization turns non-finite (an undecoded -9999 under log1p)."""
    fine, coarse = era5_pair(shared_data, times=2, ny=32, nx=48)
    model = make_downscaler(fine)
    bad = coarse.copy(deep=True)
    bad["t2m"][1, 3, 5] = np.inf
    with pytest.raises(DataError, match=r"infinite \(inf\) at time index 1"):
        model(bad, members=1)
    log_model = make_downscaler(fine)
    stats = log_model.normalizer.stats["t2m"]
    log_model.normalizer.stats["t2m"] = dataclasses.replace(stats, transform="log1p")
    bad = coarse.copy(deep=True)
    bad["t2m"][0, 2, 2] = -9999.0
    with pytest.raises(DataError, match=r"'t2m' = -9999 at time index 0.*'log1p': values must be"):
        log_model(bad, members=1)


class _Pointwise(torch.nn.Module):
    """A network without spatial context: tiling must not change its output at all."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))

    def encode_task(self, cond):
        return (cond * 2.0,)

    def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
        feat = task_features[0] if task_features is not None else cond * 2.0
        return self.w * x_t + feat + t.reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("blend", ["uniform", "cosine", "gaussian"])
def test_tiled_denoiser_identity(blend):
    net = _Pointwise()
    layout = tile_layout((48, 80), 32, overlap=16, blend=blend)
    tiled = TiledDenoiser(net, layout, tile_batch=3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 48, 80, generator=gen, dtype=torch.float64)
    cond = torch.randn(3, 1, 48, 80, generator=gen, dtype=torch.float64)
    t = torch.rand(3, generator=gen, dtype=torch.float64)
    feats = tiled.encode_task(cond)
    assert feats[0].shape == (3, len(layout), 1, 32, 32)
    expected = net(x, t, cond)
    torch.testing.assert_close(tiled(x, t, task_features=feats), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(tiled(x, t, cond), expected, rtol=0, atol=1e-12)


class _Stencil(torch.nn.Module):
    """A 3 x 3 convolution with zero padding: on a periodic field tiled with periodic halos it
    must equal the circular convolution of the whole field."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.kernel = torch.nn.Parameter(
            torch.randn(1, 1, 3, 3, generator=gen, dtype=torch.float64)
        )

    def encode_task(self, cond):
        return (cond,)

    def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
        feat = task_features[0] if task_features is not None else cond
        return torch.nn.functional.conv2d(x_t + feat, self.kernel, padding=1)


@pytest.mark.parametrize(
    ("shape", "wrap", "tile"),
    [
        ((40, 56), ((16, 24), (16, 24)), (80, 96)),  # one tile, halos on both dims
        ((40, 56), ((16, 24), (0, 0)), (48, 56)),  # periodic in y only, two tiles in y
        ((8, 12), ((16, 24), (16, 20)), (48, 48)),  # halos longer than the field (wrap twice)
    ],
)
def test_tiled_denoiser_periodic_halo_is_circular(shape, wrap, tile):
    net = _Stencil()
    h, w = shape
    layout = tile_layout((h + sum(wrap[0]), w + sum(wrap[1])), tile, overlap=16, blend="cosine")
    tiled = TiledDenoiser(net, layout, tile_batch=2, wrap=wrap)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, h, w, generator=gen, dtype=torch.float64)
    cond = torch.randn(2, 1, h, w, generator=gen, dtype=torch.float64)
    t = torch.rand(2, generator=gen, dtype=torch.float64)
    out = tiled(x, t, cond)
    assert out.shape == x.shape
    periodic_x = any(wrap[1])
    # the convolution, circular along the periodic dims (zero padding along the others)
    padded = torch.nn.functional.pad(
        x + cond, (1, 1, 1, 1) if periodic_x else (0, 0, 1, 1), mode="circular"
    )
    expected = torch.nn.functional.conv2d(padded, net.kernel, padding=(0, 0 if periodic_x else 1))
    if len(layout) == 1:
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    else:
        # inner tile borders blend estimates that saw zero padding; the rows at the periodic
        # seam lie inside a tile and are exact
        seam = [0, 1, h - 2, h - 1]
        torch.testing.assert_close(out[..., seam, :], expected[..., seam, :], rtol=0, atol=1e-12)
    # without halos the seam rows are wrong (so the check above has teeth)
    plain = TiledDenoiser(net, tile_layout(shape, shape, overlap=0))
    assert (plain(x, t, cond)[..., 0, :] - expected[..., 0, :]).abs().max() > 1e-3


def _wrap_seam(error: np.ndarray) -> list[tuple[float, float]]:
    """Per spatial axis: (mean |jump| across the periodic boundary, largest mean |jump| across
    an interior line), both relative to the mean interior |jump|. Error: (..., y, x)."""
    out = []
    for axis in (-1, -2):
        jumps = np.abs(np.diff(error, axis=axis))
        per_line = jumps.mean(axis=tuple(i for i in range(jumps.ndim) if i != jumps.ndim + axis))
        wrap = np.abs(np.take(error, 0, axis=axis) - np.take(error, -1, axis=axis)).mean()
        out.append((float(wrap / jumps.mean()), float(per_line.max() / jumps.mean())))
    return out


@pytest.mark.slow
def test_periodic_domain_has_no_seam_at_the_wrap(shared_data, monkeypatch):
    """The shipped Kolmogorov model on doubly periodic fields: the error field jumps across the
    periodic boundary no more than across the interior lines; without the periodic halos it does
    (the measure has teeth)."""
    import flexdownscale.pipeline as pipeline

    ds = xr.open_dataset(shared_data / "kolmogorov/kf_re4000.nc")
    fine = ds[["vorticity"]].isel(trajectory=3, time=[0, 6, 12, 18]).load()
    coarse = degrade(fine, 8)
    model = Downscaler.from_pretrained("kolmogorov-x8")
    # positional difference: refined and file coordinates agree to rounding only
    truth = fine["vorticity"].transpose("time", "y", "x").values

    def seams():
        out = model(coarse, members=4, seed=0, condition=4000.0, progress=False)
        return _wrap_seam(out["vorticity"].transpose("member", "time", "y", "x").values - truth)

    for wrap, worst_interior in seams():
        assert wrap <= worst_interior, (wrap, worst_interior)
    monkeypatch.setattr(pipeline, "PERIODIC_HALO", 0)
    without = seams()
    assert max(wrap / worst for wrap, worst in without) > 1.2, without


def test_save_and_load_round_trip(tmp_path, pair, downscaler):
    _, coarse = pair
    path = downscaler.save_pretrained(tmp_path / "model")
    loaded = Downscaler.from_pretrained(path)
    assert loaded.variables == ("t2m",)
    assert loaded.factor == FACTOR
    a = downscaler(coarse, members=2, seed=2)["t2m"].values
    b = loaded(coarse, members=2, seed=2)["t2m"].values
    np.testing.assert_array_equal(a, b)


def test_device_request_never_moves_the_backbone(pair, downscaler):
    """A call on another device runs a kept copy; the backbone the next caller gets stays put.

    ``meta`` stands in for a second device on a CPU-only machine (the sampling itself is
    checked on a GPU by tests/test_devices.py)."""
    import pickle

    home = downscaler.backbone
    meta = downscaler._backbone_on(torch.device("meta"))
    assert meta is not home
    assert next(meta.parameters()).device.type == "meta"
    assert next(home.parameters()).device.type == "cpu"
    assert downscaler._backbone_on(torch.device("meta")) is meta  # made once, kept
    assert downscaler._backbone_on(torch.device("cpu")) is home
    # the copies never travel with a pickled model, and can be dropped
    clone = pickle.loads(pickle.dumps(downscaler))
    assert "_device_copies" not in clone.__dict__
    downscaler.clear_device_copies()
    assert downscaler._backbone_on(torch.device("meta")) is not meta
    downscaler.clear_device_copies()
    # a CPU call after the meta copy exists still runs the CPU backbone
    _, coarse = pair
    out = downscaler(coarse.isel(time=slice(0, 1)), members=1, seed=0, device="cpu")
    assert np.isfinite(out["t2m"].values).all()


def test_bbox_and_rename(pair, downscaler):
    _, coarse = pair
    lat, lon = coarse["latitude"].values, coarse["longitude"].values
    bbox = (lon[3] - 0.1, lat[2] - 0.1, lon[7] + 0.1, lat[5] + 0.1)
    out = downscaler(coarse.rename(t2m="temp"), rename={"temp": "t2m"}, bbox=bbox, seed=0)
    ref = refine_grid(coarse.isel(latitude=slice(2, 6), longitude=slice(3, 8)), FACTOR)
    np.testing.assert_array_equal(out["latitude"].values, ref["latitude"].values)
    np.testing.assert_array_equal(out["longitude"].values, ref["longitude"].values)
    assert out["t2m"].shape == (2, 16, 20)
    via_variables = downscaler(coarse.rename(t2m="temp"), variables=["temp"], bbox=bbox, seed=0)
    np.testing.assert_array_equal(out["t2m"].values, via_variables["t2m"].values)


def test_bbox_across_the_seam_of_a_global_grid(shared_data):
    """A bbox across the dateline of a global grid is read across it (it was cut to one side),
    with longitudes in the convention where the region is contiguous."""
    band = xr.open_dataset(shared_data / "era_interim" / "eraint_uv_monthly.nc")
    band = band.isel(month=0, level=2, latitude=slice(40, 88))  # 60 .. 24.75 N, all longitudes
    fine = normalize_grid(band[["u"]].rename(u="t2m").load())
    fine["t2m"].attrs = {"units": "K"}
    assert grid_spec(fine).periodic_x
    model = make_downscaler(fine)
    coarse = degrade(fine, FACTOR)
    coarse["t2m"].attrs = {"units": "K"}
    kw = dict(members=2, seed=4)
    across = model(coarse, bbox=(175.0, 35.0, 185.0, 45.0), **kw)  # grid is -180 .. 179.25
    lon = across["longitude"].values
    assert lon[0] < 180.0 < lon[-1]
    np.testing.assert_allclose(np.diff(lon), 0.75, rtol=1e-6)
    assert np.isfinite(across["t2m"].values).all()
    # the same cells of the input in 0 .. 360 (no seam there): the same numbers
    east = coarse.assign_coords(longitude=coarse["longitude"] % 360).sortby("longitude")
    plain = model(east, bbox=(175.0, 35.0, 185.0, 45.0), **kw)
    np.testing.assert_allclose(plain["longitude"].values, lon, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(plain["t2m"].values, across["t2m"].values)
    # the other convention, and x_min > x_max meaning "eastwards across the seam"
    wrapped = model(coarse, bbox=(175.0, 35.0, -175.0, 45.0), **kw)
    np.testing.assert_array_equal(wrapped["t2m"].values, across["t2m"].values)
    np.testing.assert_array_equal(wrapped["longitude"].values, lon)
    shifted = model(coarse, bbox=(175.0 - 360.0, 35.0, 185.0 - 360.0, 45.0), **kw)
    np.testing.assert_array_equal(shifted["t2m"].values, across["t2m"].values)
    # longitudes come out in the standard convention (-180..180 or 0..360) where they are
    # contiguous: here 0..360, whichever convention the bbox was given in
    np.testing.assert_array_equal(shifted["longitude"].values, lon)
    # a band from 171 E eastwards to 150 E (339 degrees: its halos meet round the globe; it
    # raised GridError "repeated longitudes") runs on the whole circle; its longitudes have no
    # contiguous standard convention, so they continue past 360
    band = model(coarse, bbox=(171.0, 35.0, 150.0, 45.0), **kw)
    lon = band["longitude"].values
    np.testing.assert_allclose(np.diff(lon), 0.75, rtol=1e-6)
    assert (lon[0], lon[-1]) == (pytest.approx(171.0), pytest.approx(150.0 + 360.0 - 0.75))
    whole = model(coarse, **kw)
    inside = whole.sel(latitude=band["latitude"], longitude=((lon + 180.0) % 360.0) - 180.0)
    assert np.isfinite(band["t2m"].values).all()
    assert inside["t2m"].shape == band["t2m"].shape


def test_bbox_across_the_seam_of_a_doubly_periodic_box(shared_data):
    """Kolmogorov flow (x, y periodic on [0, 2 pi)) with the shipped model: a bbox over x = 0
    reads both sides; the same bbox one period on gives the same numbers."""
    truth = xr.open_dataset(shared_data / "kolmogorov" / "kf_re4000.nc")
    coarse = degrade(truth.isel(trajectory=3, time=[0]).load(), 8)
    model = Downscaler.from_pretrained("kolmogorov-x8")
    a = model(coarse, bbox=(-0.5, 1.0, 0.5, 1.5), seed=0)
    x = a["x"].values
    assert x[0] < 0.0 < x[-1]
    assert "periodic" not in a["x"].attrs  # a part of the box is not periodic
    assert coarse["x"].attrs["periodic"] == "true"  # the input keeps its attributes
    b = model(coarse, bbox=(-0.5 + 2 * np.pi, 1.0, 0.5 + 2 * np.pi, 1.5), seed=0)
    np.testing.assert_array_equal(a["vorticity"].values, b["vorticity"].values)
    np.testing.assert_allclose(b["x"].values, x + 2 * np.pi, rtol=0, atol=1e-12)


def test_wide_bbox_on_a_periodic_axis_runs_the_whole_axis(shared_data):
    """A bbox whose halos meet round a periodic axis (wide, or starting before the first cell
    centre) raised IndexError on the Kolmogorov box, and on a global grid IndexError or a
    GridError about repeated longitudes. Such an axis now runs whole, periodic, and the bbox's
    cells are cut from it across the seam, with coordinates that continue across it."""
    truth = xr.open_dataset(shared_data / "kolmogorov" / "kf_re1000.nc")
    coarse = degrade(truth.isel(trajectory=3, time=[0]).load(), 8)
    model = Downscaler.from_pretrained("kolmogorov-x8")
    step = 2 * np.pi / 256
    full = model(coarse, seed=0)
    for bbox in [(0.0, 0.0, 4.9, 0.5), (0.0, 0.0, 6.1, 0.5), (-1.0, 0.0, 4.0, 0.5)]:
        out = model(coarse, bbox=bbox, seed=0)
        x = out["x"].values
        np.testing.assert_allclose(np.diff(x), step, rtol=1e-9)
        assert bbox[0] - 4 * step < x[0]
        assert x[-1] < bbox[2] + 4 * step
        assert np.isfinite(out["vorticity"].values).all()
    # both axes whole (the y range is the whole box): the very cells of the full-field run
    out = model(coarse, bbox=(-1.0, 0.0, 4.0, 2 * np.pi), seed=0)
    assert out["x"].values[0] < 0 < out["x"].values[-1]
    same = full.isel(x=np.round(out["x"].values % (2 * np.pi) / step).astype(int) % 256)
    np.testing.assert_array_equal(out["vorticity"].values, same["vorticity"].values)
    np.testing.assert_allclose(
        out["x_bnds"].values, np.stack([out["x"] - step / 2, out["x"] + step / 2], -1), atol=1e-9
    )


# -- bad inputs ---------------------------------------------------------------------------------


def _wrong_units(coarse):
    out = coarse.copy()
    out["t2m"] = (coarse["t2m"] - 273.15).assign_attrs(units="degC")
    return out


def _all_nan_step(coarse):
    out = coarse.copy(deep=True)
    out["t2m"][1] = np.nan
    return out


def _projected_km(coarse):
    """The same numbers on a projected grid in km: the spacing matches, the kind does not."""
    out = coarse.drop_vars([v for v in coarse.variables if str(v).endswith("_bnds")])
    out = out.rename(latitude="y", longitude="x")
    out["x"].attrs = {"units": "km", "standard_name": "projection_x_coordinate"}
    out["y"].attrs = {"units": "km", "standard_name": "projection_y_coordinate"}
    return out


BAD = [
    ("names", lambda c: c.rename(t2m="tas"), {}, MissingVariableError, "rename="),
    ("units", _wrong_units, {}, UnitsError, "273.15"),
    (
        "units not a string",
        lambda c: c.assign(t2m=c["t2m"].copy().assign_attrs(units=["K"])),
        {},
        UnitsError,
        r"of type list \(\['K'\]\); CF units are one string",
    ),
    ("spacing", lambda c: degrade(c, 2), {}, GridError, "1"),
    ("factor", lambda c: c, {"factor": 8}, UnsupportedFactorError, "factor"),
    ("nan", _all_nan_step, {}, DataError, "entirely NaN"),
    ("bbox", lambda c: c, {"bbox": (20.0, 0.0, 30.0, 10.0)}, GridError, "spans"),
    ("grid kind", _projected_km, {}, GridError, "trained on a latitude/longitude grid"),
    (
        "scalar member coordinate",  # ens.sel(member=1): raised ValueError after sampling
        lambda c: c.expand_dims(member=[0, 1]).sel(member=1),
        {"members": 2},
        DataError,
        r"scalar coordinate 'member' \(what \.sel\(member=\.\.\.\) leaves\).*"
        r"ds\.rename\(member='input_member'\)",
    ),
    ("negative seed", lambda c: c, {"seed": -1}, ConfigError, r"\[0, 2\*\*63\)"),
    ("huge seed", lambda c: c, {"seed": 2**64}, ConfigError, r"\[0, 2\*\*63\)"),
    ("factor as text", lambda c: c, {"factor": "4"}, ConfigError, "must be a positive integer"),
    (
        "time dim of another name",
        lambda c: c.rename(time="step"),
        {},
        DataError,
        r"pass dims=\{'time': 'step'\}, which runs 'step' as the time dim",
    ),
    (  # reviewer-103: "if 'level' is the time dim" read as the wrong choice for levels
        "level dim without time",
        lambda c: c.isel(time=0).expand_dims(level=[500.0, 850.0]),
        {},
        DataError,
        r"downscale each of its 2 fields on its own \(as training takes each 'level' as a "
        r"sample\): pass dims=\{'time': 'level'\}",
    ),
]


@pytest.mark.parametrize(("case", "make", "kwargs", "error", "text"), BAD, ids=[b[0] for b in BAD])
def test_bad_inputs(pair, downscaler, case, make, kwargs, error, text):
    _, coarse = pair
    bad = make(coarse)
    if case == "spacing":
        bad["t2m"].attrs = dict(coarse["t2m"].attrs)
    with pytest.raises(error, match=text) as info:
        downscaler(bad, **{"seed": 0, **kwargs})
    if case == "spacing":
        assert "spacing along x is 2 " in str(info.value)  # found
        assert "downscales a 1 degrees_east grid" in str(info.value)  # expected, with units


def test_bad_nan_lazy_raises_at_compute(pair, downscaler):
    _, coarse = pair
    out = downscaler(_all_nan_step(coarse).chunk(time=1), seed=0)  # nothing runs yet
    with pytest.raises(DataError, match="time index 1"):
        out.compute()


@pytest.mark.parametrize("damage", ["missing", "tampered"])
def test_bad_model_folder(tmp_path, downscaler, monkeypatch, damage):
    path = downscaler.save_pretrained(tmp_path / "model")
    if damage == "missing":
        (path / "normalization.json").unlink()
    else:
        grid = json.loads((path / "grid.json").read_text())
        grid["factor"] = 8
        (path / "grid.json").write_text(json.dumps(grid))
    import flexdownscale.models as models

    def _never(*args, **kwargs):
        raise AssertionError("a model was built from a damaged folder")

    monkeypatch.setattr(models, "build_model", _never)
    with pytest.raises(ModelFolderError, match="missing" if damage == "missing" else "checksum"):
        Downscaler.from_pretrained(path)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("processes", [False, True])
def test_local_cluster(tmp_path, pair, downscaler, processes):
    distributed = pytest.importorskip("distributed")
    _, coarse = pair
    path = downscaler.save_pretrained(tmp_path / "model")
    loaded = Downscaler.from_pretrained(path)
    expected = loaded(coarse, members=2, seed=5)["t2m"].values
    lazy = loaded(coarse.chunk(time=1), members=2, seed=5)
    # weights edited in memory are the ones the workers run (they ran the folder's before)
    edited = Downscaler.from_pretrained(path)
    edited.backbone = copy.deepcopy(edited.backbone)
    with torch.no_grad():
        for p in edited.backbone.parameters():
            p.mul_(1.05)
    edited_expected = edited(coarse, members=2, seed=5)["t2m"].values
    edited_lazy = edited(coarse.chunk(time=1), members=2, seed=5)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        got = lazy["t2m"].compute().values
        edited_got = edited_lazy["t2m"].compute().values
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(edited_got, edited_expected)
    assert not np.array_equal(edited_expected, expected)


def test_physical_condition(tmp_path, pair):
    """A Re-conditioned model reads the condition from the call, an attribute or a variable;
    the value reaches the network (different Re, different samples) and survives a round trip."""
    fine, coarse = pair
    base = make_downscaler(fine)
    torch.manual_seed(1)
    model = build_model(ModelConfig(preset="tiny", dropout=0.0, physical_condition=True))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    kwargs = {
        "normalizer": base.normalizer,
        "grid": base.grid,
        "variables": ["t2m"],
        "units": {"t2m": "K"},
        "factor": FACTOR,
        "sampler": base.sampler,
        "name": "tiny-re",
    }
    with pytest.raises(ConfigError, match="condition metadata"):
        Downscaler(model, DiffusionConfig(), **kwargs)
    ds = Downscaler(
        model, DiffusionConfig(), condition={"name": "reynolds_number", "scale": 40000}, **kwargs
    )
    with pytest.raises(MissingVariableError, match="reynolds_number"):
        ds(coarse, members=2)
    low = ds(coarse, members=2, condition=1000.0)
    with_attr = coarse.assign_attrs(reynolds_number=1000.0)
    from_attr = ds(with_attr, members=2)
    assert with_attr.attrs["reynolds_number"] == 1000.0
    assert "reynolds_number" not in coarse.attrs
    np.testing.assert_array_equal(low["t2m"].values, from_attr["t2m"].values)
    da = coarse["t2m"].assign_attrs(reynolds_number=1000.0)  # a DataArray's own attribute
    np.testing.assert_array_equal(ds(da, members=2)["t2m"].values, low["t2m"].values)
    from_var = ds(coarse.assign(reynolds_number=4000.0), members=2)
    high = ds(coarse, members=2, condition=4000.0)
    np.testing.assert_array_equal(high["t2m"].values, from_var["t2m"].values)
    assert np.abs(high["t2m"].values - low["t2m"].values).max() > 1e-4
    assert high.attrs["flexdownscale_condition_reynolds_number"] == 4000.0
    # the input's own value, overridden by condition=, is not passed on as the output's
    # (each override says what the input held: a FlexDownscaleWarning)
    with pytest.warns(FlexDownscaleWarning, match="global attribute 'reynolds_number' = 1000.0"):
        overridden = ds(with_attr, members=2, condition=4000.0)
    assert overridden.attrs["reynolds_number"] == 4000.0
    assert from_attr.attrs["reynolds_number"] == 1000.0
    # ... nor its scalar coordinate, nor its variables' attribute of that name
    with pytest.warns(FlexDownscaleWarning, match="condition = 4000.0 given"):
        as_coord = ds(coarse.assign_coords(reynolds_number=1000.0), members=2, condition=4000.0)
    assert float(as_coord["reynolds_number"]) == 4000.0
    with pytest.warns(FlexDownscaleWarning, match="condition = 4000.0 given"):
        assert ds(da, members=2, condition=4000.0)["t2m"].attrs["reynolds_number"] == 4000.0
    kept = ds(coarse.assign_coords(reynolds_number=1000.0), members=2)
    assert float(kept["reynolds_number"]) == 1000.0
    # a wrong variable is reported before the missing condition
    with pytest.raises(MissingVariableError, match=r"rename=\{'tas': 't2m'\}"):
        ds(coarse.rename(t2m="tas"), members=1)
    with pytest.raises(ConfigError, match="not a number"):
        ds(coarse.assign_attrs(reynolds_number="high"), members=1)
    with pytest.raises(ConfigError, match="takes no physical condition"):
        base(coarse, condition=1000.0)
    path = ds.save_pretrained(tmp_path / "re-model")
    again = Downscaler.from_pretrained(path)
    assert again.condition == {"name": "reynolds_number", "scale": 40000}
    # with the training range recorded, a value outside it warns (and still runs)
    ranged = Downscaler(
        model,
        DiffusionConfig(),
        condition={"name": "reynolds_number", "scale": 40000, "range": [1000.0, 4000.0]},
        **kwargs,
    )
    with pytest.warns(
        SkillWarning, match=r"reynolds_number = 1e\+06 .* trained on \(1000 to 4000\)"
    ) as caught:
        ranged(coarse, members=1, condition=1e6)
    assert caught[0].filename == __file__
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ranged(coarse, members=1, condition=4000.0)
    assert Downscaler.from_pretrained(ranged.save_pretrained(tmp_path / "r2")).condition[
        "range"
    ] == [1000.0, 4000.0]
    with pytest.raises(ConfigError, match="condition range"):
        Downscaler(
            model,
            DiffusionConfig(),
            condition={"name": "reynolds_number", "scale": 40000, "range": [4000, 1000]},
            **kwargs,
        )
    np.testing.assert_array_equal(
        again(coarse, members=2, condition=4000.0)["t2m"].values, high["t2m"].values
    )


# -- checks and provenance a user relies on ------------------------------------------------------


def _shift_rows(fine, rows):
    """Coarse input from the fine truth with its first ``rows`` fine rows dropped."""
    coarse = degrade(fine.isel(latitude=slice(rows, None)), FACTOR, boundary="trim")
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    return coarse


@pytest.mark.parametrize(("rows", "offset"), [(1, "+1"), (2, "+2"), (3, "-1")])
def test_coarse_cells_off_the_training_lattice_are_refused(pair, downscaler, rows, offset):
    fine, _ = pair
    with pytest.raises(GridError, match="offset by") as info:
        downscaler(_shift_rows(fine, rows), seed=0)
    text = str(info.value)
    assert f"({offset} fine cells)" in text
    assert "along y" in text
    # the fix names where the coarsening must start, not a count relative to this attempt
    # (which sent users in a loop): the model's first fine centre plus whole coarse cells
    lat = fine["latitude"].values
    step = float(lat[1] - lat[0]) * FACTOR
    first = float(lat[0])
    assert f"fine cell whose centre is {first:.6g} + k * {step:g} degrees_north along y" in text
    # starting there (the next such fine cell after the dropped rows) lands on the lattice again
    start = next(i for i in range(rows, lat.size) if abs(((lat[i] - first) / step) % 1) < 1e-9)
    out = downscaler(_shift_rows(fine, start), seed=0)
    assert out.sizes["latitude"] == (fine.sizes["latitude"] - start) // FACTOR * FACTOR
    # and dropping more cells again, from the start the message names, never loops back
    again = downscaler(_shift_rows(fine, start + FACTOR), seed=0)
    assert again.sizes["latitude"] == out.sizes["latitude"] - FACTOR


def test_off_lattice_by_a_fraction_of_a_cell_says_regrid(pair, downscaler):
    _, coarse = pair
    moved = coarse.assign_coords(longitude=coarse["longitude"] + 0.1)
    with pytest.raises(GridError, match=r"offset by \+0\.1 degrees_east .* To fix: regrid"):
        downscaler(moved, seed=0)


def test_settings_accept_numpy_integers_and_provenance_records_them(pair, downscaler):
    _, coarse = pair
    a = downscaler(coarse, members=2, steps=2, seed=3, tile=32, overlap=8, batch_size=4)
    b = downscaler(
        coarse,
        members=np.int64(2),
        steps=np.int32(2),
        seed=np.int64(3),
        tile=np.int64(32),
        overlap=np.int64(8),
        batch_size=np.int64(4),
    )
    np.testing.assert_array_equal(a["t2m"].values, b["t2m"].values)
    assert (a.attrs["flexdownscale_tile"], a.attrs["flexdownscale_overlap"]) == (32, 8)
    assert a.attrs["flexdownscale_blend"] == "cosine"
    one = downscaler(coarse, variables="t2m", seed=3)  # a string is one variable name
    assert list(one.data_vars) == ["t2m"]


def test_constructors_accept_numpy_integers(pair):
    """``factor`` of a Downscaler and ``tile_batch`` of a TiledDenoiser read from an array of
    settings (numpy integers) were refused as "not a positive integer"."""
    fine, coarse = pair
    built = make_downscaler(fine)
    again = Downscaler(
        built.backbone,
        DiffusionConfig(),
        normalizer=built.normalizer,
        grid=built.grid,
        variables=["t2m"],
        units={"t2m": "K"},
        factor=np.int64(FACTOR),
        sampler=SamplerConfig(sampler="ddim", steps=2),
    )
    assert type(again.factor) is int
    assert again.factor == FACTOR
    np.testing.assert_array_equal(
        again(coarse, seed=1)["t2m"].values, built(coarse, seed=1)["t2m"].values
    )
    tiled = TiledDenoiser(
        _Pointwise(), tile_layout((48, 80), 32, overlap=16), tile_batch=np.int32(3)
    )
    assert type(tiled.tile_batch) is int
    assert tiled.tile_batch == 3


def test_bad_device_is_a_config_error_before_compute(pair, downscaler):
    _, coarse = pair
    with pytest.raises(ConfigError, match="not a device torch knows"):
        downscaler(coarse.chunk(time=1), device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            downscaler(coarse.chunk(time=1), device="cuda")


def test_a_member_of_a_coarse_ensemble_downscales_under_its_own_label(pair, downscaler):
    _, coarse = pair
    one = coarse.expand_dims(member=[0, 1]).sel(member=1)
    out = downscaler(one.rename(member="input_member"), members=2, seed=0)
    assert out["t2m"].sizes["member"] == 2
    assert int(out["input_member"]) == 1
    single = downscaler(one, seed=0)  # no member dim in the output: the label stays
    assert int(single["member"]) == 1


def test_udunits_celsius_spelling(pair, downscaler):
    _, coarse = pair
    bad = _wrong_units(coarse)
    bad["t2m"].attrs["units"] = "degree_Celsius"
    with pytest.raises(UnitsError, match=r"273\.15"):
        downscaler(bad, seed=0)


def test_units_are_compared_as_units_not_strings(pair, downscaler):
    """Other spellings of the model's 'K' run and give the same samples; units that convert
    give the conversion, and the line in the error converts."""
    _, coarse = pair
    reference = downscaler(coarse, seed=0)
    for spelling in ("kelvin", "kelvins", "degK", "1 K"):
        other = coarse.copy()
        other["t2m"] = coarse["t2m"].copy().assign_attrs(units=spelling)
        out = downscaler(other, seed=0)
        np.testing.assert_array_equal(out["t2m"].values, reference["t2m"].values)
    fahrenheit = coarse.copy()
    fahrenheit["t2m"] = ((coarse["t2m"] - 273.15) * 9 / 5 + 32).assign_attrs(units="degF")
    with pytest.raises(UnitsError, match=r"values in K = values in degF x 0.5555555556") as err:
        downscaler(fahrenheit, seed=0)
    line = str(err.value).split("convert first: ")[1]
    scope = {"ds": fahrenheit.copy()}
    exec(line, {}, scope)
    np.testing.assert_allclose(scope["ds"]["t2m"].values, coarse["t2m"].values, rtol=1e-6)
    out = downscaler(scope["ds"], seed=0)
    np.testing.assert_allclose(out["t2m"].values, reference["t2m"].values, atol=1e-3)


def test_grid_mapping_variable_travels_and_stale_coordinates_go(pair, downscaler):
    _, coarse = pair
    crs = xr.DataArray(np.int32(0), attrs={"grid_mapping_name": "latitude_longitude"})
    src = coarse.assign(crs=crs)
    src["t2m"].attrs.update(grid_mapping="crs", coordinates="lat2d lon2d")
    out = downscaler(src, seed=0)
    assert out["t2m"].attrs["grid_mapping"] == "crs"
    assert out["crs"].attrs["grid_mapping_name"] == "latitude_longitude"
    assert "coordinates" not in out["t2m"].attrs  # lat2d/lon2d are not in the output
    assert "coordinates" in src["t2m"].attrs  # the input is untouched


def test_rotated_pole_grid_output_carries_its_latlon(shared_data, tmp_path):
    """A CORDEX-like rotated-pole input with 2-D lat/lon: the fine output carries them,
    recomputed on the fine grid (PROJ agrees), and written to netCDF as CF coordinates."""
    import pyproj

    with xr.open_dataset(shared_data / "grids/tas_rotated_grid_EUR11.nc") as ds:
        ds = ds.isel(height=0, rlat=slice(200, 232), rlon=slice(200, 248)).load()
    to_geo = pyproj.Transformer.from_crs(
        pyproj.CRS.from_cf(dict(ds.rotated_pole.attrs)), "EPSG:4326", always_xy=True
    )

    def proj_latlon(rlat, rlon):
        lam, phi = np.meshgrid(rlon, rlat)
        lon, lat = to_geo.transform(lam, phi)
        return lat, lon

    lat, lon = proj_latlon(ds.rlat.values, ds.rlon.values)
    fine = ds.rename(tas="t2m").assign_coords(
        lat=(("rlat", "rlon"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        lon=(("rlat", "rlon"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
    )
    coarse = degrade(fine, FACTOR)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs, coordinates="lat lon")
    down = make_downscaler(fine.drop_vars(["lat", "lon"]))
    out = down(coarse, members=2, seed=0, progress=False)
    assert out["t2m"].dims == ("member", "time", "rlat", "rlon")
    assert out["lat"].dims == ("rlat", "rlon")
    ref_lat, ref_lon = proj_latlon(out.rlat.values, out.rlon.values)
    assert np.abs(out["lat"].values - ref_lat).max() < 1e-9
    assert np.abs(out["lon"].values - ref_lon).max() < 1e-9
    np.testing.assert_allclose(out["lat"].values, fine["lat"].values, atol=1e-9)  # same cells
    assert out["t2m"].attrs["grid_mapping"] == "rotated_pole"
    assert out["t2m"].attrs["coordinates"] == "lat lon"
    out.to_netcdf(tmp_path / "fine.nc")
    back = xr.open_dataset(tmp_path / "fine.nc")
    assert {"lat", "lon"} <= set(back["t2m"].coords)


def test_bbox_one_cell_other_convention_and_reversed(pair, downscaler):
    _, coarse = pair
    lat, lon = coarse["latitude"].values, coarse["longitude"].values
    one = downscaler(coarse, bbox=(lon[4], lat[3], lon[4], lat[3]), seed=0)
    assert one["t2m"].shape == (2, FACTOR, FACTOR)
    full = downscaler(coarse, seed=0)
    assert float(one["latitude"][0]) in full["latitude"].values
    # the same box given in 0..360 longitudes
    box = (lon[3] - 0.1, lat[2] - 0.1, lon[7] + 0.1, lat[5] + 0.1)
    west = downscaler(coarse, bbox=box, seed=0)
    east = downscaler(coarse, bbox=(box[0] % 360, box[1], box[2] % 360, box[3]), seed=0)
    xr.testing.assert_identical(west.drop_attrs(), east.drop_attrs())
    with pytest.raises(ConfigError, match="x_min <= x_max"):
        downscaler(coarse, bbox=(box[2], box[1], box[0], box[3]), seed=0)


def test_values_that_are_not_real_numbers_are_refused(pair, downscaler):
    """Text raised numpy's TypeError deep inside; complex values lost their imaginary part and
    booleans ran as 0 / 1 K, silently."""
    _, coarse = pair
    cases = {
        "text or objects (dtype <U": coarse["t2m"].astype(str),
        "complex numbers (the imaginary part would be dropped) (dtype complex64)": coarse["t2m"]
        * (1 + 1j),
        "booleans (dtype bool)": coarse["t2m"] > 280,
    }
    for what, values in cases.items():
        bad = coarse.assign(t2m=values.assign_attrs(units="K"))
        with pytest.raises(DataError, match=re.escape(f"variable 't2m' holds {what}")):
            downscaler(bad, seed=0)
    # integers are numbers (packed data): they run
    whole = coarse.assign(t2m=coarse["t2m"].round().astype("int16").assign_attrs(units="K"))
    assert np.isfinite(downscaler(whole, seed=0)["t2m"].values).all()


def test_output_drops_the_inputs_value_ranges(pair, downscaler):
    """``valid_min`` / ``valid_max`` of the input would make netCDF readers mask samples
    outside the input's range; ``actual_range`` would state a false one."""
    _, coarse = pair
    low, high = float(coarse["t2m"].min()), float(coarse["t2m"].max())
    ranged = coarse.copy()
    ranged["t2m"].attrs.update(
        valid_min=low, valid_max=high, actual_range=[low, high], long_name="T"
    )
    out = downscaler(ranged, members=2, seed=0)
    assert out["t2m"].attrs["long_name"] == "T"
    assert not {"valid_min", "valid_max", "actual_range"} & set(out["t2m"].attrs)
    assert ranged["t2m"].attrs["valid_min"] == low  # the input is not changed
    with pytest.raises(ConfigError, match="progress = 'yes' must be True or False"):
        downscaler(coarse, progress="yes")


def test_nan_message_says_where_and_names_the_bbox_halo(pair, downscaler):
    _, coarse = pair
    bad = coarse.copy(deep=True)
    bad["t2m"][0, 5, 0] = np.nan
    lat, lon = coarse["latitude"].values, coarse["longitude"].values
    with pytest.raises(DataError, match=rf"first at y = {lat[5]:g}, x = {lon[0]:g}"):
        downscaler(bad, seed=0)
    small_halo = "with bbox= and overlap = 0 fine cells"  # a SkillWarning
    with (
        pytest.warns(SkillWarning, match=small_halo),
        pytest.raises(DataError, match="halo of 2 coarse cells"),
    ):
        downscaler(bad, seed=0, overlap=0, bbox=(lon[2], lat[2], lon[6], lat[6]))
    with pytest.warns(SkillWarning, match=small_halo):
        ok = downscaler(bad, seed=0, overlap=0, bbox=(lon[3], lat[2], lon[6], lat[6]))
    assert np.isfinite(ok["t2m"].values).all()


def test_model_cache_follows_the_folder(tmp_path, pair, downscaler, monkeypatch):
    """A relative path means the folder it named when called; a folder replaced in place is
    loaded again; provenance records the absolute path."""
    from flexdownscale.pipeline import resolve_downscaler

    fine, _ = pair
    for name, seed in (("a", 0), ("b", 1)):
        make_downscaler(fine, seed=seed).save_pretrained(tmp_path / name / "m")
    monkeypatch.chdir(tmp_path / "a")
    first = resolve_downscaler("m")
    assert first.name == str((tmp_path / "a" / "m").resolve())
    monkeypatch.chdir(tmp_path / "b")
    second = resolve_downscaler("m")
    assert second is not first
    assert second.name == str((tmp_path / "b" / "m").resolve())
    assert resolve_downscaler("m") is second  # cached
    make_downscaler(fine, seed=2).save_pretrained(tmp_path / "b" / "m", overwrite=True)
    third = resolve_downscaler("m")
    assert third is not second
    w2 = next(iter(third.backbone.parameters()))
    w1 = next(iter(second.backbone.parameters()))
    assert not torch.equal(w1, w2)


def test_sampler_options_reach_the_sampler_and_the_provenance(pair, downscaler):
    """``sampler_options`` are the model's stored sampler settings for one call: ``delta`` of
    the SDE sampler (0, the stored default, is the probability-flow ODE: exactly Euler)."""
    import dataclasses

    _, coarse = pair
    kwargs = {"members": 2, "seed": 3, "steps": 4, "progress": False}
    euler = downscaler(coarse, sampler="euler", **kwargs)
    ode = downscaler(coarse, sampler="sde", **kwargs)
    np.testing.assert_array_equal(ode["t2m"].values, euler["t2m"].values)
    sde = downscaler(coarse, sampler="sde", sampler_options={"delta": 0.5}, **kwargs)
    assert not np.array_equal(sde["t2m"].values, ode["t2m"].values)
    stored = Downscaler.__new__(Downscaler)
    stored.__dict__.update(downscaler.__dict__)
    stored.sampler = dataclasses.replace(downscaler.sampler, sampler="sde", delta=0.5)
    np.testing.assert_array_equal(stored(coarse, **kwargs)["t2m"].values, sde["t2m"].values)
    assert sde.attrs["flexdownscale_sampler"] == "sde"
    assert sde.attrs["flexdownscale_sampler_options"] == "delta=0.5"
    assert "(sde delta=0.5, 4 steps, 2 members, seed 3)" in sde.attrs["history"]
    assert "flexdownscale_sampler_options" not in euler.attrs  # Euler takes no options
    with pytest.raises(ConfigError, match=r"\['eta'\] do not apply to sampler 'sde'; it takes"):
        downscaler(coarse, sampler="sde", sampler_options={"eta": 1.0}, **kwargs)
    with pytest.raises(ConfigError, match=r"it takes none"):
        downscaler(coarse, sampler="euler", sampler_options={"delta": 1.0}, **kwargs)
    with pytest.raises(ConfigError, match="expected a finite number"):
        downscaler(coarse, sampler="sde", sampler_options={"delta": float("nan")}, **kwargs)


def test_save_pretrained_of_a_loaded_model_is_a_faithful_copy(shared_data, tmp_path):
    """Re-saving a shipped model dropped config.json's "extra" (training steps, validation,
    history) and wrote float32 weights (9.3 MB instead of 4.7 MB); bf16 exports also rounded the
    time embedding's frequencies."""
    from safetensors import safe_open

    from flexdownscale.hub import load_model_folder

    shipped = load_model_folder("era5-t2m-x4")
    model = Downscaler.from_pretrained("era5-t2m-x4")
    assert model.weights_dtype == torch.bfloat16
    copy = load_model_folder(model.save_pretrained(tmp_path / "copy"))
    assert copy.extra == shipped.extra
    assert copy.extra["train_steps"] > 0
    for name, tensor in shipped.state_dict.items():
        # same values; the frequencies (stored rounded to bf16 before 0.1.0) now go as float32
        expected = torch.float32 if name.endswith(".freqs") else tensor.dtype
        assert copy.state_dict[name].dtype == expected
        assert torch.equal(copy.state_dict[name].float(), tensor.float())
    wide = model.save_pretrained(tmp_path / "wide", dtype=torch.float32, extra={"note": "x"})
    assert load_model_folder(wide).extra == {"note": "x"}
    # a float32 model saved in bf16 keeps its frequencies exact
    fresh = make_downscaler(era5_pair(shared_data, times=1)[0])
    path = fresh.save_pretrained(tmp_path / "fresh", dtype=torch.bfloat16)
    with safe_open(str(path / "model.safetensors"), "pt") as weights:
        assert weights.get_tensor("enc_time.freqs").dtype == torch.float32
        assert weights.get_tensor("enc_time.mlp.0.weight").dtype == torch.bfloat16
        exact = fresh.backbone.enc_time.freqs
        assert torch.equal(weights.get_tensor("enc_time.freqs"), exact)


def test_provenance_label_of_a_hub_revision_names_it_once(tmp_path):
    """Loading "org/name@rev" recorded "org/name@rev@<commit>", which cannot be loaded again."""
    from flexdownscale.pipeline import _model_label

    snapshot = tmp_path / "snapshots" / "0123abcd"
    assert _model_label("org/name@v1.0", snapshot) == "org/name@0123abcd"
    assert _model_label("org/name", snapshot) == "org/name@0123abcd"


# -- findings of the inference audit (session 11) -------------------------------------------------


def test_time_bounds_come_along_or_the_reference_goes(pair, downscaler, tmp_path):
    """``time:bounds`` named a variable the output lacked: a dangling CF reference on disk."""
    _, coarse = pair
    t = coarse["time"].values
    ds = coarse.assign(time_bnds=(("time", "bnds"), np.stack([t - np.timedelta64(1, "h"), t], 1)))
    ds["time"].attrs["bounds"] = "time_bnds"
    out = downscaler(ds, members=1, seed=0)
    np.testing.assert_array_equal(out["time_bnds"].values, ds["time_bnds"].values)
    assert out["time"].attrs["bounds"] == "time_bnds"
    out.to_netcdf(tmp_path / "out.nc")
    with xr.open_dataset(tmp_path / "out.nc") as back:
        np.testing.assert_array_equal(back["time_bnds"].values, ds["time_bnds"].values)
    # reversed time order: the bounds follow their times
    rev = downscaler(ds.isel(time=[1, 0]), members=1, seed=0)
    np.testing.assert_array_equal(rev["time_bnds"].values, ds["time_bnds"].values[[1, 0]])
    # a single field keeps its (start, end) pair; a bounds variable that is absent is not named
    single = downscaler(ds.isel(time=0), seed=0)
    np.testing.assert_array_equal(single["time_bnds"].values, ds["time_bnds"].values[0])
    dangling = coarse.copy()
    dangling["time"].attrs["bounds"] = "time_bnds"
    assert "bounds" not in downscaler(dangling, seed=0)["time"].attrs


def test_rename_onto_an_existing_name_is_a_config_error(pair, downscaler):
    _, coarse = pair
    both = coarse.assign(tas=coarse["t2m"] + 1.0)
    with pytest.raises(ConfigError, match=r"already has \['t2m'\]; drop those first"):
        downscaler(both, rename={"tas": "t2m"})
    with pytest.raises(ConfigError, match=r"several input variables the name\(s\) \['t2m'\]"):
        downscaler(both.rename(t2m="t"), rename={"tas": "t2m", "t": "t2m"})
    # the fixes the message proposes work
    picked = downscaler(both, variables=["tas"], members=1, seed=0)
    dropped = downscaler(both.drop_vars("t2m"), rename={"tas": "t2m"}, members=1, seed=0)
    np.testing.assert_array_equal(picked["t2m"].values, dropped["t2m"].values)


def test_bbox_in_0_360_across_the_prime_meridian_on_a_regional_grid(pair, downscaler):
    # the grid spans -10 .. 2 E; a box from 357.4 E to 1 E crosses 0 in the other convention
    _, coarse = pair
    model = downscaler
    lon = coarse["longitude"].values
    assert lon.min() < 0 < lon.max()
    box = (-2.6, 52.0, 1.0, 56.0)
    a = model(coarse, bbox=box, seed=0)
    b = model(coarse, bbox=(box[0] + 360, box[1], box[2], box[3]), seed=0)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert float(a["longitude"].min()) < 0 < float(a["longitude"].max())
    with pytest.raises(ConfigError, match=r"four numbers .* not a string"):
        model(coarse, bbox="1234")
    with pytest.raises(ConfigError, match="x_min <= x_max"):  # reversed, not a wrap
        model(coarse, bbox=(box[2], box[1], box[0], box[3]), seed=0)


def test_overlap_attribute_is_the_setting_and_tiles_the_count(pair, downscaler):
    _, coarse = pair  # 32 x 48 fine cells: one default tile
    one = downscaler(coarse, members=1, seed=0)
    # the default overlap of the default tile (256 // 4), though one tile overlaps nothing
    assert (one.attrs["flexdownscale_overlap"], one.attrs["flexdownscale_tiles"]) == (64, 1)
    other = downscaler(coarse, members=1, seed=0, overlap=32)
    np.testing.assert_array_equal(one["t2m"].values, other["t2m"].values)
    assert other.attrs["flexdownscale_overlap"] == 32
    tiled = downscaler(coarse, members=1, seed=0, tile=32, overlap=16)
    assert (tiled.attrs["flexdownscale_overlap"], tiled.attrs["flexdownscale_tiles"]) == (16, 2)


def test_recorded_tile_and_overlap_reproduce_a_bbox_run(pair, downscaler):
    """A bbox's halo is sized from the overlap: with the overlap recorded as used (0 for one
    tile), passing the attributes back gave another halo and other numbers (0.17 K on ERA5)."""
    _, coarse = pair
    box = (-9.0, 50.5, -4.0, 52.5)
    first = downscaler(coarse, members=1, seed=0, bbox=box)
    again = downscaler(
        coarse,
        members=1,
        seed=0,
        bbox=box,
        tile=int(first.attrs["flexdownscale_tile"]),
        overlap=int(first.attrs["flexdownscale_overlap"]),
    )
    np.testing.assert_array_equal(again["t2m"].values, first["t2m"].values)


def test_recorded_tile_and_overlap_reproduce_a_periodic_run(shared_data):
    """The default run of a 256 x 256 periodic field is one 288 x 288 tile (halos included) and
    records tile 256; passing that back cut the haloed field into 4 tiles of 256 and gave other
    numbers (up to 0.25). A dimension that fits in the tile now runs as one tile whether the
    tile is given or not, so the attributes reproduce the run bit for bit."""
    truth = xr.open_dataset(shared_data / "kolmogorov" / "kf_re4000.nc")
    coarse = degrade(truth.isel(trajectory=3, time=[0]).load(), 8)
    model = Downscaler.from_pretrained("kolmogorov-x8")
    first = model(coarse, seed=0, condition=4000.0, progress=False)
    assert (first.attrs["flexdownscale_tile"], first.attrs["flexdownscale_tiles"]) == (256, 1)
    again = model(
        coarse,
        seed=0,
        condition=4000.0,
        tile=int(first.attrs["flexdownscale_tile"]),
        overlap=int(first.attrs["flexdownscale_overlap"]),
        progress=False,
    )
    assert again.attrs["flexdownscale_tiles"] == 1
    np.testing.assert_array_equal(again["vorticity"].values, first["vorticity"].values)


def test_a_torch_generator_gives_each_call_its_own_recorded_seed(pair, downscaler):
    """An integer seed is per call (two calls with seed 0 reuse the same noise); a
    ``torch.Generator`` draws one integer seed per call, so successive calls differ, the output
    records the integer, and passing it back reproduces the call."""
    _, coarse = pair
    gen = torch.Generator().manual_seed(123)
    first = downscaler(coarse, members=2, seed=gen, progress=False)
    second = downscaler(coarse, members=2, seed=gen, progress=False)
    s1, s2 = first.attrs["flexdownscale_seed"], second.attrs["flexdownscale_seed"]
    # an integer, as its decimal text above 2**31 - 1 (netCDF-3 attributes have 32 bits)
    assert isinstance(s1, int) if int(s1) < 2**31 else s1 == str(int(s1))
    assert 0 <= int(s1) < 2**63
    assert s1 != s2
    assert not np.array_equal(first["t2m"].values, second["t2m"].values)
    again = downscaler(coarse, members=2, seed=s1, progress=False)
    np.testing.assert_array_equal(again["t2m"].values, first["t2m"].values)
    # the same generator state, the same seed: reproducible from torch's seeding
    replay = downscaler(coarse, members=2, seed=torch.Generator().manual_seed(123), progress=False)
    assert replay.attrs["flexdownscale_seed"] == s1
    with pytest.raises(ConfigError, match=r"must be an integer \(or a torch.Generator"):
        downscaler(coarse, seed=0.5)


def test_log1p_variables_come_out_non_negative(shared_data):
    """A log1p-normalized (precipitation-like) variable's inverse ``expm1`` reaches down to -1:
    a tiny radar model gave 52% negative precipitation (down to -0.44 kg m-2). Such variables
    are clipped at 0; a ``none`` variable keeps its negative values."""
    fine, _ = era5_pair(shared_data, times=1, ny=16, nx=16)
    rain = (fine["t2m"] - fine["t2m"].median()).clip(min=0) / 10.0  # half the cells dry
    rain = rain.assign_attrs(units="kg m-2")
    fine = fine.assign(t2m=rain)
    coarse = degrade(fine, FACTOR)
    model = make_downscaler(fine)
    model.units = {"t2m": "kg m-2"}
    z = (np.log1p(fine["t2m"].values)).ravel()
    model.normalizer = Normalizer(
        {"t2m": VariableStats(mean=float(z.mean()), std=float(z.std()), transform="log1p")}
    )
    result = model(coarse, members=4, seed=0)["t2m"]
    assert result.attrs["flexdownscale_transform"] == "log1p"  # evaluate reads it
    out = result.values
    assert out.min() == 0.0
    assert (out == 0).mean() > 0.05  # the random model puts many cells below zero: clipped
    assert np.isfinite(out).all()
    # the rule itself: log1p channels clipped at 0 after expm1, others untouched
    two = Normalizer(
        {
            "pr": VariableStats(mean=0.5, std=2.0, transform="log1p"),
            "ta": VariableStats(mean=280.0, std=5.0),
        }
    )
    z = np.random.default_rng(0).normal(size=(3, 2, 4, 5))
    got = _physical_values(two, z, ["pr", "ta"])
    np.testing.assert_array_equal(got[:, 0], np.maximum(np.expm1(z[:, 0] * 2.0 + 0.5), 0.0))
    np.testing.assert_array_equal(got[:, 1], z[:, 1] * 5.0 + 280.0)
    assert (np.expm1(z[:, 0] * 2.0 + 0.5) < 0).any()
