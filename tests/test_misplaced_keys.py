"""A key written in the wrong table of a run file, or given to the wrong section on the command
line, is pointed to where it belongs.

``crop_size=32`` on the training command line was answered "did you mean 'micro_batch_size'?"
(the closest top-level name), and a ``crop_size = 64`` above the ``[data]`` table of a file
listed the top-level keys; the key exists, under ``[data]``.
"""

from __future__ import annotations

import pytest

from flexdownscale import errors
from flexdownscale.config import TrainConfig, apply_overrides, from_dict, from_toml


@pytest.mark.parametrize(
    ("override", "advice"),
    [
        ("crop_size=32", "did you mean 'data.crop_size'?"),
        ("optim.factor=2", "did you mean 'data.factor'?"),
        ("data.lr=1e-3", "did you mean 'optim.lr'?"),
        # a top-level key, and the sampler's key of that name
        ("data.steps=3", "did you mean 'steps' or 'sampler.steps'?"),
    ],
)
def test_an_override_in_the_wrong_section_names_the_right_one(override, advice):
    with pytest.raises(errors.ConfigError) as info:
        apply_overrides(TrainConfig(), [override])
    message = str(info.value)
    assert advice in message
    assert "known keys" not in message
    # the key it names is taken
    right = advice.split("'")[1]
    fixed = apply_overrides(TrainConfig(), [f"{right}={override.split('=')[1]}"])
    assert fixed != TrainConfig()


def test_a_key_above_its_table_in_a_file_is_told_to_move(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('run_dir = "runs/x"\ncrop_size = 64\n\n[data]\nfactor = 4\n')
    with pytest.raises(errors.ConfigError) as info:
        from_toml(TrainConfig, path)
    assert str(info.value) == f"{path}: " + (
        "unknown key 'crop_size' in the top level (TrainConfig); 'crop_size' belongs under "
        "[data]: move it there"
    )
    with pytest.raises(errors.ConfigError, match=r"'lr' belongs under \[optim\]: move it"):
        from_dict(TrainConfig, {"data": {"lr": 1e-3}})
    with pytest.raises(errors.ConfigError, match=r"'seed' belongs at the top level \(before any"):
        from_dict(TrainConfig, {"model": {"seed": 1}})


def test_a_key_of_no_table_keeps_the_close_match():
    with pytest.raises(errors.ConfigError, match=r"did you mean 'steps'\? known keys: batch_size"):
        apply_overrides(TrainConfig(), ["stepz=3"])
    with pytest.raises(errors.ConfigError, match=r"did you mean 'preset'\? known keys"):
        from_dict(TrainConfig, {"model": {"preest": "tiny"}})
