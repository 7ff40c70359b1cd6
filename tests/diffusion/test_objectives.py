"""Objectives: construction, loss identities, and closed forms with exact Gaussian networks."""

from __future__ import annotations

import pytest
import torch
from gaussian_oracles import FlowOracle, IDFFOracle, VPOracle
from moments import drift_coefficients

from flexdownscale.config import DiffusionConfig
from flexdownscale.diffusion import IDFF, FlowMatching, VPDiffusion, build_objective
from flexdownscale.errors import ConfigError, ShapeError

F64 = torch.float64
MU = torch.tensor([[[-1.0, 0.5], [2.0, 0.0]]], dtype=F64)
S = torch.tensor([[[0.3, 1.0], [2.0, 0.15]]], dtype=F64)
X_LO = torch.tensor([[[0.5, -0.5], [1.0, 0.2]]], dtype=F64)


def test_build_objective_from_config() -> None:
    vp = build_objective(DiffusionConfig(objective="vp", target="x", loss="l2", shift=2.0))
    assert isinstance(vp, VPDiffusion)
    assert (vp.target, vp.loss_kind, vp.schedule.shift) == ("x", "l2", 2.0)
    flow = build_objective(
        DiffusionConfig(objective="flow", base="coarse_plus_noise", base_sigma=0.3, loss_scale=100)
    )
    assert isinstance(flow, FlowMatching)
    assert (flow.base, flow.base_sigma, flow.loss_scale) == ("coarse_plus_noise", 0.3, 100.0)
    idff = build_objective(DiffusionConfig(objective="idff", idff_sigma=0.5, idff_c=0.1))
    assert isinstance(idff, IDFF)
    assert (idff.sigma, idff.c, idff.channel_factor) == (0.5, 0.1, 2)
    assert vp.sampler_defaults.sampler == "ddim"
    assert vp.sampler_defaults.steps == 2
    assert flow.sampler_defaults.sampler == "euler"
    assert idff.sampler_defaults.sampler == "idff"


def test_invalid_options_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="target"):
        VPDiffusion(target="score")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="base"):
        FlowMatching(base="uniform")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="t_min"):
        FlowMatching(t_min=0.5, t_max=0.4)
    with pytest.raises(ConfigError, match="sqrt"):
        IDFF(t_min=0.0)
    with pytest.raises(ConfigError, match="idff_sigma"):
        IDFF(sigma=0.0)


