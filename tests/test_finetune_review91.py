"""Fine-tuning (``init_from``) after review 91: what a resume without ``init_from.json`` starts
from, which folders count as shipped, keys given at their default value, and the messages of a
model that cannot take the data, of another grid spacing, of ``--export-only`` and of a run
folder given as ``init_from``; the lineage of a model fine-tuned twice.

Tiny runs of ``era5-t2m-x4`` (or a copy of it) on a 32 x 32 corner of the ERA5 file, one or two
optimiser steps, no validation.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import xarray as xr
from train_runs import ERA5, era5_corner, fine_tuning_config, refused_on_one_line

from flexdownscale import errors
from flexdownscale.hub import load_model_folder, save_model_folder
from flexdownscale.train import INIT_FROM_FILE, STATE_MARKER, Trainer, list_states

SOURCE = "era5-t2m-x4"


@pytest.fixture(scope="module")
def corner(tmp_path_factory, shared_data) -> Path:
    return era5_corner(tmp_path_factory.mktemp("corner"), shared_data)


def _config(tmp_path: Path, shared_data: Path, corner: Path, **top):
    """:func:`train_runs.fine_tuning_config`, keeping the last 3 states."""
    return fine_tuning_config(tmp_path, shared_data, corner, **{"total_limit": 3, **top})


def _edited_copy(target: Path, *, scale: float = 1.0, shift: float = 0.0, **changes) -> Path:
    """A model folder written from ``era5-t2m-x4``: its weights times ``scale``, its t2m mean
    plus ``shift``, and ``model`` / ``diffusion`` / ``factor`` replaced by ``changes``."""
    source = load_model_folder(SOURCE)
    normalization = json.loads(json.dumps(source.normalization))
    for entry in normalization["variables"]:
        entry["mean"] = entry["mean"] + shift
    return save_model_folder(
        target,
        state_dict={k: v.float() * scale for k, v in source.state_dict.items()},
        model=changes.get("model", source.model),
        diffusion=changes.get("diffusion", source.diffusion),
        sampler=source.sampler,
        variables=source.variables,
        units=source.units,
        factor=changes.get("factor", source.factor),
        normalization=normalization,
        grid={**source.grid, "factor": changes.get("factor", source.factor)},
        card=source.card,
        task=source.task,
        condition=source.condition,
        extra=source.extra,
    )


@pytest.fixture(scope="module")
def started(tmp_path_factory, shared_data, corner):
    """A run fine-tuned for one step from ``src``, a copy of ``era5-t2m-x4`` (its state and its
    exported model), the source's record and the run's configuration."""
    root = tmp_path_factory.mktemp("started")
    src = _edited_copy(root / "src")
    config = _config(root, shared_data, corner, init_from=str(src), steps=1)
    Trainer(config).fit()
    record = json.loads((root / "run" / INIT_FROM_FILE).read_text())
    return root, config, record


def _run_copy(started, tmp_path: Path) -> Path:
    """A copy of the started run folder (each test changes its own)."""
    root, _, _ = started
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    return run


def _resume_config(started, run: Path, **top):
    _, config, _ = started
    return dataclasses.replace(config, **{"run_dir": str(run), "steps": 2, **top})


def _swap_source(started, **edits) -> None:
    """Replace the source folder the run started from by an edited copy."""
    root, _, _ = started
    shutil.rmtree(root / "src")
    _edited_copy(root / "src", **edits)


@pytest.fixture
def restore_source(started):
    """Put the run's own source folder back after a test that swapped it."""
    yield
    _swap_source(started)


# -- F1: a resume without init_from.json ------------------------------------------------------


def test_every_state_keeps_the_source_record(started):
    """The state's marker holds the same record as init_from.json (weights, normalization)."""
    root, _, record = started
    marker = json.loads((list_states(root / "run")[-1] / STATE_MARKER).read_text())
    assert marker["init_from"]["weights_sha256"] == record["weights_sha256"]
    assert marker["init_from"]["normalization"] == record["normalization"]


