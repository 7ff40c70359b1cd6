"""Messages of the training command and of model-folder export, in the user's words.

Settings are named as the TOML file writes them (``steps``, ``data.validation``), with the
Python attribute in parentheses where a configuration built in Python gets the same message;
unwritable destinations name the path the user gave, not a hidden temporary one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from train_runs import tiny_run_config

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


def test_a_split_that_selects_nothing_names_its_key_and_shows_labels_as_written(
    shared_data, tmp_path, capsys
):
    """A validation range outside the data showed ``datetime.date(2020, 1, 1)`` and
    ``np.datetime64('2019-03-01T00:00:00.000000000')``, named no TOML key and not the way out."""
    toml = tmp_path / "run.toml"
    toml.write_text(tiny_run(shared_data, tmp_path / "run", eval_every=3))
    line = run_train(capsys, "--config", str(toml), "data.validation=[2020-01-01,2020-01-02]")
    assert line == (
        "the validation split: data.validation (DataConfig.validation) = [2020-01-01, "
        "2020-01-02] selects nothing along 'time' in any source (the labels run "
        "2019-03-01T00:00 to 2019-03-24T23:00 in era5_t2m_uk_2019-03-01_24); give a [start, "
        "stop] range or labels within that; or train without validation: eval_every = 0 with "
        "data.validation = []"
    )
    line = run_train(capsys, "--config", str(toml), 'data.validation=["2019-03-20","2019-03-19"]')
    assert "= [2019-03-20, 2019-03-19] (its start is after its stop) selects nothing" in line
    line = run_train(
        capsys,
        "--config",
        str(toml),
        'data.validation=["2019-03-18T00","2040-01-01T00","2041-01-01"]',
    )
    assert line.startswith(
        "the validation split: data.validation (DataConfig.validation) lists "
        "[2040-01-01T00, 2041-01-01], which are not 'time' labels of any source"
    ), line
    # a label that is no time at all was a pandas DateParseError traceback
    line = run_train(capsys, "--config", str(toml), 'data.validation=["2019-03-18T00","x","y"]')
    assert line.startswith(
        "data.validation (DataConfig.validation), in 'era5_t2m_uk_2019-03-01_24': cannot read "
        "[2019-03-18T00, x, y] as times"
    ), line
    line = run_train(capsys, "--config", str(toml), 'data.validation=["2019-03-18T00","x"]')
    assert line.startswith(
        "data.validation (DataConfig.validation), in 'era5_t2m_uk_2019-03-01_24': cannot select "
        "the range [2019-03-18T00, x] ("
    ), line
    line = run_train(capsys, "--config", str(toml), 'data.validation=["2019-03-02T00"]')
    assert line.startswith(
        "the train and validation splits overlap along 'time' in 'era5_t2m_uk_2019-03-01_24' "
        "(1 positions, e.g. [2019-03-02T00:00]): data.train (DataConfig.train) and "
        "data.validation (DataConfig.validation) must select disjoint labels"
    ), line
    assert "np.datetime64" not in line
    assert not (tmp_path / "run").exists()


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


# -- destinations that cannot be written --------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new entries, and always give it back writable.

    As root, permission bits do not stop writes: ``chattr +i`` does (the reviewer's way); as
    another user ``chmod 555`` does. Skips when neither works here.
    """
    folder.mkdir(parents=True, exist_ok=True)
    chattr = shutil.which("chattr")
    if os.geteuid() == 0 and chattr:
        made = subprocess.run([chattr, "+i", str(folder)], capture_output=True, check=False)
        if made.returncode == 0:
            try:
                yield
            finally:
                subprocess.run([chattr, "-i", str(folder)], check=True)
            return
    folder.chmod(0o555)
    try:
        try:
            (folder / "probe").touch()
        except OSError:
            yield
            return
        (folder / "probe").unlink()
        pytest.skip(
            "cannot make a folder read-only here: chattr +i is not available to this user "
            "(root only) and chmod 555 does not stop writes"
        )
    finally:
        folder.chmod(0o755)


def test_training_into_a_read_only_run_dir_names_run_dir(shared_data, tmp_path, capsys):
    """It said ``[Errno 1] Operation not permitted: '<run_dir>/.config.toml.tmp'`` (after the
    data had loaded): a hidden file the user never named. Now run_dir, what failed and the
    fix, before the data are opened, and nothing is written."""
    ro = tmp_path / "ro"
    toml = tmp_path / "run.toml"
    toml.write_text(tiny_run(shared_data, ro))
    with read_only(ro):
        line = run_train(capsys, "--config", str(toml))
        assert line.startswith(
            f"run_dir = {str(ro)!r} cannot be written: creating a file in it "
        ), line
        assert line.endswith(
            f"set run_dir to a folder you can write to, or fix the permissions of {str(ro)!r}"
        ), line
        assert ".tmp" not in line
        assert ".flexdownscale-probe" not in line
        # a run_dir still to be made inside it: the folder it would be made in is named
        inner = ro / "new" / "run"
        line = run_train(capsys, "--config", str(toml), f"run_dir={inner}")
        assert line.startswith(
            f"run_dir = {str(inner)!r} cannot be written: creating a file in {str(ro)!r}, where "
            "run_dir would be created, failed ("
        ), line
        # the Python API: the same typed error
        from flexdownscale.train import Trainer

        with pytest.raises(errors.ConfigError, match="cannot be written"):
            Trainer(from_toml(TrainConfig, toml))
    assert list(ro.iterdir()) == []


