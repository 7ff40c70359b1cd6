"""Ensembles, reproducibility, task-feature caching, the residual wrapper and rollouts."""

from __future__ import annotations

import pytest
import torch
from gaussian_oracles import FlowOracle, IDFFOracle, VPOracle

from flexdownscale.diffusion import (
    IDFF,
    FlowMatching,
    ResidualModel,
    VPDiffusion,
    member_generators,
    repeat_features,
    rollout,
    sample_ensemble,
    select_features,
)
from flexdownscale.diffusion.residual import lead_seed
from flexdownscale.diffusion.samplers import derived_seed
from flexdownscale.errors import ConfigError, ShapeError

F64 = torch.float64
MU = torch.tensor([[[-1.0, 0.5], [2.0, 0.0]]], dtype=F64)
S = torch.tensor([[[0.3, 1.0], [2.0, 0.15]]], dtype=F64)
COND = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 2, 2, 2)  # 2 fields, 2 channels

CASES = [
    ("vp-ddim", VPDiffusion(), lambda: VPOracle(MU, S), "ddim", {}),
    ("vp-ddim-eta", VPDiffusion(), lambda: VPOracle(MU, S), "ddim", {"eta": 0.5}),
    ("flow-sde", FlowMatching(), lambda: FlowOracle(MU, S), "sde", {"delta": 0.5}),
    ("idff-g1", IDFF(), lambda: IDFFOracle(MU, S, 0.2), "idff", {"g1": 1.0}),
]


@pytest.mark.parametrize(
    ("name", "objective", "make", "sampler", "options"), CASES, ids=[c[0] for c in CASES]
)
def test_same_seed_same_members_whatever_the_batch_size(name, objective, make, sampler, options):
    def draw(seed, batch_size, cond=COND):
        return sample_ensemble(
            make(),
            cond,
            objective=objective,
            members=4,
            shape=(cond.shape[0], *MU.shape),
            sampler=sampler,
            steps=5,
            generator=seed,
            batch_size=batch_size,
            model_dtype=F64,
            **options,
        )

    reference = draw(0, None)
    assert reference.shape == (2, 4, *MU.shape)
    for batch_size in (1, 3, 5, 8):
        torch.testing.assert_close(draw(0, batch_size), reference, rtol=0, atol=0)
    # members differ from each other, and another seed gives other members
    assert (reference[:, 1:] - reference[:, :1]).abs().amin() > 0
    assert not torch.equal(draw(1, None), reference)
    # the first field's members do not depend on the other fields in the batch
    torch.testing.assert_close(draw(0, 2, cond=COND[:1]), reference[:1], rtol=0, atol=0)


def test_explicit_noise_replaces_the_initial_draw() -> None:
    objective = VPDiffusion()
    # the documented draw: member row i's generator draws its initial noise first
    noise = torch.stack([torch.randn(MU.shape, generator=g) for g in member_generators(5, 6)])
    noise = noise.reshape(2, 3, *MU.shape)
    a = sample_ensemble(VPOracle(MU, S), COND, objective=objective, members=3, noise=noise)
    b = sample_ensemble(
        VPOracle(MU, S), COND, objective=objective, members=3, shape=(2, *MU.shape), generator=5
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ShapeError, match="members=4"):
        sample_ensemble(VPOracle(MU, S), COND, objective=objective, members=4, noise=noise)


@pytest.mark.parametrize("batch_size", [None, 3])
def test_task_encoder_runs_once_per_field(batch_size) -> None:
    """A 2-step, 8-member sample of one field calls the task encoder once."""
    oracle = VPOracle(MU, S)
    out = sample_ensemble(
        oracle,
        COND[:1],
        objective=VPDiffusion(),
        members=8,
        shape=(1, *MU.shape),
        steps=2,
        generator=0,
        batch_size=batch_size,
    )
    assert out.shape == (1, 8, *MU.shape)
    assert oracle.encode_calls == 1
    chunks = 1 if batch_size is None else 3
    assert oracle.forward_calls == 2 * chunks
    assert oracle.rows_seen == 2 * 8


def test_feature_helpers() -> None:
    feats = (torch.arange(3.0).reshape(3, 1), torch.arange(6.0).reshape(3, 2))
    rep = repeat_features(feats, 2)
    assert rep[0].flatten().tolist() == [0, 0, 1, 1, 2, 2]
    sel = select_features(feats, torch.tensor([2, 2, 0]))
    assert sel[1].tolist() == [[4, 5], [4, 5], [0, 1]]


def test_ensemble_arguments_are_checked() -> None:
    oracle, objective = VPOracle(MU, S), VPDiffusion()
    with pytest.raises(ConfigError, match="members"):
        sample_ensemble(oracle, COND, objective=objective, members=0, shape=(2, *MU.shape))
    with pytest.raises(ConfigError, match="do not apply"):
        sample_ensemble(oracle, COND, objective=objective, shape=(2, *MU.shape), delta=1.0)
    with pytest.raises(ShapeError, match="shape"):
        sample_ensemble(oracle, COND, objective=objective)
    with pytest.raises(ShapeError, match="batch"):
        sample_ensemble(oracle, COND, objective=objective, shape=(3, *MU.shape))


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64 - 1, 1.5, True])
def test_ensemble_seed_outside_its_range_is_refused(seed) -> None:
    # torch reduces seeds modulo 2**64 (-1 and 2**64 - 1 gave the same members), and the
    # hashing of derived seeds modulo 2**63: only [0, 2**63) gives distinct streams
    oracle, objective = VPOracle(MU, S), VPDiffusion()
    with pytest.raises(ConfigError, match=r"generator = .* must be (in \[0, 2\*\*63\)|an integer)"):
        sample_ensemble(oracle, COND, objective=objective, shape=(2, *MU.shape), generator=seed)
    with pytest.raises(ConfigError, match=r"seed = .* must be"):
        derived_seed(seed, 0)


