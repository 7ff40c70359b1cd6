"""One rule for a setting that must be a finite number (helper-175).

The configuration's checks (``shift``, ``loss_scale``, the noise levels), a model folder's
(``grid.json``'s numbers) and the samplers' (``eta``, ``delta``, ``g1``/``g2``, sampler options)
each had their own: ``np.float32(0.5)`` passed the configuration's and was refused by the
folder's; ``torch.tensor(0.5)`` passed the samplers' and was refused by the configuration's;
``np.True_`` and ``"0.5"`` ran as sampler options; an integer too large for a float crashed the
configuration's and the folder's with an ``OverflowError``. Now every site takes a Python or
numpy real number (not a bool) or a 0-d real array or tensor that is finite.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch

from flexdownscale import config, hub
from flexdownscale._numbers import finite_real
from flexdownscale.config import SamplerConfig
from flexdownscale.diffusion import FlowMatching, sample
from flexdownscale.diffusion.samplers import _finite_nonnegative, resolve_sampler_options
from flexdownscale.diffusion.schedules import CosineSchedule
from flexdownscale.errors import ConfigError

TAKEN = {
    "float": 0.5,
    "int": 2,
    "Fraction": Fraction(1, 2),
    "np.float32": np.float32(0.5),
    "np.float64": np.float64(0.5),
    "np.int64": np.int64(2),
    "np.uint8": np.uint8(2),
    "0-d float array": np.array(0.5),
    "0-d int array": np.array(2),
    "0-d float tensor": torch.tensor(0.5),
    "0-d float64 tensor": torch.tensor(0.5, dtype=torch.float64),
    "0-d int tensor": torch.tensor(2),
    "0-d tensor needing grad": torch.tensor(0.5, requires_grad=True),
}
REFUSED = {
    "bool": True,
    "np.bool_": np.True_,
    "bool tensor": torch.tensor(True),
    "bool array": np.array(True),
    "nan": math.nan,
    "inf": math.inf,
    "np.float64 nan": np.float64("nan"),
    "np.float32 inf": np.float32("inf"),
    "nan tensor": torch.tensor(math.nan),
    "inf array": np.array(-np.inf),
    "int too large for a float": 10**400,
    "text": "0.5",
    "bytes": b"0.5",
    "complex": 0.5 + 0j,
    "np.complex128": np.complex128(0.5),
    "complex tensor": torch.tensor(0.5 + 0j),
    "Decimal": Decimal("0.5"),
    "1-element tensor": torch.tensor([0.5]),
    "1-element array": np.array([0.5]),
    "None": None,
    "list": [0.5],
}
CASES = [(name, value, True) for name, value in TAKEN.items()] + [
    (name, value, False) for name, value in REFUSED.items()
]


def _passes(check, value) -> bool:
    try:
        check(value)
    except ConfigError:
        return False
    return True


def _sampler_option(value) -> None:
    resolve_sampler_options("sde", {"delta": value}, SamplerConfig())


def _schedule(value) -> None:
    CosineSchedule(shift=value)


#: Each site as "whether it takes the value".
SITES = {
    "finite_real": lambda v: finite_real(v) is not None,
    "config._finite_number": config._finite_number,
    "config loss_scale": lambda v: config._positive_finite_problem("loss_scale", v, "") is None,
    "config base_sigma": lambda v: config._noise_level_problem("base_sigma", v, 0.1) is None,
    "schedule shift": lambda v: _passes(_schedule, v),
    "hub._is_number": hub._is_number,
    "hub._is_positive": hub._is_positive,
    "sampler delta/g1/g2": _finite_nonnegative,
    "sampler options": lambda v: _passes(_sampler_option, v),
}


@pytest.mark.parametrize("site", list(SITES))
@pytest.mark.parametrize(("what", "value", "taken"), CASES, ids=[c[0] for c in CASES])
def test_every_site_takes_the_same_numbers(site, what, value, taken):
    assert SITES[site](value) is taken, f"{site} on {what} ({value!r})"


def test_finite_real_gives_the_value_as_a_float():
    for value in TAKEN.values():
        number = finite_real(value)
        assert type(number) is float
        assert number in (0.5, 2.0)


def test_a_huge_whole_number_in_grid_json_is_refused_not_an_overflow():
    with pytest.raises(hub._Refused, match=r"grid\.x0 = 1000.*expected a finite number"):
        hub._check_grid_spec({"x0": 10**400})


def test_a_sampler_option_as_text_is_refused():
    with pytest.raises(ConfigError, match=r"options\['delta'\] = '0.5'; expected a finite number"):
        _sampler_option("0.5")


def test_sample_names_options_its_sampler_does_not_take():
    still = lambda x_t, t, cond=None, **kwargs: torch.zeros_like(x_t)  # noqa: E731
    x_init = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ConfigError) as info:
        sample(still, x_init, objective=FlowMatching(), eta=0.5, delta=1.0)
    assert str(info.value) == (
        "options ['delta', 'eta'] do not apply to sampler 'euler'; it takes none "
        "(eta: ddim, delta: sde, g1/g2: idff)"
    )
    with pytest.raises(ConfigError) as info:
        sample(still, x_init, objective=FlowMatching(), sampler="sde", eta=0.5)
    assert str(info.value) == (
        "options ['eta'] do not apply to sampler 'sde'; it takes ['delta'] "
        "(eta: ddim, delta: sde, g1/g2: idff)"
    )
