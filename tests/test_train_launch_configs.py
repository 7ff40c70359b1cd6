"""Training under the settings an accelerate configuration or its environment variables bring:
a dynamo backend (``torch.compile``), gradient accumulation, mixed precision, and the
launch decisions that every rank of a multi-node run must share.

The runs are in-process with the tiny preset, 32 x 32 crops and a few optimiser steps on the
real ERA5 file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from train_runs import tiny_run_config

from flexdownscale import errors
from flexdownscale.train import EMA, Trainer


@pytest.fixture
def fresh_accelerate_state() -> Iterator[None]:
    """accelerate's process-wide state rebuilt by the next trainer (it reads the dynamo backend
    and the precision from the environment only when it is first built), and again after the
    test, so that later tests do not inherit this test's settings."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state()
    GradientState._reset_state()


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


# ---------------------------------------------------------------------------------------------
# 1. a dynamo backend (torch.compile): the EMA moves, the export is the EMA and loads


@pytest.mark.slow
def test_compiled_training_updates_the_ema_and_exports_a_loadable_folder(
    tmp_path, shared_data, monkeypatch, fresh_accelerate_state
):
    from flexdownscale.pipeline import Downscaler

    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "AOT_EAGER")
    config = tiny_run_config(
        tmp_path,
        shared_data,
        steps=2,
        checkpoint_every=1,
        total_limit=2,
        eval_every=0,
        data={"validation": []},
    )
    trainer = Trainer(config)
    assert hasattr(trainer.model, "_orig_mod")  # accelerate compiled it
    folder = trainer.fit()
    states = trainer.run_dir / "checkpoints"
    first = _tensors(states / "step_00000001" / "ema.safetensors")
    second = _tensors(states / "step_00000002" / "ema.safetensors")
    assert first.keys() == second.keys()
    assert not any(name.startswith("_orig_mod.") for name in second)
    moved = max(float((first[name] - second[name]).abs().max()) for name in first)
    assert moved > 0.0  # the average follows the training

    exported = _tensors(folder / "model.safetensors")
    assert not any("_orig_mod" in name for name in exported)
    for name, tensor in second.items():  # the export holds the EMA, not the raw weights
        torch.testing.assert_close(exported[name].float(), tensor, rtol=0, atol=0)
    Downscaler.from_pretrained(folder)  # raised WeightsMismatchError on _orig_mod. names

    resumed = tiny_run_config(
        tmp_path,
        shared_data,
        steps=3,
        checkpoint_every=1,
        total_limit=2,
        eval_every=0,
        data={"validation": []},
    )
    again = Trainer(resumed, resume=True)
    again.fit()
    third = _tensors(states / "step_00000003" / "ema.safetensors")
    assert max(float((third[name] - second[name]).abs().max()) for name in third) > 0.0


def test_ema_refuses_a_model_without_its_tensors():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    ema = EMA(net, 0.9)
    compiled = torch.nn.Module()
    compiled._orig_mod = net  # the names torch.compile's wrapper gives
    with pytest.raises(errors.ConfigError, match=r"first '0\.bias'.*'_orig_mod\.0\.weight'"):
        ema.update(compiled)
    assert ema.updates == 0


# ---------------------------------------------------------------------------------------------
# 2. ACCELERATE_GRADIENT_ACCUMULATION_STEPS: the run's accumulation wins, with a warning


def test_environment_accumulation_does_not_change_the_batch(tmp_path, shared_data, monkeypatch):
    import json

    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "2")
    config = tiny_run_config(tmp_path, shared_data, eval_every=0, data={"validation": []})
    with pytest.warns(
        errors.FlexDownscaleWarning,
        match=r"ACCELERATE_GRADIENT_ACCUMULATION_STEPS=2 .* not used: this run accumulates 1 "
        r"micro-batch per optimiser step, from batch_size = 2",
    ):
        trainer = Trainer(config)
    assert trainer.accelerator.gradient_accumulation_steps == 1
    trainer.fit()
    lines = (trainer.run_dir / "samples.jsonl").read_text().splitlines()
    drawn = [index for line in lines for index in json.loads(line)["indices"]]
    assert len(drawn) == config.batch_size  # one step of batch_size samples, not two batches