def test_a_full_disk_while_writing_the_run_config_names_run_dir(shared_data, tmp_path, monkeypatch):
    """An OSError once the checks have passed (a disk that filled meanwhile) is said the same
    way, with the fix for a full disk."""
    from flexdownscale import train

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path.with_name(".x.tmp")))

    monkeypatch.setattr(train, "_atomic_write_text", full)
    toml = tmp_path / "run.toml"
    run = tmp_path / "run"
    toml.write_text(tiny_run(shared_data, run))
    with pytest.raises(errors.ConfigError) as info:
        train.Trainer(from_toml(TrainConfig, toml))
    message = str(info.value)
    assert message.startswith(f"run_dir = {str(run)!r} cannot be written: ")
    assert message.endswith(
        f"failed ({os.strerror(errno.ENOSPC)}); free space on the disk of {str(run)!r} or set "
        "run_dir to another disk"
    )
    assert ".x.tmp" not in message


@pytest.fixture(scope="module")
def downscaler():
    import flexdownscale as fd

    return fd.Downscaler.from_pretrained("era5-t2m-x4")


def test_save_pretrained_into_a_read_only_folder_names_the_target(downscaler, tmp_path):
    """It raised a bare PermissionError naming a hidden temporary folder ``.my-model.xxxx``."""
    ro = tmp_path / "ro"
    target = ro / "my-model"
    with read_only(ro):
        for overwrite in (False, True):
            with pytest.raises(errors.ModelFolderError) as info:
                downscaler.save_pretrained(target, overwrite=overwrite)
            message = str(info.value)
            assert message.startswith(
                f"cannot write a model folder to {str(target)!r}: creating a folder in "
                f"{str(ro)!r} failed ("
            ), message
            assert message.endswith(
                "choose a path in a folder you can write to, or fix that folder's permissions "
                "(nothing was written)"
            )
            assert ".my-model." not in message
            assert isinstance(info.value, OSError)  # existing `except OSError` still catch it
    assert list(ro.iterdir()) == []


def test_save_pretrained_below_a_file_is_refused_by_name(downscaler, tmp_path):
    """A file where a folder above the target should be gave a raw FileExistsError /
    NotADirectoryError; a file at the target was told to use ``<file>/model``."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for target in (afile / "m", afile / "x" / "m"):
        with pytest.raises(errors.ModelFolderError) as info:
            downscaler.save_pretrained(target)
        assert str(info.value) == (
            f"cannot write a model folder to {str(target)!r}: {str(afile)!r}, above it, is a "
            "file, not a folder; choose a path in a folder (nothing was written)"
        )
    with pytest.raises(errors.ModelFolderError) as info:
        downscaler.save_pretrained(afile, overwrite=True)
    assert "it is a file, not a folder" in str(info.value)
    assert "e.g." not in str(info.value)  # no folder can be made inside a file
    assert afile.read_text() == "x"


def test_a_full_disk_while_saving_a_model_folder_names_the_target(
    downscaler, tmp_path, monkeypatch
):
    """An OSError while the files are written (a full disk) names the target, not the hidden
    folder the files go to first, and leaves nothing behind."""
    import safetensors.torch

    def full(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    target = tmp_path / "out" / "my-model"
    with pytest.raises(errors.ModelFolderError) as info:
        downscaler.save_pretrained(target)
    assert str(info.value) == (
        f"cannot write a model folder to {str(target)!r}: writing its files failed "
        f"({os.strerror(errno.ENOSPC)}); free space on that disk or choose a path on another "
        "one (nothing was written)"
    )
    assert list((tmp_path / "out").iterdir()) == []


# -- the model card names the sampler of its validation table -----------------------------------


def test_the_model_card_names_the_sampler_its_validation_was_sampled_with(shared_data, tmp_path):
    """``--export-only sampler.steps=7`` stored 7 steps in ``config.json`` while the card's
    validation table, measured with the training's 1-step sampler, did not say which it was."""
    from flexdownscale.train import Trainer

    config = tiny_run_config(tmp_path, shared_data)  # 1 step, validated at step 1, ddim 1 step
    folder = Trainer(config).fit()
    record = json.loads((tmp_path / "run" / "validation.jsonl").read_text().splitlines()[-1])
    assert record["sampler"] == {"sampler": "ddim", "steps": 1, "eta": 0.0}
    card = (folder / "README.md").read_text()
    assert "Sampled with `ddim`, 1 step (eta 0.0), the sampler `config.json` stores." in card
    assert "| sampler |" not in card  # not a metric row

    exporter = Trainer(apply_overrides(config, ["sampler.steps=7"]), export_only=True)
    exporter.load_latest_state()
    folder = exporter.export()
    assert json.loads((folder / "config.json").read_text())["sampler"]["steps"] == 7
    card = (folder / "README.md").read_text()
    assert (
        "Sampled with `ddim`, 1 step (eta 0.0); this folder's default sampler (`config.json`) "
        "is `ddim`, 7 steps (eta 0.0), which these numbers do not describe." in card
    )
