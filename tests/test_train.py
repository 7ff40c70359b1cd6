"""Training: schedule, EMA, optimiser units, and real runs on ERA5 (single process, 2 processes,
SIGKILL + resume, injected NaN, refusals)."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_runs import kolmogorov_data

from flexdownscale import errors
from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.hub import load_model_folder
from flexdownscale.train import EMA, Lion, dump_toml, learning_rate, list_states, main

ROOT = Path(__file__).resolve().parents[1]


def test_learning_rate_warmup_then_cosine():
    kw = dict(base_lr=1.0, warmup_steps=10, total_steps=110, schedule="cosine")
    assert learning_rate(0, **kw) == pytest.approx(0.1)
    assert learning_rate(9, **kw) == pytest.approx(1.0)
    assert learning_rate(60, **kw) == pytest.approx(0.5)
    assert learning_rate(110, **kw) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(50, **{**kw, "schedule": "constant"}) == 1.0


def test_ema_matches_closed_form_and_swaps_back():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.5)
    ema.updates = 10**6  # past the warm-up: effective decay 0.5
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.5))
    with ema.swapped(model):
        assert torch.allclose(model.weight, torch.full((1, 2), 0.5))
    assert torch.allclose(model.weight, torch.ones(1, 2))
    state = ema.state_dict()
    other = EMA(model, decay=0.9)
    other.load_state_dict(state)
    assert other.updates == ema.updates
    assert torch.equal(other.shadow["weight"], ema.shadow["weight"])
    assert other.decay == 0.9  # the configured decay, not the saved one (a resume may change it)
    with pytest.raises(errors.CheckpointError, match="another architecture"):
        EMA(torch.nn.Linear(3, 1), decay=0.5).load_state_dict(state)


def test_lion_step_is_sign_of_interpolated_momentum():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99))
    p.grad = torch.tensor([0.3, -0.1, 0.0])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([0.9, -1.9, 0.5]))
    assert torch.allclose(opt.state[p]["exp_avg"], 0.01 * torch.tensor([0.3, -0.1, 0.0]))


def test_resolved_config_toml_round_trip(tmp_path):
    import tomllib

    from flexdownscale.config import to_dict

    cfg = from_dict(TrainConfig, {"data": {"paths": ["a.nc"], "train": ["2019-03-01", "x"]}})
    assert from_dict(TrainConfig, tomllib.loads(dump_toml(to_dict(cfg)))) == cfg


# ---------------------------------------------------------------------------------------------
# Real runs


def _write_config(tmp_path: Path, shared_data: Path, **top) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    era5 = shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc"
    values = {
        "run_dir": str(tmp_path / "run"),
        "steps": 8,
        "batch_size": 4,
        "eval_every": 4,
        "checkpoint_every": 2,
        "total_limit": 2,
        "plot_every": 0,  # plots: test_single_process_run_refusals_and_export
        "logger": "none",
        "eval_fields": 2,
        "eval_members": 2,
        "model": {"preset": "tiny"},
        "data": {
            "paths": [str(era5)],
            "variables": ["t2m"],
            "factor": 4,
            "crop_size": 16,
            "train": ["2019-03-01", "2019-03-17T23"],
            "validation": ["2019-03-18", "2019-03-24T23"],
        },
        "optim": {"warmup_steps": 2},
    }
    values.update(top)
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values))
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("FLEXDOWNSCALE_FAULT_NAN_STEP", None)
    return env


def _train(config: Path, *args: str, env=None, check=True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flexdownscale.train", "--config", str(config), *args]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=env or _env(), cwd=ROOT, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


def _samples(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def uninterrupted_samples(tmp_path_factory, shared_data) -> list[dict]:
    """``samples.jsonl`` of the default 8-step run in one launch: the reference that the
    interrupted runs of this module (SIGKILL, time limit) are resumed to (one run, not one
    per test: the tests that read it share an xdist group)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    _train(_write_config(root, shared_data))
    return _samples(root / "run")


