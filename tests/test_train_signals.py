"""Training stopped by Ctrl-C (SIGINT) or a scheduler's SIGTERM: the optimiser step under way is
finished, the state saved, one line says where and how to resume, the exit status is 130 / 143
and the handlers the launch replaced are back; and the command's smaller points (reviewer-162:
its help, a log file's progress lines, a warning printed twice, a relative data path)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import xarray as xr
from train_runs import ERA5, tiny_run_config, tiny_run_values

from flexdownscale import train
from flexdownscale.config import TrainConfig, apply_overrides, from_toml
from flexdownscale.data.datasets import SuperResolutionDataset, expand_paths
from flexdownscale.data.normalize import Normalizer, VariableStats
from flexdownscale.errors import DataError, FlexDownscaleWarning
from flexdownscale.train import STATE_MARKER, Trainer, TrainingInterrupted, dump_toml, list_states

#: The folder that holds the package under test: the commands run it, not another install.
PACKAGE_ROOT = Path(train.__file__).resolve().parents[1]


def _default_sigint() -> None:
    """In a child before exec: SIGINT to its default, so that Python makes it a
    KeyboardInterrupt (a test run started in the background, as `cmd &` in a non-interactive
    shell starts it, inherits SIGINT ignored, and Python then leaves it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _python_sigint():
    """Python's own SIGINT handler during each test, whatever the test run inherited (SIGINT
    is ignored in a background job: the trainer rightly installs nothing over an ignored
    signal); the handler found is put back after."""
    found = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, found)


def _config(tmp_path: Path, shared_data: Path, **top: Any) -> TrainConfig:
    values = {"eval_every": 0, "checkpoint_every": 0, "steps": 4, **top}
    return tiny_run_config(tmp_path, shared_data, **values)


def _signal_at_step(trainer: Trainer, step: int, *numbers: int) -> None:
    """Send this process ``numbers`` once, inside the optimiser step that ends at ``step``:
    after its first micro-batch is logged, before the step's collective reads the stop flag.
    (The EMA update, hooked before, now follows that collective: fp16's skipped steps.)"""
    log = trainer._log_indices
    sent: list[int] = []

    def log_then_signal(batch: Any) -> None:
        log(batch)
        if trainer.progress.step == step - 1 and not sent:
            sent.append(step)
            for number in numbers:
                signal.raise_signal(number)

    trainer._log_indices = log_then_signal  # type: ignore[method-assign]


def _handlers() -> tuple[Any, Any]:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_step_saves_the_state_and_resume_goes_on(
    tmp_path, shared_data, capsys, number
):
    before = _handlers()
    trainer = Trainer(_config(tmp_path, shared_data))
    _signal_at_step(trainer, 2, number)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    err = info.value
    assert isinstance(err, KeyboardInterrupt)  # a notebook's interruption
    assert (err.signal_number, err.step) == (number, 2)
    run = tmp_path / "run"
    assert err.state == run / "checkpoints" / "step_00000002"
    assert (err.state / STATE_MARKER).is_file()
    assert str(err) == (
        f"{signal.Signals(number).name} received: stopped at step 2 of 4; the training state "
        f"is saved in {str(err.state)!r}; continue with resume=True"
    )
    assert _handlers() == before  # the handlers fit() replaced are back
    assert not (run / "model").exists()  # no export: the scheduler's grace period is short
    launch = json.loads((run / "launches.jsonl").read_text().splitlines()[-1])
    assert (launch["stopped"], launch["end_step"]) == ("interrupted", 2)
    # captured stderr is no terminal: a plain line per step (4 steps: every step), no frames
    out = capsys.readouterr().err
    assert "train: step 2/4, loss " in out
    assert "\r" not in out

    resumed = Trainer(_config(tmp_path, shared_data), resume=True)
    resumed.fit()
    assert resumed.progress.step == 4
    launch = json.loads((run / "launches.jsonl").read_text().splitlines()[-1])
    assert (launch["stopped"], launch["steps"], launch["end_step"]) == ("done", 2, 4)
    assert "resumed from " in capsys.readouterr().out
    assert _handlers() == before


