"""Property-based checks (hypothesis) of invariants that must hold for any small input: tiling
round trips and blending, degradation against an independent numpy block mean, the
coarse-cell constraint, normalization round trips, grid validation, and the ensemble and
spectral metrics. Each property runs a fixed set of examples (``derandomize=True``), so the
file is deterministic and cheap; the wider searches these were distilled from ran thousands of
examples per property."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flexdownscale import metrics
from flexdownscale.data import degrade, degrade_array, grid_spec, normalize_grid, upsample_array
from flexdownscale.data.normalize import Normalizer
from flexdownscale.data.tiling import tile, tile_layout, untile
from flexdownscale.errors import DataError, FlexDownscaleError, UnsupportedFactorError
from flexdownscale.pipeline import _conserve_coarse_cells

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: Finite values away from the subnormal range (values near 1e-308 overflow ratios; no field
#: holds them)
VALUES = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False).map(
    lambda v: 0.0 if abs(v) < 1e-30 else v
)


def _block_mean(x: np.ndarray, f: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Independent (numpy reshape) mean over f x f blocks, rows weighted by ``rows``."""
    h, w = x.shape[-2:]
    blocks = x.reshape(*x.shape[:-2], h // f, f, w // f, f).mean(axis=-1)
    rw = np.ones(h) if rows is None else np.asarray(rows, dtype=np.float64)
    rw = rw.reshape(h // f, f)
    return (blocks * rw[:, :, None]).sum(-2) / rw.sum(-1)[:, None]


@st.composite
def _layouts(draw):
    ny, nx = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    th, tw = draw(st.integers(1, 24)), draw(st.integers(1, 24))  # tiles may exceed the field
    oh = draw(st.integers(0, max(0, min(th, ny) - 1)))
    ow = draw(st.integers(0, max(0, min(tw, nx) - 1)))
    blend = draw(st.sampled_from(["uniform", "cosine", "gaussian"]))
    return ny, nx, (th, tw), (oh, ow), blend


@PROPERTY
@given(_layouts(), st.data())
def test_fusion_is_a_partition_of_unity_and_affine(layout_args, data):
    """Blend weights over the tiles sum to one in every cell, so fusing constant tiles gives a
    value between the smallest and largest constant and fusion commutes with a x + b."""
    ny, nx, size, overlap, blend = layout_args
    layout = tile_layout((ny, nx), size, overlap=overlap, blend=blend)
    share = np.zeros((ny, nx))
    for sy, sx in layout.slices:
        share[sy, sx] += layout.weights / layout.weight_sum[sy, sx]
    np.testing.assert_allclose(share, 1.0, atol=1e-12)
    values = data.draw(st.lists(VALUES, min_size=len(layout), max_size=len(layout)))
    tiles = [np.full(layout.tile_shape, v) for v in values]
    fused = layout.fuse(tiles)
    assert fused.min() >= min(values) - 1e-9
    assert fused.max() <= max(values) + 1e-9
    np.testing.assert_allclose(layout.fuse([2.0 * t - 3.0 for t in tiles]), 2.0 * fused - 3.0)


@settings(PROPERTY, max_examples=15)
@given(_layouts(), st.data())
def test_dask_dataarray_tiles_stay_lazy_and_untile_exactly(layout_args, data):
    """Tiles of a DataArray in dask chunks of any size are lazy, and fusing them gives back
    the field, its coordinates and attributes exactly."""
    ny, nx, size, overlap, blend = layout_args
    chunks = {"y": data.draw(st.integers(1, ny)), "x": data.draw(st.integers(1, nx))}
    values = np.random.default_rng(ny * 31 + nx).normal(280.0, 5.0, size=(2, ny, nx))
    da = xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={"time": [0, 1], "y": np.arange(ny) * 2.5, "x": np.arange(nx) * 2.5},
        name="t2m",
        attrs={"units": "K"},
    )
    tiles, layout = tile(da.chunk({"time": 1, **chunks}), size, overlap=overlap, blend=blend)
    assert all(t.chunks is not None for t in tiles)
    xr.testing.assert_identical(untile(tiles, layout).compute(), da)


@st.composite
def _fields(draw):
    factor = draw(st.integers(1, 5))
    by, bx = draw(st.integers(1, 16 // factor)), draw(st.integers(1, 16 // factor))
    lead = tuple(draw(st.lists(st.integers(1, 2), max_size=1)))
    x = draw(hnp.arrays(np.float64, (*lead, by * factor, bx * factor), elements=VALUES))
    return factor, x


@PROPERTY
@given(_fields(), st.data())
def test_degrade_array_matches_an_independent_block_mean(field, data):
    """area_mean is the (row-weighted) block mean, strided the first cell of each block, a
    NaN reaches its own block only, and a shape the factor does not divide is refused."""
    factor, x = field
    h, w = x.shape[-2:]
    np.testing.assert_allclose(degrade_array(x, factor), _block_mean(x, factor), atol=1e-9)
    rows = data.draw(hnp.arrays(np.float64, (h,), elements=st.floats(0.01, 10.0)))
    np.testing.assert_allclose(
        degrade_array(x, factor, row_weights=rows), _block_mean(x, factor, rows), atol=1e-9
    )
    assert np.array_equal(degrade_array(x, factor, method="strided"), x[..., ::factor, ::factor])
    i, j = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    holed = x.copy()
    holed[..., i, j] = np.nan
    expected = np.zeros((h // factor, w // factor), dtype=bool)
    expected[i // factor, j // factor] = True
    assert (np.isnan(degrade_array(holed, factor)) == expected).all()
    if factor > 1:
        with pytest.raises(UnsupportedFactorError):
            degrade_array(x[..., : h - 1, :], factor)


@st.composite
def _latlon_grids(draw):
    factor = draw(st.integers(1, 3))
    ny, nx = factor * draw(st.integers(1, 5)), factor * draw(st.integers(1, 5))
    assume(ny >= 2 and nx >= 2)
    dy = draw(st.sampled_from([0.25, 0.5, 1.0, 2.5, 5.0]))
    dx = draw(st.sampled_from([0.25, 1.0, 3.0]))
    y0 = round(draw(st.floats(-90.0, 90.0 - (ny - 1) * dy)) / dy) * dy
    assume(y0 >= -90.0 and y0 + (ny - 1) * dy <= 90.0)
    x0 = round(draw(st.floats(-180.0, 300.0)) / dx) * dx
    return factor, y0 + dy * np.arange(ny), x0 + dx * np.arange(nx), dy, dx


@settings(PROPERTY, max_examples=30)
@given(_latlon_grids(), st.booleans(), st.booleans(), st.data())
def test_degrade_latlon_is_the_area_weighted_block_mean(grid, descending, bounds, data):
    """On any regular lat / lon grid (rows north to south or not, CF bounds or not, either
    longitude convention) degrade is the block mean with rows weighted by sin(upper) -
    sin(lower) of their cells (clipped at the poles), on ascending latitudes."""
    factor, lat, lon, dy, dx = grid
    values = data.draw(hnp.arrays(np.float64, (lat.size, lon.size), elements=VALUES))
    edges = np.concatenate([[lat[0] - dy / 2], (lat[:-1] + lat[1:]) / 2, [lat[-1] + dy / 2]])
    rows = np.abs(np.diff(np.sin(np.radians(np.clip(edges, -90.0, 90.0)))))
    expected = _block_mean(values, factor, rows)
    order = slice(None, None, -1) if descending else slice(None)
    ds = xr.Dataset(
        {"t": (("lat", "lon"), values[order], {"units": "K"})},
        coords={
            "lat": ("lat", lat[order], {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    if bounds:
        lat_bnds = np.clip(np.stack([lat - dy / 2, lat + dy / 2], axis=1), -90.0, 90.0)[order]
        lon_bnds = np.stack([lon - dx / 2, lon + dx / 2], axis=1)
        ds = ds.assign_coords(
            lat_bnds=(("lat", "bnds"), lat_bnds), lon_bnds=(("lon", "bnds"), lon_bnds)
        )
        ds["lat"].attrs["bounds"], ds["lon"].attrs["bounds"] = "lat_bnds", "lon_bnds"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. grids that reach a pole
        out = degrade(ds, factor)
    np.testing.assert_allclose(out["t"].values, expected, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(out["lat"].values, lat.reshape(-1, factor).mean(axis=1))


@settings(PROPERTY, max_examples=10)
@given(st.integers(1, 2), st.integers(2, 4), st.sampled_from([0.5, 1.0, 2.0]), st.data())
def test_degrade_rotated_grid_reaching_the_pole_weighs_rows_like_latlon(factor, n, dy, data):
    """A rotated-pole grid is a spherical grid in the rotated frame: its rows up to the
    rotated pole weigh what the rows of the same lat / lon grid weigh."""
    rows = 90.0 - dy * np.arange(factor * n)[::-1]
    cols = np.array([0.0, 1.0])
    values = data.draw(hnp.arrays(np.float64, (rows.size, 2), elements=VALUES))
    latlon = xr.DataArray(
        values,
        dims=("lat", "lon"),
        coords={
            "lat": ("lat", rows, {"units": "degrees_north"}),
            "lon": ("lon", cols, {"units": "degrees_east"}),
        },
        name="t",
    )
    rotated = xr.DataArray(
        values,
        dims=("rlat", "rlon"),
        coords={
            "rlat": ("rlat", rows, {"standard_name": "grid_latitude", "units": "degrees"}),
            "rlon": ("rlon", cols, {"standard_name": "grid_longitude", "units": "degrees"}),
        },
        name="t",
    )
    want = degrade(latlon, factor).values
    np.testing.assert_allclose(degrade(rotated, factor).values, want, rtol=1e-12, atol=1e-9)


@PROPERTY
@given(_fields(), st.sampled_from(["additive", "multiplicative"]), st.booleans(), st.data())
def test_coarse_cell_constraint_and_conservative_upsampling(field, mode, signed, data):
    """After the conserve correction each member's (row-weighted) area mean over every coarse
    cell is the coarse value; the multiplicative mode keeps non-negative fields non-negative;
    and the conservative / nearest base fields degrade back to their coarse field."""
    factor, x = field
    x = (x if signed else np.abs(x)).reshape(-1, 1, *x.shape[-2:])
    h, w = x.shape[-2:]
    elements = VALUES if signed else VALUES.map(abs)
    coarse = data.draw(hnp.arrays(np.float64, (1, h // factor, w // factor), elements=elements))
    rows = data.draw(st.none() | hnp.arrays(np.float64, (h,), elements=st.floats(0.01, 10.0)))
    out, _ = _conserve_coarse_cells(x, coarse, factor, (mode,), row_weights=rows)
    scale = max(1.0, float(np.abs(coarse).max()), float(np.abs(x).max()))
    got = degrade_array(out[:, 0], factor, row_weights=rows)
    np.testing.assert_allclose(got, np.broadcast_to(coarse[0], got.shape), atol=1e-9 * scale)
    if mode == "multiplicative" and not signed:
        assert (out >= 0).all()
    for method in ("conservative", "nearest"):
        base = upsample_array(coarse[0], factor, method=method)
        np.testing.assert_allclose(degrade_array(base, factor), coarse[0], atol=1e-9 * scale)


@st.composite
def _datasets(draw):
    ny, nx, nt = draw(st.integers(2, 8)), draw(st.integers(2, 8)), draw(st.integers(1, 2))
    transform = draw(st.sampled_from(["none", "log1p"]))
    offset = 0.0 if transform == "log1p" else draw(st.sampled_from([0.0, 280.0, 1e5, 1e8]))
    elements = VALUES.map(abs) if transform == "log1p" else VALUES
    values = draw(hnp.arrays(np.float64, (nt, ny, nx), elements=elements)) + offset
    if draw(st.booleans()):
        values[draw(hnp.arrays(np.bool_, values.shape))] = np.nan
    ds = xr.Dataset(
        {"v": (("time", "y", "x"), values, {"units": "K", "long_name": "a field"})},
        coords={
            "y": ("y", np.arange(ny) * 1.0, {"units": "km"}),
            "x": ("x", np.arange(nx) * 1.0, {"units": "km"}),
        },
    )
    return ds, transform


@PROPERTY
@given(_datasets())
def test_normalizer_round_trip_leaves_input_and_attributes_alone(dataset):
    """fit -> transform -> inverse_transform gives the values back (NaN cells stay NaN, log1p
    and large offsets included), the input is not modified, the normalized variable is
    standardised and says so, the attributes come back, and normalizing twice is refused."""
    ds, transform = dataset
    before = ds.copy(deep=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            norm = Normalizer.fit(ds, transforms={"v": transform})
    except DataError:  # constant, all NaN, fill-like values: refused, typed
        return
    z = norm.transform(ds)
    xr.testing.assert_identical(ds, before)
    assert z["v"].attrs["units"] == "1"
    assert "flexdownscale_normalization" in z["v"].attrs
    assert np.array_equal(np.isnan(z["v"].values), np.isnan(ds["v"].values))
    valid = z["v"].values[~np.isnan(z["v"].values)]
    assert abs(valid.mean()) < 1e-6
    assert abs(valid.std() - 1.0) < 1e-6
    back = norm.inverse_transform(z)
    assert back["v"].attrs == ds["v"].attrs
    scale = max(1.0, float(np.nanmax(np.abs(ds["v"].values))))
    np.testing.assert_allclose(back["v"].values, ds["v"].values, rtol=1e-9, atol=1e-9 * scale)
    with pytest.raises(DataError):
        norm.transform(z)
    assert Normalizer.from_json(norm.to_json()) == norm


@st.composite
def _grids(draw):
    kind = draw(st.sampled_from(["latlon", "projected"]))
    ny, nx = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    dy = draw(st.sampled_from([0.25, 1.0, 7.0, 30.0]))
    dx = draw(st.sampled_from([0.25, 1.0, 36.0, 45.0]))
    y0, x0 = draw(st.floats(-120.0, 120.0)), draw(st.floats(-400.0, 400.0))
    jitter = draw(st.sampled_from([0.0, 0.0, 9e-4, 1.1e-3, 0.1]))  # rtol is 1e-3
    rng = np.random.default_rng(ny * 13 + nx)
    y = y0 + dy * (np.arange(ny) + jitter * rng.uniform(-0.5, 0.5, ny))
    x = x0 + dx * (np.arange(nx) + jitter * rng.uniform(-0.5, 0.5, nx))
    if kind == "latlon" and draw(st.booleans()):
        x = x % 360.0  # wrapped, possibly across the seam
    y = y[::-1] if draw(st.booleans()) else y
    x = x[::-1] if draw(st.booleans()) else x
    names = ("lat", "lon") if kind == "latlon" else ("y", "x")
    units = ("degrees_north", "degrees_east") if kind == "latlon" else ("km", "km")
    return xr.DataArray(
        np.arange(ny * nx, dtype=np.float64).reshape(ny, nx),
        dims=names,
        coords={
            names[0]: (names[0], y, {"units": units[0]}),
            names[1]: (names[1], x, {"units": units[1]}),
        },
        name="t",
    )


@PROPERTY
@given(_grids())
def test_grids_are_refused_typed_or_normalized_in_place(da):
    """Every random grid is either refused with a FlexDownscaleError (by normalize_grid and
    grid_spec alike) or normalized to ascending axes with each value kept at its own
    coordinates; normalizing again changes nothing, and degrade by 1 keeps the values."""
    ydim, xdim = da.dims
    try:
        out = normalize_grid(da)
    except FlexDownscaleError:
        with pytest.raises(FlexDownscaleError):
            grid_spec(da)
        return
    spec = grid_spec(da)
    assert (spec.ny, spec.nx) == da.shape
    assert (np.diff(out[ydim].values) > 0).all()
    assert (np.diff(out[xdim].values) > 0).all()
    for value in (0, da.size - 1):
        i, j = np.argwhere(da.values == value)[0]
        k, m = np.argwhere(out.values == value)[0]
        assert out[ydim].values[k] == pytest.approx(da[ydim].values[i])
        shift = float(out[xdim].values[m]) - float(da[xdim].values[j])
        assert min(abs(shift) % 360.0, 360.0 - abs(shift) % 360.0) < 1e-6
    xr.testing.assert_identical(normalize_grid(out), out)
    assert sorted(degrade(da, 1).values.ravel()) == sorted(da.values.ravel())


@st.composite
def _ensembles(draw):
    members, points = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    fcst = draw(hnp.arrays(np.float64, (members, points), elements=VALUES | st.just(np.nan)))
    obs = draw(hnp.arrays(np.float64, (points,), elements=VALUES))
    return (
        xr.DataArray(fcst, dims=("member", "x"), attrs={"units": "K"}),
        xr.DataArray(obs, dims="x", attrs={"units": "K"}),
    )


@PROPERTY
@given(_ensembles(), st.booleans())
def test_crps_is_the_pairwise_formula_nonnegative_and_member_order_free(ensemble, fair):
    """Per point the CRPS is mean|x_i - y| - sum|x_i - x_j| / (2K) over the valid members
    (K = M^2, or M(M-1) fair), >= 0, the same for any member order; with one member the
    ecdf CRPS is the MAE."""
    fcst, obs = ensemble
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fair CRPS of one valid member is undefined
        crps = metrics.crps_ensemble(fcst, obs, fair=fair, preserve_dims="x").values
        order = np.random.default_rng(fcst.sizes["member"]).permutation(fcst.sizes["member"])
        shuffled = metrics.crps_ensemble(
            fcst.isel(member=order), obs, fair=fair, preserve_dims="x"
        ).values
    scale = max(1.0, float(np.nanmax(np.abs(fcst.values), initial=0.0)))
    np.testing.assert_allclose(shuffled, crps, atol=1e-9 * scale)
    for k in range(fcst.sizes["x"]):
        xs = fcst.values[:, k][~np.isnan(fcst.values[:, k])]
        m = xs.size
        if m == 0 or (fair and m == 1):
            assert np.isnan(crps[k])
            continue
        pairs = np.abs(xs[:, None] - xs[None, :]).sum() / (2 * (m * (m - 1) if fair else m * m))
        assert crps[k] == pytest.approx(np.abs(xs - obs.values[k]).mean() - pairs, abs=1e-9 * scale)
        assert crps[k] >= -1e-12 * scale
    one = fcst.isel(member=[0]).fillna(0.0)
    assert float(metrics.crps_ensemble(one, obs, fair=False)) == pytest.approx(
        float(metrics.mae(one.isel(member=0, drop=True), obs))
    )


@PROPERTY
@given(_ensembles(), st.integers(4, 24), st.integers(4, 24), st.data())
def test_rank_histogram_counts_and_spectrum_parseval(ensemble, ny, nx, data):
    """The rank histogram is the share of cases at each rank (ties shared), summing to 1 over
    the ranks; the power spectrum (DCT and FFT, no window) satisfies Parseval's identity
    sum E(k) dk = mean((f - mean f)^2)."""
    fcst, obs = ensemble
    hist = metrics.rank_histogram(fcst, obs).values
    counts = np.zeros(fcst.sizes["member"] + 1)
    for k in range(fcst.sizes["x"]):
        xs, y = fcst.values[:, k], obs.values[k]
        if np.isnan(xs).any():
            continue
        below, ties = int((xs < y).sum()), int((xs == y).sum())
        counts[below : below + ties + 1] += 1.0 / (ties + 1)
    if counts.sum() > 0:
        np.testing.assert_allclose(hist, counts / counts.sum(), atol=1e-12)
        assert hist.sum() == pytest.approx(1.0)
    values = data.draw(hnp.arrays(np.float64, (ny, nx), elements=st.floats(-100, 100)))
    field = xr.DataArray(values, dims=("y", "x"), attrs={"units": "K"})
    energy = float(((values - values.mean()) ** 2).mean())
    for method in ("dct", "fft"):
        spec = metrics.power_spectrum(field, dims=("y", "x"), spacing=1.0, method=method)
        assert (spec.values >= 0).all()
        total = float((spec * spec.attrs["dk"]).sum())
        assert total == pytest.approx(energy, rel=1e-9, abs=1e-12)