def test_ensemble_seed_range_ends_are_accepted() -> None:
    oracle, objective = VPOracle(MU, S), VPDiffusion()
    kw = dict(objective=objective, shape=(2, *MU.shape), members=2)
    draws = [sample_ensemble(oracle, COND, generator=s, **kw) for s in (0, 2**63 - 1)]
    assert not torch.equal(draws[0], draws[1])
    assert derived_seed(0, 1) != derived_seed(2**63 - 1, 1)


class _Recorder(torch.nn.Module):
    """Returns ``scale * x_t`` and records the last call."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.encode_calls = 0

    def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
        self.last = (x_t, t, cond, phys, task_features)
        return self.scale * x_t

    def encode_task(self, cond):
        self.encode_calls += 1
        return (cond,)


def test_residual_wrapper_trains_and_samples_the_residual() -> None:
    backbone = _Recorder()
    model = ResidualModel(backbone)
    assert list(model.parameters()) == [backbone.scale]
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 1, 4, 4, generator=g)
    fine = base + 0.1 * torch.randn(3, 1, 4, 4, generator=g)
    objective = FlowMatching()
    loss = model.loss(objective, fine, base, generator=torch.Generator().manual_seed(1))
    direct = objective.loss(backbone, fine - base, base, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, direct)
    assert loss.shape == (3,)
    samples = model.sample(objective, base, members=2, steps=3, generator=4)
    residual = sample_ensemble(
        backbone, base, objective=objective, members=2, shape=base.shape, steps=3, generator=4
    )
    torch.testing.assert_close(samples, base.unsqueeze(1) + residual)
    with pytest.raises(ShapeError, match="same shape"):
        model.loss(objective, fine[:, :, :2], base)


def test_forecast_base_is_the_last_frame() -> None:
    model = ResidualModel(_Recorder(), task="forecast", past_frames=3)
    frames = torch.arange(3 * 2 * 4.0).reshape(1, 6, 2, 2)  # 3 frames of 2 channels
    torch.testing.assert_close(model.base_of(frames), frames[:, 4:])
    with pytest.raises(ShapeError, match="past_frames"):
        model.base_of(frames[:, :5])
    with pytest.raises(ConfigError, match="task"):
        ResidualModel(_Recorder(), task="nowcast")  # type: ignore[arg-type]


class _Dynamics(torch.nn.Module):
    """Flow velocity that depends only on the past frames: F = 0.1 old + 0.2 current^2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.encode_calls = 0

    def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
        frames = task_features[0]
        return self.velocity(frames).to(x_t.dtype)

    def velocity(self, frames):
        c = self.channels
        return 0.1 * frames[:, :c] + 0.2 * frames[:, c:] ** 2

    def encode_task(self, cond):
        self.encode_calls += 1
        return (cond,)


def test_rollout_members_feed_back_their_own_state() -> None:
    batch, members, channels = 2, 3, 1
    net = _Dynamics(channels)
    model = ResidualModel(net, task="forecast", past_frames=2)
    objective = FlowMatching()
    frames = torch.randn(batch, 2 * channels, 4, 4, generator=torch.Generator().manual_seed(9))
    out = rollout(
        model,
        objective,
        frames,
        lead_steps=2,
        members=members,
        sampler="euler",
        steps=1,
        generator=3,
    )
    assert out.shape == (batch, members, 2, channels, 4, 4)
    # one network call per lead for all fields: once for the fields' initial frames, once for
    # their B * M member states
    assert net.encode_calls == 2
    # by hand, with the documented draw order: lead l of field b has the seed lead_seed(3, b, l)
    # and member m draws its noise from that seed's m-th member generator
    event = (channels, 4, 4)

    def noise(lead: int) -> torch.Tensor:
        return torch.stack(
            [
                torch.stack(
                    [
                        torch.randn(event, generator=m)
                        for m in member_generators(lead_seed(3, b, lead), members)
                    ]
                )
                for b in range(batch)
            ]
        )

    n1, n2 = noise(1), noise(2).reshape(batch * members, *event)
    h = objective.t_max - objective.t_min
    first = frames[:, channels:].unsqueeze(1) + n1 + h * net.velocity(frames).unsqueeze(1)
    torch.testing.assert_close(out[:, :, 0], first)
    states = torch.cat(
        [frames[:, channels:].repeat_interleave(members, 0), first.reshape(-1, channels, 4, 4)],
        dim=1,
    )
    second = states[:, channels:] + n2 + h * net.velocity(states)
    torch.testing.assert_close(out[:, :, 1], second.reshape(batch, members, channels, 4, 4))
    # the ensemble mean fed back would give something else
    mean_states = states.reshape(batch, members, -1, 4, 4).mean(1).repeat_interleave(members, 0)
    assert not torch.allclose(net.velocity(mean_states), net.velocity(states))
    with pytest.raises(ConfigError, match="forecast"):
        rollout(ResidualModel(net), objective, frames, lead_steps=1)


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_rollout_seed_outside_its_range_is_refused(seed) -> None:
    # -1 and 2**63 - 1 gave the same forecast (the lead seeds hashed seed mod 2**63)
    model = ResidualModel(_Dynamics(1), task="forecast", past_frames=2)
    frames = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ConfigError, match=r"generator = .* must be in \[0, 2\*\*63\)"):
        rollout(
            model, FlowMatching(), frames, lead_steps=1, sampler="euler", steps=1, generator=seed
        )
