"""Samplers with exact optimal networks for Gaussian data.

Three levels of checks:

* path by path: a deterministic sampler is an affine map of its initial noise whose
  coefficients follow from an independent moment recursion (``moments.py``), to 1e-7;
* the brief's check: 2000 samples have the data mean and variance within 5 standard errors
  plus the sampler's discretisation error (its exact output law from the recursion minus the
  data law), and the discretisation error vanishes as the steps grow;
* the SDE keeps the ODE's marginals along the whole trajectory.
"""

from __future__ import annotations

import functools
import math
import re
import warnings

import pytest
import torch
from gaussian_oracles import FlowOracle, IDFFOracle, VPOracle
from moments import ddim_recursion, ode_recursion

from flexdownscale.config import ModelConfig
from flexdownscale.diffusion import (
    IDFF,
    FlowMatching,
    VPDiffusion,
    sample,
    sample_ddim,
    sample_ensemble,
    sample_euler,
    sample_heun,
    sample_idff,
    sample_sde,
)
from flexdownscale.errors import ConfigError, ShapeError, SkillWarning
from flexdownscale.models import build_model

F64 = torch.float64
MU = torch.tensor([[[-1.0, 0.5], [2.0, 0.0]]], dtype=F64)
S = torch.tensor([[[0.3, 1.0], [2.0, 0.15]]], dtype=F64)
X_LO = torch.tensor([[[0.5, -0.5], [1.0, 0.2]]], dtype=F64)
N = 2000


def _setup(name: str):
    """(objective, oracle, x_lo, initial mean, initial variance)."""
    one, zero = torch.ones((), dtype=F64), torch.zeros((), dtype=F64)
    if name == "vp":
        return VPDiffusion(), VPOracle(MU, S), None, zero, one
    if name == "flow":
        return FlowMatching(), FlowOracle(MU, S), None, zero, one
    if name == "flow-cpn":
        objective = FlowMatching(base="coarse_plus_noise", base_sigma=0.2)
        return objective, FlowOracle(MU, S, X_LO, 0.2), X_LO, X_LO, 0.04 * one
    if name == "idff":
        return IDFF(sigma=0.2), IDFFOracle(MU, S, 0.2), None, zero, one
    if name == "idff-cpn":
        objective = IDFF(sigma=0.2, base="coarse_plus_noise", base_sigma=0.2)
        return objective, IDFFOracle(MU, S, 0.2, X_LO, 0.2), X_LO, X_LO, 0.04 * one
    raise AssertionError(name)


def _expected(name, sampler, objective, oracle, init, steps, options):
    """Exact (mean, variance, gain) of the sampler's output from the moment recursions."""
    if sampler == "ddim":
        return ddim_recursion(MU, S, objective.schedule, steps, eta=options.get("eta", 0.0))
    method = {"euler": "euler", "heun": "heun", "sde": "sde", "idff": "idff"}[sampler]
    return ode_recursion(
        oracle,
        objective,
        steps,
        init,
        method=method,
        delta=options.get("delta", 0.0),
        g1=options.get("g1", 0.0),
    )[-1]


