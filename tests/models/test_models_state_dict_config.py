"""A state dict says which config made it where its tensors cannot (reviewer-177 item 3): a
weak+strong FLEX and a strong one, or a super-resolution and a one-frame forecast model, have
the same tensor names and shapes."""

from __future__ import annotations

import io

import pytest
import torch

from flexdownscale.config import ModelConfig
from flexdownscale.diffusion import ResidualModel
from flexdownscale.errors import ConfigError
from flexdownscale.models import build_model, export_state_dict


def _tiny(**changes) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset="tiny", **changes)).eval()
    with torch.no_grad():  # zero-initialised layers non-zero: configs then give other outputs
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("saved", "loaded", "named"),
    [
        (dict(conditioning="weak+strong"), dict(conditioning="strong"), "conditioning="),
        (dict(conditioning="strong"), dict(conditioning="weak+strong"), "conditioning="),
        (dict(task="superres"), dict(task="forecast", past_frames=1), "task='superres'"),
        (dict(backbone="dit", task="superres"), dict(backbone="dit", task="forecast"), "task="),
    ],
)
def test_another_configs_state_dict_is_refused(saved, loaded, named) -> None:
    """The tensors match, the function does not: a ConfigError naming the setting, and the
    model is left as it was."""
    source, target = _tiny(**saved), _tiny(**loaded)
    before = _snapshot(target)
    with pytest.raises(ConfigError, match=named):
        target.load_state_dict(source.state_dict())
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    # the tensors alone would have loaded: the refusal is the metadata's
    target.load_state_dict(dict(source.state_dict()))


def test_weak_and_strong_flex_compute_different_functions() -> None:
    """Why the refusal matters: with the same weights the two FLEX variants disagree."""
    weak, strong = _tiny(conditioning="weak+strong"), _tiny(conditioning="strong")
    strong.load_state_dict(dict(weak.state_dict()))
    x, cond = torch.randn(1, 1, 32, 32), torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert (weak(x, 0.5, cond) - strong(x, 0.5, cond)).abs().max() > 1e-2


def test_the_record_survives_torch_save_and_wrapping() -> None:
    """torch.save / torch.load(weights_only=True) keep the record; a ResidualModel's state dict
    records its backbone's under the backbone's prefix."""
    source = _tiny(conditioning="weak+strong")
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, weights_only=True)
    with pytest.raises(ConfigError, match="conditioning='weak\\+strong'"):
        _tiny(conditioning="strong").load_state_dict(reloaded)
    with pytest.raises(ConfigError, match="conditioning="):
        ResidualModel(_tiny(conditioning="strong")).load_state_dict(
            ResidualModel(source).state_dict()
        )


def test_same_config_and_plain_dicts_still_load() -> None:
    """The record changes no tensor name; the same config loads strictly; a plain dict (a
    safetensors file, a model folder) is not checked; the settings other
    backbones ignore (conditioning for the U-Net) are not recorded."""
    source = _tiny(conditioning="weak+strong")
    state = source.state_dict()
    names = [n for n, _ in source.named_parameters()] + [n for n, _ in source.named_buffers()]
    assert sorted(state) == sorted(names)
    assert sorted(export_state_dict(source)) == sorted(state)
    same = _tiny(conditioning="weak+strong")
    same.load_state_dict(state)
    assert all(torch.equal(state[k], v) for k, v in same.state_dict().items())
    _tiny(conditioning="strong").load_state_dict(export_state_dict(source))
    unet = _tiny(backbone="unet", conditioning="weak+strong").state_dict()
    _tiny(backbone="unet", conditioning="strong").load_state_dict(unet)
    assert source.weights_description() == {
        "task": "superres",
        "in_channels": 1,
        "conditioning": "weak+strong",
    }
