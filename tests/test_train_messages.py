"""Messages of the training command and of model-folder export, in the user's words.

Settings are named as the TOML file writes them (``steps``, ``data.validation``), with the
Python attribute in parentheses where a configuration built in Python gets the same message;
unwritable destinations name the path the user gave, not a hidden temporary one.
"""

from __future__ import annotations

import pytest

from flexdownscale import errors
from flexdownscale.config import (
    DataConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    from_toml,
)
from flexdownscale.train import main

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"


def tiny_run(shared_data, run_dir, **top) -> str:
    """The text of a tiny training configuration (the reviewer's run.toml)."""
    values = {"steps": 2, "batch_size": 4, "eval_every": 0, "logger": '"none"', **top}
    lines = [f'run_dir = "{run_dir}"', *(f"{k} = {v}" for k, v in values.items())]
    return "\n".join(
        [
            *lines,
            "[model]",
            'preset = "tiny"',
            "[data]",
            f'paths = ["{shared_data / ERA5}"]',
            'variables = ["t2m"]',
            "factor = 4",
            "crop_size = 16",
            'train = ["2019-03-01", "2019-03-03"]',
            'validation = ["2019-03-18", "2019-03-18"]',
            "",
        ]
    )


def run_train(capsys, *argv: str) -> str:
    """``python -m flexdownscale.train argv``: its exit status must be 2 and its error one line;
    returns that line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err
    assert err[-1].startswith("flexdownscale.train: error: ")
    return err[-1].removeprefix("flexdownscale.train: error: ")


# -- settings named as the TOML file writes them ------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("steps=abc", "steps must be an integer, got 'abc' (TrainConfig.steps)"),
        ("data.factor=x", "data.factor must be an integer, got 'x' (TrainConfig.data.factor)"),
        (
            "sampler.sampler=foo",
            "sampler.sampler = 'foo' is not a valid option; expected one of 'ddim', 'euler', "
            "'heun', 'sde', 'idff' (TrainConfig.sampler.sampler)",
        ),
        (
            "data.variables=3",
            "data.variables must be a list, got int 3 (TrainConfig.data.variables)",
        ),
    ],
)
def test_a_wrong_type_names_the_toml_key_then_the_python_attribute(override, expected):
    """The reviewer's ``steps=abc`` said ``TrainConfig.steps must be an integer``: a class the
    TOML file never names. The key comes first, as the file and the override write it."""
    with pytest.raises(errors.ConfigError) as info:
        apply_overrides(TrainConfig(), [override])
    assert str(info.value) == expected


def test_a_section_given_on_its_own_is_named_by_its_toml_table():
    """A DataConfig / ModelConfig built from a dict: the key of its TOML table, then the
    attribute of the class the caller used."""
    with pytest.raises(errors.ConfigError) as info:
        from_dict(DataConfig, {"factor": "x"})
    assert str(info.value) == "data.factor must be an integer, got 'x' (DataConfig.factor)"
    with pytest.raises(errors.ConfigError) as info:
        from_dict(ModelConfig, {"image_size": [128, "x"]})
    assert str(info.value) == (
        "model.image_size[1] must be an integer, got 'x' (ModelConfig.image_size[1])"
    )
    with pytest.raises(errors.ConfigError) as info:
        from_dict(ModelConfig, {"preest": "small"})
    assert str(info.value).startswith(
        "unknown key 'preest' in [model] (ModelConfig); did you mean 'preset'?"
    )


def test_unknown_keys_name_the_toml_table(tmp_path):
    with pytest.raises(errors.ConfigError) as info:
        from_dict(TrainConfig, {"data": {"fator": 2}})
    assert str(info.value).startswith(
        "unknown key 'fator' in [data] (TrainConfig.data); did you mean 'factor'?"
    )
    with pytest.raises(errors.ConfigError) as info:
        from_dict(TrainConfig, {"stps": 2})
    assert str(info.value).startswith(
        "unknown key 'stps' in the top level (TrainConfig); did you mean 'steps'?"
    )
    with pytest.raises(errors.ConfigError) as info:
        apply_overrides(TrainConfig(), ["stps=2"])
    assert "(a top-level key); did you mean 'steps'?" in str(info.value)
    assert "TrainConfig" not in str(info.value)


def test_a_toml_file_error_names_the_file_and_the_key(tmp_path):
    """It said ``run.toml.steps must be an integer``: file and key run together."""
    path = tmp_path / "run.toml"
    path.write_text('steps = "abc"\n')
    with pytest.raises(errors.ConfigError) as info:
        from_toml(TrainConfig, path)
    assert str(info.value) == f"{path}: steps must be an integer, got 'abc' (TrainConfig.steps)"


def test_the_training_command_names_toml_keys(shared_data, tmp_path, capsys):
    """The reviewer's three commands: a wrong type, a variable typo, an empty validation split.
    Each says the TOML key (the class attribute only in parentheses), on one line."""
    toml = tmp_path / "run.toml"
    toml.write_text(tiny_run(shared_data, tmp_path / "run", eval_every=3))
    line = run_train(capsys, "--config", str(toml), "steps=abc")
    assert line == "steps must be an integer, got 'abc' (TrainConfig.steps)"

    line = run_train(capsys, "--config", str(toml), "data.variables=[t2mm]")
    assert line.endswith("; fix data.variables (DataConfig.variables)"), line
    assert "variables ['t2mm'] are not in" in line

    line = run_train(capsys, "--config", str(toml), "data.validation=[]")
    assert line.startswith(
        "the validation split is empty: data.validation (DataConfig.validation) selects no "
        "field along 'time'"
    ), line
    # the documented way out: eval_every = 0 needs no validation split
    assert "eval_every = 0 with data.validation = [] needs no validation split" in line
    assert not (tmp_path / "run").exists()  # a refused start writes nothing


def test_dataset_messages_name_the_arguments_when_called_directly(shared_data):
    """A dataset built in Python, not from a [data] section: the keyword arguments, no
    ``data.`` key the caller never wrote."""
    from flexdownscale.data import SuperResolutionDataset, from_config

    path = shared_data / ERA5
    with pytest.raises(errors.MissingVariableError) as info:
        SuperResolutionDataset(path, variables=["t2mm"], crop_size=16)
    assert str(info.value).endswith("; fix the variables argument")
    with pytest.raises(errors.DataError) as info:
        SuperResolutionDataset(
            path, crop_size=16, split="validation", splits={"train": ["2019-03-01", "2019-03-02"]}
        )
    assert str(info.value).startswith(
        "the validation split is empty: splits['validation'] selects no field along 'time'"
    )
    assert "eval_every" not in str(info.value)  # no training setting for a dataset on its own
    with pytest.raises(errors.ConfigError) as info:
        from_config(DataConfig(), "train")
    assert str(info.value) == (
        "data.paths is empty; expected files or glob patterns (DataConfig.paths)"
    )