def test_environment_accumulation_equal_to_the_runs_is_quiet(tmp_path, shared_data, monkeypatch):
    import warnings

    from flexdownscale.train import _warn_environment_accumulation

    config = tiny_run_config(tmp_path, shared_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_environment_accumulation({"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "1"}, 1, config)
        _warn_environment_accumulation({}, 4, config)


# ---------------------------------------------------------------------------------------------
# 3. several nodes: the main process decides the final save; a state needs every rank's files


def _rank(run_dir: Path, *, main: bool, processes: int = 2) -> SimpleNamespace:
    """What the trainer's methods below read of a trainer on one rank of a launch."""
    accelerator = SimpleNamespace(
        is_main_process=main,
        num_processes=processes,
        process_index=0 if main else 1,
        device=torch.device("cpu"),
    )
    rank = SimpleNamespace(
        accelerator=accelerator, run_dir=run_dir, progress=SimpleNamespace(step=4)
    )
    for name in ("_main_says", "_agree_main_succeeded", "_check_every_rank_sees_the_run_folder"):
        setattr(rank, name, getattr(Trainer, name).__get__(rank))
    return rank


def test_final_save_follows_the_main_process_not_the_ranks_own_folder(tmp_path, monkeypatch):
    import accelerate.utils

    main_folder, local_folder = tmp_path / "main", tmp_path / "node1"
    complete = main_folder / "checkpoints" / "step_00000004"
    complete.mkdir(parents=True)
    (complete / "STATE_COMPLETE").write_text("{}")
    local_folder.mkdir()  # a node-local run folder: no state there
    sent = []

    def broadcast(tensor: torch.Tensor, from_process: int = 0) -> torch.Tensor:
        sent.append(float(tensor.item()))
        return torch.tensor([sent[0]])  # what the main process (called first) sent

    monkeypatch.setattr(accelerate.utils, "broadcast", broadcast)
    main = Trainer._final_save_needed(_rank(main_folder, main=True))
    assert main is False  # the main process's folder holds step 4
    assert Trainer._final_save_needed(_rank(local_folder, main=False)) is False
    assert sent == [0.0, 1.0]  # each rank takes part in the broadcast; rank 1's own view is lost
    alone = _rank(local_folder, main=True, processes=1)
    monkeypatch.setattr(accelerate.utils, "broadcast", None)  # one process: no collective
    assert Trainer._final_save_needed(alone) is True


def test_a_state_without_every_ranks_random_state_is_not_completed(tmp_path, monkeypatch):
    import flexdownscale.train as train

    monkeypatch.setattr(train, "SHARED_FOLDER_WAITS", 0)  # no file shows up late here
    tmp = tmp_path / "checkpoints" / ".tmp_step_00000002"
    tmp.mkdir(parents=True)
    (tmp / "random_states_0.pkl").write_bytes(b"")
    final = tmp.parent / "step_00000002"
    with pytest.raises(
        errors.CheckpointError,
        match=r"processes 1, 2 \(random_states_1\.pkl, "
        r"random_states_2\.pkl\).*file system that every node",
    ):
        Trainer._complete_state(_rank(tmp_path, main=True, processes=3), tmp, final)
    assert not final.exists()
    assert list(tmp.iterdir()) == [tmp / "random_states_0.pkl"]  # nothing marked complete


def test_other_ranks_quote_the_main_processs_error_and_host(tmp_path, monkeypatch):
    """On several nodes the main's traceback is in another node's log: the other ranks' error
    says what the main process raised and where (before: 'printed above by rank 0')."""
    import accelerate.utils

    flags, lists = [], []

    def broadcast(tensor: torch.Tensor, from_process: int = 0) -> torch.Tensor:
        flags.append(float(tensor.item()))
        return torch.tensor([1.0])  # the main process failed

    def broadcast_object_list(objects: list, from_process: int = 0) -> list:
        lists.append(list(objects))
        objects[:] = ["OSError: [Errno 28] No space left on device", "node-a"]
        return objects

    monkeypatch.setattr(accelerate.utils, "broadcast", broadcast)
    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", broadcast_object_list)
    other = _rank(tmp_path, main=False)
    with pytest.raises(errors.CheckpointError) as caught:
        other._agree_main_succeeded(None, "exporting the model")
    assert str(caught.value) == (
        "the main process failed while exporting the model (rank 0, on host 'node-a'): "
        "OSError: [Errno 28] No space left on device (this process stops with it; rank 0's "
        "output has the traceback)"
    )
    main = _rank(tmp_path, main=True)
    full = OSError(28, "No space left on device")
    with pytest.raises(OSError) as raised:
        main._agree_main_succeeded(full, "exporting the model")
    assert raised.value is full  # the main process raises its own error, unchanged
    assert lists[-1][0] == "OSError: [Errno 28] No space left on device"  # what it sent
    assert flags == [0.0, 1.0]  # both took part in the flag's broadcast
    # success: one broadcast of the flag, no message sent
    monkeypatch.setattr(accelerate.utils, "broadcast", lambda t, from_process=0: t * 0)
    sent = len(lists)
    main._agree_main_succeeded(None, "exporting the model")
    assert len(lists) == sent


def test_a_file_another_node_shows_late_is_waited_for(monkeypatch):
    """A network file system can show another node's new file a moment late: the probe and the
    random-state checks look again for a few seconds before they refuse."""
    import flexdownscale.train as train

    monkeypatch.setattr(train, "SHARED_FOLDER_WAITS", 4)
    looks = iter([False, False, True])
    assert train._appears(lambda: next(looks))  # seen at the third look
    never = []
    assert not train._appears(lambda: never.append(1) or False)
    assert len(never) == 5  # the first look and 4 more


# ---------------------------------------------------------------------------------------------
# 4. the accelerate configuration's mixed_precision: the run's precision wins, said once


def test_accelerate_mixed_precision_other_than_the_runs_is_named(
    tmp_path, shared_data, monkeypatch
):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    config = tiny_run_config(tmp_path, shared_data, eval_every=0, data={"validation": []})
    with pytest.warns(errors.FlexDownscaleWarning) as caught:
        trainer = Trainer(config)
    said = [str(w.message) for w in caught if "ACCELERATE_MIXED_PRECISION" in str(w.message)]
    assert len(said) == 1
    assert "mixed_precision 'bf16'" in said[0]
    assert (
        "the run's precision wins, and this run trains in fp32 (precision = 'auto', fp32 here)"
        in said[0]
    )
    assert "Set precision = 'bf16'" in said[0]
    assert trainer.precision == "no"


def test_accelerate_default_or_equal_precision_is_quiet(tmp_path, shared_data):
    import warnings

    from flexdownscale.train import _warn_accelerate_precision

    config = tiny_run_config(tmp_path, shared_data, precision="bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_accelerate_precision({"ACCELERATE_MIXED_PRECISION": "no"}, "bf16", config)
        _warn_accelerate_precision({"ACCELERATE_MIXED_PRECISION": "bf16"}, "bf16", config)
        _warn_accelerate_precision({}, "no", config)
        # fp16 asked for by both on a CPU (fp32 runs): the fp16-on-a-CPU warning says it
        fp16 = tiny_run_config(tmp_path, shared_data, precision="fp16")
        _warn_accelerate_precision({"ACCELERATE_MIXED_PRECISION": "fp16"}, "no", fp16)
    with pytest.warns(errors.FlexDownscaleWarning, match=r"'fp8'.*one of 'auto', 'fp32'"):
        _warn_accelerate_precision({"ACCELERATE_MIXED_PRECISION": "fp8"}, "bf16", config)


# ---------------------------------------------------------------------------------------------
# 5. srun --ntasks 2 python -m flexdownscale.train: refused, with the way to launch


def test_srun_tasks_without_a_launcher_are_refused(tmp_path, shared_data, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "TORCHELASTIC_RUN_ID", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    config = tiny_run_config(tmp_path, shared_data)
    with pytest.raises(
        errors.ConfigError, match=r"task 1 of 2 .*bash -c .accelerate launch --multi_gpu"
    ):
        Trainer(config)
    assert not (tmp_path / "run").exists()


def test_slurm_environments_that_train_as_they_should_pass():
    from flexdownscale.train import _check_slurm_tasks

    _check_slurm_tasks({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"})  # a batch script's own run
    _check_slurm_tasks({"SLURM_STEP_NUM_TASKS": "2", "TORCHELASTIC_RUN_ID": "x"})  # torchrun
    _check_slurm_tasks({"SLURM_STEP_NUM_TASKS": "2", "ACCELERATE_MIXED_PRECISION": "no"})
    _check_slurm_tasks({"SLURM_STEP_NUM_TASKS": "1", "SLURM_STEP_ID": "0"})
    with pytest.raises(errors.ConfigError, match="task 0 of 3"):  # srun without STEP_NUM_TASKS
        _check_slurm_tasks({"SLURM_NTASKS": "3", "SLURM_PROCID": "0", "SLURM_STEP_ID": "0"})
    # an interactive shell of a step of 4 tasks (salloc -n 4; srun --pty bash) looks the same
    # to the program it starts: the message says how to start a shell of one task
    shell = {"SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_ID": "0"}
    with pytest.raises(errors.ConfigError, match=r"srun --ntasks 1 --pty bash"):
        _check_slurm_tasks({**shell, "SLURM_PROCID": "0"})


# ---------------------------------------------------------------------------------------------
# 6. the one-thread advice names what accelerate accepts


def test_one_thread_advice_names_a_setting_accelerate_accepts():
    from flexdownscale.train import _one_thread_advice

    launched = {"ACCELERATE_MIXED_PRECISION": "no", "OMP_NUM_THREADS": "1"}
    advice = _one_thread_advice(
        torch.device("cpu"), threads=1, cores=8, processes=2, environ=launched
    )
    assert "--num_cpu_threads_per_process 4" in advice
    assert "export OMP_NUM_THREADS=4 before it" in advice
    # accelerate refuses a num_cpu_threads_per_process key in its configuration file
    assert "set the threads once with `accelerate config`" not in advice
    assert "has no setting for the threads" in advice


class _Collectives:
    """accelerate's collectives for one rank called after another: the broadcasts hand on what
    the main process (called first) sent; ``reduce`` adds the other ranks' flags, ``others``."""

    def __init__(self, others: float = 0.0) -> None:
        self.sent: list = []
        self.others = others

    def broadcast(self, tensor: torch.Tensor, from_process: int = 0) -> torch.Tensor:
        return torch.zeros_like(tensor)  # the main process succeeded

    def broadcast_object_list(self, objects: list, from_process: int = 0) -> list:
        if objects[0]:  # the main process's probe name
            self.sent[:] = objects
        objects[:] = self.sent
        return objects

    def reduce(self, tensor: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        assert reduction == "sum"
        return tensor + self.others


def _collectives(monkeypatch, others: float = 0.0) -> _Collectives:
    import accelerate.utils

    fake = _Collectives(others)
    for name in ("broadcast", "broadcast_object_list", "reduce"):
        monkeypatch.setattr(accelerate.utils, name, getattr(fake, name))
    return fake


def test_a_run_folder_every_rank_sees_passes_and_leaves_no_probe(tmp_path, monkeypatch):
    _collectives(monkeypatch)
    shared = tmp_path / "run"
    shared.mkdir()
    (shared / ".rank_probe_0123abcd").write_text("node-a")  # a launch killed mid-check left it
    (shared / "notes.txt").write_text("mine")
    main = _rank(shared, main=True)
    main._check_every_rank_sees_the_run_folder()
    assert list(shared.iterdir()) == [shared / "notes.txt"]  # the probes are gone, only them
    assert main._shared_folder_checked


def test_a_node_local_run_folder_is_refused_on_every_rank(tmp_path, monkeypatch):
    """Rank 1's run folder is its own node's (empty) folder at the same path: it does not see
    the main process's probe, and both ranks stop with the fix (they hung, or lost the
    training since the start at the first save)."""
    import flexdownscale.train as train

    monkeypatch.setattr(train, "SHARED_FOLDER_WAITS", 0)
    main_folder, local_folder = tmp_path / "node0" / "run", tmp_path / "node1" / "run"
    main_folder.mkdir(parents=True)
    local_folder.mkdir(parents=True)
    fake = _collectives(monkeypatch, others=1.0)  # the main process hears rank 1 missed it
    with pytest.raises(errors.CheckpointError, match="1 of the launch's 2 processes does not"):
        _rank(main_folder, main=True)._check_every_rank_sees_the_run_folder()
    assert list(main_folder.iterdir()) == []  # the main process removed its probe
    assert fake.sent[0].startswith(".rank_probe_")
    fake.others = 0.0  # rank 1: the main process saw its own probe
    with pytest.raises(errors.CheckpointError) as refusal:
        _rank(local_folder, main=False)._check_every_rank_sees_the_run_folder()
    message = str(refusal.value)
    assert "(this one, rank 1 on " in message
    assert "file system every node sees" in message
    # rank 1 on the shared folder, where the probe is: it passes
    (main_folder / fake.sent[0]).write_text("node0")
    _rank(main_folder, main=False)._check_every_rank_sees_the_run_folder()
