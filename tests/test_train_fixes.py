"""Training entry point: forecast export, resolved samplers, channel count, TOML dates, argument
order, old logs of a failed start, and the settings checked when the configuration is loaded.

The runs are in-process with the tiny preset, 32 x 32 crops and one or two optimiser steps on the
real ERA5 file."""

from __future__ import annotations

import dataclasses
import datetime
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from train_runs import ERA5, tiny_run_config, tiny_run_values

from flexdownscale import errors
from flexdownscale.config import TrainConfig, apply_overrides, from_dict, from_toml, to_dict
from flexdownscale.train import FAULT_NAN_ENV, Trainer, dump_toml, parse_args, resolve_sampler

_values = tiny_run_values
_config = tiny_run_config


def _era5_pair(shared_data: Path) -> tuple[xr.Dataset, xr.Dataset]:
    """(fine, coarse x4) of a corner of the ERA5 file's normalized grid, coarsened on the cells
    the training crops use (from the southern edge: the normalized grid is ascending)."""
    from flexdownscale.data import degrade, normalize_grid

    ds = xr.open_dataset(shared_data / ERA5)
    fine = normalize_grid(ds.isel(time=slice(0, 2)))
    fine = fine.isel(latitude=slice(0, 32), longitude=slice(0, 32)).load()
    coarse = degrade(fine, 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    return fine, coarse


# ---------------------------------------------------------------------------------------------
# 1. forecast models export a folder the Forecaster loads


def test_forecast_run_exports_a_folder_the_forecaster_runs(tmp_path, shared_data):
    import flexdownscale  # noqa: F401  (registers ds.flex)
    from flexdownscale.data import normalize_grid
    from flexdownscale.hub import load_model_folder
    from flexdownscale.pipeline import Forecaster

    config = _config(tmp_path, shared_data, model={"task": "forecast"}, data={"past_frames": 2})
    folder = Trainer(config).fit()
    loaded = load_model_folder(folder)
    assert loaded.task == "forecast"
    assert loaded.factor == 1
    assert loaded.model.past_frames == 2
    assert loaded.grid["past_frames"] == 2
    assert loaded.grid["lead"] == 1
    assert loaded.grid["grid"] is not None
    assert Forecaster.from_pretrained(folder).past_frames == 2

    ds = xr.open_dataset(shared_data / ERA5)
    past = normalize_grid(ds.isel(time=slice(0, 3), latitude=slice(0, 16))).isel(
        longitude=slice(0, 16)
    )
    out = past.flex.forecast(folder, lead_steps=2, members=2)
    assert out["t2m"].dims == ("member", "lead", "latitude", "longitude")
    assert out["t2m"].shape == (2, 2, 16, 16)
    assert np.isfinite(out["t2m"].values).all()


# ---------------------------------------------------------------------------------------------
# 2. the sampler validation uses is the one exported


def test_resolve_sampler_replaces_what_does_not_apply(tmp_path, shared_data):
    import dataclasses

    from flexdownscale.diffusion import build_objective

    vp = _config(tmp_path, shared_data)
    assert resolve_sampler(vp) is vp
    for objective, name in (("flow", "euler"), ("idff", "idff")):
        # the default [sampler] (ddim, 2 steps): the objective's defaults, steps included
        config = _config(tmp_path, shared_data, diffusion={"objective": objective}, sampler={})
        config = dataclasses.replace(config, sampler=type(config.sampler)())
        assert config.sampler.sampler == "ddim"
        defaults = build_objective(config.diffusion).sampler_defaults
        assert defaults.sampler == name
        assert resolve_sampler(config).sampler == defaults
        # steps changed from the default are kept
        three = dataclasses.replace(config, sampler=dataclasses.replace(config.sampler, steps=3))
        assert resolve_sampler(three).sampler == dataclasses.replace(defaults, steps=3)
    heun = _config(
        tmp_path, shared_data, diffusion={"objective": "flow"}, sampler={"sampler": "heun"}
    )
    assert resolve_sampler(heun).sampler.sampler == "heun"  # applies: kept as configured


def test_a_sampler_that_does_not_apply_is_a_warning_naming_those_that_do(tmp_path, shared_data):
    """A chosen sampler the objective cannot use was a bare line on stderr: no warning a
    notebook could see or filter, and no word of the samplers that apply."""
    config = _config(tmp_path, shared_data, diffusion={"objective": "flow"}, sampler={"steps": 4})
    assert config.sampler.sampler == "ddim"
    with pytest.warns(errors.FlexDownscaleWarning) as record:
        trainer = Trainer(config)
    said = [str(w.message) for w in record if "does not apply" in str(w.message)]
    assert said == [
        "sampler = 'ddim' does not apply to the 'flow' objective: validating and exporting with "
        "its default sampler 'euler' (4 steps). Set sampler.sampler to one of 'euler', 'heun', "
        "'sde' to choose"
    ]
    assert trainer.config.sampler.sampler == "euler"
    assert record[0].filename == __file__  # points at the line that built the trainer


def test_flow_model_exports_the_sampler_validation_used(tmp_path, shared_data):
    from flexdownscale.pipeline import Downscaler

    config = _config(tmp_path, shared_data, diffusion={"objective": "flow"})
    with pytest.warns(errors.FlexDownscaleWarning, match=r"'ddim' does not apply.*\(1 step\)\."):
        trainer = Trainer(config)  # the tiny run's one sampling step
    resolved = trainer.config.sampler
    assert resolved.sampler != "ddim"
    assert trainer._sampler_options()["sampler"] == resolved.sampler
    folder = trainer.fit()
    stored = json.loads((folder / "config.json").read_text())["sampler"]
    assert stored["sampler"] == resolved.sampler
    assert stored["steps"] == resolved.steps
    run_config = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert run_config["sampler"]["sampler"] == resolved.sampler  # the run folder agrees

    _, coarse = _era5_pair(shared_data)
    out = Downscaler.from_pretrained(folder)(coarse, members=2, progress=False)
    assert out["t2m"].sizes["member"] == 2
    assert np.isfinite(out["t2m"].values).all()


def test_a_model_trained_on_a_nearest_base_exports_it(tmp_path, shared_data):
    """``data.upsample = "nearest"`` was refused by the configuration although the data layer
    and the exported model (its grid metadata) take it; the run now trains on it and the
    Downscaler it exports upsamples the same way."""
    from flexdownscale.data import upsample_array
    from flexdownscale.hub import load_model_folder
    from flexdownscale.pipeline import Downscaler

    config = _config(tmp_path, shared_data, data={"upsample": "nearest"})
    trainer = Trainer(config)
    item = trainer.train_set[0]
    coarse, base = item["coarse"].numpy(), item["base"].numpy()
    np.testing.assert_array_equal(base, upsample_array(coarse, 4, method="nearest"))
    folder = trainer.fit()
    assert load_model_folder(folder).grid["upsample"] == "nearest"
    _, coarse = _era5_pair(shared_data)
    out = Downscaler.from_pretrained(folder)(coarse, members=1, progress=False)
    assert np.isfinite(out["t2m"].values).all()


# ---------------------------------------------------------------------------------------------
# 3. the model is sized from the variables loaded


def test_model_channels_follow_the_variables_loaded(tmp_path, shared_data):
    config = from_dict(
        TrainConfig,
        {
            "run_dir": str(tmp_path / "run"),
            "batch_size": 1,
            "logger": "none",
            "model": {"preset": "tiny"},
            "data": {
                "paths": [str(shared_data / "era_interim" / "eraint_uv_monthly.nc")],
                "factor": 4,
                "crop_size": 32,
                "split_dim": "month",
                "train": [1],
                "validation": [7],
            },
        },
    )
    assert config.data.variables == ()
    assert config.model.in_channels == 1
    trainer = Trainer(config)
    channels = len(trainer.train_set.variables)
    assert channels > 1
    assert trainer._model_config().in_channels == channels
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert model.config.in_channels == channels


def test_model_shape_keys_that_disagree_with_the_data_are_refused(tmp_path, shared_data):
    """model.in_channels / model.past_frames set against what the data loads: ConfigError
    naming both (they were overwritten silently); the default 1 and the matching value pass."""
    wrong_channels = _config(tmp_path, shared_data, model={"preset": "tiny", "in_channels": 3})
    with pytest.raises(errors.ConfigError, match=r"model.in_channels = 3 .* 1 variable \(t2m\)"):
        Trainer(wrong_channels)
    wrong_frames = _config(
        tmp_path / "f",
        shared_data,
        model={"preset": "tiny", "task": "forecast", "past_frames": 3},
        data={"past_frames": 2},
    )
    with pytest.raises(
        errors.ConfigError, match=r"model\.past_frames = 3 but data\.past_frames = 2"
    ):
        Trainer(wrong_frames)
    agreeing = _config(
        tmp_path / "g",
        shared_data,
        model={"preset": "tiny", "task": "forecast", "past_frames": 2},
        data={"past_frames": 2},
    )
    assert Trainer(agreeing)._model_config().past_frames == 2


# ---------------------------------------------------------------------------------------------
# 4. native TOML dates in the split keys


def test_native_toml_dates_are_written_and_resume(tmp_path, shared_data):
    values = _values(tmp_path, shared_data)
    values["data"]["train"] = [datetime.date(2019, 3, 1), datetime.datetime(2019, 3, 17, 23)]
    values["data"]["validation"] = [
        datetime.datetime(2019, 3, 24, 0),
        datetime.datetime(2019, 3, 24, 3),
    ]
    text = dump_toml(values)
    assert "train = [2019-03-01, 2019-03-17T23:00:00]" in text
    path = tmp_path / "run.toml"
    path.write_text(text)
    config = from_toml(TrainConfig, path)
    assert config.data.train == (datetime.date(2019, 3, 1), datetime.datetime(2019, 3, 17, 23))
    assert from_dict(TrainConfig, tomllib.loads(dump_toml(to_dict(config)))) == config

    trainer = Trainer(config)
    run = tmp_path / "run"
    # the model section as built (physical_condition false: no condition), the rest as given
    built = dataclasses.replace(config, model=trainer._model_config())
    assert from_toml(TrainConfig, run / "config.toml") == built
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"]["train"] == ["2019-03-01", "2019-03-17T23:00:00"]
    trainer.save_state()
    # the JSON copy (ISO strings) and the TOML dates are the same [data] section: resume works
    resumed = Trainer(config, resume=True)
    assert resumed.load_latest_state().name == "step_00000000"


# ---------------------------------------------------------------------------------------------
# 5. and 6. command line: overrides anywhere, bare words in lists


def test_overrides_may_follow_resume_and_export_only(tmp_path, shared_data):
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(_values(tmp_path, shared_data)))
    config, args = parse_args(["--config", str(path), "--resume", "steps=5"])
    assert args.resume
    assert config.steps == 5
    config, args = parse_args(
        ["eval_every=0", "--config", str(path), "--export-only", "model.preset=small"]
    )
    assert args.export_only
    assert config.eval_every == 0
    assert config.model.preset == "small"