def test_ctrl_c_twice_before_the_step_ends_stops_at_once(tmp_path, shared_data):
    before = _handlers()
    trainer = Trainer(_config(tmp_path, shared_data))
    _signal_at_step(trainer, 2, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        trainer.fit()
    assert not isinstance(info.value, TrainingInterrupted)
    assert list_states(tmp_path / "run") == []  # nothing saved: checkpoint_every = 0
    assert _handlers() == before


def test_a_launchers_forwarded_ctrl_c_does_not_stop_at_once(tmp_path, shared_data, monkeypatch):
    """Under accelerate launch / torchrun the agent sends its workers the Ctrl-C they got
    themselves once more: a second SIGINT there must not cost the step's state."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    trainer = Trainer(_config(tmp_path, shared_data))
    _signal_at_step(trainer, 2, signal.SIGINT, signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert (info.value.state / STATE_MARKER).is_file()


def test_signals_during_the_final_save_wait_for_it(tmp_path, shared_data):
    """A signal (and Ctrl-C again) while the last state is written: the state is complete, then
    the launch stops there, without the final validation and export."""
    trainer = Trainer(_config(tmp_path, shared_data, steps=2, eval_every=3))
    save_state = trainer.save_state

    def save_while_signalled() -> Path:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)  # only noted while a state is written
        return save_state()

    trainer.save_state = save_while_signalled  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert (info.value.signal_number, info.value.step) == (signal.SIGTERM, 2)
    assert (info.value.state / STATE_MARKER).is_file()
    run = tmp_path / "run"
    assert not (run / "model").exists()
    assert not (run / "validation.jsonl").exists()  # the final one (2 % 3): skipped


def test_handlers_are_not_installed_over_an_ignored_signal(tmp_path, shared_data):
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as nohup leaves SIGHUP, say
    try:
        trainer = Trainer(_config(tmp_path, shared_data, steps=2))
        seen = []
        update = trainer.ema.update

        def look(model: Any) -> None:
            update(model)
            seen.append(signal.getsignal(signal.SIGTERM))

        trainer.ema.update = look  # type: ignore[method-assign]
        trainer.fit()
        assert seen == [signal.SIG_IGN, signal.SIG_IGN]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_resume_command_repeats_the_arguments(monkeypatch):
    for key in [k for k in os.environ if k.startswith("ACCELERATE_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    argv = ["--config", "my run.toml", "steps=200"]
    assert train._resume_command(argv, None) == (
        "python -m flexdownscale.train --config 'my run.toml' steps=200 --resume"
    )
    given = argparse.Namespace(resume=True)  # --resume (or --res) given already
    assert train._resume_command([*argv, "--res"], given).endswith("steps=200 --res")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert train._resume_command(argv, None).startswith(
        "accelerate launch [the same launch options] -m flexdownscale.train --config"
    )


def test_help_explains_overrides_and_version_and_print_config(tmp_path, shared_data, capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for words in (
        "section.key=value",
        "Values are read as TOML",
        "'optim={lr=1e-4,warmup_steps=10}'",
        "python -m flexdownscale.train --config run.toml --print-config steps=500",
        "--version",
    ):
        assert words in text
    with pytest.raises(SystemExit) as info:  # no --config needed
        train.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("flexdownscale ")

    path = tmp_path / "run.toml"
    path.write_text(dump_toml(tiny_run_values(tmp_path, shared_data)))
    overrides = ["steps=7", "optim={lr=1e-4}"]
    assert train.main(["--config", str(path), "--print-config", *overrides]) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    assert from_toml(TrainConfig, printed) == apply_overrides(
        from_toml(TrainConfig, path), overrides
    )
    assert not (tmp_path / "run").exists()  # nothing trained, no run folder


def test_repeated_fields_are_warned_once_per_process(tmp_path, shared_data):
    with xr.open_dataset(shared_data / ERA5) as ds:
        part = ds.isel(time=slice(0, 4)).load()
    paths = [str(tmp_path / "a.nc"), str(tmp_path / "b.nc")]
    for path in paths:
        part.to_netcdf(path)
    norm = Normalizer({"t2m": VariableStats(mean=280.0, std=1.0)})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(2):  # a trainer's train and validation splits open the same files
            SuperResolutionDataset(
                paths, variables=["t2m"], factor=4, crop_size=16, normalizer=norm
            )
    repeats = [w for w in seen if "repeats 4 times of" in str(w.message)]
    assert len(repeats) == 1
    assert repeats[0].category is FlexDownscaleWarning


def test_a_relative_data_path_not_found_names_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        expand_paths(["data/t2m_*.nc"])
    assert str(info.value) == (
        "no file matches 'data/t2m_*.nc'; expected existing netCDF, zarr or HDF5 paths (looked "
        f"for in {str(tmp_path / 'data/t2m_*.nc')!r}: a relative path is read from the current "
        f"working directory, {str(tmp_path)!r}; run from the folder it is relative to or give "
        "it as an absolute path)"
    )
    with pytest.raises(DataError) as info:  # an absolute path says nothing of the directory
        expand_paths([str(tmp_path / "nope.nc")])
    assert "working directory" not in str(info.value)


# -- the command line, in processes of their own --------------------------------------------


def _command_config(tmp_path: Path, shared_data: Path) -> Path:
    values = tiny_run_values(tmp_path, shared_data, steps=200, eval_every=0, checkpoint_every=0)
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values))
    return path


def _signalled_run(
    args: list[str], cwd: Path, number: int, *, group: bool = False
) -> tuple[int, str]:
    """Run ``python -m flexdownscale.train args``; send ``number`` once it prints its progress
    line of step 10 (to its process group with ``group``); its exit status and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flexdownscale.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(PACKAGE_ROOT)),
        start_new_session=group,
        preexec_fn=_default_sigint,
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:  # the marker line: no sleeping, no race
        lines.append(line)
        if line.startswith("train: step 10/200, loss "):
            if group:
                os.killpg(process.pid, number)  # SLURM signals every process of the step
            else:
                process.send_signal(number)
            break
    _, rest = process.communicate(timeout=300)
    return process.returncode, "".join(lines) + rest