@pytest.mark.slow
def test_single_process_run_refusals_and_export(tmp_path, shared_data, capsys):
    # the first (only) evaluation draws its plots in the launched process
    config = _write_config(tmp_path, shared_data, steps=4, plot_every=100)
    _train(config)
    run = tmp_path / "run"
    assert [p.name for p in list_states(run)] == ["step_00000002", "step_00000004"]
    assert list((run / "plots").glob("*.png"))
    folder = load_model_folder(run / "model")
    assert folder.variables == ("t2m",)
    assert folder.units == {"t2m": "K"}
    assert folder.factor == 4
    assert folder.extra["train_steps"] == 4
    assert "val/rmse" in folder.extra["validation"]
    assert (run / "validation.jsonl").read_text().count("val/crps") == 1
    assert len(_samples(run)) == 4
    (launch,) = [json.loads(line) for line in (run / "launches.jsonl").read_text().splitlines()]
    assert (launch["steps"], launch["samples"], launch["processes"]) == (4, 4 * 4, 1)
    assert launch["stopped"] == "done"
    assert launch["train_samples_per_s"] >= launch["samples_per_s"] > 0
    assert launch["peak_memory_gib"] is None or launch["peak_memory_gib"] > 0
    # the compute device by name, not the instruction set ("x86_64" said nothing of it)
    assert launch["device_type"] == "cpu"
    n_threads = torch.get_num_threads()
    assert launch["device"].endswith(f", {n_threads} thread{'s' if n_threads != 1 else ''}")
    assert launch["device"] != platform.machine()

    # The refusals through the command's entry point in this process (status 2 and one
    # stderr line, as the launches of the other tests of this module show on a real process).
    def refused(config: Path, *args: str) -> str:
        capsys.readouterr()
        assert main(["--config", str(config), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("flexdownscale.train: error: ")
        return err

    # an existing run is never restarted silently
    assert "already holds training states" in refused(config)
    # changed model section cannot resume
    assert "[model] section differs" in refused(config, "--resume", "model.preset=small")
    # a damaged state gives a clear error, not a fresh start
    latest = list_states(run)[-1]
    for f in latest.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    assert "cannot be loaded" in refused(config, "--resume", "steps=6")
    # --resume with nothing to resume
    empty = _write_config(tmp_path / "other", shared_data)
    nothing = refused(empty, "--resume", f"run_dir={json.dumps(str(tmp_path / 'none'))}")
    assert "holds no complete training state" in nothing


@pytest.mark.slow
def test_conditioned_export_records_the_training_range(tmp_path, shared_data):
    """A Re-conditioned run exports the range of Re it trained on; the Downscaler warns
    outside it."""
    config = _write_config(
        tmp_path,
        shared_data,
        steps=2,
        eval_every=2,
        checkpoint_every=2,
        model={"preset": "tiny", "physical_condition": True},
        data=kolmogorov_data(shared_data),
    )
    _train(config)
    folder = load_model_folder(tmp_path / "run" / "model")
    assert folder.condition == {
        "name": "reynolds_number",
        "scale": 40000.0,
        "range": [1000.0, 4000.0],
    }


@pytest.mark.slow
@pytest.mark.xdist_group("test_train_uninterrupted")
def test_sigkill_and_resume_gives_the_uninterrupted_run(
    tmp_path, shared_data, uninterrupted_samples
):
    killed_cfg = _write_config(tmp_path / "b", shared_data)
    run = tmp_path / "b" / "run"
    cmd = [sys.executable, "-m", "flexdownscale.train", "--config", str(killed_cfg)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if (run / "samples.jsonl").is_file() and len(_samples(run)) >= 5:
                break
            if proc.poll() is not None:
                pytest.fail("the run ended before it could be killed")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    states = list_states(run)
    assert states, "a state should have been saved before the kill"
    assert states[-1].name < "step_00000008"
    _train(killed_cfg, "--resume")
    resumed = _samples(run)
    assert resumed == uninterrupted_samples  # same steps, same micro-batches, same data order
    assert load_model_folder(run / "model").extra["train_steps"] == 8


@pytest.mark.slow
@pytest.mark.xdist_group("test_train_uninterrupted")
def test_time_limit_saves_exports_and_resumes(tmp_path, shared_data, uninterrupted_samples):
    # a limit far below one step: the launch stops after its first optimiser step
    config = _write_config(tmp_path, shared_data, time_limit_minutes=1e-4)
    first = _train(config)
    run = tmp_path / "run"
    assert "time limit of 0.0001 min reached at step 1 of 8" in first.stdout + first.stderr
    assert [p.name for p in list_states(run)] == ["step_00000001"]
    assert load_model_folder(run / "model").extra["train_steps"] == 1
    (launch,) = [json.loads(line) for line in (run / "launches.jsonl").read_text().splitlines()]
    assert (launch["stopped"], launch["end_step"]) == ("time_limit", 1)
    # lifting the limit on resume finishes the run on the same data order as an unlimited one
    _train(config, "--resume", "time_limit_minutes=0")
    assert load_model_folder(run / "model").extra["train_steps"] == 8
    assert _samples(run) == uninterrupted_samples


@pytest.mark.slow
def test_non_finite_loss_stops_cleanly_with_last_state_intact(tmp_path, shared_data):
    config = _write_config(tmp_path, shared_data)
    env = dict(_env(), FLEXDOWNSCALE_FAULT_NAN_STEP="5")
    result = _train(config, env=env, check=False)
    assert result.returncode == 2
    assert "non-finite loss" in result.stderr
    assert "optimiser step 5" in result.stderr
    run = tmp_path / "run"
    assert [p.name for p in list_states(run)] == ["step_00000002", "step_00000004"]
    assert not (run / "model").exists()
    _train(config, "--resume")  # the last good state resumes and finishes
    assert load_model_folder(run / "model").extra["train_steps"] == 8


@pytest.mark.slow
@pytest.mark.distributed
def test_accelerate_launch_two_processes_then_resume(tmp_path, shared_data):
    config = _write_config(tmp_path, shared_data, steps=4, eval_every=0)
    port = str(29500 + os.getpid() % 1000)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        port,
        "-m",
        "flexdownscale.train",
        "--config",
        str(config),
    ]
    first = subprocess.run(
        launch, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "run"
    ranks = json.loads((run / "ranks.json").read_text())
    assert len(ranks["parameter_fingerprints"]) == 2
    a, b = ranks["parameter_fingerprints"]
    assert a == b  # both ranks hold identical weights
    r0, r1 = ranks["rng_fingerprints"]
    assert r0 != r1  # ... and draw their own diffusion times and noise
    assert list_states(run)[-1].name == "step_00000004"
    assert (run / "model" / "model.safetensors").is_file()
    assert all(len(r["indices"]) == 4 for r in _samples(run))  # 2 ranks x micro-batch 2
    # the two ranks share out one order of the data: each optimiser step trains on the samples
    # a single process takes for that step (rank 1 shuffled with its own seed, so an epoch
    # repeated some samples and left others out; reviewer-49)
    single = _write_config(tmp_path / "single", shared_data, steps=4, eval_every=0)
    _train(single)
    assert [sorted(r["indices"]) for r in _samples(run)] == [
        sorted(r["indices"]) for r in _samples(tmp_path / "single" / "run")
    ]

    second = subprocess.run(
        [*launch, "--resume", "steps=6"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout + second.stderr
    assert list_states(run)[-1].name == "step_00000006"
    launches = [json.loads(line) for line in (run / "launches.jsonl").read_text().splitlines()]
    assert [(r["end_step"], r["steps"], r["processes"]) for r in launches] == [(4, 4, 2), (6, 2, 2)]
    assert json.loads((run / "ranks.json").read_text())["step"] == 6

    # the main process fails to write the export (disk full): every rank stops with a clear
    # error (before, rank 1 only stopped because the launcher killed it)
    failing = tmp_path / "export_fails.py"
    failing.write_text(
        "import sys\n"
        "import flexdownscale.hub as hub\n"
        "from flexdownscale import train\n"
        "def no_space(*args, **kwargs):\n"
        "    raise OSError(28, 'No space left on device')\n"
        "hub.save_model_folder = no_space\n"
        "sys.exit(train.main(sys.argv[1:]))\n"
    )
    script = launch.index("-m", launch.index("--main_process_port"))
    third = subprocess.run(
        [*launch[:script], str(failing), *launch[script + 2 :], "--export-only"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=120,
    )
    assert third.returncode != 0
    assert "No space left on device" in third.stderr
    assert "the main process failed while exporting the model" in third.stderr
    assert list_states(run)[-1].name == "step_00000006"  # the states are untouched