def test_bare_words_in_a_list_override_are_strings():
    config = TrainConfig()
    # what bash leaves of data.variables=["u","v"] and of unquoted dates
    new = apply_overrides(config, ["data.variables=[u,v]", "data.train=[2019-03-01,2019-03-17T23]"])
    assert new.data.variables == ("u", "v")
    assert new.data.train == ("2019-03-01", "2019-03-17T23")
    assert apply_overrides(config, ["data.train=[0, 2]"]).data.train == (0, 2)
    assert apply_overrides(config, ['data.variables=["u","v"]']).data.variables == ("u", "v")


def test_documented_override_is_shell_safe():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    assert """'data.variables=["u","v"]'""" in docs


# ---------------------------------------------------------------------------------------------
# 7. a fresh start moves the logs of a run that saved no state aside


def test_fresh_start_moves_old_logs_aside(tmp_path, shared_data, capsys):
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "plots" / "panels_step00000007.png").write_bytes(b"old figure")
    old_record = {"step": 7, "val/loss": 123.0}
    (run / "validation.jsonl").write_text(json.dumps(old_record) + "\n")

    folder = Trainer(_config(tmp_path, shared_data)).fit()
    err = capsys.readouterr().err
    assert "moved validation.jsonl, plots to" in err
    assert "old-1" in err
    old = run / "old-1"
    assert json.loads((old / "validation.jsonl").read_text()) == old_record
    assert (old / "plots" / "panels_step00000007.png").read_bytes() == b"old figure"
    records = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1]
    validation = json.loads((folder / "config.json").read_text())["extra"]["validation"]
    assert validation["step"] == 1
    assert validation["val/loss"] != 123.0
    card = (folder / "README.md").read_text()
    assert "normalized units, step 1)" in card


