"""A NaN or inf reaches exactly the outputs of degrade / up that give it a non-zero weight.

Taps with weight exactly zero (the Gaussian's beyond its radius, the next coarse value at an
interpolation node, the clamped edge of bilinear, the outer cubic taps at a node, a zero row
weight) used to multiply their input all the same, and ``0 * nan`` is NaN. The references here
are the operators written out as dense numpy matrices, independently of the package.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale.data import degrade, degrade_array, up, upsample_array

# 0 * inf and inf - inf in the cases with infinities
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

# ---------------------------------------------------------------------------------------------
# Dense reference matrices (rows: outputs, columns: inputs)
# ---------------------------------------------------------------------------------------------


def _fold(i: int, n: int, periodic: bool) -> int:
    if periodic:
        return i % n
    while not 0 <= i < n:  # mirror about the outer cell edges: -1 -> 0, n -> n - 1
        i = -1 - i if i < 0 else 2 * n - 1 - i
    return i


def gaussian_matrix(n: int, factor: int, sigma: float, periodic: bool) -> np.ndarray:
    """Weights exp(-d^2 / (2 sigma^2)) of the fine cells within 3 sigma + factor / 2 of each
    block centre, folded back at the edges, each row summing to one."""
    m = np.zeros((n // factor, n))
    radius = 3 * sigma + factor / 2
    for j in range(n // factor):
        centre = j * factor + (factor - 1) / 2
        for i in range(math.floor(centre - radius), math.ceil(centre + radius) + 1):
            if abs(i - centre) <= radius:
                m[j, _fold(i, n, periodic)] += math.exp(-0.5 * ((i - centre) / sigma) ** 2)
        m[j] /= m[j].sum()
    return m


def block_mean_matrix(n: int, factor: int, weights: np.ndarray | None = None) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    m = np.zeros((n // factor, n))
    for j in range(n // factor):
        block = slice(j * factor, (j + 1) * factor)
        m[j, block] = w[block] / w[block].sum()
    return m


def linear_matrix(n: int, factor: int, periodic: bool) -> np.ndarray:
    """torch's bilinear with align_corners=False along one axis (edges clamped), or wrapped."""
    m = np.zeros((n * factor, n))
    for i in range(n * factor):
        s = (i + 0.5) / factor - 0.5
        if not periodic:
            s = max(s, 0.0)
        i0 = math.floor(s)
        t = s - i0
        for k, wt in ((i0, 1 - t), (i0 + 1, t)):
            m[i, k % n if periodic else min(max(k, 0), n - 1)] += wt
    return m


def keys(s: float, a: float = -0.5) -> float:
    s = abs(s)
    if s <= 1:
        return (a + 2) * s**3 - (a + 3) * s**2 + 1
    if s < 2:
        return a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a
    return 0.0


def cubic_matrix(n: int, factor: int, periodic: bool) -> np.ndarray:
    """Keys' cubic convolution (a = -1/2) at torch's sample positions, indices clamped."""
    m = np.zeros((n * factor, n))
    for i in range(n * factor):
        s = (i + 0.5) / factor - 0.5
        i0 = math.floor(s)
        for k in range(i0 - 1, i0 + 3):
            m[i, k % n if periodic else min(max(k, 0), n - 1)] += keys(s - k)
    return m


