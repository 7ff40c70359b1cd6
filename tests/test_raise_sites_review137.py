"""Raise sites a user reaches with a wrong input (review 137): typed errors saying what was found
and the fix instead of asserts, plain tracebacks or messages without either; warnings pointing at
the user's line; wrong settings that were accepted silently."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from flexdownscale import config as C
from flexdownscale.diffusion import FlowMatching, sample_ddim, sample_idff
from flexdownscale.errors import ConfigError, FlexDownscaleError


def _zero(z, t, cond=None, **kwargs):
    return torch.zeros_like(z)


class _ClaimsEverySampler(FlowMatching):
    """A user's objective whose ``samplers`` list names samplers of other objectives."""

    samplers = ("euler", "heun", "ddim", "idff")


@pytest.mark.parametrize(
    ("sampler", "needs"), [(sample_ddim, "VPDiffusion"), (sample_idff, "IDFF")]
)
def test_sampler_refuses_objective_claiming_it(sampler, needs) -> None:
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ConfigError, match=needs) as info:
        sampler(_zero, x, objective=_ClaimsEverySampler(), steps=2)
    message = str(info.value)
    assert "_ClaimsEverySampler" in message
    assert "'euler', 'heun'" in message


def test_sampler_check_survives_python_O() -> None:
    """It was an ``assert``: under ``python -O`` sample_idff ran on a flow objective."""
    code = textwrap.dedent(
        """
        import torch
        from flexdownscale.diffusion import FlowMatching, sample_idff
        from flexdownscale.errors import ConfigError
        class Sneaky(FlowMatching):
            samplers = ("euler", "idff")
        try:
            sample_idff(lambda z, t, cond=None, **k: torch.zeros_like(z), torch.zeros(1, 1, 8, 8),
                        objective=Sneaky(), steps=2)
        except ConfigError:
            print("refused")
        """
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "refused"


# --- B1: run files and mappings -----------------------------------------------------------


def test_toml_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_bytes('run_dir = "r"\nsteps = 2  # T in °C\n'.encode("latin1"))
    with pytest.raises(ConfigError, match="UTF-8") as info:
        C.from_toml(C.TrainConfig, path)
    message = str(info.value)
    assert "run.toml" in message
    assert "line 2" in message
    assert "position 32" in message


def test_toml_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        C.from_toml(C.TrainConfig, tmp_path)


def test_from_dict_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"must be a mapping.*got list"):
        C.from_dict(C.TrainConfig, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="the class first"):
        C.from_dict({"steps": 2}, C.TrainConfig)  # type: ignore[arg-type]


def test_typed_errors_are_flexdownscale_errors() -> None:
    with pytest.raises(FlexDownscaleError):
        C.from_dict(C.TrainConfig, "steps = 2")  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.from_dict(C.TrainConfig, {"steps": 2})