def test_a_resume_without_the_record_keeps_what_the_run_started_from(
    started, tmp_path, capsys, restore_source
):
    """init_from.json removed and the folder init_from names replaced by one of other weights
    and another normalization: the resume trains with the run's own normalization (before the
    fix, the new folder's replaced it without a word), writes init_from.json again and records
    the source the run started from in launches.jsonl."""
    _, _, record = started
    run = _run_copy(started, tmp_path)
    (run / INIT_FROM_FILE).unlink()
    _swap_source(started, scale=1.01, shift=0.5)
    trainer = Trainer(_resume_config(started, run), resume=True)
    assert trainer.train_set.normalizer.to_dict() == record["normalization"]
    trainer.fit()
    out = capsys.readouterr().out
    assert f"{INIT_FROM_FILE} was missing: the record comes from the copy in the state" in out
    rewritten = json.loads((run / INIT_FROM_FILE).read_text())
    assert rewritten["weights_sha256"] == record["weights_sha256"]
    assert rewritten["normalization"] == record["normalization"]
    last = json.loads((run / "launches.jsonl").read_text().splitlines()[-1])
    assert last["init_from"]["weights_sha256"] == record["weights_sha256"]


def _strip_state_copies(run: Path) -> None:
    """States as earlier versions wrote them: no copy of the record in the marker."""
    for state in list_states(run):
        marker = json.loads((state / STATE_MARKER).read_text())
        marker.pop("init_from", None)
        (state / STATE_MARKER).write_text(json.dumps(marker))


def test_an_old_state_without_a_copy_checks_the_folder_against_the_run(
    started, tmp_path, restore_source
):
    """States of earlier versions keep no copy: the folder is read again only when its weights
    are those launches.jsonl recorded (then init_from.json is written again); other weights,
    or nothing to compare with, are a CheckpointError."""
    _, _, record = started
    run = _run_copy(started, tmp_path)
    (run / INIT_FROM_FILE).unlink()
    _strip_state_copies(run)
    config = _resume_config(started, run)
    trainer = Trainer(config, resume=True)  # the folder is the run's own: resumes
    trainer.load_latest_state()
    assert (
        json.loads((run / INIT_FROM_FILE).read_text())["weights_sha256"]
        == (record["weights_sha256"])
    )
    (run / INIT_FROM_FILE).unlink()
    _swap_source(started, scale=1.01, shift=0.5)
    with pytest.raises(errors.CheckpointError, match=r"holds other weights .* launches\.jsonl"):
        Trainer(config, resume=True)
    (run / "launches.jsonl").unlink()
    shutil.rmtree(run / "model")
    with pytest.raises(errors.CheckpointError, match="cannot be checked"):
        Trainer(config, resume=True)
    assert not (run / INIT_FROM_FILE).exists()


def test_a_replaced_record_is_refused(started, tmp_path):
    """An init_from.json of other weights than the state's copy: refused, not trained with."""
    run = _run_copy(started, tmp_path)
    record = json.loads((run / INIT_FROM_FILE).read_text())
    record["weights_sha256"] = "0" * 64
    (run / INIT_FROM_FILE).write_text(json.dumps(record))
    with pytest.raises(errors.CheckpointError, match="records another weights_sha256"):
        Trainer(_resume_config(started, run), resume=True)


# -- F2: shipped means inside the package -----------------------------------------------------


def test_a_local_folder_named_like_a_shipped_model_is_not_shipped(
    tmp_path, shared_data, corner, monkeypatch, capsys
):
    """./era5-t2m-x4 (a copy) is what init_from = "era5-t2m-x4" loads from there; it is
    recorded as an exported folder, not as the shipped model."""
    shutil.copytree(load_model_folder(SOURCE).path, tmp_path / SOURCE)
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(_config(tmp_path, shared_data, corner))
    assert trainer.source["shipped"] is False
    assert trainer.source["path"] == str((tmp_path / SOURCE).resolve())
    assert f"fine-tuning from {SOURCE} (exported with flexdownscale" in capsys.readouterr().out


def test_the_shipped_model_says_which_version_exported_it(tmp_path, shared_data, corner, capsys):
    """The version in the line is the one of the folder's config.json, named as the exporter."""
    Trainer(_config(tmp_path, shared_data, corner))
    saved = json.loads((load_model_folder(SOURCE).path / "config.json").read_text())
    line = capsys.readouterr().out
    assert (
        f"fine-tuning from {SOURCE} (a shipped model exported with flexdownscale "
        f"{saved['package_version']}, trained 2200 steps)" in line
    ), line


# -- F3: keys given at their default value ------------------------------------------------------