def reached(my: np.ndarray, mx: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Outputs of the separable map ``my @ x @ mx.T`` with a non-zero weight on a bad input."""
    return (np.abs(my) @ bad.astype(float) @ np.abs(mx).T) > 0


def check(out: np.ndarray, x: np.ndarray, my: np.ndarray, mx: np.ndarray) -> None:
    """Non-finite outputs are exactly those reached by a non-finite input (an inf may arrive as
    NaN); the others are the reference values."""
    bad = ~np.isfinite(x)
    expected = reached(my, mx, bad)
    assert expected.any()  # the case says something
    assert not expected.all()
    np.testing.assert_array_equal(~np.isfinite(out), expected)
    ref = my @ np.where(bad, 0.0, x) @ mx.T
    tol = 1e-12 if out.dtype == np.float64 else 1e-4
    np.testing.assert_allclose(out[~expected], ref[~expected], rtol=tol, atol=tol)


def field(
    shape: tuple[int, ...], bad_value: float, density: float = 0.04, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) + 10.0
    bad = rng.random(shape) < density
    bad[..., 0, 0] = bad[..., -1, -1] = True  # corners too
    x[bad] = bad_value
    return x


def as_backend(x: np.ndarray, backend: str, dtype: str) -> np.ndarray | torch.Tensor:
    a = x.astype(dtype)
    return torch.from_numpy(a) if backend == "torch" else a


def to_numpy(out: np.ndarray | torch.Tensor) -> np.ndarray:
    return out.numpy() if isinstance(out, torch.Tensor) else out


# ---------------------------------------------------------------------------------------------
# The reported case
# ---------------------------------------------------------------------------------------------


def test_bilinear_nan_reaches_only_the_rows_that_weigh_it() -> None:
    c = np.arange(64.0).reshape(8, 8)
    c[1, 4] = np.nan
    out = upsample_array(c, 4)
    # coarse row 1 sits at fine position 5.5; fine rows 0-1 lie before the first centre (1.5)
    # and take coarse row 0 alone, rows 2-9 lie between the centres of rows 0-1 or 1-2
    assert np.where(np.isnan(out).any(axis=1))[0].tolist() == list(range(2, 10))
    assert np.where(np.isnan(out).any(axis=0))[0].tolist() == list(range(14, 22))


# ---------------------------------------------------------------------------------------------
# Every operator with taps of weight zero, numpy and torch, NaN and inf
# ---------------------------------------------------------------------------------------------

BACKENDS = [("numpy", "float64"), ("numpy", "float32"), ("torch", "float64"), ("torch", "float32")]


@pytest.mark.parametrize(("backend", "dtype"), BACKENDS)
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("factor", [2, 3, 5])
@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_upsampling_reaches_exactly_the_weighted_outputs(
    method: str, factor: int, periodic: bool, bad_value: float, backend: str, dtype: str
) -> None:
    x = field((2, 7, 9), bad_value)
    out = upsample_array(as_backend(x, backend, dtype), factor, method=method, periodic=periodic)
    make = linear_matrix if method == "bilinear" else cubic_matrix
    check(to_numpy(out), x, make(7, factor, periodic), make(9, factor, periodic))


@pytest.mark.parametrize(("backend", "dtype"), BACKENDS)
@pytest.mark.parametrize("bad_value", [np.nan, -np.inf])
@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize(("factor", "sigma"), [(2, None), (3, None), (4, None), (4, 1.0)])
def test_gaussian_reaches_exactly_the_weighted_outputs(
    factor: int, sigma: float | None, periodic: bool, bad_value: float, backend: str, dtype: str
) -> None:
    x = field((2, 48, 60), bad_value, density=0.002)
    s = factor / 2 if sigma is None else sigma
    out = degrade_array(
        as_backend(x, backend, dtype), factor, method="gaussian", sigma=sigma, periodic=periodic
    )
    check(
        to_numpy(out),
        x,
        gaussian_matrix(48, factor, s, periodic),
        gaussian_matrix(60, factor, s, periodic),
    )


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_gaussian_weight_that_rounds_to_zero_in_float32(backend: str) -> None:
    # sigma = 0.1 at factor 8: the fine cell 2.5 cells from the centre (3.5) of block 0 weighs
    # ~1e-131 in float64, zero in float32; in float32 it carries no weight, so no NaN either
    x = np.full((16, 16), 1.0)
    x[6, 6] = np.nan
    out = to_numpy(
        degrade_array(as_backend(x, backend, "float32"), 8, method="gaussian", sigma=0.1)
    )
    m64 = gaussian_matrix(16, 8, 0.1, False)
    m32 = m64.astype(np.float32)
    assert m64[0, 6] > 0
    assert m32[0, 6] == 0
    assert not reached(m32, m32, np.isnan(x)).any()
    assert not np.isnan(out).any()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_area_mean_row_of_weight_zero_carries_no_nan(backend: str) -> None:
    x = field((12, 8), np.nan)
    rows = np.linspace(0.0, 1.0, 12) ** 2
    rows[[0, 5]] = 0.0  # e.g. a row outside the domain of interest
    x[0, 3] = x[5, 6] = np.nan
    out = degrade_array(as_backend(x, backend, "float64"), 4, row_weights=rows)
    check(to_numpy(out), x, block_mean_matrix(12, 4, rows), block_mean_matrix(8, 4))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_conservative_and_nearest_spread_as_their_stages(backend: str) -> None:
    # conservative = bilinear + a constant per block (the coarse value minus the block mean of
    # the bilinear field): a NaN coarse cell reaches its block and the blocks around it
    c = np.arange(42.0).reshape(6, 7)
    c[2, 3] = np.nan
    out = to_numpy(upsample_array(as_backend(c, backend, "float64"), 3, method="conservative"))
    expected = np.zeros((18, 21), dtype=bool)
    expected[3:12, 6:15] = True
    np.testing.assert_array_equal(np.isnan(out), expected)
    near = to_numpy(upsample_array(as_backend(c, backend, "float64"), 3, method="nearest"))
    expected[:] = False
    expected[6:9, 9:12] = True
    np.testing.assert_array_equal(np.isnan(near), expected)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_tensors(dtype: str) -> None:
    x = field((7, 9), np.nan)
    t = torch.from_numpy(x).to(getattr(torch, dtype))
    out = upsample_array(t, 3, method="bicubic").float().numpy()
    bad = np.isnan(x)
    np.testing.assert_array_equal(
        np.isnan(out), reached(cubic_matrix(7, 3, False), cubic_matrix(9, 3, False), bad)
    )


# ---------------------------------------------------------------------------------------------
# xarray level, lazy with dask, on a masked ERA5 field
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def era5_masked(shared_data: Path) -> xr.DataArray:
    path = shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc"
    with xr.open_dataset(path) as ds:
        t = ds.t2m.isel(time=slice(0, 2)).load().astype("float64")
    asc = t.sortby("latitude").isel(latitude=slice(0, 32), longitude=slice(0, 48))
    return asc.where(asc > asc.quantile(0.15))  # the coldest 15% of the cells masked


def test_era5_gaussian_degrade_with_dask(era5_masked: xr.DataArray) -> None:
    lazy = era5_masked.chunk({"time": 1})
    out = degrade(lazy, 4, method="gaussian")
    assert out.chunks is not None
    values = out.values
    my, mx = gaussian_matrix(32, 4, 2.0, False), gaussian_matrix(48, 4, 2.0, False)
    for k in range(2):
        check(values[k], era5_masked.values[k], my, mx)


def test_era5_bilinear_up_with_dask(era5_masked: xr.DataArray) -> None:
    coarse = degrade(era5_masked.fillna(280.0), 3, boundary="trim")
    coarse = coarse.where(coarse > coarse.quantile(0.15))
    out = up(coarse.chunk({"time": 1}), 3, method="bilinear").values
    n, k = coarse.shape[-2:]
    my, mx = linear_matrix(n, 3, False), linear_matrix(k, 3, False)
    for i in range(2):
        check(out[i], coarse.values[i], my, mx)