def test_wrong_output_channels_raise_shape_error() -> None:
    class HalfOut:
        def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
            return x_t[:, : x_t.shape[1] // 2]  # C channels, IDFF needs 2 C

        def encode_task(self, cond):
            return ()

    with pytest.raises(ShapeError, match="2 C"):
        IDFF().loss(HalfOut(), torch.zeros(4, *MU.shape, dtype=F64))


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_vp_targets_are_weighted_v_losses(kind: str) -> None:
    """eps_hat - eps = alpha (v_hat - v) and x0_hat - x = -sigma (v_hat - v), per sample."""
    g = torch.Generator().manual_seed(1)
    target = torch.randn(64, 1, 2, 2, generator=g, dtype=F64)
    t = torch.rand(64, generator=g, dtype=F64)
    wrong = VPOracle(MU * 0.5, S * 2)  # any network: the identity holds pointwise
    losses = {}
    for name in ("v", "eps", "x"):
        objective = VPDiffusion(target=name, loss=kind)
        losses[name] = objective.loss(
            wrong, target, t=t, generator=torch.Generator().manual_seed(2)
        )
    alpha, sigma = VPDiffusion().alpha_sigma(t)
    power = 1 if kind == "l1" else 2
    torch.testing.assert_close(losses["eps"], alpha**power * losses["v"])
    torch.testing.assert_close(losses["x"], sigma**power * losses["v"])


def _gaussian_drift(oracle, objective, x, t):
    """``m_tau + V_tau / (2 V) (x - m)``, the velocity that transports N(m, V) along the path."""
    k, c, m, var = drift_coefficients(oracle, objective, torch.tensor(t, dtype=F64))
    return k * x + c, -(x - m) / var, m, var


CASES = [
    ("vp", VPDiffusion(), lambda: VPOracle(MU, S), None),
    ("vp-shift", VPDiffusion(build_objective(DiffusionConfig(shift=3.0)).schedule), None, None),
    ("flow", FlowMatching(), lambda: FlowOracle(MU, S), None),
    (
        "flow-cpn",
        FlowMatching(base="coarse_plus_noise", base_sigma=0.2),
        lambda: FlowOracle(MU, S, X_LO, 0.2),
        X_LO,
    ),
    ("idff", IDFF(sigma=0.3), lambda: IDFFOracle(MU, S, 0.3), None),
    (
        "idff-cpn",
        IDFF(sigma=0.3, base="coarse_plus_noise", base_sigma=0.2),
        lambda: IDFFOracle(MU, S, 0.3, X_LO, 0.2),
        X_LO,
    ),
]


@pytest.mark.parametrize(
    ("name", "objective", "make_oracle", "x_lo"), CASES, ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("t", [0.03, 0.3, 0.5, 0.8, 0.97])
def test_velocity_score_and_denoiser_of_the_exact_network(
    name, objective, make_oracle, x_lo, t
) -> None:
    """The objective's reading of the optimal network output is the Gaussian closed form."""
    oracle = make_oracle() if make_oracle is not None else VPOracle(MU, S, objective.schedule)
    g = torch.Generator().manual_seed(3)
    x = 2 * torch.randn(16, *MU.shape, generator=g, dtype=F64)
    out = oracle(objective.network_input(x), torch.full((16,), t, dtype=F64))
    tt = torch.tensor(t, dtype=F64)
    drift, score, m, var = _gaussian_drift(oracle, objective, x, t)
    torch.testing.assert_close(objective.velocity(out, x, tt, x_lo=x_lo), drift)
    torch.testing.assert_close(objective.score(out, x, tt, x_lo=x_lo), score)
    # posterior mean of the data end: E[x1] + Cov(x1, x) / Var(x) (x - m)
    if name.startswith("vp"):
        alpha, _ = objective.schedule.alpha_sigma(tt)
        expected = MU + alpha * S**2 / var * (x - m)
    else:
        expected = MU + t * S**2 / var * (x - m)
    torch.testing.assert_close(objective.denoise(out, x, tt, x_lo=x_lo), expected)


class _Shifted:
    """The oracle plus ``a_b * direction`` per sample: d loss_b / d a_b tests stationarity."""

    def __init__(self, oracle, a, head: int | None = None, scale: float = 1.0) -> None:
        self.oracle, self.a, self.head, self.scale = oracle, a, head, scale

    def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
        out = self.oracle(x_t, t) * self.scale
        shift = self.a.reshape(-1, 1, 1, 1) * x_t[:, : MU.shape[0]]
        if self.head is None:
            return out + shift
        parts = list(out.chunk(2, dim=1))
        parts[self.head] = parts[self.head] + shift
        return torch.cat(parts, dim=1)

    def encode_task(self, cond):
        return ()


def _stationarity_z(objective, oracle, head=None, scale=1.0, x_lo=None, n=10000) -> float:
    g = torch.Generator().manual_seed(4)
    data = MU + S * torch.randn(n, *MU.shape, generator=g, dtype=F64)
    a = torch.zeros(n, dtype=F64, requires_grad=True)
    loss = objective.loss(_Shifted(oracle, a, head, scale), data, x_lo=x_lo, generator=g)
    (grad,) = torch.autograd.grad(loss.sum(), a)
    return (grad.mean() / (grad.std() / n**0.5)).item()


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize(
    ("name", "make_objective", "make_oracle", "x_lo", "heads"),
    [
        ("vp-v", lambda k: VPDiffusion(target="v", loss=k), lambda: VPOracle(MU, S), None, [None]),
        (
            "vp-eps",
            lambda k: VPDiffusion(target="eps", loss=k),
            lambda: VPOracle(MU, S),
            None,
            [None],
        ),
        ("vp-x", lambda k: VPDiffusion(target="x", loss=k), lambda: VPOracle(MU, S), None, [None]),
        ("flow", lambda k: FlowMatching(loss=k), lambda: FlowOracle(MU, S), None, [None]),
        (
            "flow-cpn",
            lambda k: FlowMatching(base="coarse_plus_noise", base_sigma=0.2, loss=k),
            lambda: FlowOracle(MU, S, X_LO, 0.2),
            X_LO,
            [None],
        ),
        ("idff", lambda k: IDFF(loss=k), lambda: IDFFOracle(MU, S, 0.2), None, [0, 1]),
    ],
    ids=["vp-v", "vp-eps", "vp-x", "flow", "flow-cpn", "idff"],
)
def test_exact_network_minimises_the_loss(
    name, make_objective, make_oracle, x_lo, heads, kind
) -> None:
    """E[d loss / d a] = 0 at the optimum (within 5 standard errors); a wrong network fails."""
    objective = make_objective(kind)
    for head in heads:
        z = _stationarity_z(objective, make_oracle(), head=head, x_lo=x_lo)
        assert abs(z) < 5, (name, head, z)
        z_wrong = _stationarity_z(objective, make_oracle(), head=head, scale=1.5, x_lo=x_lo)
        assert abs(z_wrong) > 6, (name, head, z_wrong)
