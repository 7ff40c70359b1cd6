"""Training fixes from the audit: states that run no code from a run folder, the time limit's
final validation, settings checked when the configuration loads, resume checks without the
run's config.json, nothing written by a refused resume, strict JSON metrics, and refusals that
name the culprit.

The runs are in-process with the tiny preset, 32 x 32 crops and one or two optimiser steps on the
real ERA5 file (a 33 x 49 grid)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from train_runs import refused_on_one_line, tiny_run_values

from flexdownscale import errors
from flexdownscale.config import TrainConfig, apply_overrides, from_dict
from flexdownscale.train import (
    EMA_FILE,
    PROGRESS_FILE,
    STATE_MARKER,
    Trainer,
    dump_toml,
    list_states,
    main,
)


def _values(tmp_path: Path, shared_data: Path, **top: Any) -> dict[str, Any]:
    # two states kept: the resume and refusal tests look at the previous one
    return tiny_run_values(tmp_path, shared_data, **{"total_limit": 2, **top})


def _config(tmp_path: Path, shared_data: Path, **top: Any) -> TrainConfig:
    return from_dict(TrainConfig, _values(tmp_path, shared_data, **top))


class _Payload:
    """Unpickling this runs code: it writes ``target`` (what an attacker's os.system would do)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('pwned')",))


def _plant(path: Path, pwned: Path) -> None:
    torch.save({"step": _Payload(pwned), "shadow": {}}, path)


def _to_earlier_layout(state: Path) -> None:
    """Rewrite a state as earlier versions wrote it: the EMA and the counters as accelerate's
    pickles of custom objects (``custom_checkpoint_0.pkl`` and ``_1.pkl``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    shadow = load_file(state / EMA_FILE)
    with safe_open(str(state / EMA_FILE), framework="pt") as fh:
        updates = int(fh.metadata()["updates"])
    torch.save(
        {"decay": 0.999, "updates": updates, "shadow": shadow},
        state / "custom_checkpoint_0.pkl",
    )
    torch.save(json.loads((state / PROGRESS_FILE).read_text()), state / "custom_checkpoint_1.pkl")
    (state / EMA_FILE).unlink()
    (state / PROGRESS_FILE).unlink()


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------------------------
# 1. a run folder from someone else runs no code


def test_states_hold_the_ema_and_counters_as_safetensors_and_json(tmp_path, shared_data):
    trainer = Trainer(_config(tmp_path, shared_data, eval_every=0))
    trainer.fit()
    # no validation: the card says so (it had an empty table headed "step n/a")
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert (
        "## Validation\n\nNot measured: the run left no validation record (eval_every = 0" in card
    )
    assert "n/a" not in card
    (state,) = list_states(tmp_path / "run")[-1:]
    assert not list(state.glob("*custom_checkpoint*"))
    assert json.loads((state / PROGRESS_FILE).read_text()) == {
        "step": 1,
        "micro_batches": 1,
        "samples": 2,
    }
    resumed = Trainer(_config(tmp_path, shared_data, eval_every=0), resume=True)
    resumed.load_latest_state()
    assert (resumed.progress.step, resumed.progress.samples) == (1, 2)
    assert resumed.ema.updates == trainer.ema.updates == 1
    for name, tensor in trainer.ema.shadow.items():
        assert torch.equal(resumed.ema.shadow[name], tensor)


@pytest.mark.parametrize(
    ("name", "earlier_layout", "match"),
    [
        ("custom_checkpoint_1.pkl", True, r"custom_checkpoint_1\.pkl.*cannot be loaded safely"),
        ("custom_checkpoint_0.pkl", False, r"holds custom_checkpoint_0\.pkl besides"),
        ("optimizer.bin", False, r"cannot be loaded safely.*GLOBAL.*exec"),
        ("random_states_0.pkl", False, r"random_states_0\.pkl.*cannot be loaded safely"),
    ],
)
def test_a_pickle_that_runs_code_is_refused_not_run(
    tmp_path, shared_data, name, earlier_layout, match
):
    """A state file replaced by a pickle whose ``__reduce__`` runs code: resuming refuses the
    state with a CheckpointError and the code never runs (the EMA and counters were read by
    accelerate with ``weights_only=False``: ``--export-only`` ran it)."""
    config = _config(tmp_path, shared_data, eval_every=0)
    state = Trainer(config).save_state()
    if earlier_layout:
        _to_earlier_layout(state)
    pwned = tmp_path / "pwned"
    _plant(state / name, pwned)
    with pytest.raises(errors.CheckpointError, match=match):
        Trainer(config, resume=True).load_latest_state()
    assert not pwned.exists()


@pytest.fixture
def torch_2_4_serialization(monkeypatch):
    """torch.serialization as torch 2.4 has it: no scoped ``safe_globals`` context (2.5+), so the
    loader falls back to ``add_safe_globals`` for the process; the list is restored after."""
    saved = list(torch.serialization.get_safe_globals())
    monkeypatch.delattr(torch.serialization, "safe_globals")
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


def test_random_states_load_and_planted_code_is_refused_without_scoped_safe_globals(
    tmp_path, torch_2_4_serialization
):
    """The torch 2.4 route of the safe loader (``pyproject`` allows torch >= 2.4) was never run:
    the numpy RNG state still loads, and a pickle that runs code is still refused."""
    import numpy as np

    from flexdownscale.train import _load_pickle_safely

    assert not hasattr(torch.serialization, "safe_globals")
    rng = np.random.RandomState(7).get_state()
    states = {"numpy_random_seed": rng, "torch_manual_seed": torch.get_rng_state()}
    torch.save(states, tmp_path / "random_states_0.pkl")
    loaded = _load_pickle_safely(
        tmp_path / "random_states_0.pkl", "the random states", numpy_rng=True
    )
    assert loaded["numpy_random_seed"][0] == rng[0]
    np.testing.assert_array_equal(loaded["numpy_random_seed"][1], rng[1])
    assert torch.equal(loaded["torch_manual_seed"], states["torch_manual_seed"])
    pwned = tmp_path / "pwned"
    _plant(tmp_path / "planted.pkl", pwned)
    with pytest.raises(errors.CheckpointError, match="cannot be loaded safely"):
        _load_pickle_safely(tmp_path / "planted.pkl", "the random states", numpy_rng=True)
    assert not pwned.exists()


def test_export_only_of_a_planted_run_folder_exits_2_without_running_it(
    tmp_path, shared_data, capsys
):
    """The audit's reproducer: ``--export-only`` on a run folder whose
    ``custom_checkpoint_1.pkl`` calls ``exec`` when unpickled."""
    values = _values(tmp_path, shared_data, eval_every=0)
    state = Trainer(from_dict(TrainConfig, values)).save_state()
    _to_earlier_layout(state)
    pwned = tmp_path / "pwned"
    _plant(state / "custom_checkpoint_1.pkl", pwned)
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values))
    assert main(["--config", str(path), "--export-only"]) == 2
    err = capsys.readouterr().err
    assert "cannot be loaded safely" in err
    assert len(err.strip().splitlines()) == 1
    assert not pwned.exists()
    assert not (tmp_path / "run" / "model").exists()


def test_states_of_earlier_versions_resume_to_the_same_model(tmp_path, shared_data):
    """A state with the EMA and counters pickled (earlier versions) resumes, read with
    ``weights_only=True``, to the same weights and data order as an uninterrupted run; the
    state folder is left as it was."""
    from safetensors.torch import load_file

    def config(path: Path, steps: int) -> TrainConfig:
        return _config(path, shared_data, steps=steps, eval_every=0, checkpoint_every=1)

    Trainer(config(tmp_path / "a", 2)).fit()
    Trainer(config(tmp_path / "b", 1)).fit()
    (state,) = list_states(tmp_path / "b" / "run")
    _to_earlier_layout(state)
    before = sorted(p.name for p in state.iterdir())
    resumed = Trainer(config(tmp_path / "b", 2), resume=True)
    resumed.fit()
    assert sorted(p.name for p in state.iterdir()) == before
    a = load_file(tmp_path / "a" / "run" / "model" / "model.safetensors")
    b = load_file(tmp_path / "b" / "run" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    samples = [(p / "run" / "samples.jsonl").read_text() for p in (tmp_path / "a", tmp_path / "b")]
    assert samples[0] == samples[1]


def test_a_missing_random_state_is_refused_not_passed_over(tmp_path, shared_data):
    """accelerate skips random states it cannot load without a word (the resumed run would draw
    other noise); the trainer refuses the state."""
    config = _config(tmp_path, shared_data, eval_every=0)
    state = Trainer(config).save_state()
    (state / "random_states_0.pkl").unlink()
    with pytest.raises(errors.CheckpointError, match=r"no random state for process 0"):
        Trainer(config, resume=True).load_latest_state()


def test_a_state_with_folders_is_refused(tmp_path, shared_data):
    """Sharded FSDP and DeepSpeed checkpoints (folders in the state) unpickle without
    restriction: refused."""
    config = _config(tmp_path, shared_data, eval_every=0)
    state = Trainer(config).save_state()
    (state / "pytorch_model_fsdp_0").mkdir()
    with pytest.raises(errors.CheckpointError, match=r"holds folders \(pytorch_model_fsdp_0\)"):
        Trainer(config, resume=True).load_latest_state()


# ---------------------------------------------------------------------------------------------
# 2. the time limit leaves room for what follows it


def test_time_limit_skips_the_final_validation_and_reports_after_the_export(
    tmp_path, shared_data, capsys
):
    config = _config(
        tmp_path,
        shared_data,
        steps=8,
        eval_every=4,
        checkpoint_every=0,
        time_limit_minutes=1e-4,
    )
    Trainer(config).fit()
    run = tmp_path / "run"
    assert [p.name for p in list_states(run)] == ["step_00000001"]
    assert not (run / "validation.jsonl").exists()  # no validation after the limit
    out = capsys.readouterr().out
    assert "final validation was skipped" in out
    assert out.index("exported the EMA model") < out.index("time limit of 0.0001 min reached")


# ---------------------------------------------------------------------------------------------
# 3. sampler options checked at load; the state saved before validating


def test_a_failing_validation_loses_no_state_and_is_made_again_on_resume(tmp_path, shared_data):
    """With eval_every == checkpoint_every, the state of that step is written before validating:
    a validation that fails (or is killed) loses no training, and the resumed run makes it."""
    config = _config(tmp_path, shared_data)
    trainer = Trainer(config)

    def failing() -> dict[str, float]:
        raise RuntimeError("validation failed")

    trainer._evaluate_main = failing
    with pytest.raises(RuntimeError, match="validation failed"):
        trainer.fit()
    run = tmp_path / "run"
    assert [p.name for p in list_states(run)] == ["step_00000001"]
    assert not (run / "validation.jsonl").exists()
    Trainer(config, resume=True).fit()
    records = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1]


def test_a_run_saved_with_a_now_refused_setting_resumes_once_it_is_fixed(
    tmp_path, shared_data, capsys
):
    """A run folder whose saved config.json holds a value refused since (a negative grad_clip ran
    without clipping; a Lion run took any betas): the saved configuration is read without range
    checks, so the run resumes with the setting fixed, and says what changed."""
    config = _config(tmp_path, shared_data, eval_every=0)
    Trainer(config).save_state()
    saved = tmp_path / "run" / "config.json"
    values = json.loads(saved.read_text())
    values["optim"]["grad_clip"] = -1.0
    saved.write_text(json.dumps(values))
    fixed = _config(tmp_path, shared_data, eval_every=0, optim={"grad_clip": 0.0})
    resumed = Trainer(fixed, resume=True)
    assert resumed.changed_settings == {"optim.grad_clip": (-1.0, 0.0)}
    assert "optim.grad_clip -1.0 -> 0.0" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# 4. resume without the run's config.json checks the sample order against the state's marker


def test_resume_without_config_json_checks_the_marker(tmp_path, shared_data, capsys):
    config = _config(tmp_path, shared_data, eval_every=0)
    state = Trainer(config).save_state()
    (tmp_path / "run" / "config.json").unlink()  # checkpoints copied into a new run_dir
    (tmp_path / "run" / "config.toml").unlink()
    with pytest.raises(errors.CheckpointError, match=r"seed 0 -> 1.*repeat or skip samples"):
        Trainer(_config(tmp_path, shared_data, eval_every=0, seed=1), resume=True)
    with pytest.raises(errors.CheckpointError, match=r"batch_size 2 -> 4"):
        Trainer(_config(tmp_path, shared_data, eval_every=0, batch_size=4), resume=True)
    assert not (tmp_path / "run" / "config.json").exists()  # refusals write nothing
    capsys.readouterr()
    Trainer(config, resume=True).load_latest_state()
    assert "config.json' is missing" in capsys.readouterr().out
    assert (tmp_path / "run" / "config.json").is_file()  # written once the state loaded
    # a marker without the layout (states of early versions): nothing to check against
    (tmp_path / "run" / "config.json").unlink()
    (state / STATE_MARKER).write_text(json.dumps({"step": 0}))
    with pytest.raises(errors.CheckpointError, match=r"no config\.json.*records no sample"):
        Trainer(config, resume=True)


# ---------------------------------------------------------------------------------------------
# 5. a resume refused on a damaged state writes nothing


def test_a_resume_refused_on_a_damaged_state_keeps_the_config(tmp_path, shared_data):
    config = _config(tmp_path, shared_data, eval_every=0)
    Trainer(config).fit()
    run = tmp_path / "run"
    saved = {name: (run / name).read_text() for name in ("config.json", "config.toml")}
    (list_states(run)[-1] / "model.safetensors").write_bytes(b"garbage")
    longer = _config(tmp_path, shared_data, eval_every=0, steps=3)
    with pytest.raises(errors.CheckpointError, match="cannot be loaded"):
        Trainer(longer, resume=True).fit()
    assert {name: (run / name).read_text() for name in saved} == saved


# ---------------------------------------------------------------------------------------------
# 7. a metric that does not apply is null in JSON, n/a in the card


def test_one_member_writes_strict_json_and_na_in_the_card(tmp_path, shared_data, capsys):
    folder = Trainer(_config(tmp_path, shared_data, eval_members=1)).fit()
    run = tmp_path / "run"
    (record,) = [_strict_json(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert record["val/spread_skill"] is None
    assert math.isfinite(record["val/crps"])
    extra = _strict_json((folder / "config.json").read_text())["extra"]
    assert extra["validation"]["val/spread_skill"] is None
    assert "| val/spread_skill | n/a |" in (folder / "README.md").read_text()
    assert "spread_skill=n/a" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# 8. resume with fewer steps than the state has


def test_resume_with_fewer_steps_than_done_is_refused(tmp_path, shared_data):
    config = _config(tmp_path, shared_data, eval_every=0, steps=2)
    Trainer(config).fit()
    saved = (tmp_path / "run" / "config.json").read_text()
    shorter = _config(tmp_path, shared_data, eval_every=0, steps=1)
    with pytest.raises(
        errors.CheckpointError, match=r"steps = 1: its latest state step_00000002 is already at"
    ):
        Trainer(shorter, resume=True)
    assert (tmp_path / "run" / "config.json").read_text() == saved
    # the same steps: nothing to train, the export is made again (a kill during the export)
    assert Trainer(config, resume=True).fit().name == "model"
    # --export-only exports whatever steps says
    Trainer(shorter, export_only=True).load_latest_state()


# ---------------------------------------------------------------------------------------------
# 9. refusals that name the culprit


def test_a_changed_model_section_names_the_keys(tmp_path, shared_data):
    config = _config(tmp_path, shared_data, eval_every=0)
    Trainer(config).save_state()
    changed = _config(tmp_path, shared_data, eval_every=0, model={"preset": "small"})
    with pytest.raises(
        errors.CheckpointError,
        match=r"\[model\] section differs .*model\.preset 'tiny' -> 'small'.*\(model\.preset=\"tiny\"\)",
    ):
        Trainer(changed, resume=True)
    unset = _config(tmp_path, shared_data, eval_every=0, model={"patch_size": 4})
    with pytest.raises(
        errors.CheckpointError, match=r"model\.patch_size none -> 4.*patch_size=none"
    ):
        Trainer(unset, resume=True)


def test_a_changed_transforms_table_is_one_setting_with_a_restore_that_parses(
    tmp_path, shared_data
):
    """data.transforms switched between "auto" and a table was reported as flattened keys with
    a restore that did not restore (``data.transforms=none data.transforms.t2m="none"``)."""
    from flexdownscale.config import _parse_override

    table = _config(tmp_path, shared_data, eval_every=0, data={"transforms": {"t2m": "none"}})
    Trainer(table).save_state()
    auto = _config(tmp_path, shared_data, eval_every=0)
    with pytest.raises(errors.CheckpointError) as caught:
        Trainer(auto, resume=True)
    text = str(caught.value)
    assert "data.transforms {'t2m': 'none'} -> 'auto'" in text
    assert "data.transforms.t2m" not in text
    restore = re.search(r"Resume with them \((.*)\) or use a new run_dir", text)
    assert restore is not None, text
    assert restore.group(1) == 'data.transforms={t2m = "none"}'
    assert _parse_override(restore.group(1).split("=", 1)[1]) == {"t2m": "none"}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"factor": 4, "crop_size": 48}, r"data\.crop_size = 48 does not fit in the 33 x 49 grid"),
        ({"factor": 4, "crop_size": 48}, r"set data\.crop_size=32 \(the largest crop that fits"),
        ({"factor": 3, "crop_size": 48}, r"no crop fits: a crop must be a multiple of 16 and of"),
    ],
)
def test_a_crop_larger_than_the_grid_names_the_largest_that_fits(
    tmp_path, shared_data, data, match
):
    with pytest.raises(errors.ConfigError, match=match):
        Trainer(_config(tmp_path, shared_data, data=data))
    assert not (tmp_path / "run").exists()


def test_a_run_dir_that_is_a_file_is_refused_before_the_data_load(tmp_path, shared_data):
    (tmp_path / "afile").write_text("not a folder")
    missing = {"paths": [str(tmp_path / "no-such-file.nc")]}  # the data would fail later
    for run_dir in (tmp_path / "afile", tmp_path / "afile" / "run"):
        config = _config(tmp_path, shared_data, run_dir=str(run_dir), data=missing)
        with pytest.raises(errors.ConfigError, match=r"is an existing file; choose a run_dir"):
            Trainer(config)


def test_out_channels_that_disagree_with_the_variables_are_refused(tmp_path, shared_data):
    with pytest.raises(errors.ConfigError, match=r"model\.out_channels = 5 .*one output channel"):
        Trainer(_config(tmp_path, shared_data, model={"preset": "tiny", "out_channels": 5}))
    assert not (tmp_path / "run").exists()
    assert Trainer(_config(tmp_path, shared_data, model={"out_channels": 1}))  # the data's count
    idff = {"objective": "idff"}
    with pytest.raises(errors.ConfigError, match=r"model\.out_channels = 3 .*2 output channels"):
        Trainer(_config(tmp_path / "i", shared_data, diffusion=idff, model={"out_channels": 3}))


# ---------------------------------------------------------------------------------------------
# the documented command line refuses the audit's settings with exit 2


@pytest.mark.parametrize(
    "override",
    ["sampler.eta=3.0", "sampler.delta=-5", "optim.betas=[1.5, 0.999]", "optim.grad_clip=-1"],
)
def test_bad_settings_exit_2_on_one_line(tmp_path, shared_data, capsys, override):
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(_values(tmp_path, shared_data)))
    err = refused_on_one_line(path, [override], capsys, tmp_path / "run")
    assert err.startswith(f"flexdownscale.train: error: {override.split('=')[0]}")


def test_lion_betas_are_checked_too(tmp_path, shared_data):
    config = _config(tmp_path, shared_data, optim={"optimizer": "lion"})
    with pytest.raises(errors.ConfigError, match=r"optim\.betas\[0\] = 1\.0 is out of range"):
        apply_overrides(config, ["optim.betas=[1.0, 0.99]"])


def test_the_shipped_configs_still_load():
    """The benchmark run files keep loading under the new checks (they train as before)."""
    from flexdownscale.config import from_toml

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "configs"
    paths = sorted(root.glob("*.toml"))
    assert paths
    for path in paths:
        from_toml(TrainConfig, path)