def test_the_move_aside_message_names_what_moved(tmp_path, shared_data, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "validation.jsonl").write_text('{"step": 3}\n')
    (run / "old-1").mkdir()  # an earlier move: never overwritten
    trainer = Trainer(_config(tmp_path, shared_data))
    err = capsys.readouterr().err
    assert "no training state" in err
    assert "validation.jsonl" in err
    assert "old-2" in err
    assert (run / "old-2" / "validation.jsonl").is_file()
    assert not (run / "validation.jsonl").exists()
    del trainer


# ---------------------------------------------------------------------------------------------
# 8. and 9. settings checked when the configuration is loaded


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("eval_fields=0", r"eval_fields = 0"),
        ("eval_members=0", r"eval_members = 0"),
        ("sampler.steps=0", r"sampler\.steps = 0"),
        ("model.physical_condition=true", r"physical_condition.*set data\.condition"),
        ("batch_size=0", r"batch_size = 0 .*positive integer"),
        ("micro_batch_size=0", r"micro_batch_size = 0"),
        ("data.crop_size=0", r"data\.crop_size = 0"),
        ("steps=-1", r"steps = -1"),
        ("eval_every=-1", r"eval_every = -1 .*>= 0 \(0 turns validation off\)"),
        ("checkpoint_every=-1", r"checkpoint_every = -1 .*>= 0"),
        ("plot_every=-2", r"plot_every = -2"),
        ("total_limit=0", r"total_limit = 0"),
        ("time_limit_minutes=-1", r"time_limit_minutes = -1"),
        ("data.factor=0", r"data\.factor = 0"),
    ],
)
def test_out_of_range_settings_are_refused_at_load(tmp_path, shared_data, override, match):
    config = _config(tmp_path, shared_data)
    with pytest.raises(errors.ConfigError, match=match):
        apply_overrides(config, [override])


