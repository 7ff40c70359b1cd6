"""A model folder's ``config.json`` values are held to the ranges of a training configuration.

A copy of the shipped era5-t2m-x4 edited to ``sampler.steps = 0, eta = 3.0, delta = -1.0``
loaded without a word (``flexdownscale info`` printed "ddim 0 steps ... eta=3, delta=-1"); the
first call without sampler keywords then failed on ``steps = 0``, and the command line blamed
``--steps`` / ``--sampler-option`` flags never given. ``diffusion.logsnr_min > logsnr_max`` and
``model.dropout = 2.0`` failed at use with a ``ConfigError`` naming no file (reviewer-66).
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from flexdownscale.cli import main
from flexdownscale.config import SamplerConfig, TrainConfig
from flexdownscale.errors import ConfigError, ModelFolderError
from flexdownscale.hub import load_model_folder, save_model_folder, shipped_models
from flexdownscale.pipeline import Downscaler

#: (section, edits, the message part naming entry, value and range)
CASES = {
    "steps": (
        "sampler",
        {"steps": 0},
        "sampler.steps = 0 is out of range; expected a positive integer",
    ),
    "eta": ("sampler", {"eta": 3.0}, "sampler.eta = 3.0 is out of range; expected [0, 1]"),
    "delta": ("sampler", {"delta": -1.0}, "sampler.delta = -1.0 is out of range; expected >= 0"),
    "logsnr": (
        "diffusion",
        {"logsnr_min": 20.0, "logsnr_max": -20.0},
        "diffusion.logsnr_min = 20.0 must be below diffusion.logsnr_max = -20.0",
    ),
    "dropout": (
        "model",
        {"dropout": 2.0},
        "model.dropout = 2.0 is out of range; expected [0, 1)",
    ),
}


def _edited_copy(tmp_path, section=None, edits=None):
    """A copy of the shipped era5-t2m-x4 with ``config.json[section]`` updated by ``edits``."""
    folder = tmp_path / "edited"
    shutil.copytree(shipped_models()["era5-t2m-x4"], folder)
    if section is not None:
        file = folder / "config.json"
        config = json.loads(file.read_text(encoding="utf-8"))
        config[section].update(edits)
        file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
def test_out_of_range_entry_is_refused_at_load_naming_file_entry_and_value(tmp_path, case):
    section, edits, named = CASES[case]
    folder = _edited_copy(tmp_path, section, edits)
    with pytest.raises(ModelFolderError) as raised:
        load_model_folder(folder)
    message = str(raised.value)
    assert message.startswith(f"{str(folder / 'config.json')!r}: {named}")
    # the fix: restore the file or export the model again from its run
    assert "restore the folder's config.json" in message
    assert "--export-only" in message


def test_downscaler_and_info_report_the_edited_entry(tmp_path, capsys):
    """``from_pretrained`` refuses the folder; ``info`` reports the error (exit 2) instead of
    printing the out-of-range values as the folder's sampler default."""
    folder = _edited_copy(tmp_path, "sampler", {"steps": 0, "eta": 3.0, "delta": -1.0})
    with pytest.raises(ModelFolderError, match=r"sampler\.steps = 0 is out of range"):
        Downscaler.from_pretrained(folder)
    capsys.readouterr()
    assert main(["info", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert "steps" not in out  # no card, no "ddim 0 steps"
    assert err.startswith(
        f"flexdownscale info: error: {str(folder / 'config.json')!r}: sampler.steps = 0 is out "
        "of range"
    )


def test_unedited_copy_loads_with_the_shipped_settings(tmp_path):
    folder = load_model_folder(_edited_copy(tmp_path))
    shipped = load_model_folder("era5-t2m-x4")
    assert (folder.model, folder.diffusion, folder.sampler) == (
        shipped.model,
        shipped.diffusion,
        shipped.sampler,
    )
    assert folder.sampler.steps >= 1


def test_every_shipped_model_is_in_range():
    for name in shipped_models():
        load_model_folder(name)  # raises ModelFolderError when a stored value is out of range


def test_a_folder_that_would_not_load_is_not_saved(tmp_path):
    """A model built in Python with an out-of-range sampler setting wrote a folder that loading
    then refused as "edited or damaged": saving refuses it and writes nothing."""
    shipped = load_model_folder("era5-t2m-x4")
    target = tmp_path / "m"
    with pytest.raises(ConfigError, match=r"sampler\.eta = 3\.0 is out of range") as raised:
        save_model_folder(
            target,
            state_dict=shipped.state_dict,
            model=shipped.model,
            diffusion=shipped.diffusion,
            sampler=dataclasses.replace(shipped.sampler, eta=3.0),
            variables=shipped.variables,
            units=shipped.units,
            factor=shipped.factor,
            normalization=shipped.normalization,
            grid=shipped.grid,
            card=shipped.card,
        )
    assert "would not load" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_training_config_still_refuses_the_same_ranges():
    """The checks are the training configuration's: a run with ``sampler.steps = 0`` is refused
    with the message it always had."""
    with pytest.raises(ConfigError) as raised:
        TrainConfig(sampler=SamplerConfig(steps=0))
    assert str(raised.value) == (
        "sampler.steps = 0 is out of range; expected a positive integer (reverse steps of the "
        "sampler)"
    )
