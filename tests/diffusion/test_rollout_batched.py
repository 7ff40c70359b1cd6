"""``rollout`` samples every field of a batch in one network call per sampler step.

It sampled the fields one after the other (B network calls per step), which made a batched
rollout 37-70% slower than it needs to be on a 2-core CPU. The random streams are unchanged:
lead ``l`` of field ``b`` draws from ``lead_seed(seed, b, l)``, member ``m`` from that seed's
``m``-th member generator, so a field's samples do not depend on the other fields.
"""

from __future__ import annotations

import pytest
import torch

from flexdownscale.config import ModelConfig
from flexdownscale.diffusion import ResidualModel, VPDiffusion, member_generators, rollout
from flexdownscale.diffusion.samplers import sample_ensemble
from flexdownscale.errors import ShapeError
from flexdownscale.models import build_model


class _Counting(torch.nn.Module):
    """A forecast network, ``x -> 0.5 x + 0.1 mean(current frame)``, counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.forward_rows: list[int] = []
        self.encode_rows: list[int] = []

    def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
        self.forward_rows.append(x_t.shape[0])
        current = task_features[0][:, -x_t.shape[1] :]
        return (0.5 * x_t + 0.1 * current.mean(dim=(-2, -1), keepdim=True)).to(x_t.dtype)

    def encode_task(self, cond):
        self.encode_rows.append(cond.shape[0])
        return (cond,)


def _frames(batch: int) -> torch.Tensor:
    return torch.randn(batch, 2, 8, 8, generator=torch.Generator().manual_seed(4))


def test_one_network_call_per_step_for_all_fields():
    net = _Counting()
    model = ResidualModel(net, task="forecast", past_frames=2)
    kw = dict(lead_steps=3, members=4, sampler="ddim", steps=2, generator=1, eta=1.0)
    with torch.no_grad():
        rollout(model, VPDiffusion(), _frames(3), **kw)
    # 3 leads x 2 steps, each on all 3 x 4 member rows (it was 3 calls of 4 rows per step)
    assert net.forward_rows == [12] * 6
    assert net.encode_rows == [3, 12, 12]  # lead 1: one encoding per field, shared by members


def test_cpu_calls_stay_under_the_cell_budget():
    """On a CPU, ``batch_size=None`` takes as many fields' members per call as stay under
    CPU_CELLS_PER_CALL fine cells (one field's at least): 32 rows of 64 x 64 in one call ran
    0.69x as fast as the field-by-field calls of 8 rows (tiny preset, 2-core CPU)."""
    from flexdownscale.diffusion.samplers import CPU_CELLS_PER_CALL

    net = _Counting()
    model = ResidualModel(net, task="forecast", past_frames=2)
    side = 64
    frames = torch.randn(5, 2, side, side, generator=torch.Generator().manual_seed(0))
    kw = dict(lead_steps=2, members=2, sampler="ddim", steps=1, generator=1)
    with torch.no_grad():
        rollout(model, VPDiffusion(), frames, **kw)
    fields_per_call = CPU_CELLS_PER_CALL // (2 * side * side)  # 4 fields of 2 members
    assert fields_per_call == 4
    assert net.forward_rows == [8, 2] * 2  # 10 member rows per lead: 8, then the last 2
    assert net.encode_rows == [5, 8, 2]  # lead 1 encodes the 5 fields once


def test_cpu_calls_split_a_large_fields_members():
    """Where one field's members alone exceed CPU_CELLS_PER_CALL cells, a call takes as many of
    them as fit, one at least (it took all of them: the Forecaster's one 256 x 256 field with 16
    members ran as calls of 16 rows). The random numbers do not change: the samples equal
    ``batch_size=1``'s."""
    from flexdownscale.diffusion.samplers import CPU_CELLS_PER_CALL

    kw = dict(lead_steps=2, members=4, sampler="ddim", steps=1, generator=3)
    for side, per_call in ((128, 2), (256, 1)):
        assert max(1, CPU_CELLS_PER_CALL // (side * side)) == per_call
        net = _Counting()
        model = ResidualModel(net, task="forecast", past_frames=2)
        frames = torch.randn(1, 2, side, side, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            auto = rollout(model, VPDiffusion(), frames, **kw)
            rowwise = rollout(model, VPDiffusion(), frames, batch_size=1, **kw)
        assert net.forward_rows[: 2 * 4 // per_call] == [per_call] * (2 * 4 // per_call)
        torch.testing.assert_close(auto, rowwise, rtol=0, atol=0)


def test_batched_fields_are_the_fields_alone():
    """Field b of a batch is the rollout of field b alone, seeded with the same streams."""
    net = build_model(ModelConfig(preset="tiny", task="forecast", past_frames=2, dropout=0.0))
    model = ResidualModel(net, task="forecast", past_frames=2)
    frames = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(2))
    kw = dict(lead_steps=3, members=2, sampler="ddim", steps=2, generator=9, eta=1.0)
    with torch.no_grad():
        together = rollout(model, VPDiffusion(), frames, **kw)
        # field by field, one row per network call: bit-identical for any B
        rowwise = rollout(model, VPDiffusion(), frames, batch_size=1, **kw)
        first = rollout(model, VPDiffusion(), frames[:1], batch_size=1, **kw)
    torch.testing.assert_close(rowwise[:1], first, rtol=0, atol=0)
    # all fields in one call: the same random numbers, float32 rounding of the batch apart
    torch.testing.assert_close(together, rowwise, rtol=0, atol=1e-4)
    assert (together[0] - together[1]).abs().max() > 1e-2  # the fields do differ
    assert (together[:, 0] - together[:, 1]).abs().max() > 1e-2  # and the members


def test_feedback_and_progress_are_per_field():
    model = ResidualModel(_Counting(), task="forecast", past_frames=2)
    seen: list[tuple[int, ...]] = []
    leads: list[int] = []

    def feedback(sample: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(sample.shape))
        return sample * 0.0  # fed back as zeros: the returned samples keep their values

    with torch.no_grad():
        out = rollout(
            model,
            VPDiffusion(),
            _frames(2),
            lead_steps=3,
            members=3,
            sampler="ddim",
            steps=1,
            generator=0,
            feedback=feedback,
            on_lead=leads.append,
        )
    # one field's members at a time, (M, C, H, W), for leads 1 and 2 of each of the 2 fields
    assert seen == [(3, 1, 8, 8)] * 4
    assert sorted(leads) == [1, 1, 2, 2, 3, 3]  # B * lead_steps calls
    assert out.shape == (2, 3, 3, 1, 8, 8)
    assert bool(out.abs().sum(dim=(-3, -2, -1)).gt(0).all())


def test_sample_ensemble_takes_one_generator_per_row():
    net = _Counting()
    cond = _frames(2)
    kw = dict(objective=VPDiffusion(), members=3, shape=(2, 1, 8, 8), sampler="ddim", steps=2)
    with torch.no_grad():
        seeded = sample_ensemble(net, cond, generator=5, eta=1.0, **kw)
        rows = sample_ensemble(net, cond, generator=member_generators(5, 6), eta=1.0, **kw)
    torch.testing.assert_close(rows, seeded, rtol=0, atol=0)
    with pytest.raises(ShapeError, match="3 items as generator for 2 fields of 3 members"):
        sample_ensemble(net, cond, generator=member_generators(5, 3), **kw)
