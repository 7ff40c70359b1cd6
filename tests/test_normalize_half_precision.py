"""Normalizer.transform_array / inverse_transform_array on float16 and bfloat16 input compute in
float32; transform_array rounds to the input's dtype once (as degrade_array / upsample_array do),
inverse_transform_array returns float32.

In half precision the statistics themselves round (a mean of 280.3 K is 280 in bfloat16, 280.25
in float16), so z came out up to 0.14 std units off. The reference here is numpy in float64 on
the same (already rounded) input values, rounded to the input's dtype at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexdownscale.data import Normalizer, VariableStats

MEAN_T, STD_T = 280.3, 2.2
MEAN_P, STD_P = 0.4, 0.9
#: relative size of one unit in the last place (an upper bound) per dtype
ULP = {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}


@pytest.fixture(scope="module")
def norm() -> Normalizer:
    return Normalizer(
        {
            "t2m": VariableStats(mean=MEAN_T, std=STD_T, units="K"),
            "tp": VariableStats(mean=MEAN_P, std=STD_P, transform="log1p"),
        }
    )


def physical(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = MEAN_T + STD_T * rng.standard_normal((2, 32, 32))
    p = rng.gamma(0.5, 2.0, (2, 32, 32))
    return np.stack([t, p], axis=1)  # (B, C, H, W)


def forward_reference(x: np.ndarray) -> np.ndarray:
    return np.stack([(x[:, 0] - MEAN_T) / STD_T, (np.log1p(x[:, 1]) - MEAN_P) / STD_P], axis=1)


def backward_reference(z: np.ndarray) -> np.ndarray:
    return np.stack([z[:, 0] * STD_T + MEAN_T, np.expm1(z[:, 1] * STD_P + MEAN_P)], axis=1)


def assert_rounded(out: torch.Tensor, exact: np.ndarray, dtype: torch.dtype) -> None:
    """``out`` is ``exact`` rounded to ``dtype``: within one unit in the last place everywhere,
    and equal to the correctly rounded value almost everywhere (float32 arithmetic before the
    final rounding can move a value lying next to a rounding tie by one unit)."""
    assert out.dtype == dtype
    rounded = torch.from_numpy(exact).to(dtype)
    err = (out.double() - rounded.double()).abs()
    assert bool((err <= ULP[dtype] * rounded.double().abs() + 1e-6).all()), float(err.max())
    assert float((out == rounded).double().mean()) > 0.95


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_transform_array_half_tensor(norm: Normalizer, dtype: torch.dtype) -> None:
    x = torch.from_numpy(physical()).to(dtype)
    z = norm.transform_array(x)
    assert_rounded(z, forward_reference(x.double().numpy()), dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_inverse_transform_array_half_tensor(norm: Normalizer, dtype: torch.dtype) -> None:
    z = torch.from_numpy(forward_reference(physical(1))).to(dtype)
    x = norm.inverse_transform_array(z)
    # physical values come back in float32 (float16 overflows beyond 65504)
    assert x.dtype == torch.float32
    np.testing.assert_allclose(
        x.numpy(), backward_reference(z.double().numpy()), rtol=1e-6, atol=1e-6
    )


def test_float16_numpy(norm: Normalizer) -> None:
    x = physical(2).astype(np.float16)
    z = norm.transform_array(x)
    assert z.dtype == np.float16
    assert_rounded(torch.from_numpy(z), forward_reference(x.astype(np.float64)), torch.float16)
    back = norm.inverse_transform_array(z)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, backward_reference(z.astype(np.float64)), rtol=1e-6, atol=1e-6)


def test_wider_dtypes_unchanged(norm: Normalizer) -> None:
    x = physical(3)
    for dtype in (np.float32, np.float64):
        assert norm.transform_array(x.astype(dtype)).dtype == dtype
    for dtype in (torch.float32, torch.float64):
        t = torch.from_numpy(x).to(dtype)
        assert norm.inverse_transform_array(norm.transform_array(t)).dtype == dtype
    np.testing.assert_allclose(norm.transform_array(x), forward_reference(x), rtol=1e-12)