def test_zero_means_off_where_documented(tmp_path, shared_data):
    config = _config(tmp_path, shared_data)
    new = apply_overrides(config, ["eval_every=0", "checkpoint_every=0", "plot_every=0"])
    assert (new.eval_every, new.checkpoint_every, new.plot_every) == (0, 0, 0)


def test_crop_suggestion_is_divisible_by_16_and_the_factor(tmp_path, shared_data):
    from flexdownscale.data.datasets import from_config

    config = _config(tmp_path, shared_data)
    with pytest.raises(errors.ConfigError, match=r"data\.crop_size=48\b"):
        apply_overrides(config, ["data.factor=3"])
    # the dataset layer, given a DataConfig directly, suggests the same crop
    import dataclasses

    data = dataclasses.replace(config.data, factor=3)
    with pytest.raises(errors.ShapeError, match=r"crop_size=48\b"):
        from_config(data, "train")
    # a forecast model needs no factor
    assert apply_overrides(config, ["model.task=forecast", "data.factor=3"]).data.crop_size == 32


def test_one_eval_member_reports_the_plain_crps(tmp_path, shared_data):
    trainer = Trainer(_config(tmp_path, shared_data, eval_members=1))
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["val/crps"])
    assert np.isnan(metrics["val/spread_skill"])


# ---------------------------------------------------------------------------------------------
# 11. messages


def test_export_only_without_state_names_export_only(tmp_path, shared_data):
    # from Python the arguments are named (the command line's --export-only and --resume:
    # tests/test_train_paths.py)
    with pytest.raises(errors.CheckpointError, match=r"^export_only=True given .*no complete"):
        Trainer(_config(tmp_path, shared_data), export_only=True)
    with pytest.raises(errors.CheckpointError, match=r"^resume=True given"):
        Trainer(_config(tmp_path, shared_data), resume=True)