@pytest.mark.slow
def test_command_ctrl_c_saves_prints_one_line_and_the_printed_command_resumes(
    tmp_path, shared_data
):
    _command_config(tmp_path, shared_data)
    code, err = _signalled_run(["--config", "run.toml", "steps=200"], tmp_path, signal.SIGINT)
    assert code == 130
    assert "Traceback" not in err
    assert "\r" not in err
    last = err.strip().splitlines()[-1]
    state = list_states(tmp_path / "run")[-1]
    step = int(state.name.removeprefix("step_"))
    assert step >= 10
    assert last == (
        f"flexdownscale.train: SIGINT received: stopped at step {step} of 200; the training "
        f"state is saved in {str(state)!r}; resume with: python -m flexdownscale.train "
        "--config run.toml steps=200 --resume"
    )
    command = shlex.split(last.split("resume with: ", 1)[1])
    assert command[:3] == ["python", "-m", "flexdownscale.train"]
    resumed = subprocess.run(
        [sys.executable, *command[1:], f"steps={step + 2}"],  # the last override wins
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(PACKAGE_ROOT)),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {state} at step {step}" in resumed.stdout
    launch = json.loads((tmp_path / "run" / "launches.jsonl").read_text().splitlines()[-1])
    assert (launch["steps"], launch["end_step"]) == (2, step + 2)


@pytest.mark.slow
def test_command_sigterm_to_every_process_with_loader_workers(tmp_path, shared_data):
    _command_config(tmp_path, shared_data)
    args = ["--config", "run.toml", "num_workers=1"]
    code, err = _signalled_run(args, tmp_path, signal.SIGTERM, group=True)
    assert code == 143, err
    assert "Traceback" not in err
    state = list_states(tmp_path / "run")[-1]
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(
            f"flexdownscale.train: SIGTERM received: stopped at step {state.name[5:].lstrip('0')} "
        )
    )


@pytest.mark.slow
def test_a_process_with_loader_workers_still_exits(tmp_path, shared_data):
    """The workers ignore SIGTERM while the trainer lives: Python's exit still ends them (a
    trainer alive at exit, in a global of a script)."""
    path = _command_config(tmp_path, shared_data)
    script = (
        "from flexdownscale.config import TrainConfig, apply_overrides, from_toml\n"
        "from flexdownscale.train import Trainer\n"
        f"config = from_toml(TrainConfig, {str(path)!r})\n"
        "trainer = Trainer(apply_overrides(config, ['steps=2', 'num_workers=2']))\n"
        "trainer.fit()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(PACKAGE_ROOT)),
        timeout=120,  # it hung at exit when the workers ignored SIGTERM for good
    )
    assert done.returncode == 0, done.stderr