def _draw(objective, x_lo, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return objective.initial_state(torch.randn(n, *MU.shape, generator=g, dtype=F64), x_lo=x_lo)


def _run(sampler, objective, oracle, x_init, x_lo, steps, options, seed=7, **kw):
    return sample(
        oracle,
        x_init,
        None,
        objective=objective,
        sampler=sampler,
        steps=steps,
        generator=torch.Generator().manual_seed(seed),
        x_lo=x_lo,
        model_dtype=F64,
        **options,
        **kw,
    )


DETERMINISTIC = [
    ("vp", "ddim", 2),
    ("vp", "ddim", 7),
    ("vp", "euler", 10),
    ("vp", "heun", 6),
    ("flow", "euler", 10),
    ("flow", "heun", 6),
    ("flow-cpn", "euler", 10),
    ("flow-cpn", "heun", 4),
    ("idff", "idff", 10),
    ("idff", "euler", 3),
    ("idff", "heun", 6),
    ("idff-cpn", "idff", 10),
]


@pytest.mark.parametrize(("name", "sampler", "steps"), DETERMINISTIC)
def test_deterministic_sampler_is_the_exact_affine_map(name, sampler, steps) -> None:
    objective, oracle, x_lo, m0, v0 = _setup(name)
    x_init = _draw(objective, x_lo, 64, seed=1)
    result = _run(sampler, objective, oracle, x_init, x_lo, steps, {})
    mean, _, gain = _expected(name, sampler, objective, oracle, (m0, v0), steps, {})
    torch.testing.assert_close(result.sample, mean + gain * (x_init - m0), rtol=1e-7, atol=1e-7)
    expected_nfe = 2 * steps - 1 if sampler == "heun" else steps
    assert result.nfe == expected_nfe
    assert oracle.forward_calls == expected_nfe


def test_two_step_ddim_evaluates_the_network_at_t1_and_half() -> None:
    seen = []
    oracle = VPOracle(MU, S)

    def network(x_t, t, cond=None, *, phys=None, task_features=None):
        seen.append(t.unique().tolist())
        return oracle(x_t, t)

    network.encode_task = lambda cond: ()  # type: ignore[attr-defined]
    result = sample_ddim(network, torch.zeros(3, *MU.shape, dtype=F64), objective=VPDiffusion())
    assert seen == [[1.0], [0.5]]
    assert result.times.tolist() == [1.0, 0.5, 0.0]


def test_sde_with_zero_delta_is_euler_and_idff_with_zero_knobs_is_euler() -> None:
    for name, sampler in (("flow", "sde"), ("vp", "sde"), ("idff", "idff")):
        objective, oracle, x_lo, _, _ = _setup(name)
        x_init = _draw(objective, x_lo, 32, seed=2)
        a = _run(sampler, objective, oracle, x_init, x_lo, 9, {}).sample
        b = _run("euler", objective, oracle, x_init, x_lo, 9, {}).sample
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# (setup, sampler, options, few steps, many steps)
MOMENT_CASES = [
    ("vp", "ddim", {}, 2, 400),
    ("vp", "ddim", {"eta": 1.0}, 10, 400),
    ("vp", "ddim", {"eta": 0.5}, 10, 400),
    ("vp", "euler", {}, 10, 400),
    ("vp", "heun", {}, 10, 100),
    ("vp", "sde", {"delta": 0.5}, 20, 400),
    ("flow", "euler", {}, 10, 400),
    ("flow", "heun", {}, 10, 100),
    ("flow", "sde", {"delta": 0.5}, 20, 400),
    ("flow-cpn", "euler", {}, 10, 400),
    ("flow-cpn", "sde", {"delta": 0.5}, 100, 400),
    ("idff", "idff", {}, 10, 400),
    ("idff", "idff", {"g1": 1.0}, 10, 400),
    ("idff", "heun", {}, 10, 100),
    ("idff-cpn", "idff", {}, 10, 400),
]


def _se(var: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.sqrt(var / n), var * math.sqrt(2 / (n - 1))


@pytest.mark.parametrize(
    ("name", "sampler", "options", "few", "many"),
    MOMENT_CASES,
    ids=[f"{c[0]}-{c[1]}-{'-'.join(f'{k}{v}' for k, v in c[2].items())}" for c in MOMENT_CASES],
)
def test_samples_have_the_data_mean_and_variance(name, sampler, options, few, many) -> None:
    objective, oracle, x_lo, m0, v0 = _setup(name)
    for steps in (few, many):
        x_init = _draw(objective, x_lo, N, seed=steps)
        out = _run(sampler, objective, oracle, x_init, x_lo, steps, options, seed=steps + 1).sample
        mean, var = out.mean(0), out.var(0)
        rec_mean, rec_var, _ = _expected(name, sampler, objective, oracle, (m0, v0), steps, options)
        se_mean, se_var = _se(rec_var, N)
        # the implementation follows the maths at this number of steps ...
        assert torch.all((mean - rec_mean).abs() < 5 * se_mean), (steps, mean, rec_mean)
        assert torch.all((var - rec_var).abs() < 5 * se_var), (steps, var, rec_var)
        # ... so the samples are the data law up to sampling error plus discretisation error
        disc_mean, disc_var = (rec_mean - MU).abs(), (rec_var - S**2).abs()
        assert torch.all((mean - MU).abs() < 5 * se_mean + disc_mean)
        assert torch.all((var - S**2).abs() < 5 * se_var + disc_var)
    # and the discretisation error vanishes with many steps
    assert torch.all(disc_mean < 2e-3 * (1 + MU.abs())), disc_mean
    assert torch.all((rec_var.sqrt() / S - 1).abs() < 0.03), rec_var.sqrt() / S


def test_ddim_is_exact_for_a_single_data_point_whatever_eta() -> None:
    """With Dirac data every DDIM-eta step keeps q(z_s) = N(alpha_s mu, sigma_s^2)."""
    objective = VPDiffusion()
    zero = torch.zeros_like(S)
    oracle = VPOracle(MU, zero)
    for eta in (0.0, 0.5, 1.0):
        x_init = torch.randn(N, *MU.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
        result = sample_ddim(
            oracle,
            x_init,
            objective=objective,
            steps=5,
            eta=eta,
            generator=torch.Generator().manual_seed(6),
            model_dtype=F64,
            return_trajectory=True,
        )
        alphas, sigmas = objective.schedule.alpha_sigma(result.times)
        for i in range(1, 5):
            z = result.trajectory[i]
            se_mean, se_var = _se(sigmas[i] ** 2 * torch.ones_like(S), N)
            assert torch.all((z.mean(0) - alphas[i] * MU).abs() < 5 * se_mean)
            assert torch.all((z.var(0) - sigmas[i] ** 2).abs() < 5 * se_var)
        torch.testing.assert_close(result.sample, MU.expand_as(result.sample))


@pytest.mark.parametrize(("name", "delta"), [("flow", 1.0), ("vp", 0.5), ("flow-cpn", 0.2)])
def test_sde_keeps_the_marginals_of_the_ode(name, delta) -> None:
    objective, oracle, x_lo, m0, v0 = _setup(name)
    steps = 400
    x_init = _draw(objective, x_lo, N, seed=11)
    result = sample_sde(
        oracle,
        x_init,
        objective=objective,
        steps=steps,
        delta=delta,
        generator=torch.Generator().manual_seed(12),
        x_lo=x_lo,
        model_dtype=F64,
        return_trajectory=True,
    )
    history = ode_recursion(oracle, objective, steps, (m0, v0), method="sde", delta=delta)
    for i in (50, 100, 200, 300, 400):
        m, v = oracle.moments(result.times[i])
        rec_mean, rec_var, _ = history[i]
        x = result.trajectory[i]
        se_mean, se_var = _se(rec_var, N)
        assert torch.all((x.mean(0) - m).abs() < 5 * se_mean + (rec_mean - m).abs())
        assert torch.all((x.var(0) - v).abs() < 5 * se_var + (rec_var - v).abs())
        # the exact law of the discretised SDE is close to the ODE marginal
        assert torch.all((rec_var.sqrt() / v.sqrt() - 1).abs() < 0.03), (i, rec_var, v)


def _path_error(objective, oracle, steps: int, sampler, **options) -> float:
    x_init = _draw(objective, None, 64, seed=3)
    out = _run(sampler, objective, oracle, x_init, None, steps, options).sample
    t0, t1 = objective.time_grid(steps)[[0, -1]]
    m0, v0 = oracle.moments(t0)
    m1, v1 = oracle.moments(t1)
    exact = m1 + torch.sqrt(v1 / v0) * (x_init - m0)  # the ODE keeps (x - m) / sqrt(V)
    return (out - exact).abs().max().item()


def test_momentum_term_makes_idff_second_order() -> None:
    objective, oracle = IDFF(sigma=0.2), IDFFOracle(MU, S, 0.2)
    euler = [_path_error(objective, oracle, n, "idff") for n in (8, 16, 32)]
    taylor = [_path_error(objective, oracle, n, "idff", g2=1.0) for n in (8, 16, 32)]
    heun = [_path_error(objective, oracle, n, "heun") for n in (8, 16, 32)]
    # first order: error halves with the step; second order: it quarters
    assert 0.4 < euler[2] / euler[1] < 0.6
    assert taylor[2] / taylor[1] < 0.3
    assert heun[2] / heun[1] < 0.3
    assert taylor[1] < euler[1] / 4
    # NFE: one JVP per step counts as an evaluation
    x_init = _draw(objective, None, 4, seed=0)
    result = sample_idff(oracle, x_init, objective=objective, steps=5, g2=1.0, model_dtype=F64)
    assert result.nfe == 10


def test_samplers_validate_their_arguments() -> None:
    vp, flow, idff = VPDiffusion(), FlowMatching(), IDFF()
    oracle = VPOracle(MU, S)
    x = torch.zeros(2, *MU.shape, dtype=F64)
    with pytest.raises(ConfigError, match="does not apply"):
        sample_ddim(oracle, x, objective=flow)
    with pytest.raises(ConfigError, match="does not apply"):
        sample_idff(oracle, x, objective=vp)
    with pytest.raises(ConfigError, match="steps"):
        sample_euler(oracle, x, objective=vp, steps=0)
    with pytest.raises(ConfigError, match="eta"):
        sample_ddim(oracle, x, objective=vp, eta=1.5)
    with pytest.raises(ConfigError, match="delta"):
        sample_sde(oracle, x, objective=flow, delta=-1.0)
    with pytest.raises(ConfigError, match="g1"):
        sample_idff(IDFFOracle(MU, S, 0.2), x, objective=idff, g1=-1.0)
    with pytest.raises(ShapeError, match="batch"):
        sample_heun(oracle, x, torch.zeros(3, 1, 2, 2), objective=vp)
    with pytest.raises(ConfigError, match="sampler"):
        sample(oracle, x, objective=vp, sampler="dpm")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="generators"):
        sample_sde(oracle, x, objective=vp, delta=1.0, generator=[torch.Generator()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_is_float64_and_network_gets_its_dtype(dtype) -> None:
    dtypes = []
    oracle = FlowOracle(MU, S)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, dtype=dtype))

        def forward(self, x_t, t, cond=None, *, phys=None, task_features=None):
            dtypes.append((x_t.dtype, t.dtype))
            return oracle(x_t, t).to(x_t.dtype)

        def encode_task(self, cond):
            return ()

    x = torch.zeros(2, *MU.shape, dtype=torch.float32)
    result = sample_euler(Net(), x, objective=FlowMatching(), steps=3, return_trajectory=True)
    assert set(dtypes) == {(dtype, torch.float32)}  # times stay float32 for bfloat16 models
    assert result.sample.dtype == torch.float32
    assert all(state.dtype == F64 for state in result.trajectory)


def test_default_sampler_and_steps_come_from_the_objective() -> None:
    x = torch.zeros(2, *MU.shape, dtype=F64)
    vp = sample(VPOracle(MU, S), x, objective=VPDiffusion(), model_dtype=F64)
    assert vp.nfe == 2  # 2-step DDIM
    heun = sample(VPOracle(MU, S), x, objective=VPDiffusion(), sampler="heun", model_dtype=F64)
    assert heun.nfe == 2 * 25 - 1  # the sampler's own default, not DDIM's 2 steps
    idff = sample(IDFFOracle(MU, S, 0.2), x, objective=IDFF(), model_dtype=F64)
    assert idff.nfe == 10


class _GarbageAtDataEnd:
    """An exact oracle everywhere except at the grid's data end, where it outputs noise.

    A trained network is unreliable there (VP ``t = 0``: the ``v`` target is the unidentifiable
    ``eps``); a sampler that reads it would add that noise to its output.
    """

    def __init__(self, oracle, data_end: float) -> None:
        self.oracle, self.data_end, self.times = oracle, data_end, []

    def __call__(self, x_t, t, cond=None, *, phys=None, task_features=None):
        out = self.oracle(x_t, t, cond, phys=phys, task_features=task_features)
        self.times.append(float(torch.as_tensor(t).reshape(-1)[0]))
        if abs(self.times[-1] - self.data_end) < 1e-12:
            out = out + 10.0 * torch.randn_like(out)
        return out


@pytest.mark.parametrize("name", ["vp", "flow"])
@pytest.mark.parametrize(("sampler", "options"), [("heun", {}), ("sde", {"delta": 1.0})])
def test_heun_and_sde_never_read_the_network_at_the_data_end(name, sampler, options) -> None:
    objective, oracle, x_lo, _, _ = _setup(name)
    steps = 10
    data_end = float(objective.time_grid(steps)[-1])
    spy = _GarbageAtDataEnd(oracle, data_end)
    x_init = _draw(objective, x_lo, 256, seed=5)
    kwargs = dict(objective=objective, steps=steps, x_lo=x_lo, model_dtype=F64)
    if sampler == "sde":
        kwargs["generator"] = torch.Generator().manual_seed(1)
    out = SAMPLERS_BY_NAME[sampler](spy, x_init, **kwargs, **options).sample
    if sampler == "sde":
        kwargs["generator"] = torch.Generator().manual_seed(1)
    clean = SAMPLERS_BY_NAME[sampler](oracle, x_init, **kwargs, **options).sample
    assert data_end not in spy.times
    torch.testing.assert_close(out, clean, rtol=0, atol=0)


SAMPLERS_BY_NAME = {"heun": sample_heun, "sde": sample_sde}


@pytest.mark.parametrize("name", ["vp", "flow-cpn"])
def test_sde_is_stable_on_a_narrow_posterior(name) -> None:
    """Data pinned down to 1e-3 (as a well-conditioned downscaling posterior often is): a
    constant Langevin strength with 40 steps is unstable near the data end (its step exceeds
    twice the marginal's variance); measured in the path's noise variance it is not."""
    narrow = torch.full_like(S, 1e-3)
    if name == "vp":
        objective, oracle, x_lo = VPDiffusion(), VPOracle(MU, narrow), None
    else:
        objective = FlowMatching(base="coarse_plus_noise", base_sigma=0.2)
        oracle, x_lo = FlowOracle(MU, narrow, X_LO, 0.2), X_LO
    x_init = _draw(objective, x_lo, 512, seed=2)
    kwargs = dict(objective=objective, steps=40, x_lo=x_lo, model_dtype=F64)
    generator = torch.Generator().manual_seed(3)
    out = sample_sde(oracle, x_init, delta=1.0, generator=generator, **kwargs).sample
    ode = sample_sde(oracle, x_init, delta=0.0, **kwargs).sample  # Euler: same grid, no noise
    assert torch.isfinite(out).all()
    # the same answer as the ODE on this grid (whose own error is first order in the step)
    assert (out.mean(0) - ode.mean(0)).abs().max() < 0.01
    assert out.std(0).max() < 0.01


def test_idff_langevin_noise_stops_before_the_last_step() -> None:
    """Noise added on the last step is never removed: with data pinned down to 0.02 and 5 steps,
    g1 = 1 gave samples 2.6 times too wide (std 0.053). Now the spread is the data's."""
    narrow = torch.full_like(S, 0.02)
    objective, oracle = IDFF(sigma=0.2), IDFFOracle(MU, narrow, 0.2)
    x_init = _draw(objective, None, 4000, seed=5)
    kwargs = dict(objective=objective, steps=5, model_dtype=F64)
    out = sample_idff(oracle, x_init, g1=1.0, generator=torch.Generator().manual_seed(6), **kwargs)
    ode = sample_idff(oracle, x_init, **kwargs)
    spread, ode_spread = out.sample.std(0), ode.sample.std(0)
    assert torch.all((spread / narrow - 1).abs() < 0.1), spread
    assert torch.all((spread / ode_spread - 1).abs() < 0.1)


@pytest.mark.parametrize("backbone", ["flex", "unet", "uvit", "dit"])
def test_idff_momentum_term_runs_through_real_attention(backbone) -> None:
    """The JVP of the momentum term went through the fused attention kernel, which has no
    forward-mode derivative: g2 > 0 failed with every backbone (NotImplementedError)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, preset="tiny", out_channels=2)).eval()
    with torch.no_grad():  # away from the zero-initialised output layers
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    cond = torch.randn(1, 1, 16, 16)
    x_init = torch.randn(1, 1, 16, 16)
    result = sample_idff(model, x_init, cond, objective=IDFF(), steps=2, g2=1.0)
    assert result.nfe == 4  # two network calls and two JVPs
    assert torch.isfinite(result.sample).all()
    plain = sample_idff(model, x_init, cond, objective=IDFF(), steps=2)
    assert not torch.equal(result.sample, plain.sample)


def test_ensemble_entry_points_check_objective_phys_and_base_field() -> None:
    """A string objective, a phys of another length than the batch (silently cut to the first B
    values) and an x_lo of the wrong shape raised AttributeError / nothing / IndexError."""
    vp = VPDiffusion()
    oracle = VPOracle(MU, S)
    with pytest.raises(ConfigError, match="Objective"):
        sample(oracle, torch.zeros(2, *MU.shape), objective="vp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Objective"):
        sample_ensemble(oracle, objective="vp", shape=(2, *MU.shape), members=2)  # type: ignore[arg-type]
    model = build_model(ModelConfig(preset="tiny", physical_condition=True)).eval()
    cond = torch.zeros(2, 1, 16, 16)
    draw = functools.partial(
        sample_ensemble, model, objective=vp, cond=cond, shape=(2, 1, 16, 16), members=2, steps=1
    )
    with pytest.raises(ShapeError, match=r"phys has shape \(3,\)"):
        draw(phys=torch.tensor([0.1, 0.2, 0.9]))
    # a scalar is one value for every field
    scalar = draw(phys=0.1, generator=0)
    per_field = draw(phys=torch.tensor([0.1, 0.1]), generator=0)
    assert torch.equal(scalar, per_field)
    flow = FlowMatching(base="coarse_plus_noise", base_sigma=0.2)
    with pytest.raises(ShapeError, match="x_lo"):
        sample_ensemble(
            FlowOracle(MU, S, X_LO, 0.2),
            objective=flow,
            shape=(2, *MU.shape),
            members=2,
            x_lo=torch.zeros(3, *MU.shape),
        )
    with pytest.raises(ShapeError, match="x_lo"):
        sample_euler(
            FlowOracle(MU, S, X_LO, 0.2),
            torch.zeros(2, *MU.shape),
            objective=flow,
            x_lo=torch.zeros(2, 5, 5),
        )


@pytest.mark.parametrize("name", ["vp", "flow"])
def test_sde_warns_where_a_langevin_step_is_unstable(name) -> None:
    """``delta h >= 2`` (the documented stability bound) ran silently and returned samples
    hundreds of times too wide (reviewer-101: spread 439 for 0.01 at delta h = 3.9): a
    SkillWarning now gives the largest stable delta and the steps that would do, and neither
    of those warns; the warned call's samples are indeed far wider than the stable ones."""
    objective, oracle, x_lo, _, _ = _setup(name)
    x_init = _draw(objective, x_lo, 256, seed=5)
    kwargs = dict(objective=objective, x_lo=x_lo, model_dtype=F64)
    with pytest.warns(SkillWarning, match=r"delta = 25 with 10 steps gives delta h = ") as rec:
        wide = sample_sde(oracle, x_init, delta=25.0, steps=10, generator=1, **kwargs).sample
    message = str(rec[0].message)
    largest, steps = re.search(r"take delta < ([\d.]+) or at least (\d+) steps", message).groups()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkillWarning)
        calm = sample_sde(
            oracle, x_init, delta=0.99 * float(largest), steps=10, generator=1, **kwargs
        ).sample
        sample_sde(oracle, x_init, delta=25.0, steps=int(steps), generator=1, **kwargs)
        sample_sde(oracle, x_init, delta=25.0, steps=1, **kwargs)  # one step: no Langevin term
    with pytest.warns(SkillWarning):
        sample_sde(oracle, x_init, delta=25.0, steps=int(steps) - 1, generator=1, **kwargs)
    assert float(wide.std(0).max()) > 10 * float(calm.std(0).max())