@pytest.fixture(scope="module")
def small_flow_x2(tmp_path_factory) -> Path:
    """A model folder recording preset small, the flow objective and factor 2 (its weights are
    the tiny ones: the settings are refused before any weight is loaded)."""
    source = load_model_folder(SOURCE)
    return _edited_copy(
        tmp_path_factory.mktemp("small") / "small-flow-x2",
        model=dataclasses.replace(source.model, preset="small"),
        diffusion=dataclasses.replace(source.diffusion, objective="flow"),
        factor=2,
    )


def test_keys_written_at_their_default_are_not_replaced(tmp_path, corner, small_flow_x2, capsys):
    """preset = "tiny", objective = "vp" and factor = 4 written in the file (each the default)
    against a folder of small / flow / x2: one ConfigError naming the three, as for keys at
    other values; the same keys left out are taken from the folder and listed."""
    toml = tmp_path / "run.toml"
    body = f"""
run_dir = "{tmp_path / "run"}"
init_from = "{small_flow_x2}"
steps = 1
batch_size = 2
eval_every = 0
logger = "none"
[data]
paths = ["{corner}"]
crop_size = 32
train = ["2019-03-18", "2019-03-23T23"]
"""
    toml.write_text(
        body.replace("[data]", '[model]\npreset = "tiny"\n[diffusion]\nobjective = "vp"\n[data]')
        + "factor = 4\n"
    )
    line = refused_on_one_line(toml, [], capsys, tmp_path / "run")
    for part in (
        "model.preset = 'tiny' (the folder's: 'small')",
        "diffusion.objective = 'vp' (the folder's: 'flow')",
        "data.factor = 4 (the folder's: 2)",
    ):
        assert part in line, line
    # on the command line: the file says nothing, the override gives the default
    toml.write_text(body)
    line = refused_on_one_line(toml, ["data.factor=4"], capsys, tmp_path / "run")
    assert "data.factor = 4 (the folder's: 2)" in line, line
    assert "model.preset" not in line, line


def test_keys_left_out_are_taken_and_listed(tmp_path, shared_data, corner, capsys):
    """The keys a file leaves out still come from the folder, and the run lists them."""
    from flexdownscale.config import TrainConfig, from_toml

    toml = tmp_path / "run.toml"
    toml.write_text(
        f'run_dir = "{tmp_path / "run"}"\ninit_from = "{SOURCE}"\nsteps = 1\nbatch_size = 2\n'
        f'eval_every = 0\nlogger = "none"\n[data]\npaths = ["{corner}"]\ncrop_size = 32\n'
        'train = ["2019-03-18", "2019-03-23T23"]\n'
    )
    trainer = Trainer(from_toml(TrainConfig, toml))
    assert trainer.config.data.variables == ("t2m",)
    assert "taken from the folder: data.variables = ['t2m']" in capsys.readouterr().out


# -- F4: variables taken from a model that cannot take the data ----------------------------------


def test_variables_taken_from_the_folder_but_not_in_the_data(tmp_path, shared_data, corner):
    """kolmogorov-x8 on an ERA5 t2m file, data.variables left out: the message says the value
    came from init_from and that this model cannot be fine-tuned on these variables (it said
    "fix data.variables", which the user never set)."""
    with pytest.raises(errors.MissingVariableError) as caught:
        Trainer(
            _config(
                tmp_path,
                shared_data,
                corner,
                init_from="kolmogorov-x8",
                model={"preset": "tiny"},
                data={"factor": 8},
            )
        )
    message = str(caught.value)
    assert "was taken from init_from 'kolmogorov-x8'" in message, message
    assert "['vorticity']" in message, message
    assert "['t2m']" in message, message
    assert "cannot be fine-tuned on these variables" in message, message
    assert "fix data.variables" not in message, message


# -- F5: another grid spacing ----------------------------------------------------------------


def test_another_grid_spacing_is_said_and_recorded(tmp_path, shared_data, capsys):
    """Every other point of the ERA5 grid (0.5 degrees against the source's 0.25): the run says
    both spacings and that more steps are usually needed; the card records it."""
    ds = xr.open_dataset(shared_data / ERA5)
    coarse = ds.isel(latitude=slice(None, None, 2), longitude=slice(None, None, 2))
    path = tmp_path / "t2m_05deg.nc"
    coarse.sel(time=slice("2019-03-18", None)).load().to_netcdf(path)
    ds.close()
    trainer = Trainer(_config(tmp_path, shared_data, path, data={"crop_size": 16}))
    out = capsys.readouterr().out
    assert "the data's grid spacing (0.5 degrees) differs" in out, out
    assert "trained on (0.25 degrees)" in out, out
    assert "more steps" in out, out
    card = load_model_folder(trainer.export(tmp_path / "model")).card
    assert "grid spacing (0.5 degrees) differs" in card