def test_non_finite_loss_without_state_does_not_advise_resume(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv(FAULT_NAN_ENV, "0")
    trainer = Trainer(_config(tmp_path, shared_data, steps=2, checkpoint_every=2))
    with pytest.raises(errors.NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "optimiser step 0" in message
    assert "nothing to resume" in message
    assert "resume from that state" not in message


# ---------------------------------------------------------------------------------------------
# 12. export replaces only the run's own model folder


def test_export_to_a_user_path_never_replaces_what_is_there(tmp_path, shared_data):
    from flexdownscale.hub import load_model_folder

    trainer = Trainer(_config(tmp_path, shared_data))
    own = trainer.export()  # run_dir/model: the run's own export, replaced by the next one
    assert trainer.export() == own
    assert load_model_folder(own).variables == ("t2m",)
    models = tmp_path / "models"  # a folder holding other exported models
    (models / "other").mkdir(parents=True)
    (models / "other" / "README.md").write_text("another model")
    for overwrite in (False, True):
        with pytest.raises(errors.ModelFolderError, match="not a flexdownscale model folder"):
            trainer.export(models, overwrite=overwrite)
    assert (models / "other" / "README.md").read_text() == "another model"
    target = trainer.export(models / "t2m")
    with pytest.raises(errors.ModelFolderError, match="already exists"):
        trainer.export(target)  # an existing model folder: only with overwrite=True
    assert trainer.export(target, overwrite=True) == target
    assert load_model_folder(target).variables == ("t2m",)
    # a file of the user's in run_dir/model (a .gitattributes for an upload): the export is
    # refused in the run's terms, with the command that exports once it is moved away; it said
    # "choose a new path (e.g. '.../model/model')", which a training command cannot do
    # (reviewer-49). A launch says so before training, not after it
    (own / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    config_path = repr(str(tmp_path / "run" / "config.toml"))
    with pytest.raises(errors.ModelFolderError) as err:
        trainer.export()
    assert str(err.value) == (
        f"the run's model folder {str(own)!r}, which each export replaces, cannot be replaced: "
        "the model folder also holds .gitattributes, which replacing it would delete; move "
        "that content out of it, then export again (python -m flexdownscale.train --config "
        f"{config_path} --export-only; the training states are untouched)"
    )
    with pytest.raises(errors.ModelFolderError, match=r"before training \(this launch's export"):
        trainer.fit()
    assert trainer.progress.step == 0
    assert (own / ".gitattributes").is_file()


# ---------------------------------------------------------------------------------------------
# 13. the run folder's text files are UTF-8 whatever the locale


def test_run_folder_text_is_utf8_whatever_the_locale(tmp_path):
    import os
    import subprocess
    import sys

    text = 'paths = ["/data/M\u00fcller/t2m_\u00b0C.nc"]\n'
    target = tmp_path / "config.toml"
    code = f"""
import locale
assert locale.getpreferredencoding(False).lower() not in ("utf-8", "utf8"), "not a C locale"
from pathlib import Path
from flexdownscale.train import _atomic_write_text
_atomic_write_text(Path({str(target)!a}), {text!a})
"""
    env = dict(os.environ, LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if "not a C locale" in result.stderr:
        pytest.skip("this system has no ASCII C locale")
    assert result.returncode == 0, result.stderr[-2000:]
    assert target.read_bytes() == text.encode("utf-8")


# ---------------------------------------------------------------------------------------------
# resuming: what fixes the sample order is refused, other changes are said and recorded


def test_resume_refuses_what_changes_the_sample_order(tmp_path, shared_data, capsys):
    from flexdownscale.errors import CheckpointError
    from flexdownscale.train import STATE_MARKER

    config = _config(tmp_path, shared_data)
    first = Trainer(config)
    state = first.save_state()
    marker = json.loads((state / STATE_MARKER).read_text())
    assert marker["layout"] == {
        "seed": 0,
        "batch_size": 2,
        "micro_batch_size": 2,
        "processes": 1,
        "train_items": len(first.train_set),
    }
    refusals = {
        "seed 0 -> 1": _config(tmp_path, shared_data, seed=1),
        "batch_size 2 -> 4": _config(tmp_path, shared_data, batch_size=4),
        "micro_batch_size 2 -> 1": _config(tmp_path, shared_data, micro_batch_size=1),
    }
    saved = (tmp_path / "run" / "config.json").read_text()
    for change, changed in refusals.items():
        with pytest.raises(CheckpointError, match=change) as err:
            Trainer(changed, resume=True)
        assert "repeat or skip samples" in str(err.value)
        assert (tmp_path / "run" / "config.json").read_text() == saved  # a refusal writes nothing
    # a state saved by two processes cannot continue in one
    (state / STATE_MARKER).write_text(
        json.dumps({**marker, "layout": {**marker["layout"], "processes": 2}})
    )
    with pytest.raises(CheckpointError) as err:
        Trainer(config, resume=True)
    # accelerate launch --cpu --num_processes 2 starts one process: the hint names launches
    # that start two on any machine (reviewer-49)
    assert "processes 2 -> 1" in str(err.value)
    assert (
        "(2 processes: accelerate launch --multi_gpu --num_processes 2 (also on a CPU machine) "
        "or torchrun --nproc_per_node 2)"
    ) in str(err.value)
    # the data changed under an unchanged config (a file added to a glob): refused too
    (state / STATE_MARKER).write_text(
        json.dumps({**marker, "layout": {**marker["layout"], "train_items": 5}})
    )
    with pytest.raises(CheckpointError, match=r"train_items 5 -> \d+.*trained on \(5 training"):
        Trainer(config, resume=True)
    # states written before the layout was recorded: seed and batch size from the saved config
    (state / STATE_MARKER).write_text(json.dumps({"step": 0}))
    with pytest.raises(CheckpointError, match="seed 0 -> 1"):
        Trainer(refusals["seed 0 -> 1"], resume=True)
    Trainer(config, resume=True)

    # other settings may change: printed, and recorded in launches.jsonl
    capsys.readouterr()
    longer = _config(tmp_path, shared_data, steps=2, optim={"warmup_steps": 1, "lr": 1e-4})
    resumed = Trainer(longer, resume=True)
    out = capsys.readouterr().out
    assert "resuming with changed settings: optim.lr 0.0002 -> 0.0001; steps 1 -> 2" in out
    resumed.fit()
    launch = json.loads((tmp_path / "run" / "launches.jsonl").read_text().splitlines()[-1])
    assert launch["changed_settings"] == {"optim.lr": [0.0002, 0.0001], "steps": [1, 2]}
    assert launch["end_step"] == 2
    # ... and in the exported model: its card gave only the last launch's "lr 0.0001", however
    # many steps ran at another (reviewer-49); the card and config.json's extra give each
    # resume's changes and the step they apply from (the state resumed here was saved at 0)
    from flexdownscale.hub import load_model_folder

    folder = load_model_folder(tmp_path / "run" / "model")
    assert folder.extra["settings_changes"] == [
        {"from_step": 0, "changed": {"optim.lr": [0.0002, 0.0001], "steps": [1, 2]}}
    ]
    assert (
        "- optimiser: adamw, lr 0.0001, EMA 0.999\n"
        "- settings changed on resume (the lines above give the last launch's values):\n"
        "  - from step 0: optim.lr 0.0002 -> 0.0001; steps 1 -> 2\n"
    ) in folder.card


def test_resume_applies_changed_optimiser_settings_and_refuses_another_optimiser(
    tmp_path, shared_data
):
    Trainer(_config(tmp_path, shared_data)).fit()
    changed = _config(
        tmp_path,
        shared_data,
        steps=2,
        optim={"warmup_steps": 1, "ema_decay": 0.5, "betas": [0.5, 0.9], "weight_decay": 0.1},
    )
    resumed = Trainer(changed, resume=True)
    resumed.load_latest_state()
    assert resumed.ema.decay == 0.5  # the saved 0.999 no longer wins
    for group in resumed.optimizer.param_groups:
        assert tuple(group["betas"]) == (0.5, 0.9)
        # 1-D parameters (biases, normalization gains) are never decayed (reviewer-129)
        one_dimensional = all(p.ndim < 2 for p in group["params"])
        assert group["weight_decay"] == (0.0 if one_dimensional else 0.1)
    assert resumed.ema.updates == 1  # the rest of the state is the saved one
    lion = _config(tmp_path, shared_data, optim={"warmup_steps": 1, "optimizer": "lion"})
    with pytest.raises(errors.CheckpointError, match=r"optim.optimizer = 'adamw'.*'lion'"):
        Trainer(lion, resume=True)


def test_export_only_takes_a_state_of_any_layout_and_keeps_the_config(tmp_path, shared_data):
    """A state saved by several processes exports from one; the export rewrites no config."""
    from flexdownscale.train import STATE_MARKER

    config = _config(tmp_path, shared_data)
    state = Trainer(config).save_state()
    marker = json.loads((state / STATE_MARKER).read_text())
    marker["layout"].update(processes=2, micro_batch_size=1)
    (state / STATE_MARKER).write_text(json.dumps(marker))
    saved = (tmp_path / "run" / "config.json").read_text()
    exporter = Trainer(_config(tmp_path, shared_data, eval_every=0), export_only=True)
    exporter.load_latest_state()
    assert exporter.export().name == "model"
    assert (tmp_path / "run" / "config.json").read_text() == saved


def test_a_launch_stopped_while_saving_its_first_state_can_start_again(tmp_path, shared_data):
    """Only ``.tmp_step_*`` (a kill during the first save): --resume says so, a fresh start
    removes it instead of refusing as if states were there."""
    run = tmp_path / "run"
    (run / "checkpoints" / ".tmp_step_00000001").mkdir(parents=True)
    config = _config(tmp_path, shared_data)
    with pytest.raises(errors.CheckpointError, match=r"only \.tmp_step_00000001, left by a"):
        Trainer(config, resume=True)
    Trainer(config)
    assert not (run / "checkpoints" / ".tmp_step_00000001").exists()


def test_non_finite_gradients_stop_before_they_reach_the_weights(tmp_path, shared_data):
    """A finite loss whose gradients are NaN (sqrt at 0 in the backward pass) stops the run at
    that step: no optimiser step, no EMA update, no state with NaN weights; the launch line
    says why it stopped."""
    from safetensors.torch import load_file

    from flexdownscale.train import list_states

    trainer = Trainer(_config(tmp_path, shared_data, steps=3, checkpoint_every=1, eval_every=0))
    plain = trainer._loss

    def nan_gradients_at_step_1(batch):
        loss = plain(batch)
        if trainer.progress.step == 1:
            weights = sum(p.sum() for p in trainer.model.parameters())
            loss = loss + (weights * 0).abs().sqrt()  # value 0, gradient NaN
        return loss

    trainer._loss = nan_gradients_at_step_1
    with pytest.raises(errors.NonFiniteLossError, match=r"non-finite gradients \(norm nan.*step 1"):
        trainer.fit()
    states = list_states(tmp_path / "run")
    assert [s.name for s in states] == ["step_00000001"]
    weights = load_file(states[0] / "model.safetensors")
    assert all(bool(t.isfinite().all()) for t in weights.values())
    assert all(bool(t.isfinite().all()) for t in trainer.ema.shadow.values())
    launch = json.loads((tmp_path / "run" / "launches.jsonl").read_text().splitlines()[-1])
    assert (launch["stopped"], launch["end_step"]) == ("non_finite", 1)


def test_training_without_validation_needs_no_validation_split(tmp_path, shared_data):
    """eval_every = 0 and no data.validation: trains and exports (the split was required)."""
    values = _values(tmp_path, shared_data, eval_every=0)
    values["data"]["validation"] = []
    trainer = Trainer(from_dict(TrainConfig, values))
    assert trainer.val_set is None
    assert trainer.fit().name == "model"
    with pytest.raises(errors.ConfigError, match="no validation split"):
        trainer._evaluate_main()


def test_the_time_limit_counts_the_start_up(tmp_path, shared_data):
    """Time spent before fit (opening data, fitting the normalizer) counts against the limit."""
    import time

    trainer = Trainer(
        _config(tmp_path, shared_data, steps=5, eval_every=0, time_limit_minutes=0.05)
    )
    time.sleep(3.2)  # the start-up of a big dataset, beyond the 3 s limit (5 steps take ~1 s)
    trainer.fit()
    launch = json.loads((tmp_path / "run" / "launches.jsonl").read_text().splitlines()[-1])
    assert (launch["stopped"], launch["end_step"]) == ("time_limit", 1)


def test_whole_accumulation_groups_only_and_resume_across_epochs(tmp_path, shared_data):
    """5 training fields, batch 2 of micro-batches of 1: each epoch gives 2 optimiser steps of
    2 micro-batches (the 5th field would have made a short step counted as a full batch); a run
    stopped after 3 steps and resumed is the uninterrupted run, across the epoch boundary."""
    from safetensors.torch import load_file

    def run(path, steps, resume=False):
        config = _config(
            path,
            shared_data,
            steps=steps,
            batch_size=2,
            micro_batch_size=1,
            eval_every=0,
            checkpoint_every=0,
            optim={"warmup_steps": 1, "schedule": "constant"},
            data={"train": ["2019-03-01T00", "2019-03-01T04"]},
        )
        trainer = Trainer(config, resume=resume)
        trainer.fit()
        return trainer

    whole = run(tmp_path / "a", 5)
    assert whole.batches_per_epoch == 4
    records = [
        json.loads(r) for r in (tmp_path / "a" / "run" / "samples.jsonl").read_text().splitlines()
    ]
    per_step: dict[int, int] = {}
    for r in records:
        per_step[r["step"]] = per_step.get(r["step"], 0) + len(r["indices"])
    assert per_step == dict.fromkeys(range(5), 2)
    assert whole.progress.samples == sum(per_step.values()) == 10
    run(tmp_path / "b", 3)
    resumed = run(tmp_path / "b", 5, resume=True)
    again = [
        json.loads(r) for r in (tmp_path / "b" / "run" / "samples.jsonl").read_text().splitlines()
    ]
    assert [r["indices"] for r in again] == [r["indices"] for r in records]
    assert resumed.progress.samples == 10
    a = load_file(tmp_path / "a" / "run" / "model" / "model.safetensors")
    b = load_file(tmp_path / "b" / "run" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_drops_evaluations_made_after_the_last_state(tmp_path, shared_data):
    """A kill between an evaluation and the state of that step: the resumed run evaluates that
    step again, and validation.jsonl holds it once (as samples.jsonl holds each micro-batch once)."""
    import shutil

    from flexdownscale.train import list_states

    config = _config(
        tmp_path, shared_data, steps=2, eval_every=1, checkpoint_every=1, total_limit=2
    )
    Trainer(config).fit()
    run = tmp_path / "run"
    shutil.rmtree(list_states(run)[-1])  # as if killed after evaluating step 2, before its state
    Trainer(config, resume=True).fit()
    steps = [
        json.loads(line)["step"] for line in (run / "validation.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2]


def test_validation_leaves_the_training_random_stream_alone(tmp_path, shared_data):
    """Evaluating draws nothing from the global RNG, so the training noise does not depend on
    when (or on which rank) validation runs; eval_every may change on resume."""
    trainer = Trainer(_config(tmp_path, shared_data))
    before = torch.get_rng_state().clone()
    trainer.evaluate()
    assert torch.equal(torch.get_rng_state(), before)


def test_a_setup_whose_states_cannot_be_resumed_is_refused_before_training():
    """Sharded FSDP and DeepSpeed states are folders of pickles that resume refuses to read:
    found out at the resume, the run was lost; the setup is now refused before any step."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType
    from torch.distributed.fsdp import StateDictType

    from flexdownscale.train import _check_resumable_setup

    for kind in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        _check_resumable_setup(kind, None)
    full = SimpleNamespace(state_dict_type=StateDictType.FULL_STATE_DICT)
    _check_resumable_setup(DistributedType.FSDP, full)
    sharded = SimpleNamespace(state_dict_type=StateDictType.SHARDED_STATE_DICT)
    with pytest.raises(
        errors.ConfigError, match=r"fsdp_state_dict_type SHARDED_STATE_DICT.*FULL_STATE"
    ):
        _check_resumable_setup(DistributedType.FSDP, sharded)
    with pytest.raises(errors.ConfigError, match="DeepSpeed"):
        _check_resumable_setup(DistributedType.DEEPSPEED, None)
