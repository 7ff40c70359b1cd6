"""A second launch on a run folder that a live launch trains in is refused (reviewer-117: a
second ``--resume`` on a running run's folder ran to the end next to it, both wrote
``step_00000014`` and ``model/``, and ``launches.jsonl`` got two lines).

The main process of a launch holds an ``fcntl.flock`` on ``run_dir/train.lock`` for the launch's
life; the system drops it when the process ends, so a SIGKILLed run never blocks ``--resume``.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from train_runs import tiny_run_config

import flexdownscale
from flexdownscale import errors
from flexdownscale.hub import load_model_folder
from flexdownscale.train import Trainer, dump_toml, list_states

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: no lock is taken")

#: the folder holding the package these tests import, for the launches they start
PACKAGE_ROOT = Path(flexdownscale.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env.pop("FLEXDOWNSCALE_FAULT_NAN_STEP", None)
    return env


def _hold_lock(lock: Path) -> subprocess.Popen[str]:
    """Another process that holds ``lock`` as a launch does (flock, its details in the file)
    until it is killed; returns once it holds it."""
    code = (
        "import fcntl, json, os, time\n"
        f"handle = open({str(lock)!r}, 'a+')\n"
        "fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "handle.seek(0); handle.truncate()\n"
        "handle.write(json.dumps({'pid': os.getpid(), 'host': 'node7', 'started': "
        "'2020-10-31T10:00:00+00:00', 'command': 'python -m flexdownscale.train "
        "--config run.toml'}))\n"
        "handle.flush(); print('locked', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _lock_is_free(lock: Path) -> bool:
    """Whether another process can take ``lock`` now."""
    code = (
        "import fcntl, sys\n"
        f"handle = open({str(lock)!r}, 'a+')\n"
        "try:\n    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except OSError:\n    sys.exit(1)\n"
    )
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_folder_another_process_has_locked_is_refused_and_freed_when_it_is_killed(
    tmp_path, shared_data
):
    """While another process holds the lock, a resume and a fresh start are refused, naming
    its pid, host, start and command, and the folder is left as it was; once that process is
    killed (SIGKILL: it releases nothing itself) the resume trains and exports."""
    config = tiny_run_config(tmp_path, shared_data)
    Trainer(config).fit()
    run = tmp_path / "run"
    lock = run / "train.lock"
    assert _lock_is_free(lock)  # fit released it: another launch may now continue the run
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != "train.lock"}
    holder = _hold_lock(lock)
    try:
        for resume in (True, False):
            with pytest.raises(errors.CheckpointError) as err:
                Trainer(replace(config, steps=2), resume=resume)
            assert str(err.value) == (
                f"run_dir {str(run)!r} is in use: another training launch holds its lock "
                f"({str(lock)!r}), pid {holder.pid} on host 'node7', started "
                "2020-10-31T10:00:00+00:00: python -m flexdownscale.train --config run.toml. "
                "Two launches on one run folder would both write its training states, logs "
                "and model. Wait for that launch to end (or stop it), then continue the run "
                "with resume=True; or give this launch another run_dir"
            )
        assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != "train.lock"} == (
            before
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    Trainer(replace(config, steps=2), resume=True).fit()
    assert load_model_folder(run / "model").extra["train_steps"] == 2
    assert _lock_is_free(lock)


def test_trainers_of_one_process_hand_the_lock_over(tmp_path, shared_data):
    """A trainer built and left idle (a notebook cell) does not block the next one of the same
    process; the lock is held (against other processes) from a trainer's start until its fit
    or export ends."""
    config = tiny_run_config(tmp_path, shared_data)
    lock = tmp_path / "run" / "train.lock"
    first = Trainer(config)
    assert not _lock_is_free(lock)
    record = json.loads(lock.read_text())
    assert (record["pid"], record["host"]) == (os.getpid(), platform.node())
    second = Trainer(config)  # the first is idle: the second takes the lock over
    assert not _lock_is_free(lock)
    second.fit()
    assert _lock_is_free(lock)
    assert lock.read_text() == ""  # no stale pid left to name
    del first


@pytest.mark.slow
def test_a_second_launch_on_a_running_run_is_refused_and_a_killed_run_resumes(
    tmp_path, shared_data
):
    """Real launches: while a first one trains, a second ``--resume`` (and a fresh launch) on its
    folder stops at once with exit status 2, naming the running process; the first is then
    SIGKILLed and ``--resume`` continues the run."""
    era5 = shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc"
    run = tmp_path / "run"
    values = {
        "run_dir": str(run),
        "steps": 100000,  # killed long before
        "batch_size": 2,
        "eval_every": 0,
        "checkpoint_every": 1,
        "total_limit": 2,
        "logger": "none",
        "model": {"preset": "tiny"},
        "data": {
            "paths": [str(era5)],
            "variables": ["t2m"],
            "factor": 4,
            "crop_size": 16,
            "train": ["2019-03-01", "2019-03-17T23"],
        },
        "optim": {"warmup_steps": 1},
    }
    config = tmp_path / "run.toml"
    config.write_text(dump_toml(values))
    command = [sys.executable, "-m", "flexdownscale.train", "--config", str(config)]
    first = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not list_states(run):
            if first.poll() is not None:
                pytest.fail("the first launch ended before it saved a state")
            if time.monotonic() > deadline:
                pytest.fail("the first launch saved no state in 240 s")
            time.sleep(0.1)
        for extra in (["--resume"], []):
            # a time limit: a launch that is not refused stops soon (and fails the test)
            second = subprocess.run(
                [*command, *extra, "time_limit_minutes=0.05"],
                cwd=tmp_path,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert second.returncode == 2, second.stderr[-2000:]
            assert "flexdownscale.train: error: run_dir" in second.stderr
            holder = f"({str(run / 'train.lock')!r}), pid {first.pid} on host {platform.node()!r}"
            assert f"is in use: another training launch holds its lock {holder}" in second.stderr
            assert f"--config {config}" in second.stderr  # the running launch's command
            assert "continue the run with --resume" in second.stderr
        assert first.poll() is None  # the first launch trains on
        assert not (run / "launches.jsonl").exists()  # no launch has ended
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    reached = int(list_states(run)[-1].name.split("_")[1])
    resumed = subprocess.run(
        [*command, "--resume", f"steps={reached + 1}"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_model_folder(run / "model").extra["train_steps"] == reached + 1
    (launch,) = (run / "launches.jsonl").read_text().splitlines()
    assert json.loads(launch)["end_step"] == reached + 1