# -- F6: export-only, run folders, lineage -----------------------------------------------------


def test_export_only_says_it_only_exports(started, tmp_path, capsys):
    """--export-only on a fine-tuned run: no word of resuming the optimiser and step counter."""
    run = _run_copy(started, tmp_path)
    Trainer(_resume_config(started, run, steps=1), export_only=True)
    out = capsys.readouterr().out
    assert "exporting the latest state of a run fine-tuned from" in out, out
    assert "nothing is trained" in out, out
    assert "optimiser" not in out, out


def test_a_run_folder_as_init_from_names_its_model_or_the_export_command(
    started, tmp_path, shared_data, corner
):
    """init_from = a training run's folder: its exported model is named; never exported, the
    message gives the export command and the folder it writes."""
    run = _run_copy(started, tmp_path)
    with pytest.raises(errors.ModelFolderError, match=r"its exported model is .*/run/model"):
        Trainer(_config(tmp_path / "b", shared_data, corner, init_from=str(run)))
    shutil.rmtree(run / "model")
    with pytest.raises(errors.ModelFolderError) as caught:
        Trainer(_config(tmp_path / "b", shared_data, corner, init_from=str(run)))
    message = str(caught.value)
    assert (
        f"python -m flexdownscale.train --config {run / 'config.toml'} --export-only" in message
    ), message
    assert f'init_from = "{run / "model"}"' in message, message


def test_fine_tuning_a_fine_tuned_model_keeps_the_lineage(started, tmp_path, shared_data, corner):
    """The second generation's config.json and card name both sources, the parent's own
    fine_tuned_from nested in its record."""
    root, _, record = started
    trainer = Trainer(_config(tmp_path, shared_data, corner, init_from=str(root / "run" / "model")))
    folder = load_model_folder(trainer.export(tmp_path / "model"))
    origin = folder.extra["fine_tuned_from"]
    assert origin["path"] == str((root / "run" / "model").resolve())
    assert origin["fine_tuned_from"]["weights_sha256"] == record["weights_sha256"]
    assert origin["fine_tuned_from"]["path"] == record["path"]
    assert "itself fine-tuned from `" in folder.card
    assert str(root / "src") in folder.card


def test_a_run_started_without_init_from_is_not_resumed_with_one(tmp_path, shared_data, corner):
    """A run from random weights resumed with init_from: the resume names the setting it was
    started with (the check of states that keep no record does not step in)."""
    config = _config(tmp_path, shared_data, corner, init_from=None, data={"variables": ["t2m"]})
    Trainer(config).fit()
    with pytest.raises(errors.CheckpointError, match="was started with init_from = none"):
        Trainer(dataclasses.replace(config, init_from=SOURCE, steps=2), resume=True)


def test_configurations_know_which_keys_they_were_given(tmp_path):
    """from_toml records the file's keys (defaults too), apply_overrides adds the overrides'
    (a section's inline table key by key, a table-valued setting as one key); a configuration
    built in Python records none."""
    from flexdownscale.config import TrainConfig, _given_keys, apply_overrides, from_toml

    path = tmp_path / "run.toml"
    path.write_text('steps = 3\n[model]\npreset = "tiny"\n[data]\nfactor = 4\n')
    config = from_toml(TrainConfig, path)
    assert _given_keys(config) == {"steps", "model.preset", "data.factor"}
    changed = apply_overrides(
        config, ["optim={lr=1e-4,warmup_steps=3}", "data.transforms.tp=log1p", "seed=1"]
    )
    assert _given_keys(changed) - _given_keys(config) == {
        "optim.lr",
        "optim.warmup_steps",
        "data.transforms",
        "seed",
    }
    assert _given_keys(TrainConfig()) is None
    assert _given_keys(apply_overrides(TrainConfig(), ["steps=2"])) is None
    assert _given_keys(dataclasses.replace(config, steps=4)) is None
