"""The Downscaler samples several time steps per network call, with each step's own noise.

reviewer-110's findings 1 and 2: the eager path upsampled the whole record in float64 before
its per-step loop (about 10x the output's memory with ``members=None``), and ran the network
once per time step (batch 1 with ``members=None``). Now ``max(1, rows // members)`` steps share
one sampler call (``rows``: member rows per call), each with the member streams it has alone,
and only the steps of one call are upsampled at a time.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import xarray as xr
from test_pipeline import era5_pair, make_downscaler

import flexdownscale.data.grid as grid_module
from flexdownscale.data import upsample_array
from flexdownscale.diffusion import ResidualModel
from flexdownscale.diffusion.samplers import CPU_CELLS_PER_CALL
from flexdownscale.pipeline import (
    Downscaler,
    TiledDenoiser,
    _group_aligned_chunks,
    _step_groups,
    _steps_per_call,
    _tiling,
    time_step_seed,
)

STEPS = 12


@pytest.fixture(scope="module")
def pair(shared_data):
    return era5_pair(shared_data, times=STEPS)


@pytest.fixture(scope="module")
def downscaler(pair):
    return make_downscaler(pair[0])


@contextmanager
def network_calls(down: Downscaler) -> Iterator[list[tuple[int, ...]]]:
    """The input shapes of every backbone call (denoising steps, not task encodings)."""
    shapes: list[tuple[int, ...]] = []
    hook = down.backbone.register_forward_pre_hook(
        lambda module, args: shapes.append(tuple(args[0].shape))
    )
    try:
        yield shapes
    finally:
        hook.remove()


def per_step_reference(
    down: Downscaler, coarse: xr.Dataset, *, members: int, seed: int, batch_invariant: bool
) -> np.ndarray:
    """What the Downscaler returned before steps were grouped, computed here step by step: one
    sampler call per time step, seeded with ``time_step_seed(seed, i)``, on the whole
    32 x 48 field as one tile (no padding), ``(members, T, 32, 48)``."""
    values = coarse["t2m"].values[:, None].astype(np.float64)  # (T, C, h, w)
    z = down.normalizer.transform_array(values, variables=down.variables)
    base = upsample_array(z, down.factor, method="bilinear")
    _, end_pad, layout = _tiling(base.shape[-2:], down.factor, (False, False), 256, 64)
    assert not any(end_pad)
    assert len(layout) == 1
    batch = CPU_CELLS_PER_CALL // (32 * 48)  # the CPU's tiles per call for this tile (21)
    net = TiledDenoiser(down.backbone, layout, tile_batch=1 if batch_invariant else batch)
    model = ResidualModel(net)
    out = []
    for i in range(base.shape[0]):
        with torch.no_grad():
            sample = model.sample(
                down.objective,
                torch.from_numpy(base[i : i + 1]).float(),
                members=members,
                sampler="ddim",
                steps=2,
                generator=time_step_seed(seed, i),
                batch_size=batch,
            )
        fine = down.normalizer.inverse_transform_array(
            sample[0].double().numpy(), variables=down.variables
        )
        out.append(fine[:, 0].astype(np.float32))
    return np.stack(out, axis=1)


def test_step_groups_follow_the_absolute_time_index():
    assert _steps_per_call(21, 1, 1, False) == 21  # members=None, one tile: 21 steps a call
    assert _steps_per_call(21, 1, 4, False) == 5
    assert _steps_per_call(21, 1, 32, False) == 1  # the members alone fill a call
    assert _steps_per_call(32, 6, 1, False) == 5  # 6 tiles per field: 5 fields' tiles
    assert _steps_per_call(32, 64, 1, False) == 1
    assert _steps_per_call(32, 1, 1, True) == 1  # batch_invariant: one step a call
    assert _step_groups(0, 12, 5) == [(0, 5), (5, 10), (10, 12)]
    # a block starting at step 3 of the call: its groups end where the eager run's do
    assert _step_groups(3, 9, 5) == [(0, 2), (2, 7), (7, 9)]
    assert _step_groups(0, 0, 5) == []
    # lazy time chunks moved onto multiples of the group (to the nearest), edges at the ends
    # dropped; aligned chunks (or a group of 1) unchanged
    assert _group_aligned_chunks((3, 3, 3, 3), 5) == (5, 5, 2)
    assert _group_aligned_chunks((1,) * 24, 21) == (21, 3)
    assert _group_aligned_chunks((24, 24, 24, 24), 21) == (21, 21, 21, 33)
    assert _group_aligned_chunks((10, 10, 4), 5) == (10, 10, 4)
    assert _group_aligned_chunks((1, 1, 1), 1) == (1, 1, 1)
    assert _group_aligned_chunks((7,), 5) == (7,)


def test_members_none_runs_several_steps_per_network_call(pair, downscaler):
    _, coarse = pair
    with network_calls(downscaler) as grouped:
        out = downscaler(coarse, seed=4)
    with network_calls(downscaler) as alone:  # batch_size=1: a row per call, a step per call
        one = downscaler(coarse, seed=4, batch_size=1)
    # ddim with 2 steps: 2 network calls per sampler call; 12 steps fit one call of 21 rows
    assert len(alone) == 2 * STEPS
    assert len(grouped) == 2
    assert {shape[0] for shape in grouped} == {STEPS}
    # the same samples, to float32 rounding (the random numbers are the same)
    np.testing.assert_allclose(out["t2m"].values, one["t2m"].values, rtol=1e-5, atol=0)


@pytest.mark.parametrize("members", [1, 3])
def test_grouped_steps_equal_the_per_step_samples(pair, downscaler, members):
    _, coarse = pair
    reference = per_step_reference(
        downscaler, coarse, members=members, seed=9, batch_invariant=False
    )
    out = downscaler(coarse, members=members, seed=9)["t2m"].values
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=0)
    # with batch_invariant one step (and one tile) per call: the per-step samples bit for bit
    exact = per_step_reference(downscaler, coarse, members=members, seed=9, batch_invariant=True)
    with network_calls(downscaler) as calls:
        same = downscaler(coarse, members=members, seed=9, batch_invariant=True)["t2m"].values
    np.testing.assert_array_equal(same, exact)
    assert {shape[0] for shape in calls} == {1}


def test_grouped_steps_draw_each_steps_own_noise(pair):
    # a float64 network's rounding never reaches the float32 output: grouping steps must then
    # change nothing at all, and a step run alone equals that step of a longer run
    fine, coarse = pair
    down = make_downscaler(fine)
    down.backbone.double()
    kw = dict(members=2, seed=5)
    with network_calls(down) as calls:
        grouped = down(coarse, **kw)["t2m"].values
    assert max(shape[0] for shape in calls) == 2 * 10  # 10 steps of 2 members per call
    single = down(coarse, batch_size=2, **kw)["t2m"].values  # one step per call
    np.testing.assert_array_equal(grouped, single)
    np.testing.assert_array_equal(down(coarse.isel(time=[0]), **kw)["t2m"].values, grouped[:, :1])
    for i in (3, STEPS - 1):
        # step i run alone (seeded as step 0 of its call) equals the first step of a call that
        # starts at step i and groups it with the steps after it
        alone = down(coarse.isel(time=[i]), **kw)["t2m"].values
        shifted = down(coarse.isel(time=slice(i, None)), **kw)["t2m"].values
        np.testing.assert_array_equal(alone[:, 0], shifted[:, 0])


def test_tiled_fields_keep_the_cpu_call_size(pair, downscaler):
    # several tiles per field (tile=32 on 32 x 48: 2 tiles with overlap): steps are grouped
    # as far as the CPU's cells per call allow, no further
    _, coarse = pair
    kw = dict(seed=2, tile=32, overlap=8)
    with network_calls(downscaler) as calls:
        out = downscaler(coarse, **kw)
    cells = [shape[0] * shape[-2] * shape[-1] for shape in calls]
    assert max(cells) <= CPU_CELLS_PER_CALL
    assert max(shape[0] for shape in calls) > 2  # several steps' tiles per call
    one = downscaler(coarse, batch_size=2, **kw)  # 2 tiles per call: a step per call
    np.testing.assert_allclose(out["t2m"].values, one["t2m"].values, rtol=1e-5, atol=0)


@pytest.mark.parametrize("chunk", [1, 3, 5, 7])
def test_lazy_equals_eager_bit_for_bit_for_any_time_chunks(pair, downscaler, chunk):
    # members=4 on one tile of 21 per call: 5 steps per call (groups 0-4, 5-9, 10-11); time
    # chunks that cut a group run in blocks moved onto the groups, so every chunking samples
    # the eager run's groups, and the output keeps the input's chunks
    _, coarse = pair
    eager = downscaler(coarse, members=4, seed=6)
    lazy = downscaler(coarse.chunk(time=chunk), members=4, seed=6)
    assert lazy["t2m"].chunks[1] == coarse.chunk(time=chunk).chunks["time"]
    np.testing.assert_array_equal(lazy["t2m"].values, eager["t2m"].values)
    none = downscaler(coarse.chunk(time=chunk), seed=6)  # members=None: 21 steps per call
    np.testing.assert_array_equal(none["t2m"].values, downscaler(coarse, seed=6)["t2m"].values)


def _stub_sample(self, objective, cond, *, members=1, **kwargs):
    """The network stubbed out: every member is the base field (cond)."""
    return cond.unsqueeze(1).expand(cond.shape[0], members, *cond.shape[1:]).clone()


def _peak_beyond_output(down: Downscaler, coarse: xr.Dataset) -> tuple[int, int]:
    """(tracemalloc peak of one call, bytes of its output)."""
    down(coarse.isel(time=[0]), progress=False)  # imports and caches outside the count
    tracemalloc.start()
    try:
        out = down(coarse, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, out["t2m"].nbytes


def test_memory_before_sampling_does_not_grow_with_the_record(pair, downscaler, monkeypatch):
    # the fine fields are upsampled one call's steps at a time: beyond the output itself, the
    # peak no longer grows with the number of time steps (it grew by ~4x the output before:
    # the whole record upsampled in float64, plus the interpolation's temporaries)
    monkeypatch.setattr(ResidualModel, "sample", _stub_sample)
    _, coarse = pair
    long = xr.concat([coarse] * 16, dim="time")  # 192 steps
    long = long.assign_coords(time=np.arange(long.sizes["time"]))
    short_peak, short_out = _peak_beyond_output(downscaler, long.isel(time=slice(0, 24)))
    long_peak, long_out = _peak_beyond_output(downscaler, long)
    growth = (long_peak - long_out) - (short_peak - short_out)
    # what is left growing: the coarse input's float64 normalization (1/8 of the output here)
    assert growth < 0.5 * (long_out - short_out), (growth, long_out - short_out)


def test_grid_axes_are_found_once_per_call(pair, downscaler, monkeypatch):
    # finding 5: the x/y/time discovery (cf_xarray) ran 6 times per call
    _, coarse = pair
    calls = []
    find_axes = grid_module.find_axes

    def counted(obj, *, dims=None):
        calls.append(dims)
        return find_axes(obj, dims=dims)

    monkeypatch.setattr(grid_module, "find_axes", counted)
    out = downscaler(coarse.isel(time=0), seed=1)
    assert out["t2m"].dims == ("latitude", "longitude")
    # the first grid_spec discovers them; every later grid call is told x and y
    discovered = [dims for dims in calls if not dims or not {"x", "y"} <= set(dims)]
    assert len(discovered) == 1, calls
