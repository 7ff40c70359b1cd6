"""Training through Hugging Face Accelerate.

One command trains on a CPU, one GPU, a multi-GPU node or several nodes::

    accelerate launch -m flexdownscale.train --config run.toml [key=value ...]
    python -m flexdownscale.train --config run.toml          # one process
    accelerate launch -m flexdownscale.train --config run.toml --resume

The TOML file is a :class:`flexdownscale.config.TrainConfig` (unknown keys are rejected with a
close-match hint); ``key=value`` arguments override it (``optim.lr=3e-4 model.preset=small``); the
resolved configuration is written to the run folder.

Run folder layout (``run_dir``)::

    config.toml, config.json     the resolved configuration
    checkpoints/step_00000500/   training states: the model (safetensors) and optimiser and
                                 random states saved by Accelerate, the EMA (ema.safetensors) and
                                 the counters (progress.json); each complete when it holds
                                 STATE_COMPLETE; rotated by total_limit
    logs/                        tensorboard events (or wandb's own folder)
    samples.jsonl                the dataset indices of every micro-batch, in order (audit trail
                                 of the data order; resuming continues it exactly)
    validation.jsonl             validation metrics per evaluation
    plots/                       panel and spectrum figures from validation
    model/                       the exported EMA model folder (see flexdownscale.hub)
    train.lock                   locked by the launch training in the folder (names its pid
                                 and host); a second launch on the folder is refused
    old-1/, old-2/, ...          logs of an earlier start that saved no state, moved aside by a
                                 fresh start (nothing is deleted)

Nothing trained is lost: states are written to a temporary folder and renamed into place only once
complete, so a kill during a save leaves the previous state loadable; SIGINT (Ctrl-C) or SIGTERM
(a scheduler ending the job) finishes the optimiser step under way and saves the state before
the launch stops (:class:`TrainingInterrupted`); a non-finite loss stops the
run with the step named and the last good state untouched; an existing run folder is never
silently restarted from scratch, and a second launch on a folder that another launch is
training in is refused (the lock on ``train.lock``, which the system drops when that launch
ends, killed or not; not taken on Windows, which has no ``fcntl``). Loading a state unpickles
nothing but tensors and numbers (``weights_only=True``), so a run folder from elsewhere cannot
run code.

This is the only module of the package that imports ``accelerate``.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import datetime
import errno
import functools
import glob
import hashlib
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import torch

try:  # POSIX: the run folder's lock (see LOCK_FILE)
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock is taken
    fcntl = None  # type: ignore[assignment]

from ._json import finite_or_null
from ._keywords import keyword_hints
from ._output import LOCK_TAKEN, bar_class, draws_a_bar
from ._stack import user_stacklevel
from .config import (
    SamplerConfig,
    TrainConfig,
    apply_overrides,
    crop_multiple,
    from_dict,
    from_toml,
    to_dict,
)
from .errors import (
    BackendNotAvailableError,
    CheckpointError,
    ConfigError,
    DataError,
    FlexDownscaleWarning,
    ModelFolderError,
    NonFiniteLossError,
    ShapeError,
)

__all__ = [
    "EMA",
    "Lion",
    "Trainer",
    "TrainingInterrupted",
    "learning_rate",
    "main",
    "resolve_sampler",
    "validation_indices",
]

STATE_MARKER = "STATE_COMPLETE"
#: The EMA weights of a state (safetensors; the update count in its metadata).
EMA_FILE = "ema.safetensors"
#: The step and sample counters of a state (JSON).
PROGRESS_FILE = "progress.json"
#: Pickles of the EMA and the counters in states of earlier versions (accelerate's custom objects);
#: read with ``weights_only=True`` only.
_OLD_CUSTOM_STATE = re.compile(r"^custom_checkpoint_\d+\.pkl$")
#: What a run writes besides its states and configuration; a fresh start in a folder that holds
#: some of these but no state moves them aside (into ``old-<n>/``) rather than appending to them.
RUN_LOGS = (
    "validation.jsonl",
    "launches.jsonl",
    "samples.jsonl",
    "ranks.json",
    "plots",
    "logs",
    "model",
    "init_from.json",
)
#: The run folder's lock: the main process of the launch that trains in the folder holds an
#: ``fcntl.flock`` on it for the launch's life (a second launch on the folder is refused, naming
#: the process the file names: pid, host, start time, command). The operating system drops the
#: lock when the process ends, killed or not, so a file left by a killed run never blocks
#: ``--resume``. Where ``fcntl`` is missing (Windows) or the file system refuses locks, no lock
#: is taken (a second launch is not refused there).
LOCK_FILE = "train.lock"

#: How many times (0.25 s apart) a rank looks again for the main process's probe file before
#: it counts as not seen (:meth:`Trainer._check_every_rank_sees_the_run_folder`): a network file
#: system can show another client's new file a moment late.
SHARED_FOLDER_WAITS = 20
#: Validation windows with fewer cells than this above a variable's lower bound (dry
#: precipitation), cut from fields with at least this many and 4 times as many, are warned about.
_DRY_WINDOWS = 0.05
FAULT_NAN_ENV = "FLEXDOWNSCALE_FAULT_NAN_STEP"  # test hook: make the loss non-finite at this step
#: Under ``precision = "fp16"`` on a GPU the gradient scaler skips an optimiser step whose
#: gradients overflow and halves its scale; this many skips in a row stop the run. From the scaler's
#: initial scale (2**16) 30 halvings reach 2**-14, float16's smallest normal number: gradients
#: still non-finite at that scale are not an overflow of the scale but NaN of the model or data.
MAX_SKIPPED_STEPS_IN_A_ROW = 30
#: Set by :func:`main`: the trainer runs from the command line, so messages name ``--resume`` and
#: ``--export-only``; from Python they name the arguments ``resume=True`` and ``export_only=True``.
_COMMAND_LINE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flexdownscale_train_command_line", default=False
)


def validation_indices(length: int, count: int) -> list[int]:
    """Which validation items the sampled skill is computed on: ``count`` spread evenly.

    The validation split lists its items file by file and in time order, so its first items
    all come from one file (one Reynolds number of a conditioned run) and from consecutive
    times. Item ``i`` of ``count`` is the one at the middle of the ``i``-th of ``count`` equal
    blocks of the split.

    Parameters
    ----------
    length : int
        Number of items in the validation split.
    count : int
        ``eval_fields``: how many to score (all of them when ``count >= length``).

    Returns
    -------
    list of int
        Increasing, distinct indices in ``[0, length)``.
    """
    if count >= length:
        return list(range(length))
    return [(2 * i + 1) * length // (2 * count) for i in range(count)]


def _option(name: str) -> str:
    """The option ``name`` (``"resume"`` or ``"export_only"``) as the user gave it: ``--resume``
    from the command line (:func:`main`), ``resume=True`` from Python (``Trainer(config,
    resume=True)``)."""
    return "--" + name.replace("_", "-") if _COMMAND_LINE.get() else f"{name}=True"


# --------------------------------------------------------------------------------------------
# Stopping cleanly on SIGINT and SIGTERM
# --------------------------------------------------------------------------------------------

#: The signals a training launch stops cleanly on: Ctrl-C (SIGINT), and the request to end of a
#: scheduler (SLURM sends SIGTERM, then SIGKILL after its grace period), of ``kill`` or of
#: ``torchrun`` (which sends SIGTERM to its workers when it is stopped itself).
_STOP_SIGNALS = ("SIGINT", "SIGTERM")


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :meth:`Trainer.fit` when a SIGINT (Ctrl-C) or a SIGTERM stopped the launch.

    The optimiser step under way was finished and the training state saved (:attr:`state`);
    ``Trainer(config, resume=True).fit()`` (``--resume`` on the command line) continues from it.
    It is a :class:`KeyboardInterrupt`, so a notebook or a script treats it as the interruption
    it is; the command line prints its message on one line and exits with status 128 + the
    signal's number (130 for SIGINT, 143 for SIGTERM).

    Parameters
    ----------
    message : str
        What stopped the launch, where the state is and how to continue.
    signal_number : int
        The signal that stopped it (``signal.SIGINT`` or ``signal.SIGTERM``).
    step : int
        The optimiser step the saved state is at.
    state : pathlib.Path
        The saved training state (``run_dir/checkpoints/step_<step, 8 digits>``).

    Attributes
    ----------
    signal_number : int
        As given.
    step : int
        As given.
    state : pathlib.Path
        As given.
    """

    def __init__(self, message: str, *, signal_number: int, step: int, state: Path) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.step = step
        self.state = state


class _StopRequests:
    """Handlers that note SIGINT and SIGTERM while a trainer trains, rather than acting on them
    at once (a context manager: the handlers it replaced are put back when it exits).

    The first signal sets :attr:`signal_number`: the training loop stops at the end of the
    optimiser step under way (every rank agrees on the step) and saves the state. A second
    SIGINT (Ctrl-C again) before that stops at once, as the handler it replaced does (Python's
    raises :class:`KeyboardInterrupt`; the steps since the last state are lost), except while a
    state is being written (:attr:`saving`): then every signal is only noted, and the save
    completes. SIGTERM never stops at once, and no signal does in a worker of ``torchrun`` or
    ``accelerate launch`` (several processes): their agent sends the signal it got (a Ctrl-C
    reaches it and the workers) to the workers once more, and kills them after its own grace
    period (30 s). Handlers are installed only in the main thread (Python's rule: a trainer
    fitted in another thread stops as before), and not over a signal that is ignored
    (``SIG_IGN``, as a shell leaves SIGINT for a background job) or handled outside Python.
    """

    def __init__(self) -> None:
        self.signal_number = 0
        self.saving = False
        # a torch elastic agent forwards the Ctrl-C its workers got themselves
        self._forwarded = _launcher(os.environ).agent
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in _STOP_SIGNALS:
            number = getattr(signal, name, None)
            if number is None:  # pragma: no cover - both exist on POSIX and Windows
                continue
            previous = signal.getsignal(number)
            if previous is None or previous == signal.SIG_IGN:
                continue
            signal.signal(number, self._note)
            self._previous[number] = previous
        return self

    def __exit__(self, *exc: object) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Within: a state is being written, and no signal stops it half way."""
        self.saving = True
        try:
            yield
        finally:
            self.saving = False

    def _note(self, number: int, frame: Any) -> None:
        if not self.signal_number:
            self.signal_number = number
            return
        if number != signal.SIGINT or self.saving or self._forwarded:
            return
        previous = self._previous.get(number)
        if callable(previous):
            previous(number, frame)  # Python's own handler raises KeyboardInterrupt
        else:
            raise KeyboardInterrupt


@dataclasses.dataclass(frozen=True)
class _Launch:
    """How this process was started (:func:`_launcher`)."""

    #: ``"accelerate launch"``, ``"torchrun"``, or ``None`` (``python -m flexdownscale.train``,
    #: a trainer built from Python, a SLURM job step that runs either of them).
    name: str | None
    #: Whether a torch elastic agent runs this process (``torchrun``, and ``accelerate launch``
    #: of several processes): it sends its workers the signals it gets itself.
    agent: bool


def _launcher(environ: Mapping[str, str]) -> _Launch:
    """The launcher that started this process, from its environment ``environ``.

    ``accelerate launch`` sets ``ACCELERATE_MIXED_PRECISION`` for the processes it starts (of
    one process or several, whichever its configuration); a torch elastic agent
    (``torchrun``, and ``accelerate launch`` of several processes through it) sets
    ``TORCHELASTIC_RUN_ID``.

    Parameters
    ----------
    environ : mapping of str to str
        The process's environment (``os.environ``).

    Returns
    -------
    _Launch
        The launcher's name (``None`` for none) and whether an elastic agent runs the process.

    Examples
    --------
    >>> _launcher({"ACCELERATE_MIXED_PRECISION": "no", "TORCHELASTIC_RUN_ID": "1"})
    _Launch(name='accelerate launch', agent=True)
    >>> _launcher({"TORCHELASTIC_RUN_ID": "none"}), _launcher({})
    (_Launch(name='torchrun', agent=True), _Launch(name=None, agent=False))
    """
    agent = "TORCHELASTIC_RUN_ID" in environ
    if "ACCELERATE_MIXED_PRECISION" in environ:
        return _Launch("accelerate launch", agent)
    return _Launch("torchrun" if agent else None, agent)


def _check_slurm_tasks(environ: Mapping[str, str]) -> None:
    """Refuse a process that SLURM started as one of several tasks of a job step without a
    launcher that joins them (``srun --ntasks 2 python -m flexdownscale.train``).

    Such tasks know nothing of each other (no ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``): each
    would train a one-process run of its own in the same run folder, and every task but the one
    that took the folder's lock was refused with advice meant for a second launch. The tasks of
    a step are ``SLURM_STEP_NUM_TASKS`` (set by ``srun``); ``SLURM_NTASKS`` counts only in a
    task that ``srun`` started (``SLURM_STEP_ID``), since a batch script that runs the
    command itself sees its allocation's count there.

    Parameters
    ----------
    environ : mapping of str to str
        The process's environment (``os.environ``).

    Raises
    ------
    ConfigError
        For a task of a job step of several tasks, started without ``accelerate launch`` or
        ``torchrun`` and without ``WORLD_SIZE``.

    Examples
    --------
    >>> _check_slurm_tasks({"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"})
    >>> _check_slurm_tasks({"SLURM_STEP_NUM_TASKS": "2", "WORLD_SIZE": "2", "RANK": "1"})
    """
    if "WORLD_SIZE" in environ or _launcher(environ).name is not None:
        return
    tasks = environ.get("SLURM_STEP_NUM_TASKS")
    if tasks is None and ("SLURM_STEP_ID" in environ or "SLURM_STEPID" in environ):
        tasks = environ.get("SLURM_NTASKS")
    try:
        count = int(str(tasks).strip())
    except ValueError:
        return
    if count <= 1:
        return
    raise ConfigError(
        f"this is task {environ.get('SLURM_PROCID', '?')} of {count} that SLURM started "
        "(srun --ntasks), but nothing joins the tasks into one training: each would train "
        "alone. Start one launcher per node and let it start the node's processes: srun "
        "--ntasks-per-node 1 bash -c 'accelerate launch --multi_gpu --num_machines N "
        "--machine_rank $SLURM_NODEID --main_process_ip <first node> ... -m "
        "flexdownscale.train --config run.toml' (or torchrun --nnodes N --nproc_per_node G "
        "--rdzv_backend c10d --rdzv_endpoint <first node>:29500 in place of accelerate "
        "launch), or run one task (srun --ntasks 1) for a one-process run (an interactive "
        "shell too: srun --ntasks 1 --pty bash, as a shell of a step of several tasks tells "
        "every program it starts that it is one of them); docs/training.md, 'SLURM', has a "
        "batch script"
    )


#: Shared with the training loaders' worker processes (set up by :func:`_workers_exit_flag`): 1
#: once this process exits, when a SIGTERM ends them.
_WORKERS_MAY_END: Any = None


def _workers_exit_flag() -> Any:
    """The flag that tells the loaders' worker processes that this process exits: shared memory
    that an ``atexit`` hook sets (it runs before the one of ``multiprocessing`` that ends the
    workers with SIGTERM: hooks run last registered first)."""
    global _WORKERS_MAY_END
    if _WORKERS_MAY_END is None:
        import atexit
        import multiprocessing

        flag = multiprocessing.RawValue("b", 0)

        def exiting() -> None:
            flag.value = 1

        atexit.register(exiting)
        _WORKERS_MAY_END = flag
    return _WORKERS_MAY_END


def _loader_worker_signals(exiting: Any, worker_id: int) -> None:
    """``worker_init_fn`` of the training ``DataLoader`` (with ``exiting``, the flag of
    :func:`_workers_exit_flag`): its worker processes ignore SIGINT, and SIGTERM until the
    trainer's process exits. A Ctrl-C reaches every process of the terminal's foreground group
    and SLURM signals every process of a job step: a worker ended by them broke the loader (a
    ``RuntimeError``) while the trainer finished its step and saved the state. The loader ends
    its workers itself, and a worker ends when the trainer's process is gone, killed or not."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_sigterm(number: int, frame: Any) -> None:
        if exiting.value:  # multiprocessing ends the workers of an exiting process
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)

    signal.signal(signal.SIGTERM, on_sigterm)


def _progress_every(steps: int) -> int:
    """Steps between the progress lines a launch prints when stderr is not a terminal (a CI log,
    a SLURM output file): about 20 lines per run, at least one per 100 steps."""
    return max(1, min(100, steps // 20))


# --------------------------------------------------------------------------------------------
# Small training components (EMA, counter, optimiser, schedule)
# --------------------------------------------------------------------------------------------


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    Parameters
    ----------
    model
        The (unwrapped) model to track.
    decay
        Weight of the old average; ``decay = 0.999`` averages over about 1000 steps. Warm-up:
        the effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
        averages are not dominated by the random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"optim.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {
            name: tensor.detach().clone().float()
            for name, tensor in model.state_dict().items()
            if tensor.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average.

        Parameters
        ----------
        model : torch.nn.Module
            The (unwrapped) model being trained, with the parameters the average tracks.
        """
        state = model.state_dict()
        missing = self.shadow.keys() - state.keys()
        if missing:  # a wrapped model (torch.compile's names): the average would never move
            raise ConfigError(
                f"the EMA tracks {len(self.shadow)} tensors, {len(missing)} of which the model "
                f"does not have (first {sorted(missing)[0]!r}; the model's first is "
                f"{next(iter(state), None)!r}): give EMA.update the unwrapped model, the one "
                "the EMA was built from"
            )
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for name, tensor in state.items():
            if name in self.shadow:
                self.shadow[name].lerp_(tensor.detach().float(), 1.0 - decay)

    @contextlib.contextmanager
    def swapped(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Temporarily load the averaged weights into ``model``.

        Parameters
        ----------
        model : torch.nn.Module
            The (unwrapped) model; its own weights are put back when the block ends, also on an
            error.

        Yields
        ------
        torch.nn.Module
            ``model`` itself, holding the averaged weights inside the ``with`` block.
        """
        backup = {name: t.detach().clone() for name, t in model.state_dict().items()}
        model.load_state_dict(self.averaged_state_dict(model), strict=True)
        try:
            yield model
        finally:
            model.load_state_dict(backup, strict=True)

    def averaged_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged weights (in the model's dtypes).

        Parameters
        ----------
        model : torch.nn.Module
            The (unwrapped) model whose state dict is the template: entries the average does not
            track (integer buffers) are its own.

        Returns
        -------
        dict of str to torch.Tensor
            Every key of ``model.state_dict()``; the averaged ones on the model's devices and in
            its dtypes. ``model`` is not changed.
        """
        state = {}
        for name, tensor in model.state_dict().items():
            if name in self.shadow:
                state[name] = self.shadow[name].to(device=tensor.device, dtype=tensor.dtype)
            else:
                state[name] = tensor
        return state

    def state_dict(self) -> dict[str, Any]:
        """The average's state, for saving with a training state.

        Returns
        -------
        dict
            ``{"decay": float, "updates": int, "shadow": {name: float32 tensor}}`` (the tensors
            are the average's own, not copies).
        """
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the update count and the averaged weights saved by :meth:`state_dict`.

        The decay stays the configured one: a resume with another ``optim.ema_decay`` applies it.

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` returned (``"updates"`` and ``"shadow"`` are read).

        Raises
        ------
        CheckpointError
            When the saved average tracks other parameters than this one (another architecture).
        """
        if set(state["shadow"]) != set(self.shadow):
            raise CheckpointError(
                "the EMA in the saved state tracks different parameters than this model: the state "
                "belongs to another architecture"
            )
        # the decay stays the configured one: a resume with another optim.ema_decay applies it
        self.updates = int(state["updates"])
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)

    def to(self, device: torch.device) -> EMA:
        """Move the averaged weights to ``device``.

        Parameters
        ----------
        device : torch.device
            Where the averaged weights are kept (the training device).

        Returns
        -------
        EMA
            This average (moved in place).
        """
        self.shadow = {name: t.to(device) for name, t in self.shadow.items()}
        return self


@dataclasses.dataclass
class Progress:
    """Counters saved with every state: optimiser steps and micro-batches consumed per process."""

    step: int = 0
    micro_batches: int = 0
    samples: int = 0

    def state_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
        self.micro_batches = int(state["micro_batches"])
        self.samples = int(state["samples"])


class Lion(torch.optim.Optimizer):
    """Lion optimiser (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    ``update = sign(beta1 m + (1 - beta1) g)``; ``p <- p - lr (update + wd p)``;
    ``m <- beta2 m + (1 - beta2) g``. Use a learning rate 3-10x smaller than AdamW's.

    Parameters
    ----------
    params : iterable of torch.Tensor or of dict
        The parameters to optimise, or parameter groups, as for any ``torch.optim.Optimizer``.
    lr : float, default 1e-4
        Learning rate (> 0, else :class:`~flexdownscale.errors.ConfigError`).
    betas : tuple of float, default (0.9, 0.99)
        ``(beta1, beta2)``: the interpolation of the update direction and the momentum decay.
    weight_decay : float, default 0.0
        Decoupled weight decay ``wd``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ConfigError(f"Lion learning rate must be positive, got {lr}")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One optimisation step on every parameter that has a gradient.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (run with gradients enabled); default
            None: none.

        Returns
        -------
        torch.Tensor or None
            The closure's loss, or ``None`` without a closure.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                update = exp_avg.mul(beta1).add_(p.grad, alpha=1 - beta1).sign_()
                p.add_(update, alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss


def _parameter_groups(
    model: torch.nn.Module, weight_decay: float
) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """The optimiser's parameter groups: weight decay on the weight matrices and kernels only.

    Parameters of one dimension (biases, the gains and shifts of normalization layers,
    embedding biases) get no weight decay, as is common practice: decaying them pulls the
    normalization gains towards 0 and shifts the biases without regularising anything.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose parameters (all of them, in ``model.parameters()`` order) are grouped.
    weight_decay : float
        ``optim.weight_decay``, given to the group of parameters of two or more dimensions.

    Returns
    -------
    groups : list of dict
        ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...],
        "weight_decay": 0.0}]``, for :func:`build_optimizer`; a group without parameters is
        left out.
    positions : list of list of int
        For each group, the positions of its parameters in ``model.parameters()`` (what a state
        saved with a single group is mapped by).
    """
    decayed: list[int] = []
    kept: list[int] = []
    parameters = list(model.parameters())
    for position, parameter in enumerate(parameters):
        (decayed if parameter.ndim >= 2 else kept).append(position)
    groups, positions = [], []
    for where, decay in ((decayed, weight_decay), (kept, 0.0)):
        if where:
            groups.append({"params": [parameters[k] for k in where], "weight_decay": decay})
            positions.append(where)
    return groups, positions


def _single_group_states(
    positions: list[list[int]], converted: list[bool]
) -> Callable[[torch.optim.Optimizer, dict[str, Any]], dict[str, Any] | None]:
    """A ``load_state_dict`` pre-hook that maps an optimiser state saved with a single parameter
    group (by versions that decayed every parameter) onto the groups of
    ``_parameter_groups``: each parameter keeps its own moments. ``converted`` gets ``True``
    when a state was mapped."""

    def hook(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any] | None:
        saved = state.get("param_groups", [])
        count = sum(len(where) for where in positions)
        if len(saved) != 1 or len(positions) == 1 or len(saved[0]["params"]) != count:
            return None  # the same layout, or not this model's (torch says what differs)
        ids = saved[0]["params"]
        groups = [
            {**saved[0], "params": [ids[k] for k in where], "weight_decay": group["weight_decay"]}
            for group, where in zip(optimizer.param_groups, positions)
        ]
        converted.append(True)
        return {**state, "param_groups": groups}

    return hook


def build_optimizer(params: Any, config: Any) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` (an :class:`~flexdownscale.config.OptimConfig`).

    ``params`` are parameters or parameter groups (``_parameter_groups``: the trainer's, with
    no weight decay on 1-D parameters); ``config.weight_decay`` is the default of a group that
    sets none.
    """
    kwargs = {"lr": config.lr, "betas": tuple(config.betas), "weight_decay": config.weight_decay}
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, **kwargs)
    return Lion(params, **kwargs)


def learning_rate(
    step: int, *, base_lr: float, warmup_steps: int, total_steps: int, schedule: str
) -> float:
    """Learning rate at optimiser step ``step`` (0-based): linear warm-up, then cosine or constant.

    The cosine decays from ``base_lr`` at the end of warm-up to 0 at ``total_steps``.

    Parameters
    ----------
    step : int
        Optimiser step, 0-based.
    base_lr : float
        Peak learning rate (``optim.lr``), reached at the last warm-up step.
    warmup_steps : int
        Linear warm-up steps (``optim.warmup_steps``): step ``s < warmup_steps`` gets
        ``base_lr * (s + 1) / warmup_steps``; 0: no warm-up.
    total_steps : int
        Steps of the whole run (``steps``); the cosine reaches 0 there and stays at 0 after it.
    schedule : str
        ``"constant"`` keeps ``base_lr`` after the warm-up; ``"cosine"`` (``optim.schedule``'s
        other option) decays it.

    Returns
    -------
    float
        The learning rate of that step.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------
# Reading training states without running code from them
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Every ``torch.load`` inside (accelerate's included) runs with ``weights_only=True``.

    accelerate reads the optimiser, the scaler and the RNG states with ``weights_only=True``
    already; this makes it so whatever a caller passes (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``
    overrides an explicit ``weights_only=False``), so no pickle from a state folder can run code.
    """
    saved = {
        name: os.environ.pop(name, None)
        for name in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    }
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _numpy_rng_globals() -> list[Any]:
    """What unpickling ``numpy.random.get_state()`` needs besides plain data: the array
    reconstructor, ``ndarray`` and the dtypes of the MT19937 key (no callable that runs code)."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _load_pickle_safely(path: Path, what: str, *, numpy_rng: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` (numpy's RNG state allowed with ``numpy_rng``);
    a file that holds anything else is refused with a :class:`CheckpointError`, never run."""
    globals_ = _numpy_rng_globals() if numpy_rng else []
    scoped = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if scoped is None:  # torch 2.4: allowed for the process (data only)
        torch.serialization.add_safe_globals(globals_)
        allowed: Any = contextlib.nullcontext()
    else:
        allowed = scoped(globals_)
    try:
        with _weights_only_loads(), allowed:
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{str(path)!r} ({what}) cannot be loaded safely: torch.load(weights_only=True) "
            f"refused it ({_one_line(err)}). {_NOT_UNPICKLED}"
        ) from err


_NOT_UNPICKLED = (
    "A training state written by flexdownscale holds only tensors and numbers there, so the "
    "file is damaged, was altered or comes from another program; it is not unpickled. Remove "
    "this state (the run falls back to the previous one) or use a run folder you trust"
)


#: Sentences of torch's weights-only refusal that advise loading the file unsafely (or point
#: to its documentation), never passed on: a training state holds only plain data.
_UNSAFE_ADVICE = re.compile(
    r"weights_only|trusted source|trust the source|two options|safe_globals|"
    r"documentation of torch\.load",
    re.IGNORECASE,
)


def _one_line(err: BaseException) -> str:
    """The gist of ``err`` on one line (torch's weights-only refusal: the global it refused,
    without its advice to load the file unsafely)."""
    from .hub import _weights_only_refusal

    refused = _weights_only_refusal(err)
    if refused:
        return refused
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Weights only load failed" in text:  # a wording the refusal's pattern does not name
        sentences = (part for line in lines for part in re.split(r"(?<=\.)\s+", line))
        lines = [part for part in sentences if part and not _UNSAFE_ADVICE.search(part)]
    gist = " ".join(lines)
    if len(gist) > 400:
        gist = gist[:400] + " ..."
    return f"{type(err).__name__}: {gist}" if gist else type(err).__name__


def _refused_unpickling(err: BaseException) -> bool:
    """Whether ``err`` is ``torch.load(weights_only=True)`` refusing a file's content."""
    import pickle

    return isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in str(err)


def _read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{str(path)!r} ({what}) cannot be loaded ({type(err).__name__}: {err}); the state is "
            "damaged: remove it to fall back to the previous state"
        ) from err


# --------------------------------------------------------------------------------------------
# What a state records of its data (the normalization it trains for, a fingerprint of the data)
# --------------------------------------------------------------------------------------------

#: Refitted statistics within this of the recorded ones are the same data: a mean within
#: ``_SAME_STATISTICS`` standard deviations, a std within that fraction (a file rewritten in
#: float32, or reduced in another chunking, moves them by about 1e-6).
_SAME_STATISTICS = 1e-4


#: The zero minutes, seconds and fractions that end a datetime label: ``2019-03-01T00``.
_ZEROS_AT_END = re.compile(r"(?::00){1,2}(?:\.0+)?$|\.0+$")


def _split_fingerprint(data: Any) -> dict[str, Any]:
    """A cheap fingerprint of a split's fields: their count, the labels of the first and the
    last (source and every sample dim, crop left out) and a SHA-256 of all their labels in
    order. ``{"fields": 0}`` for no split (``data`` None)."""
    if data is None:
        return {"fields": 0}
    digest = hashlib.sha256()
    first: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    fields = 0
    for field in data.field_labels():
        labels = {k: str(v) for k, v in field.items()}
        digest.update(json.dumps(labels, sort_keys=True).encode("utf-8") + b"\n")
        first = first or labels
        fields += 1
    return {"fields": fields, "first": first, "last": labels, "sha256": digest.hexdigest()}


def _field_words(labels: Any) -> str:
    """A field's labels for a message: ``"time 2019-03-01T00 (era5)"``."""
    if not isinstance(labels, dict):
        return "?"
    shown = [f"{k} {_ZEROS_AT_END.sub('', str(v))}" for k, v in labels.items() if k != "source"]
    source = f" ({labels['source']})" if "source" in labels else ""
    return (", ".join(shown) or "the field") + source


def _split_words(record: Mapping[str, Any]) -> str:
    """A split's fingerprint in words: ``"408 fields, time 2019-03-01T00 (era5) to ..."``."""
    fields = record.get("fields")
    if not fields:
        return "no fields"
    return f"{fields} fields, {_field_words(record.get('first'))} to {_field_words(record.get('last'))}"


def _statistics_changes(recorded: Any, now: Mapping[str, Any]) -> list[str]:
    """How the statistics fitted now (``Normalizer.to_dict()``) differ from the recorded ones,
    one entry per variable (``[]`` when they agree within :data:`_SAME_STATISTICS`, or when
    either cannot be read as a :class:`~flexdownscale.data.Normalizer`)."""
    from .data.normalize import Normalizer

    if not isinstance(recorded, dict) or not now:
        return []
    try:
        before, after = Normalizer.from_dict(recorded), Normalizer.from_dict(now)
    except (DataError, ConfigError):
        return []
    changes = []
    for name, new in after.stats.items():
        old = before.stats.get(name)
        if old is None:
            continue  # another list of variables: refused on its own (_check_same_variables)
        units = f" {new.units}" if new.units else ""
        parts = []
        if abs(new.mean - old.mean) > _SAME_STATISTICS * old.std:
            parts.append(f"mean {old.mean:.6g} -> {new.mean:.6g}{units}")
        if abs(new.std - old.std) > _SAME_STATISTICS * old.std:
            parts.append(f"std {old.std:.6g} -> {new.std:.6g}{units}")
        if new.transform != old.transform:
            parts.append(f"transform {old.transform} -> {new.transform}")
        if parts:
            changes.append(f"{name} " + ", ".join(parts))
    return changes


def _data_changes(recorded: Any, now: Mapping[str, Any]) -> list[str]:
    """What differs between the data record of a state (``recorded``: ``{"fitted", "train",
    "validation", "grid"}``) and this launch's (``now``), in words; ``[]`` when nothing does."""
    if not isinstance(recorded, dict):
        return []
    changes = []
    stats = _statistics_changes(recorded.get("fitted"), now["fitted"] or {})
    if stats:
        changes.append("the statistics of the training split (" + "; ".join(stats) + ")")
    for split, name in (("train", "training"), ("validation", "validation")):
        old, new = recorded.get(split), now[split]
        if not isinstance(old, dict) or old == new:
            continue
        if _split_words(old) != _split_words(new):
            changes.append(f"the {name} split ({_split_words(old)} -> {_split_words(new)})")
        else:
            changes.append(
                f"the {name} split's field labels ({_split_words(new)} both times, but other "
                "labels in between)"
            )
    old_grid, new_grid = recorded.get("grid"), now["grid"]
    if isinstance(old_grid, dict) and isinstance(new_grid, dict) and old_grid != new_grid:
        keys = [k for k in new_grid if old_grid.get(k) != new_grid.get(k)]
        changes.append(
            "the grid ("
            + ", ".join(f"{k} {old_grid.get(k)!r} -> {new_grid.get(k)!r}" for k in keys)
            + ")"
        )
    return changes


# --------------------------------------------------------------------------------------------
# Fine-tuning (init_from)
# --------------------------------------------------------------------------------------------

#: What a fine-tuning run records of the model it started from, in its run folder at its start;
#: a resume reads the settings and the normalization from it, never the source folder.
INIT_FROM_FILE = "init_from.json"
#: The ``[model]`` keys taken from the source folder when left at their defaults: they decide the
#: shapes of the weights or what the network's inputs mean.
_SOURCE_MODEL_KEYS = ("backbone", "preset", "task", "conditioning", "patch_size", "image_size")
#: The ``[diffusion]`` keys taken from the source folder: they decide what the network's output
#: and its time input mean (``loss``, ``loss_scale``, ``t_min`` and ``t_max`` are training
#: choices of this run).
_SOURCE_DIFFUSION_KEYS = (
    "objective",
    "target",
    "logsnr_min",
    "logsnr_max",
    "shift",
    "base",
    "base_sigma",
    "idff_sigma",
    "idff_c",
)


def _load_source_folder(reference: str) -> Any:
    """The checked :class:`~flexdownscale.hub.ModelFolder` that ``init_from`` names (a shipped
    model, a folder or a Hub id); its weights are read with safetensors only.

    Raises
    ------
    ModelFolderError
        When no model folder has that name or the folder is incomplete or damaged; the message
        starts with ``init_from = ...``.
    """
    from .hub import load_model_folder

    try:
        return load_model_folder(reference)
    except ModelFolderError as err:
        run = _user_path(reference)
        if run.is_dir() and (run / "config.toml").is_file() and (run / "checkpoints").is_dir():
            raise type(err)(f"init_from = {reference!r}: {_run_folder_advice(run)}") from err
        raise type(err)(f"init_from = {reference!r}: {err}") from err


def _run_folder_advice(run: Path) -> str:
    """What to pass instead of a training run's folder as ``init_from``: the model it exported
    to ``run/model``, or the command that exports it first."""
    model = run / "model"
    if (model / "config.json").is_file() and (model / "model.safetensors").is_file():
        return (
            f"this is a training run's folder, not a model folder; its exported model is "
            f"{str(model)!r}: set init_from = {json.dumps(str(model))}"
        )
    if not list_states(run):
        return (
            "this is a training run's folder, not a model folder, and it holds no training "
            "state to export (the run stopped before its first state): train it further, or "
            "set init_from to an exported model folder"
        )
    return (
        "this is a training run's folder, not a model folder, and its model was never "
        "exported: export its latest state first with `python -m flexdownscale.train --config "
        f"{run / 'config.toml'} --export-only run_dir={run}` (started where the run was, "
        "its data paths are read as written), then set init_from = "
        f"{json.dumps(str(model))}"
    )


def _source_record(reference: str, folder: Any) -> dict[str, Any]:
    """What a fine-tuning run keeps of its source folder (written to ``init_from.json`` and to
    every training state's marker): its provenance (with the source's own origin when it was
    itself fine-tuned), the settings its weights were trained with and its normalization.

    ``shipped`` is true only for a folder inside the package (a local folder named like a
    shipped model is not one)."""
    from .hub import CONFIG_FILE, WEIGHTS_FILE, shipped_models

    saved = json.loads((folder.path / CONFIG_FILE).read_text(encoding="utf-8"))
    grid = folder.grid
    path = Path(folder.path).resolve()
    parent = folder.extra.get("fine_tuned_from")
    return {
        "init_from": reference,
        "path": str(path),
        "shipped": any(path == p.resolve() for p in shipped_models().values()),
        "package_version": saved.get("package_version"),
        "weights_sha256": (saved.get("sha256") or {}).get(WEIGHTS_FILE),
        "train_steps": folder.extra.get("train_steps"),
        "model": to_dict(folder.model),
        "diffusion": to_dict(folder.diffusion),
        "task": folder.task,
        "factor": folder.factor,
        "degradation": grid.get("degradation"),
        "upsample": grid.get("upsample"),
        "past_frames": grid.get("past_frames", folder.model.past_frames),
        "variables": list(folder.variables),
        "units": dict(folder.units),
        "condition": dict(folder.condition) if folder.condition else None,
        "normalization": dict(folder.normalization),
        "grid": grid.get("grid"),
        # the lineage: where the source itself started (its fine_tuned_from), if anywhere
        "fine_tuned_from": parent if isinstance(parent, dict) else None,
    }


def _is_source_record(value: Any) -> bool:
    """Whether ``value`` looks like a source record (:func:`_source_record`)."""
    return isinstance(value, dict) and {"model", "diffusion", "variables", "normalization"} <= set(
        value
    )


def _source_transforms(source: Mapping[str, Any]) -> dict[str, str]:
    """The transform of each variable in the source's normalization (``{"t2m": "none"}``)."""
    return {
        str(entry["name"]): str(entry.get("transform", "none"))
        for entry in source["normalization"].get("variables", [])
    }


def _provenance(source: Mapping[str, Any], normalization: str) -> dict[str, Any]:
    """The source's provenance as the exported folder and ``launches.jsonl`` record it, with
    the source's own ``fine_tuned_from`` (its lineage) when it was itself fine-tuned."""
    keys = ("init_from", "path", "shipped", "package_version", "weights_sha256", "train_steps")
    record = {**{k: source.get(k) for k in keys}, "normalization": normalization}
    if isinstance(source.get("fine_tuned_from"), dict):
        record["fine_tuned_from"] = source["fine_tuned_from"]
    return record


def _provenance_words(
    source: Mapping[str, Any], *, code: bool = False, lineage: bool = True
) -> str:
    """``era5-t2m-x4 (a shipped model exported with flexdownscale 0.1.0, trained 2200 steps)``,
    followed by the source's own origin (``, itself fine-tuned from ...``) down its lineage
    (``lineage=False``: the source alone); ``code``: the names in backticks (markdown). The version is the one that exported the
    folder (its ``config.json``), not the one running."""
    words = []
    seen: Mapping[str, Any] | None = source
    while isinstance(seen, Mapping) and len(words) < 10:
        version = seen.get("package_version") or "an unknown version"
        made = (
            f"a shipped model exported with flexdownscale {version}"
            if seen.get("shipped")
            else f"exported with flexdownscale {version}"
        )
        steps = seen.get("train_steps")
        if isinstance(steps, int) and not isinstance(steps, bool):
            made += f", trained {steps} step{'' if steps == 1 else 's'}"
        name = f"`{seen.get('init_from')}`" if code else str(seen.get("init_from"))
        words.append(f"{name} ({made})")
        seen = seen.get("fine_tuned_from") if lineage else None
    return ", itself fine-tuned from ".join(words)


def _fine_tuning_config(
    config: TrainConfig, source: Mapping[str, Any]
) -> tuple[TrainConfig, dict[str, Any]]:
    """``config`` with the settings of the source model put in for the keys left out, and
    ``{key: value}`` of those that took another value than the default.

    A key the file, mapping or overrides gave (``config._given_keys``) with
    another value than the folder's is a conflict, at its default value too; for a
    configuration built in Python, where which keys were given is not known, a key at its
    default value counts as left out. An empty ``data.variables`` is always taken from the
    folder.

    Raises
    ------
    ConfigError
        Naming every conflicting key with both values and the fix.
    """
    from .config import DataConfig, DiffusionConfig, ModelConfig, _given_keys

    given_keys = _given_keys(config) or frozenset()
    src_model = from_dict(ModelConfig, source["model"])
    src_diffusion = from_dict(DiffusionConfig, source["diffusion"])
    defaults = {"model": ModelConfig(), "diffusion": DiffusionConfig(), "data": DataConfig()}
    updates: dict[str, dict[str, Any]] = {"model": {}, "diffusion": {}, "data": {}}
    conflicts: list[tuple[str, Any, Any]] = []
    taken: dict[str, Any] = {}

    def agree(section: str, key: str, wanted: Any, *, take: bool = True) -> None:
        given = getattr(getattr(config, section), key)
        if given == wanted:
            return
        if given == getattr(defaults[section], key) and f"{section}.{key}" not in given_keys:
            if take:
                updates[section][key] = wanted
                taken[f"{section}.{key}"] = wanted
            return
        conflicts.append((f"{section}.{key}", given, wanted))

    for key in _SOURCE_MODEL_KEYS:
        agree("model", key, getattr(src_model, key))
    variables = tuple(source["variables"])
    # set from the data by the trainer: checked only when set (the data keys below decide them)
    agree("model", "in_channels", len(variables), take=False)
    agree("model", "out_channels", src_model.out_channels, take=False)
    agree("model", "past_frames", src_model.past_frames, take=False)
    agree("model", "physical_condition", bool(source.get("condition")), take=False)
    for key in _SOURCE_DIFFUSION_KEYS:
        agree("diffusion", key, getattr(src_diffusion, key))
    if source["task"] == "superres":
        agree("data", "factor", int(source["factor"]))
        for key in ("degradation", "upsample"):
            if source.get(key) is not None:
                agree("data", key, source[key])
    else:
        agree("data", "past_frames", int(source.get("past_frames") or 1))
    if config.data.variables and tuple(config.data.variables) != variables:
        conflicts.append(("data.variables", list(config.data.variables), list(variables)))
    elif not config.data.variables:
        updates["data"]["variables"] = variables
        taken["data.variables"] = list(variables)
    condition = source.get("condition")
    if condition:
        if config.data.condition is None and "data.condition" in given_keys:  # condition=none
            conflicts.append(("data.condition", None, condition["name"]))
        elif config.data.condition is None:  # any name is fine: the variable of these files
            updates["data"]["condition"] = condition["name"]
            taken["data.condition"] = condition["name"]
        agree("data", "condition_scale", float(condition.get("scale", 1.0)))
    elif config.data.condition is not None:
        conflicts.append(("data.condition", config.data.condition, None))
    if config.data.transforms != "auto":
        known = _source_transforms(source)
        for name, transform in config.data.transforms.items():
            if name in known and transform != known[name]:
                conflicts.append((f"data.transforms.{name}", transform, known[name]))
    if conflicts:
        listing = "; ".join(
            f"{key} = {_shown(given)} (the folder's: {_shown(wanted)})"
            for key, given, wanted in conflicts
        )
        fix = " ".join(
            f"{key}={'none' if wanted is None else _toml_value(wanted)}"
            for key, _, wanted in conflicts
        )
        raise ConfigError(
            f"init_from = {source['init_from']!r} starts from weights trained with other "
            f"settings than this configuration's: {listing}. Leave these keys out (they are "
            f"then taken from the folder) or set the folder's values ({fix}); another "
            "architecture, objective, factor or other variables need a run from random weights "
            "(leave init_from out)"
        )
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **updates["model"]),
        diffusion=dataclasses.replace(config.diffusion, **updates["diffusion"]),
        data=dataclasses.replace(config.data, **updates["data"]),
    )
    return config, taken


# --------------------------------------------------------------------------------------------
# Files of the run folder
# --------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, datetime.date | datetime.time):  # TOML dates, date-times and times
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table ({tp = "log1p"}), as a value or override
        bare = re.compile(r"[A-Za-z0-9_-]+")
        return (
            "{"
            + ", ".join(
                f"{k if bare.fullmatch(str(k)) else json.dumps(str(k))} = {_toml_value(v)}"
                for k, v in value.items()
            )
            + "}"
        )
    raise ConfigError(f"cannot write {value!r} to TOML")


def _json_default(value: Any) -> Any:
    """``json.dumps`` fallback: dates, date-times and times (TOML split labels) as ISO strings."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serializable")


def _json_plain(values: Any) -> Any:
    """``values`` as JSON would give it back (dates as ISO strings, tuples as lists)."""
    return json.loads(json.dumps(values, default=_json_default))


def dump_toml(values: dict[str, Any]) -> str:
    """Write a nested dict of scalars and lists as TOML (enough for configurations).

    Dates, date-times and times (e.g. split labels written unquoted in the TOML file) are written
    as TOML dates and times.
    """
    lines: list[str] = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, dict)]
        if prefix and scalars:
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars)
        for key, value in table.items():
            if isinstance(value, dict):
                emit(f"{prefix}.{key}" if prefix else key, value)

    emit("", values)
    return "\n".join(lines).lstrip("\n") + "\n"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _trim_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Keep the records of the JSON-lines log ``path`` that ``keep`` accepts (blank lines go);
    rewritten atomically when anything goes, created empty when absent."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [line for line in lines if line.strip() and keep(json.loads(line))]
    if not path.is_file() or len(kept) != len(lines):
        _atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _user_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded to that home folder.

    No shell expands ``~`` in a TOML file or a Python string, and ``Path("~/runs")`` is a folder
    named ``~`` in the working directory; a path without ``~`` is returned unchanged (relative
    paths stay relative to the working directory). ``os.path.expanduser`` leaves ``~`` as it is
    where no home folder is known (``Path.expanduser`` would raise).
    """
    return Path(os.path.expanduser(os.fspath(path)))


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or inside it (both resolved)."""
    return path == folder or folder in path.parents


def _children(folder: Path) -> list[Path]:
    """The entries of ``folder`` (none when it does not exist)."""
    return list(folder.iterdir()) if folder.is_dir() else []


def list_states(run_dir: Path) -> list[Path]:
    """Complete training states of a run, oldest first (incomplete temporary folders ignored)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    states = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_")]
    return sorted((p for p in states if (p / STATE_MARKER).is_file()), key=lambda p: p.name)


def _check_counters(progress: Any, path: Path) -> None:
    keys = ("step", "micro_batches", "samples")
    if not (
        isinstance(progress, dict)
        and all(isinstance(progress.get(k), int) and progress[k] >= 0 for k in keys)
    ):
        raise CheckpointError(
            f"{str(path)!r} does not hold the counters of a training state (expected "
            f"non-negative integers {', '.join(keys)}); the state is damaged: remove it to fall "
            "back to the previous state"
        )


@contextlib.contextmanager
def _without_pickled_objects(state: Path) -> Iterator[Path]:
    """A temporary view of ``state`` (links to its files) without ``custom_checkpoint_*.pkl``:
    accelerate would unpickle those with ``weights_only=False``. The state is not changed."""
    view = Path(tempfile.mkdtemp(prefix="flexdownscale-state-"))
    try:
        for entry in state.iterdir():
            if _OLD_CUSTOM_STATE.match(entry.name):
                continue
            try:
                os.symlink(entry.resolve(), view / entry.name)
            except OSError:  # no symlinks (some Windows setups): copy
                shutil.copy2(entry, view / entry.name)
        yield view
    finally:
        shutil.rmtree(view, ignore_errors=True)


class _FolderLock:
    """This process's hold on the lock file of one run folder (:data:`LOCK_FILE`).

    One per folder and process, kept in :data:`_HELD_LOCKS`: a trainer of this process takes it
    over from another one that is idle (built, or done with :meth:`Trainer.fit`), so a notebook
    that builds a second trainer on a folder is not refused by its own first one; a trainer in
    the middle of ``fit`` or ``export`` (``busy``) keeps it.
    """

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self.handle = handle
        self.owner = 0  # id() of the trainer holding it
        self.busy = 0  # how deep its owner is in fit() / export()


#: The run-folder locks this process holds, by the lock file's resolved path.
_HELD_LOCKS: dict[str, _FolderLock] = {}


def _lock_key(run_dir: Path) -> str:
    return os.path.realpath(run_dir / LOCK_FILE)


def _holder_words(text: str) -> str:
    """Who holds a run folder's lock, from the lock file's text (written by the holder)."""
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "pid" not in record:
        return "another process (the lock file does not name it yet)"
    words = f"pid {record['pid']}"
    if record.get("host"):
        words += f" on host {record['host']!r}"
    if record.get("started"):
        words += f", started {record['started']}"
    if record.get("command"):
        words += f": {record['command']}"
    return words


def _lock_refusal(run_dir: Path, holder: str) -> CheckpointError:
    """The error of a launch on a run folder that another live launch trains in."""
    return CheckpointError(
        f"run_dir {str(run_dir)!r} is in use: another training launch holds its lock "
        f"({str(run_dir / LOCK_FILE)!r}), {holder}. Two launches on one run folder would both "
        "write its training states, logs and model. Wait for that launch to end (or stop it), "
        f"then continue the run with {_option('resume')}; or give this launch another run_dir"
    )


def _state_missing_for_step(states: Sequence[Path], step: int) -> bool:
    """Whether ``states`` (complete states, oldest first: :func:`list_states`) lack the state of
    optimiser step ``step``, which a launch saves at its end.

    Examples
    --------
    >>> _state_missing_for_step([Path("step_00000002"), Path("step_00000004")], 4)
    False
    >>> _state_missing_for_step([Path("step_00000002")], 4), _state_missing_for_step([], 4)
    (True, True)
    """
    return not states or states[-1].name != f"step_{step:08d}"


def _unwrapped(accelerator: Any, model: torch.nn.Module) -> torch.nn.Module:
    """``model`` without the wrappers of ``accelerator.prepare``: DDP's and ``torch.compile``'s
    (:meth:`Trainer._plain_model` says why the compiled wrapper goes too)."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def _appears(check: Callable[[], bool]) -> bool:
    """Whether ``check()`` holds now or becomes true within :data:`SHARED_FOLDER_WAITS` looks
    0.25 s apart: a network file system can show a file another node wrote a moment late."""
    for _ in range(SHARED_FOLDER_WAITS):
        if check():
            return True
        time.sleep(0.25)
    return check()


def _absent_rank_states(folder: Path, processes: int) -> list[int]:
    """The process indices in ``range(processes)`` whose random state
    (``random_states_<index>.pkl``, saved by each process) is not in ``folder``."""
    return [
        rank for rank in range(processes) if not (folder / f"random_states_{rank}.pkl").is_file()
    ]


def _absent_names(ranks: Sequence[int]) -> str:
    """The random-state file names of ``ranks``, the first three and a count of the rest."""
    names = [f"random_states_{rank}.pkl" for rank in ranks[:3]]
    more = len(ranks) - len(names)
    return ", ".join(names) + (f" and {more} more" if more else "")


def _take_run_lock(run_dir: Path, owner: object) -> _FolderLock | None:
    """Lock ``run_dir`` (an existing folder) for the trainer ``owner``.

    Returns the lock, or ``None`` where no lock can be taken (no ``fcntl``, or a file system
    that refuses ``flock``: said on stderr). Raises :class:`CheckpointError` when another
    process holds it, or a busy trainer of this process.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    key = _lock_key(run_dir)
    held = _HELD_LOCKS.get(key)
    if held is not None:
        if held.busy and held.owner != id(owner):
            raise _lock_refusal(run_dir, f"this process (pid {os.getpid()}), in another trainer")
        held.owner = id(owner)
        weakref.finalize(owner, _drop_run_lock, key, id(owner))
        return held
    path = run_dir / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run's life
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        handle.seek(0)
        text = handle.read() if err.errno in LOCK_TAKEN else ""
        handle.close()
        if err.errno in LOCK_TAKEN:
            raise _lock_refusal(run_dir, _holder_words(text)) from None
        print(  # e.g. a network file system mounted without locks
            f"flexdownscale.train: cannot lock {str(path)!r} ({err.strerror or err}): a second "
            "launch on this run folder would not be refused",
            file=sys.stderr,
        )
        return None
    record = {
        "pid": os.getpid(),
        "host": platform.node(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": (  # python -m, accelerate launch -m: argv[0] is this file
            "python -m flexdownscale.train " + " ".join(sys.argv[1:])
            if _COMMAND_LINE.get()
            else "Python: " + " ".join(sys.argv)
        ),
    }
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(record) + "\n")
    handle.flush()
    lock = _HELD_LOCKS[key] = _FolderLock(path, handle)
    lock.owner = id(owner)
    weakref.finalize(owner, _drop_run_lock, key, id(owner))
    return lock


def _drop_run_lock(key: str, owner: int) -> None:
    """Release the lock ``key`` when the trainer ``owner`` holds it and is not busy with it."""
    lock = _HELD_LOCKS.get(key)
    if lock is None or lock.owner != owner or lock.busy:
        return
    del _HELD_LOCKS[key]
    with contextlib.suppress(OSError):  # the holder's details go: no stale pid to read
        lock.handle.seek(0)
        lock.handle.truncate()
    lock.handle.close()  # closing drops the flock


def _releases_run_lock(init: Callable[..., None]) -> Callable[..., None]:
    """``Trainer.__init__`` that releases the run folder's lock when it raises."""

    @functools.wraps(init)
    def wrapper(self: Trainer, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            key = getattr(self, "_lock_key", None)
            if key is not None:
                _drop_run_lock(key, id(self))
            raise

    return wrapper


_T = TypeVar("_T")


def _keeps_callers_state(method: Callable[..., _T]) -> Callable[..., _T]:
    """A public :class:`Trainer` method that leaves the caller's process state as it found it.

    Building and training reseed the process's global random streams (Python's ``random``,
    numpy's, torch's on the CPU and CUDA: Accelerate's ``set_seed`` and the training noise)
    and need float32 as torch's default dtype. The outermost such call of a trainer saves the
    caller's streams and default dtype, puts back the streams the trainer's previous call left
    (so its own sequence of draws is the one it would be alone in the process), runs with
    float32 as the default dtype, and then keeps the trainer's streams for its next call and
    puts the caller's back. Calls made from inside another (``fit`` validating, exporting) run
    as they are.
    """

    @functools.wraps(method)
    def wrapper(self: Trainer, *args: Any, **kwargs: Any) -> _T:
        if self.__dict__.get("_in_public_call", False):
            return method(self, *args, **kwargs)
        callers = _global_random_state()
        dtype = torch.get_default_dtype()
        own = self.__dict__.get("_own_random_state")
        self.__dict__["_in_public_call"] = True
        try:
            if own is not None:
                _set_global_random_state(own)
            torch.set_default_dtype(torch.float32)
            return method(self, *args, **kwargs)
        finally:
            self.__dict__["_in_public_call"] = False
            self.__dict__["_own_random_state"] = _global_random_state()
            _set_global_random_state(callers)
            torch.set_default_dtype(dtype)

    return wrapper


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


def resolve_sampler(config: TrainConfig) -> TrainConfig:
    """``config`` with ``[sampler]`` resolved for its objective.

    A sampler that does not apply to ``diffusion.objective`` (the default ``"ddim"`` for a flow
    or IDFF model) is replaced by the objective's default settings (its sampler and options);
    ``sampler.steps`` is kept when it was changed from its default (2), otherwise the objective's
    default number of steps is used. Validation samples with the resolved settings, and they are
    what the run folder and the exported model store. Returns ``config`` itself when nothing
    changes.

    Parameters
    ----------
    config : TrainConfig
        The run's configuration.

    Returns
    -------
    TrainConfig
        ``config`` with the resolved ``[sampler]`` (a new configuration), or ``config`` itself
        when its sampler applies to the objective.
    """
    from .diffusion import build_objective

    objective = build_objective(config.diffusion)
    samplers = getattr(objective, "samplers", (config.sampler.sampler,))
    if config.sampler.sampler in samplers:
        return config
    sampler = objective.sampler_defaults
    if config.sampler.steps != SamplerConfig().steps:
        sampler = dataclasses.replace(sampler, steps=config.sampler.steps)
    return dataclasses.replace(config, sampler=sampler)


_FINGERPRINT_CHUNK = 1 << 20  # values per step of the weights' fingerprint (8 MiB in float64)


def _parameter_fingerprint(
    parameters: Iterable[torch.Tensor], *, chunk: int = _FINGERPRINT_CHUNK
) -> torch.Tensor:
    """A fingerprint of the weights: ``[sum(w), sum(w_i * sin(i))]`` in float64 over every
    value of ``parameters`` taken in order and flattened (``i`` counts from 1 across them all).

    Equal weights give equal fingerprints; the second, position-weighted sum also tells apart
    weights that hold the same values in another order. The sums accumulate ``chunk`` values
    at a time, so the memory it takes is bounded (about ``32 * chunk`` bytes) whatever the
    model's size: joining every parameter into one float64 tensor took about 31 bytes per
    parameter at once (+1.9 GB of peak memory for the small preset). The value agrees with that single sum to
    the last digits only (the additions are grouped otherwise: 6e-15 relative on the small
    preset), and is the same on every rank for the same weights (the same additions in the
    same order).

    Parameters
    ----------
    parameters
        The tensors, in a fixed order (``model.parameters()``); they stay on their device.
    chunk
        How many values each step of the sums reads.

    Returns
    -------
    torch.Tensor
        Shape ``(2,)``, float64, on the device of the parameters (CPU when there are none).
    """
    total: torch.Tensor | None = None
    weighted: torch.Tensor | None = None
    start = 0  # values already summed: the position (from 0) of the next one
    for parameter in parameters:
        values = parameter.detach().reshape(-1)
        for begin in range(0, values.numel(), chunk):
            part = values[begin : begin + chunk].double()
            position = torch.arange(
                start + begin + 1,
                start + begin + part.numel() + 1,
                dtype=torch.float64,
                device=part.device,
            )
            part_sum, part_weighted = part.sum(), (part * position.sin_()).sum()
            if total is None or weighted is None:
                total, weighted = part_sum, part_weighted
            else:
                total, weighted = total + part_sum, weighted + part_weighted
        start += values.numel()
    if total is None or weighted is None:
        return torch.zeros(2, dtype=torch.float64)
    return torch.stack([total, weighted])


def _device_name(device: torch.device) -> str:
    """The compute device a launch ran on, in words: a GPU's name (``"NVIDIA H100 80GB HBM3"``),
    or for a CPU its model name as the system reports it (``/proc/cpuinfo`` on Linux) with the
    core count torch uses (``"AMD EPYC 7B13, 2 threads"``); ``platform.machine()`` (the
    instruction set, ``"x86_64"``) only where no name can be read."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    name = ""
    with contextlib.suppress(OSError):
        for line in (
            Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        ):
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                name = value.strip()
                break
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    threads = torch.get_num_threads()
    return f"{name}, {threads} thread{'s' if threads != 1 else ''}"


def _usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it, else
    ``os.cpu_count()``)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _one_thread_advice(
    device: torch.device,
    *,
    threads: int,
    cores: int,
    processes: int,
    environ: Mapping[str, str],
) -> str | None:
    """Why and how to fix a CPU training that runs on one torch thread while cores stand idle,
    or ``None``.

    ``accelerate launch`` without an accelerate configuration (and without ``--cpu``) sets
    ``OMP_NUM_THREADS=1`` for the processes it starts: on a CPU each then trains on one thread
    and leaves the other cores idle. Its threads are ``--num_cpu_threads_per_process``, else the
    launching shell's ``OMP_NUM_THREADS``, else (with ``--cpu`` or ``use_cpu: true``) the
    physical cores shared out among the processes when that is more than one, else 1; an
    accelerate configuration file has no key for them. Only launches that
    ``accelerate launch`` started are named (:func:`_launcher`):
    ``OMP_NUM_THREADS=1`` given to ``python -m flexdownscale.train``, or ``torch.set_num_threads(1)``
    from Python, is the user's own choice.

    Parameters
    ----------
    device
        The training device; only a CPU is concerned.
    threads
        ``torch.get_num_threads()`` of this process.
    cores
        The cores this process may use.
    processes
        The training processes on this machine (each gets its own threads).
    environ
        The process's environment.

    Returns
    -------
    str or None
        The warning's text, or ``None`` when there is nothing to say.
    """
    if device.type != "cpu" or threads != 1 or cores <= processes:
        return None
    if _launcher(environ).name != "accelerate launch":
        return None
    per_process = max(1, cores // processes)
    each = "the process" if processes == 1 else f"each of the {processes} processes"
    return (
        f"training on the CPU with one torch thread in {each} while {cores} cores are "
        f"usable: `accelerate launch` sets OMP_NUM_THREADS={environ.get('OMP_NUM_THREADS', '1')} "
        "unless told otherwise. Give it --num_cpu_threads_per_process "
        f"{per_process} (or export OMP_NUM_THREADS={per_process} before it: a configuration "
        "file of `accelerate config` has no setting for the threads), or train one "
        "CPU process with `python -m flexdownscale.train`, which uses every core (on a "
        "machine other jobs keep busy, fewer threads can be faster: compare launches.jsonl's "
        "train_samples_per_s)"
    )


def _tf32_flags() -> dict[str, bool]:
    """Whether float32 matrix products (``"matmul"``) and cuDNN convolutions (``"cudnn"``) may
    run in TF32 on a GPU, as torch's settings say now (for ``launches.jsonl``).

    Read from ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``
    (torch's defaults: ``False`` and ``True``); where torch refuses to answer those (a process
    that set the TF32 flags with torch's newer ``fp32_precision`` settings), from the operators'
    own ``fp32_precision`` (``"tf32"``; ``"none"`` defers to the setting above it).
    """
    backends = torch.backends

    def newer(*settings: Any) -> bool:
        for setting in settings:
            value = getattr(setting, "fp32_precision", "none")
            if value != "none":
                return value == "tf32"
        return False

    try:
        matmul = bool(backends.cuda.matmul.allow_tf32)
    except RuntimeError:  # mixed legacy and new settings
        matmul = newer(backends.cuda.matmul, backends)
    try:
        cudnn = bool(backends.cudnn.allow_tf32)
    except RuntimeError:
        cudnn = newer(backends.cudnn.conv, backends.cudnn, backends)
    return {"matmul": matmul, "cudnn": cudnn}


def _peak_memory_gib(device: torch.device) -> tuple[float | None, str | None]:
    """The main process's peak memory in GiB and what it measures, for ``launches.jsonl``.

    On a GPU the peak of memory allocated by torch since the launch reset it
    (``"torch.cuda.max_memory_allocated"``); on a CPU the peak resident set of the process since
    it started, data loading included (``"ru_maxrss"``: kibibytes on Linux, bytes on macOS).
    ``(None, None)`` where the system reports neither (Windows, other accelerators).
    """
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        return round(peak, 3), "torch.cuda.max_memory_allocated"
    if device.type != "cpu":
        return None, None
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None, None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return round(maxrss * unit / 2**30, 3), "ru_maxrss"


def _png_pixels(path: Path) -> Any:
    """The RGB pixels of a PNG file, ``(height, width, 3)`` ``uint8`` (a figure written by
    :meth:`Trainer._plot`, for TensorBoard)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _precision(config: TrainConfig) -> str:
    """``config.precision`` in accelerate's words (``"no"``, ``"bf16"``, ``"fp16"``), with
    ``"auto"`` resolved for this machine. The precision a launch trains in is
    ``Trainer.precision`` (``"fp16"`` on a CPU trains in fp32, ``"no"``)."""
    if config.precision == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16"
        return "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[config.precision]


#: accelerate's names of the mixed precisions, as ``precision`` writes them.
_PRECISION_NAMES = {"no": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8"}


def _warn_accelerate_precision(environ: Mapping[str, str], used: str, config: TrainConfig) -> None:
    """Warn that the mixed precision of the accelerate configuration is not used.

    ``accelerate launch`` gives its processes ``ACCELERATE_MIXED_PRECISION`` (its configuration's
    ``mixed_precision``, or ``--mixed_precision``); the trainer trains in the run's
    ``precision`` instead. A launch that asked accelerate for a mixed precision (not ``"no"``,
    accelerate's default, which cannot be told from one the user chose) other than the one the
    run trains in is told which wins.

    Parameters
    ----------
    environ : mapping of str to str
        The process's environment (``os.environ``).
    used : str
        The precision the run trains in, in accelerate's words (``"no"``, ``"bf16"``, ``"fp16"``).
    config : TrainConfig
        The run's configuration (its ``precision`` is named in the message).
    """
    given = environ.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower()
    if given in ("", "no") or given in (used, config.precision):
        return  # asked alike (fp16 on a CPU, asked for by both, has a warning of its own)
    asked = f"precision = {config.precision!r}" + (
        f", {_PRECISION_NAMES.get(used, used)} here" if config.precision == "auto" else ""
    )
    warnings.warn(
        f"the accelerate configuration's mixed_precision {given!r} "
        "(ACCELERATE_MIXED_PRECISION) is not used: the run's precision wins, and this run trains "
        f"in {_PRECISION_NAMES.get(used, used)} ({asked}). "
        + (
            f"Set precision = {given!r} in the run's configuration to train in it"
            if given in ("bf16", "fp16")
            else "The run's precision is one of 'auto', 'fp32', 'bf16', 'fp16'"
        ),
        FlexDownscaleWarning,
        stacklevel=user_stacklevel(),
    )


def _check_process_precision(wanted: str, config: TrainConfig) -> None:
    """Refuse a trainer whose mixed precision differs from the one accelerate already holds for
    this process (set by an earlier trainer): accelerate keeps one precision per process, and
    its own refusal is a bare ``ValueError`` that names no setting of the run.

    Parameters
    ----------
    wanted : str
        The precision this trainer would give accelerate (``"no"``, ``"bf16"``, ``"fp16"``).
    config : TrainConfig
        The run's configuration (its ``precision`` is named in the message).

    Raises
    ------
    ConfigError
        When an earlier trainer of this process set another precision.
    """
    from accelerate.state import AcceleratorState

    shared = getattr(AcceleratorState, "_shared_state", None) or {}
    held = shared.get("_mixed_precision")
    kind = str(getattr(shared.get("distributed_type"), "value", shared.get("distributed_type")))
    if held is None or held == wanted or kind == "DEEPSPEED":
        return
    asked = f"precision = {config.precision!r}" + (
        f" ({_PRECISION_NAMES.get(wanted, wanted)} here)" if config.precision == "auto" else ""
    )
    raise ConfigError(
        f"{asked} cannot train in this Python process: an earlier Trainer of the process set "
        f"accelerate's mixed precision to {_PRECISION_NAMES.get(held, held)}, and accelerate "
        "keeps one precision per process (it cannot be changed once set). Train this run in a "
        "process of its own (python -m flexdownscale.train --config run.toml, or a "
        f"subprocess), or give it the precision of the earlier one (precision = "
        f"{_PRECISION_NAMES.get(held, held)!r})"
    )


def _warn_environment_accumulation(
    environ: Mapping[str, str], accumulation: int, config: TrainConfig
) -> None:
    """Warn that ``ACCELERATE_GRADIENT_ACCUMULATION_STEPS`` in ``environ`` is not used when it
    differs from the run's ``accumulation`` (``batch_size`` over the micro-batches of every
    process, from ``config``): the trainer gives accelerate its own accumulation, so that every
    optimiser step trains on ``batch_size`` samples as the run's records say.

    Parameters
    ----------
    environ : mapping of str to str
        The process's environment (``os.environ``).
    accumulation : int
        The micro-batches per process and optimiser step the run trains with.
    config : TrainConfig
        The run's configuration (its ``batch_size`` is named in the message).
    """
    given = environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "").strip()
    if not given or given == str(accumulation):
        return
    warnings.warn(
        f"ACCELERATE_GRADIENT_ACCUMULATION_STEPS={given} in the environment is not used: this "
        f"run accumulates {accumulation} micro-batch{'es' if accumulation != 1 else ''} per "
        f"optimiser step, from batch_size = {config.batch_size} (the samples of one "
        "optimiser step) over micro_batch_size and the processes. Set micro_batch_size "
        "(or batch_size) to change the accumulation, and unset the variable to silence this",
        FlexDownscaleWarning,
        stacklevel=user_stacklevel(),
    )


#: The validation loss's stream of times and noises: item ``i`` draws from the seed
#: ``SeedSequence([seed, _VALIDATION_STREAM, i])`` (see :func:`_validation_item_seed`).
_VALIDATION_STREAM = 1


def _validation_item_seed(seed: int, index: int) -> int:
    """The seed of validation item ``index``'s time and noise in a run of seed ``seed``."""
    import numpy as np

    high, low = np.random.SeedSequence([seed, _VALIDATION_STREAM, index]).generate_state(2)
    return int(high) << 32 | int(low)


def _item_seeded_loss(
    objective: Any,
    model: Callable[..., torch.Tensor],
    target: torch.Tensor,
    cond: torch.Tensor | None,
    phys: torch.Tensor | None,
    seeds: Sequence[int],
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> torch.Tensor:
    """The objective's per-sample loss of a batch whose items draw their times and noises each
    from a generator of their own seed, with one network call for the whole batch.

    One generator for a batch made an item's draw depend on its place in the batch; with one
    generator per item (``objective.loss`` draws each row from its own), the result does not
    depend on how the items are grouped into batches (up to the float rounding of the batched
    network).

    Parameters
    ----------
    objective
        The :class:`~flexdownscale.diffusion.Objective`.
    model
        The network, called as ``model(x_t, t, cond, phys=..., task_features=None)``.
    target, cond, phys
        The batch: the clean residual ``(B, C, ...)``, the task input (or None) and the
        physical condition ``(B,)`` (or None).
    seeds
        One seed per item of the batch.
    autocast
        Makes the context the network runs in (the accelerator's mixed precision).

    Returns
    -------
    torch.Tensor
        The per-sample loss, shape ``(B,)``.
    """

    def network(*args: Any, **kwargs: Any) -> torch.Tensor:
        with autocast():
            return model(*args, **kwargs)

    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
    return objective.loss(network, target, cond, phys=phys, generator=generators)


def _global_random_state() -> dict[str, Any]:
    """This process's global random states (Python, numpy, torch, CUDA): what the training
    noise is drawn from."""
    import numpy as np

    state: dict[str, Any] = {
        "random": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the global one)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_global_random_state(state: Mapping[str, Any]) -> None:
    """Put back the states :func:`_global_random_state` returned."""
    import numpy as np

    random.setstate(state["random"])
    np.random.set_state(state["numpy"])  # noqa: NPY002 (the global one)
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_resumable_setup(distributed_type: Any, fsdp_plugin: Any) -> None:
    """Refuse, before any step, a distributed setup whose states this trainer cannot resume.

    Sharded FSDP and DeepSpeed write their states as folders of pickles, which resume refuses
    to unpickle (see ``_load_state``); finding that out at the resume, after hours of training,
    would lose the run. Plain DDP, one process, and FSDP with full state dicts write single files.

    Raises
    ------
    ConfigError
        For DeepSpeed, or FSDP with a state-dict type other than ``FULL_STATE_DICT``.
    """
    kind = str(getattr(distributed_type, "value", distributed_type))
    if kind == "DEEPSPEED":
        raise ConfigError(
            "accelerate is set up for DeepSpeed, whose training states are folders of pickles "
            "that flexdownscale will not read back (it unpickles nothing), so the run could not "
            "be resumed. Train with plain DDP (accelerate config: multi-GPU) or FSDP with "
            "fsdp_state_dict_type FULL_STATE_DICT"
        )
    if kind == "FSDP":
        state_dict_type = getattr(fsdp_plugin, "state_dict_type", None)
        name = str(getattr(state_dict_type, "name", state_dict_type))
        if not name.endswith("FULL_STATE_DICT"):
            raise ConfigError(
                f"accelerate is set up for FSDP with fsdp_state_dict_type {name}: its training "
                "states are sharded folders of pickles that flexdownscale will not read back "
                "(it unpickles nothing), so the run could not be resumed. Set "
                "fsdp_state_dict_type: FULL_STATE_DICT in the accelerate config (or train with "
                "plain DDP)"
            )


def _warn_ignored_diffusion_settings(diffusion: Any) -> None:
    """Warn of ``[diffusion]`` settings the chosen objective does not read (``target = "eps"``
    with ``objective = "flow"``): they would be kept in the run's config and silently have no
    effect. Once, when a Trainer is built (loading a model folder does not warn)."""
    from .diffusion.objectives import _ignored_settings

    ignored = _ignored_settings(diffusion)
    if not ignored:
        return
    listing = "; ".join(
        f"diffusion.{name} = {value!r} (read only with {reader})"
        for name, (value, reader) in ignored.items()
    )
    warnings.warn(
        f"the {diffusion.objective!r} objective ignores {listing}. Remove "
        f"{'it' if len(ignored) == 1 else 'them'} from [diffusion], or choose the setting "
        "that reads it",
        FlexDownscaleWarning,
        stacklevel=user_stacklevel(),
    )


class Trainer:
    """One training run: model, objective, data, optimiser, EMA and the accelerate plumbing.

    Parameters
    ----------
    config
        The resolved run configuration.
    resume
        Continue from the latest complete state in ``config.run_dir``. Without it, a run folder
        that already holds states is refused (choose a new ``run_dir`` or pass ``resume=True``,
        ``--resume`` on the command line); a
        folder with logs but no state (a run that stopped before its first state) has its logs
        moved aside into ``old-<n>/``.
    export_only
        The trainer is built to export the latest state (``--export-only``; implies ``resume``).

    Raises
    ------
    ConfigError
        For settings that cannot train on these data: a ``run_dir`` that is a file, a
        ``data.crop_size`` larger than the grid (the message names the largest that fits),
        ``model.in_channels`` / ``out_channels`` / ``past_frames`` against what the data load;
        with ``init_from``, a ``[model]``, ``[diffusion]`` or ``[data]`` key set against the
        source folder's value (each named with both values), or units the source's
        normalization cannot take.
    ModelFolderError
        When ``init_from`` names no model folder or a damaged one; ``WeightsMismatchError``
        when its weights do not fit the architecture of its ``config.json``.
    CheckpointError
        For a run folder that another launch is training in (its lock, ``train.lock``, is
        held: the message names that launch's pid and host); for a run folder that some
        process of the launch does not see (node-local folders at one path); for a fresh start
        in a folder that holds states; for a resume that cannot continue: no state, a ``[model]``,
        ``[diffusion]`` or ``[data]`` section that differs from the run's (the keys are named), another optimiser, a changed
        sample order (checked against the state's marker when the run's ``config.json`` is
        missing), ``steps`` below the step the run has reached, or another ``init_from`` or
        ``init_normalization`` than the run started with.

    Notes
    -----
    ``config.sampler`` is resolved for the objective first (:func:`resolve_sampler`): the
    resolved settings are written to the run folder, used by validation and exported. A fresh
    start writes the run's configuration when the trainer is built; a resume once the state has
    loaded (:meth:`load_latest_state`), so a refused resume leaves the run folder as it was.

    With ``config.init_from`` (fine-tuning) the settings the source's weights depend on are
    taken from its folder (:func:`_fine_tuning_config`), its weights start the model and the
    EMA (optimiser and step counter start fresh), and the data are normalized with its
    statistics unless ``init_normalization = "refit"``. A fresh start writes the source's
    record to ``run_dir/init_from.json``; a resume reads it and never loads the source again.
    """

    @keyword_hints
    @_keeps_callers_state
    @_releases_run_lock
    def __init__(
        self, config: TrainConfig, *, resume: bool = False, export_only: bool = False
    ) -> None:
        self._created = time.perf_counter()  # the time limit counts the start-up too
        try:
            from accelerate import Accelerator
            from accelerate.utils import (
                DataLoaderConfiguration,
                GradientAccumulationPlugin,
                ProjectConfiguration,
                set_seed,
            )
        except ImportError as err:  # pragma: no cover - train extra missing
            raise BackendNotAvailableError(
                "training needs accelerate: pip install 'flexdownscale[train]'"
            ) from err

        _check_slurm_tasks(os.environ)  # before anything: each task would train alone
        self.run_dir = _user_path(config.run_dir)  # "~/runs/x": the home folder's runs/x
        self._lock_key = _lock_key(self.run_dir)  # LOCK_FILE, held by the main process
        # init_from: the source's record (settings, normalization, provenance), the folder to
        # load the weights from (a fresh start only: a resume continues its own state) and the
        # settings taken from it
        self.source: dict[str, Any] | None = None
        self._source_folder: Any = None
        self._taken: dict[str, Any] = {}
        self._spacing_change = ""  # the data's grid spacing against the source's, if other
        self._record_note = ""  # how a resume found the source's record, for the log line
        self._rewrite_record = False  # init_from.json is written again once the state loads
        if config.init_from is not None:
            config = self._fine_tuning(config, resume=resume or export_only)
        resolved = resolve_sampler(config)
        main_rank = _main_rank()  # before the accelerator exists
        if resolved is not config and config.sampler != SamplerConfig() and main_rank:
            from .diffusion import build_objective

            applying = build_objective(config.diffusion).samplers
            warnings.warn(
                f"sampler = {config.sampler.sampler!r} does not apply to the "
                f"{config.diffusion.objective!r} objective: validating and exporting with its "
                f"default sampler {resolved.sampler.sampler!r} ({resolved.sampler.steps} "
                f"step{'s' if resolved.sampler.steps != 1 else ''}). "
                f"Set sampler.sampler to one of {', '.join(map(repr, applying))} to choose",
                FlexDownscaleWarning,
                stacklevel=user_stacklevel(),
            )
        if main_rank:
            _warn_ignored_diffusion_settings(config.diffusion)
        self.config = config = resolved
        self.export_only = export_only
        self.resume = resume or export_only
        self.changed_settings: dict[str, tuple[Any, Any]] = {}  # on resume, from the saved config
        # (saved config or None without config.json, latest state): checked once the data are open
        self._resume_layout: tuple[TrainConfig | None, Path] | None = None
        log_with = None if config.logger == "none" else config.logger
        if config.logger == "wandb":
            try:
                import wandb  # noqa: F401  (imported only when chosen)
            except ImportError as err:
                raise BackendNotAvailableError(
                    "logger = 'wandb' needs wandb: pip install 'flexdownscale[wandb]', or set logger=tensorboard"
                ) from err
        if config.logger == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError as err:
                raise BackendNotAvailableError(
                    "logger = 'tensorboard' needs tensorboard: pip install 'flexdownscale[train]', "
                    "or set logger=none"
                ) from err

        # One accelerator first (without accumulation) to learn the world size.
        probe_processes = int(os.environ.get("WORLD_SIZE", "1"))
        micro = config.micro_batch_size or max(1, config.batch_size // probe_processes)
        if config.batch_size % (micro * probe_processes):
            raise ConfigError(
                f"batch_size = {config.batch_size} is not a multiple of micro_batch_size ({micro}) x "
                f"processes ({probe_processes}); choose batch_size = k x {micro * probe_processes}"
            )
        self.micro_batch_size = micro
        self.accumulation = config.batch_size // (micro * probe_processes)
        precision = _precision(config)
        if precision == "fp16" and not torch.cuda.is_available():
            # accelerate autocasts to float16 on GPUs only: on a CPU it trained in fp32 while
            # launches.jsonl and the export said fp16. Asked for fp32, and said so.
            if main_rank:
                warnings.warn(
                    "precision = 'fp16' has no effect on a CPU (float16 mixed precision runs on "
                    "GPUs only): this run trains in fp32, and launches.jsonl and the exported "
                    "model record fp32. precision = 'bf16' is the mixed precision of a CPU "
                    "(bfloat16 autocast); precision = 'fp32' says what runs",
                    FlexDownscaleWarning,
                    stacklevel=user_stacklevel(),
                )
            precision = "no"
        _check_process_precision(precision, config)  # one per process: refused clearly
        if main_rank:
            _warn_accelerate_precision(os.environ, precision, config)
            _warn_environment_accumulation(os.environ, self.accumulation, config)
        self.accelerator = Accelerator(
            # a plugin, not gradient_accumulation_steps=: accelerate lets the environment's
            # ACCELERATE_GRADIENT_ACCUMULATION_STEPS replace that argument, and each optimiser
            # step then trained on several batches while every record said batch_size
            gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=self.accumulation),
            mixed_precision=precision,
            log_with=log_with,
            project_config=ProjectConfiguration(
                project_dir=str(self.run_dir), logging_dir=str(self.run_dir / "logs")
            ),
            # every rank shuffles with the run's seed (one order per epoch, shared out among
            # the ranks): without data_seed each rank seeded its sampler from its own torch
            # seed (set below), so an epoch repeated some samples and left others out
            dataloader_config=DataLoaderConfiguration(
                use_seedable_sampler=True, data_seed=config.seed
            ),
            cpu=not torch.cuda.is_available(),
        )
        acc = self.accelerator
        # accelerate's gradient state is one per process: a later trainer's accumulation
        # replaces it, so fit puts this trainer's back (see _claim_process_state)
        self._accumulation_kwargs = dict(acc.gradient_state.plugin_kwargs)
        if acc.num_processes != probe_processes:  # pragma: no cover - launcher inconsistency
            raise ConfigError(
                f"expected {probe_processes} processes, accelerate reports {acc.num_processes}"
            )
        _check_resumable_setup(acc.distributed_type, getattr(acc.state, "fsdp_plugin", None))
        #: The precision this launch trains in, in accelerate's words ("no" is fp32): what
        #: launches.jsonl, the export's training_setup and its card record.
        self.precision = acc.mixed_precision if acc.native_amp else "no"

        self._shared_folder_checked = False  # every rank sees run_dir: checked once it exists
        self._check_run_folder()
        set_seed(config.seed)

        from .data.datasets import ForecastDataset
        from .data.datasets import from_config as dataset_from_config
        from .diffusion import build_objective
        from .models import build_model

        task = config.model.task
        data_config = self._data_to_open()
        train_normalizer: Any = "fit"
        transforms: Any = None
        if self.source is not None:
            if config.init_normalization == "source":  # the scales the network was trained on
                from .data.normalize import Normalizer

                train_normalizer = Normalizer.from_dict(self.source["normalization"])
            else:  # refit: this split's statistics, through the source's transforms
                transforms = _source_transforms(self.source)
            acc.print(self._fine_tuning_line())
        with self._crop_must_fit(), self._source_variables_must_exist():
            self.train_set = dataset_from_config(
                data_config,
                split="train",
                task=task,
                seed=config.seed,
                normalizer=train_normalizer,
                transforms=transforms,
            )
            # on resume, the statistics the state's weights are trained for (not the refit):
            # the validation split is opened, its fill values screened and scored, with them
            recorded, recorded_data = (
                self._recorded_normalization() if self.resume else (None, None)
            )
            self.val_set = None  # needed only to validate: eval_every = 0 needs no split
            if config.eval_every > 0 or config.data.validation:
                self.val_set = dataset_from_config(
                    data_config,
                    split="validation",
                    task=task,
                    seed=config.seed,
                    normalizer=recorded if recorded is not None else self.train_set.normalizer,
                )
                if isinstance(self.train_set, ForecastDataset):
                    self.train_set.check_same_step(self.val_set)
        for data in (self.train_set, self.val_set):
            # data.nan_fields = "drop": say which fields were left out (nothing silent)
            summary = data.dropped_summary() if data is not None else None
            if summary:
                acc.print(f"flexdownscale.train: data.{summary}")
        #: The statistics this launch's data give (fitted, or the source's under
        #: init_normalization = "source"): a state records them with its data fingerprint.
        self._fitted = self.train_set.normalizer
        self._data_record_cache: dict[str, Any] | None = None
        #: On resume, how the data differ from those of the state's launch (in words; warned
        #: about once the resume's other checks have passed, recorded in launches.jsonl).
        self.data_changes: list[str] = []
        if recorded is not None:  # the statistics the state's weights are trained for
            self._resume_normalization(recorded, recorded_data)
        if acc.is_main_process and not export_only:
            self._warn_dry_validation_crops()
        if self.source is not None:
            self._check_source_units()
            self._spacing_change = self._source_spacing_change()
            if self._spacing_change and self._source_folder is not None:
                acc.print(f"flexdownscale.train: {self._spacing_change}")
        if self._source_folder is not None:  # a fresh fine-tuning run: the source's weights
            self.model = self._model_with_source_weights()
        else:
            self.model = build_model(self._model_config())
        self.objective = build_objective(config.diffusion)
        # no weight decay on 1-D parameters (biases, normalization gains): two groups
        groups, self._group_positions = _parameter_groups(self.model, config.optim.weight_decay)
        self.optimizer = build_optimizer(groups, config.optim)
        # a state of an earlier version holds one group (weight decay on every parameter):
        # its moments are mapped onto these groups when it loads
        self._converted_groups: list[bool] = []
        self.optimizer.register_load_state_dict_pre_hook(
            _single_group_states(self._group_positions, self._converted_groups)
        )
        # the EMA starts from the model's weights: the source's, for a fine-tuning run
        self.ema = EMA(self.model, config.optim.ema_decay).to(acc.device)
        if acc.process_index > 0:
            # every rank built the same initial weights from the same seed; from here on each
            # draws its own diffusion times and noise (with one stream, every rank drew the same
            # noise for its micro-batch). Rank 0 keeps the single-process stream.
            import numpy as np

            rank_seed = np.random.SeedSequence([config.seed, acc.process_index])
            set_seed(int(rank_seed.generate_state(1)[0]))
        self.progress = Progress()
        self.evaluations = 0

        generator = torch.Generator().manual_seed(config.seed)
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=micro,
            shuffle=True,
            drop_last=True,
            num_workers=config.num_workers,
            # workers kept from one epoch to the next (started once, not at every epoch): the
            # dataset holds its epoch in shared memory, so set_epoch below reaches them
            persistent_workers=config.num_workers > 0,
            generator=generator,
            worker_init_fn=functools.partial(_loader_worker_signals, _workers_exit_flag()),
        )
        if len(loader) == 0:
            raise ConfigError(
                f"the training split has {len(self.train_set)} "
                f"sample{'s' if len(self.train_set) != 1 else ''}, fewer than one micro-batch "
                f"({micro}); lower batch_size, raise data.crops_per_field (now "
                f"{config.data.crops_per_field}: crops of each field per epoch) or add data"
            )
        if self._resume_layout is not None:
            self._check_sample_order(*self._resume_layout)
            self._warn_changed_data(self._resume_layout[1])
        self._prepare_run_folder()  # nothing in the run folder changes before this point
        if not self._shared_folder_checked:  # a fresh start: the main process has just made it
            self._check_every_rank_sees_the_run_folder()
        self.model, self.optimizer, self.loader = acc.prepare(self.model, self.optimizer, loader)
        # micro-batches used per epoch and process: whole accumulation groups only (a trailing
        # partial group would be a short optimiser step counted as a full batch)
        self.batches_per_epoch = len(self.loader) // self.accumulation * self.accumulation
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"the training split gives {len(self.loader)} micro-batches of {micro} per process "
                f"and epoch, fewer than one optimiser step ({self.accumulation} micro-batches); "
                "lower batch_size, raise data.crops_per_field (crops of each field per epoch) or "
                "add data"
            )
        # The EMA and the counters are saved with each state by save_state (safetensors and
        # JSON), not registered with accelerate: it would pickle them, and unpickle them with
        # weights_only=False on load (code from a state folder would run).
        self._log_with = log_with
        self._trackers_started = False
        self._sample_log: Any = None
        # the random states the training noise starts from (seeded above): a fresh run's first
        # fit starts from them, even when another trainer was built (and reseeded the process)
        # or random numbers were drawn in between
        self._random_state_at_build: dict[str, Any] | None = _global_random_state()

    # -- set-up helpers ---------------------------------------------------------------------

    def _start_trackers(self) -> None:
        """Open the logger (tensorboard events, wandb run) once, when training or validation
        first logs: a refused resume and ``--export-only`` write no event file."""
        if self._log_with is None or self._trackers_started:
            return
        self.accelerator.init_trackers("flexdownscale", config=_flat_scalars(to_dict(self.config)))
        self._trackers_started = True

    @contextlib.contextmanager
    def _source_variables_must_exist(self) -> Iterator[None]:
        """``data.variables`` taken from ``init_from`` (the configuration sets none) but not in
        the data: a :class:`~flexdownscale.errors.MissingVariableError` saying where the names
        came from and that this model cannot be fine-tuned on these data (not "fix
        data.variables": the user set none, and other variables would not fit the model's
        channels)."""
        from .errors import MissingVariableError

        try:
            yield
        except MissingVariableError as err:
            if self.source is None or "data.variables" not in self._taken:
                raise
            found = str(err).split("; fix ", 1)[0]  # what is missing and what the data hold
            reference = self.source.get("init_from")
            raise MissingVariableError(
                f"init_from = {reference!r}: data.variables = "
                f"{_toml_value(list(self.config.data.variables))} was taken from init_from "
                f"{reference!r} (the variables its weights were trained on, in its channel "
                f"order; the configuration sets none), and {found}. This model cannot be "
                "fine-tuned on these variables: choose another init_from trained on them, or "
                "leave init_from out to train from random weights"
            ) from err

    def _source_spacing_change(self) -> str:
        """The grid spacing of the data against the source model's when they differ (``""``
        when they agree or either is unknown): the line the log prints on a fresh start, also
        kept for the model card."""
        assert self.source is not None
        theirs = self.source.get("grid") or {}
        ours = self.train_set.grid_metadata().get("grid") or {}

        def spacing(grid: Mapping[str, Any]) -> tuple[float, float] | None:
            try:
                return abs(float(grid["dy"])), abs(float(grid["dx"]))
            except (KeyError, TypeError, ValueError):
                return None

        src, data = spacing(theirs), spacing(ours)
        if src is None or data is None:
            return ""
        if all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(src, data, strict=True)):
            return ""
        units = str(ours.get("x_units") or "")
        unit = " degrees" if units.startswith("degree") else f" {units}" if units else ""

        def words(dy: float, dx: float) -> str:
            return f"{dx:g}{unit}" if dx == dy else f"dx {dx:g}, dy {dy:g}{unit}"

        return (
            f"the data's grid spacing ({words(*data)}) differs from the one init_from "
            f"{self.source.get('init_from')!r} was trained on ({words(*src)}): the network has "
            "to learn the scales of the new spacing, so fine-tuning usually needs more steps "
            "than on the source's spacing"
        )

    @contextlib.contextmanager
    def _crop_must_fit(self) -> Iterator[None]:
        """A ``data.crop_size`` larger than the data's grid: a :class:`ConfigError` naming the key
        and the largest crop that fits and is a multiple of 16 and of the factor (or saying that
        none does)."""
        try:
            yield
        except ShapeError as err:
            found = re.search(
                r"crop_size=(\d+) does not fit in the \((\d+), (\d+)\) field", str(err)
            )
            if found is None:
                raise
            crop, ny, nx = (int(g) for g in found.groups())
            data, task = self.config.data, self.config.model.task
            factor = data.factor if task == "superres" else 1
            side = min(ny - ny % factor, nx - nx % factor)
            multiple = crop_multiple(data.factor, task)
            largest = side // multiple * multiple
            rule = (
                f"a multiple of 16 and of data.factor = {data.factor}"
                if multiple != 16
                else "a multiple of 16"
            )
            where = str(err).split(" field of ", 1)[-1].split(";")[0]
            if largest >= multiple:
                fix = f"set data.crop_size={largest} (the largest crop that fits and is {rule})"
            else:
                fix = (
                    f"no crop fits: a crop must be {rule} ({multiple} at least) and whole coarse "
                    f"cells of this grid give at most {side}; use a factor whose crops are "
                    "multiples of 16 (2, 4, 8 or 16), or data on a larger grid"
                )
            raise ConfigError(
                f"data.crop_size = {crop} does not fit in the {ny} x {nx} grid of {where}; {fix}"
            ) from err

    def _data_to_open(self) -> Any:
        """``config.data`` with the paths the datasets open; the run's configuration keeps the
        paths as written.

        A leading ``~`` of a path or glob is expanded (:func:`_user_path`). A glob never matches
        the run folder or anything in it (``data.paths = ["data/*"]`` with ``run_dir =
        "data/run"``): those matches are left out, and the run says so. The run folder is made
        after the data are opened, so a first start did not see it, and every resume then failed
        opening it as a dataset (or, with files it could open, trained on other items).

        Raises
        ------
        DataError
            When a glob matches nothing but the run folder and what is in it.
        """
        from .data.datasets import expand_paths

        data = self.config.data
        run_dir = self.run_dir.resolve()
        paths: list[str] = []
        self.data_files: list[str] = []  # absolute, for launches.jsonl
        for given in data.paths:
            matches = expand_paths([given])  # as the datasets open them ("~" expanded, sorted)
            named = matches == [os.path.expanduser(given)]  # a path, not a glob: kept as given
            kept = (
                matches
                if named
                else [m for m in matches if not _within(Path(m).resolve(), run_dir)]
            )
            self.data_files.extend(os.path.abspath(m) for m in kept)
            if len(kept) == len(matches):
                paths.append(given)
                continue
            if not kept:
                raise DataError(
                    f"data.paths {given!r} matches only the run folder {str(self.run_dir)!r} "
                    "and what is in it, which are never read as data; point data.paths at the "
                    "data files, or set run_dir to a folder the glob does not match"
                )
            left = len(matches) - len(kept)
            self.accelerator.print(
                f"flexdownscale.train: data.paths {given!r} also matches the run folder "
                f"{str(self.run_dir)!r} or what is in it; a glob never reads the run folder as "
                f"data: {left} match{'es' if left != 1 else ''} left out, {len(kept)} kept"
            )
            paths.extend(glob.escape(m) for m in kept)  # each match as a literal path
        opened = tuple(paths)
        return data if opened == data.paths else dataclasses.replace(data, paths=opened)

    def _model_config(self) -> Any:
        """The model section with what the data decide: channels, past frames, condition.

        ``model.in_channels`` / ``model.past_frames`` follow the variables and frames the data
        loads; a value set in the configuration that disagrees is a ConfigError (it used to be
        overwritten silently), the default 1 is taken as unset.
        """
        cfg = self.config.model
        # the variables the dataset loaded (every numeric one when data.variables is empty)
        names = tuple(self.train_set.variables)
        channels = len(names)
        updates: dict[str, Any] = {"in_channels": channels}
        if cfg.in_channels not in (1, channels):
            raise ConfigError(
                f"model.in_channels = {cfg.in_channels} but the data loads {channels} variable"
                f"{'s' if channels != 1 else ''} ({', '.join(names)}); training takes the channel "
                "count from the data: leave model.in_channels out, or list the variables in "
                "data.variables"
            )
        # model.physical_condition follows data.condition (false set against a condition is
        # refused when the configuration loads, true without one too)
        updates["physical_condition"] = self.config.data.condition is not None
        if cfg.task == "forecast":
            frames = self.config.data.past_frames
            if cfg.past_frames not in (1, frames):
                raise ConfigError(
                    f"model.past_frames = {cfg.past_frames} but data.past_frames = {frames}; "
                    "the model sees the frames the data stacks: set data.past_frames and leave "
                    "model.past_frames out"
                )
            updates["past_frames"] = frames
        idff = self.config.diffusion.objective == "idff"
        # the model generates the residual of every variable (IDFF: data endpoint and score
        # heads, twice as many); an out_channels set to anything else failed at the first step
        allowed = (channels, 2 * channels) if idff else (channels,)
        if cfg.out_channels is not None and cfg.out_channels not in allowed:
            generated = (
                f"{2 * channels} output channels (a data endpoint and a score for each of "
                f"{channels} variable{'s' if channels != 1 else ''}: {', '.join(names)})"
                if idff
                else f"one output channel per variable ({channels}: {', '.join(names)})"
            )
            raise ConfigError(
                f"model.out_channels = {cfg.out_channels} but the model must generate "
                f"{generated}; leave model.out_channels out (training sets it from the data) "
                "or list the variables in data.variables"
            )
        if idff:
            updates["out_channels"] = 2 * channels
        return dataclasses.replace(cfg, **updates)

    # -- fine-tuning (init_from) --------------------------------------------------------------

    def _warn_dry_validation_crops(self) -> None:
        """Warn when the validation windows scored (``eval_fields``) are almost all at a
        variable's lower bound (dry precipitation: 0 for a log1p variable) while the fields they
        are cut from are not: the sampled scores and the card's table would measure almost
        nothing (reviewer-118: 32 x 32 centre windows of radar fields 20-25 % wet were 1.7 %,
        0.4 %, 0 % and 0 % wet; ``val/rmse_base`` 0.0106). Reads the ``eval_fields`` whole
        fields once, at the start."""
        import numpy as np

        config, data = self.config, self.val_set
        if data is None or config.eval_every <= 0 or data.normalizer is None or not len(data):
            return
        bounds = data.normalizer.lower_bounds(data.variables)
        checked = [c for c, bound in enumerate(bounds) if np.isfinite(bound)]
        if not checked:
            return
        indices = validation_indices(len(data), config.eval_fields)
        windows: list[list[float]] = [[] for _ in checked]  # wet fraction of each window
        wet = np.zeros((len(checked), 2))  # wet and valued cells of the windows
        wet_fields = np.zeros((len(checked), 2))  # ... and of the whole fields
        for index in indices:
            field, window = data._target_values(index)
            for k, c in enumerate(checked):
                for values, counts in ((window[c], wet), (field[c], wet_fields)):
                    valued = np.isfinite(values)
                    counts[k] += (int((values[valued] > bounds[c]).sum()), int(valued.sum()))
                valued = np.isfinite(window[c])
                windows[k].append(
                    float((window[c][valued] > bounds[c]).mean()) if valued.any() else 0.0
                )
        for k, c in enumerate(checked):
            in_windows = wet[k, 0] / max(wet[k, 1], 1)
            in_fields = wet_fields[k, 0] / max(wet_fields[k, 1], 1)
            if in_windows < _DRY_WINDOWS and in_fields >= max(_DRY_WINDOWS, 4 * in_windows):
                self._dry_windows_warning(
                    data.variables[c], float(bounds[c]), in_windows, in_fields, windows[k]
                )

    def _dry_windows_warning(
        self, name: str, bound: float, in_windows: float, in_fields: float, each: list[float]
    ) -> None:
        """The warning of :meth:`_warn_dry_validation_crops` for variable ``name``."""
        config = self.config
        data = config.data
        n = len(each)
        per = "; per window " + ", ".join(f"{100 * f:.1f} %" for f in each) if n <= 8 else ""
        where = (
            f"the centre {data.crop_size} x {data.crop_size} window of each of {n} validation "
            f"field{'s' if n != 1 else ''} (eval_fields = {config.eval_fields}, "
            "data.crops_per_field = 1)"
            if data.crops_per_field == 1
            else f"{n} validation window{'s' if n != 1 else ''} of {data.crop_size} x "
            f"{data.crop_size} cells drawn from the seed (eval_fields = {config.eval_fields}, "
            f"data.crops_per_field = {data.crops_per_field})"
        )
        warnings.warn(
            f"validation scores {where}, and their truth is {100 * (1 - in_windows):.1f} % at "
            f"{name}'s lower bound {bound:g} (dry: only {100 * in_windows:.1f} % of the cells "
            f"above it{per}) while the fields they are cut from are {100 * in_fields:.1f} % "
            "above it: the sampled validation scores (val/rmse, val/rmse_base, val/crps, ...) and the "
            "model card's table would measure almost nothing. Score wetter windows: "
            "data.crops_per_field = n validates on n windows of each field drawn from the run's "
            "seed instead of the centre one (eval_fields then counts windows), a larger "
            "data.crop_size covers more of each field, and eval_fields or data.validation "
            "choose other fields",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )

    def _fine_tuning(self, config: TrainConfig, *, resume: bool) -> TrainConfig:
        """``config`` with the settings of the ``init_from`` model put in (see
        :func:`_fine_tuning_config`); sets :attr:`source` (what the run keeps of its source)
        and, on a fresh start, the folder whose weights start the model.

        A resume reads the source's record from the run folder (``init_from.json``, written at
        the start), so it neither needs nor reads the source folder. Every training state keeps
        a copy of the record in its marker: a run folder without ``init_from.json`` resumes
        with the latest state's copy (the settings and normalization the run started with,
        whatever the folder holds now) and writes ``init_from.json`` again once the state has
        loaded. Only a state of an earlier version, which keeps no copy, has the folder read
        again, and only when its weights are the ones the run recorded (:meth:`_legacy_source`).
        The source's weights are loaded on a fresh start only: a resume continues its own state.

        Raises
        ------
        CheckpointError
            For an unreadable record, one of another ``init_from`` or of other weights than the
            state's copy, or (states of earlier versions) a folder that cannot be checked or
            holds other weights than the run started from.
        """
        reference = str(config.init_from)
        record = self.run_dir / INIT_FROM_FILE
        states = list_states(self.run_dir) if resume else []
        kept = self._state_source(states[-1]) if states else None
        if resume and record.is_file():
            source = self._read_source_record(record)
            if kept is not None:
                self._check_record_matches_state(source, kept, states[-1])
        elif kept is not None:
            source = kept
            self._rewrite_record = True
            self._record_note = (
                f"; {INIT_FROM_FILE} was missing: the record comes from the copy in the state "
                f"{states[-1].name} and is written again"
            )
        elif states and self._saved_init_from() in (reference, None):
            source = self._legacy_source(reference, states[-1])
            self._rewrite_record = True
        else:  # a fresh start; or a resume of a run started otherwise, refused once checked
            folder = _load_source_folder(reference)
            source = _source_record(reference, folder)
            if not resume:
                self._source_folder = folder
        if resume and source.get("init_from") != reference:
            raise CheckpointError(
                f"cannot resume: the run in {str(self.run_dir)!r} was fine-tuned from "
                f"{source.get('init_from')!r}, and this launch gives init_from = "
                f"{reference!r}; a resume continues the run's own state (it loads no "
                "weights from init_from). Resume with "
                f"init_from={json.dumps(source.get('init_from'))}, or start a new run_dir "
                "to fine-tune another model"
            )
        self.source = source
        config, self._taken = _fine_tuning_config(config, source)
        return config

    def _read_source_record(self, record: Path) -> dict[str, Any]:
        """The run folder's ``init_from.json``.

        Raises
        ------
        CheckpointError
            When it cannot be read or is not such a record; the fix: restore it, or remove it
            so that the resume takes the training state's copy.
        """
        fix = (
            "restore it from a copy of the run folder, or remove it: the resume then takes "
            "the copy its latest training state keeps (states of earlier versions keep none: "
            "the folder init_from names is then checked against launches.jsonl)"
        )
        try:
            source = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(
                f"{str(record)!r} (the record of the model this run was fine-tuned from) "
                f"cannot be read ({type(err).__name__}: {err}); {fix}"
            ) from err
        if not _is_source_record(source):
            raise CheckpointError(
                f"{str(record)!r} is not a record of the model this run was fine-tuned from; {fix}"
            )
        return source

    def _state_source(self, state: Path) -> dict[str, Any] | None:
        """The copy of the source's record that the state's marker keeps; ``None`` for a state
        written before it kept one (or of a run that was not fine-tuned)."""
        marker = _read_json_file(state / STATE_MARKER, "the state's completion marker")
        kept = marker.get("init_from") if isinstance(marker, dict) else None
        return kept if _is_source_record(kept) else None

    def _check_record_matches_state(
        self, source: Mapping[str, Any], kept: Mapping[str, Any], state: Path
    ) -> None:
        """``init_from.json`` must describe the source the state was trained from: the same
        weights and the same normalization as the state's copy.

        Raises
        ------
        CheckpointError
            Naming what differs and the fix (remove the file: the state's copy is then used).
        """
        differs = [
            key for key in ("weights_sha256", "normalization") if source.get(key) != kept.get(key)
        ]
        if differs:
            raise CheckpointError(
                f"cannot resume {str(self.run_dir)!r}: its {INIT_FROM_FILE} records another "
                f"{' and '.join(differs)} than the model its state {state.name} was trained "
                f"from ({_provenance_words(kept)}); the file was replaced. Remove it (the "
                "resume then writes it again from the state's copy) or restore the run's own"
            )

    def _legacy_source(self, reference: str, state: Path) -> dict[str, Any]:
        """The source's record for a resume without ``init_from.json`` whose state keeps no
        copy (written by an earlier version): read from the folder ``init_from`` names now,
        once its weights are shown to be the ones the run started from (the SHA-256 that
        ``launches.jsonl`` and an exported ``model/config.json`` recorded).

        Raises
        ------
        CheckpointError
            When nothing recorded the weights the run started from, or the folder now holds
            others: its settings and normalization are then not the run's.
        """
        folder = _load_source_folder(reference)
        source = _source_record(reference, folder)
        recorded = self._recorded_source_weights()
        missing = (
            f"{INIT_FROM_FILE} (the record of the model this run was fine-tuned from) is "
            f"missing and the state {state.name}, written by an earlier version, keeps no copy"
        )
        restore = f"restore {INIT_FROM_FILE} from a copy of the run folder, or start a new run_dir"
        if not recorded:
            raise CheckpointError(
                f"cannot resume {str(self.run_dir)!r}: {missing}, and neither launches.jsonl "
                "nor an exported model records the weights it started from, so the folder "
                f"init_from = {reference!r} names now cannot be checked against them (its "
                "normalization would replace the one the run trained with): " + restore
            )
        other = [(where, sha) for where, sha in recorded if sha != source["weights_sha256"]]
        if other:
            where, sha = other[0]
            raise CheckpointError(
                f"cannot resume {str(self.run_dir)!r}: {missing}, and the folder init_from = "
                f"{reference!r} names now holds other weights (sha256 "
                f"{source['weights_sha256']}) than the run started from ({sha}, as {where} "
                "records): its settings and normalization are not the run's. Point init_from "
                "at the folder the run started from, or " + restore
            )
        self._record_note = (
            f"; {INIT_FROM_FILE} was missing and the state {state.name} keeps no copy: read "
            f"again from the folder, whose weights are the ones the run started from "
            f"({recorded[0][0]}), and written again"
        )
        return source

    def _saved_init_from(self) -> str | None:
        """``init_from`` of the run's saved ``config.json``; ``None`` without a readable one (a
        run saved without init_from gives ``""``: not a fine-tuning run)."""
        saved = self.run_dir / "config.json"
        try:
            value = json.loads(saved.read_text(encoding="utf-8")).get("init_from", "")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return None
        return value if isinstance(value, str) else ""

    def _recorded_source_weights(self) -> list[tuple[str, str]]:
        """``(where, sha256)`` of the source's weights as the run recorded them: each launch of
        ``launches.jsonl`` and the exported ``model/config.json`` (``extra.fine_tuned_from``)."""
        found: list[tuple[str, str]] = []
        launches = self.run_dir / "launches.jsonl"
        if launches.is_file():
            for line in launches.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line).get("init_from")
                except (json.JSONDecodeError, AttributeError):
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("weights_sha256"), str):
                    found.append(("launches.jsonl", entry["weights_sha256"]))
        exported = self.run_dir / "model" / "config.json"
        if exported.is_file():
            try:
                extra = json.loads(exported.read_text(encoding="utf-8")).get("extra") or {}
                sha = (extra.get("fine_tuned_from") or {}).get("weights_sha256")
            except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
                sha = None
            if isinstance(sha, str):
                found.append(("the exported model/config.json", sha))
        return found

    def _write_source_record(self) -> None:
        """Main process: write ``init_from.json`` again on a resume that found it missing (the
        record came from the state's copy, or from a folder checked against the run's)."""
        if self._rewrite_record and self.source is not None and self.accelerator.is_main_process:
            _atomic_write_text(
                self.run_dir / INIT_FROM_FILE,
                json.dumps(self.source, indent=2, default=_json_default),
            )
            self._rewrite_record = False

    def _fine_tuning_line(self) -> str:
        """What this launch of a fine-tuning run starts from, for the log."""
        assert self.source is not None
        words = _provenance_words(self.source)
        if self.export_only:
            return (
                f"flexdownscale.train: exporting the latest state of a run fine-tuned from "
                f"{words} (nothing is trained){self._record_note}"
            )
        if self._source_folder is None:
            return (
                f"flexdownscale.train: resuming a run fine-tuned from {words}: the weights, the "
                "EMA, the optimiser and the step counter come from the run's own state"
                f"{self._record_note}"
            )
        normalization = (
            "the folder's statistics"
            if self.config.init_normalization == "source"
            else "refitted on this run's train split"
        )
        taken = "; ".join(f"{key} = {_shown(value)}" for key, value in self._taken.items())
        return (
            f"flexdownscale.train: fine-tuning from {words}: its weights start the model and "
            "the EMA, the optimiser and the step counter start fresh; normalization: "
            f"{normalization}" + (f"; taken from the folder: {taken}" if taken else "")
        )

    def _check_source_units(self) -> None:
        """The data's units against the source model's, variable by variable.

        Two spellings of one unit (``K``, ``kelvin``) agree. Convertible units (``degC`` for
        ``K``) are refused with the folder's statistics, which are in the folder's units (the
        message gives the conversion), and taken with ``init_normalization = "refit"``, whose
        statistics are fitted in the data's units. Other quantities, and data without a units
        attribute where the folder records one, are refused.

        Raises
        ------
        ConfigError
            Naming each variable, both units and the fix.
        """
        from .units import compare_units

        assert self.source is not None
        expected = self.source.get("units") or {}
        found_units = self._units()
        reference = self.source.get("init_from")
        refit = self.config.init_normalization == "refit"
        problems = []
        for name in self.train_set.variables:
            want = str(expected.get(name, ""))
            found = found_units.get(name, "")
            if not want:  # the folder records no units: nothing to compare
                continue
            if not found:
                problems.append(
                    f"{name!r} has no units attribute in the data, and {reference!r} was "
                    f"trained on {name} in {want}: set it in the files "
                    f"(ds[{name!r}].attrs['units'] = {want!r}) if that is its unit"
                )
                continue
            comparison = compare_units(found, want)
            if comparison.outcome == "same" or (comparison.outcome == "convertible" and refit):
                continue
            if comparison.outcome == "convertible":
                problems.append(
                    f"{name!r} is in {found} in the data but {reference!r} was trained on it "
                    f"in {want}, the units of its normalization statistics: convert the files "
                    f"first ({comparison.rule}: {comparison.code(name)}), or fit the "
                    'statistics on these data (init_normalization = "refit")'
                )
            else:
                problems.append(
                    f"{name!r} is in {found!r} in the data, which {reference!r} cannot take: it "
                    f"was trained on {name} in {want!r} (not convertible); the files hold "
                    "another quantity or a wrong units attribute"
                )
        if problems:
            raise ConfigError(f"init_from = {reference!r}: " + "; ".join(problems))

    def _model_with_source_weights(self) -> torch.nn.Module:
        """The model the resolved configuration builds, holding the source folder's weights
        (safetensors, read by :func:`~flexdownscale.hub.load_model_folder`) in float32.

        Built on the meta device and given the weights (no random initialization to throw
        away: 9 s and a second copy of the weights for the big preset on a CPU), so torch's
        global random state is the one ``seed`` set.

        Raises
        ------
        WeightsMismatchError
            When they do not fit the architecture the resolved configuration builds.
        """
        from .errors import WeightsMismatchError
        from .models import build_model
        from .models.registry import module_with_weights
        from .pipeline import _check_weights_fit

        folder = self._source_folder
        build = functools.partial(build_model, self._model_config())
        try:
            empty = _check_weights_fit(folder, build(device="meta"))
        except WeightsMismatchError as err:
            raise WeightsMismatchError(f"init_from = {self.config.init_from!r}: {err}") from err
        return module_with_weights(build, folder.state_dict, empty=empty).float()

    def _check_run_folder(self) -> None:
        """Refuse what cannot start or resume here; writes nothing but the lock file of an
        existing folder and, in a launch of several processes, a probe file it removes again
        (:meth:`_check_every_rank_sees_the_run_folder`; see _prepare_run_folder)."""
        self._check_run_dir_is_a_folder()
        self._check_run_dir_is_writable()
        # the main process's view: a rank deciding from its own disk would skip the collectives
        # below that the others enter (a run folder on each node's local disk hung the launch)
        exists = self._main_says(self.run_dir.is_dir())
        if exists:  # a new folder is locked once made
            self._agree_main_succeeded(self._lock_on_main(), "locking the run folder")
            self._check_every_rank_sees_the_run_folder()
        saved = self.run_dir / "config.json"
        states = list_states(self.run_dir) if exists else []  # not another node's old folder
        if self.resume:
            if not states:
                raise self._nothing_to_resume()
            previous = None
            if saved.is_file():
                # read without range checks: a run saved before a check existed (a negative
                # optim.grad_clip, say) resumes once the setting is fixed (and says so)
                previous = from_dict(
                    TrainConfig, json.loads(saved.read_text(encoding="utf-8")), _check=False
                )
                self.changed_settings = self._changed_against(previous, states[-1])
                self._check_same_run(previous, saved, self.changed_settings)
            if not self.export_only:  # an export reads the weights only: any layout will do
                self._check_steps_ahead(states[-1])
                # checked once the training set is open (its size is part of the layout)
                self._resume_layout = (previous, states[-1])
        elif exists:
            self._refuse_existing_states()

    def _main_says(self, value: bool) -> bool:
        """The main process's ``value`` on every rank (a broadcast; ``value`` itself for one
        process): for decisions every rank must take alike, read from the main's file system."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return bool(value)
        from accelerate.utils import broadcast

        flag = torch.tensor([float(bool(value))], device=acc.device)
        return bool(broadcast(flag, from_process=0).item())

    def _check_every_rank_sees_the_run_folder(self) -> None:
        """Several processes: refuse a run folder that is not one folder for all of them.

        The main process writes a probe file of its own (a name not used before, so no file
        system cache can hold an old answer) in ``run_dir``; every rank reads it, retrying for
        a few seconds (a network file system may show a new file late), and the ranks agree
        whether all saw it; the main process then removes it (and first any probe a launch
        killed during this check left). A run folder on each node's
        local disk (``/tmp``, node-local scratch at one path) was found only at the first
        save (the training since the start lost) or hung the launch.

        Raises
        ------
        CheckpointError
            On every rank, when any rank does not see the main process's probe: ``run_dir``
            must be on a file system every node sees.
        """
        self._shared_folder_checked = True
        acc = self.accelerator
        if acc.num_processes == 1:
            return
        import uuid

        from accelerate.utils import broadcast_object_list, reduce

        names = [f".rank_probe_{uuid.uuid4().hex}" if acc.is_main_process else ""]
        broadcast_object_list(names, from_process=0)
        probe = self.run_dir / names[0]
        error = None
        if acc.is_main_process:
            for stale in self.run_dir.glob(".rank_probe_*"):  # a launch killed mid-check
                with contextlib.suppress(OSError):  # (the run folder's lock is held here)
                    stale.unlink()
            try:
                probe.write_text(platform.node(), encoding="utf-8")
            except OSError as err:
                error = self._unwritable_run_dir(self.run_dir, err)
        self._agree_main_succeeded(error, "writing a probe file in the run folder")
        seen = _appears(probe.is_file)
        blind = reduce(torch.tensor([float(not seen)], device=acc.device), reduction="sum")
        if acc.is_main_process:
            with contextlib.suppress(OSError):
                probe.unlink()
        if blind.item():
            count = int(blind.item())
            here = "" if seen else f" (this one, rank {acc.process_index} on {platform.node()})"
            raise CheckpointError(
                f"{count} of the launch's {acc.num_processes} processes{here} "
                f"{'does' if count == 1 else 'do'} not see the files the main process writes "
                f"in run_dir {str(self.run_dir)!r}: each node "
                "has its own folder at that path (a node-local disk, /tmp or local scratch), "
                "so states would lack those processes' parts and resume would fail. Put "
                "run_dir on a file system every node sees (a shared project or scratch "
                "folder); nothing was trained"
            )

    def _refuse_existing_states(self) -> None:
        """A fresh start in a run folder that holds training states is refused."""
        if list_states(self.run_dir) or any(
            p.name.startswith("step_") for p in _children(self.run_dir / "checkpoints")
        ):
            raise CheckpointError(
                f"{str(self.run_dir)!r} already holds training states; pass {_option('resume')} "
                "to continue it or choose a new run_dir (nothing is overwritten)"
            )

    def _lock_on_main(self) -> BaseException | None:
        """Main process: take the run folder's lock (:data:`LOCK_FILE`) for this trainer, or
        hold it already; returns the error to share with the other ranks (None: locked, or no
        lock to take). The other ranks take none."""
        if not self.accelerator.is_main_process:
            return None
        try:
            _take_run_lock(self.run_dir, self)
        except CheckpointError as err:
            return err
        except OSError as err:  # the lock file cannot be made: a disk that filled, say
            return self._unwritable_run_dir(self.run_dir, err)
        return None

    @contextlib.contextmanager
    def _run_folder_locked(self) -> Iterator[None]:
        """Hold the run folder's lock while training or exporting; released when the outermost
        :meth:`fit` or :meth:`export` ends (the lock taken when the trainer was built is held
        until then), so another launch can then continue the run. Taken again by a later call
        (a second ``fit`` from Python, an export after it), refused when another launch has
        taken it meanwhile."""
        self._agree_main_succeeded(self._lock_on_main(), "locking the run folder")
        lock = _HELD_LOCKS.get(self._lock_key)
        if lock is not None and lock.owner != id(self):
            lock = None
        if lock is not None:
            lock.busy += 1
        try:
            yield
        finally:
            if lock is not None:
                lock.busy -= 1
                if not lock.busy:
                    _drop_run_lock(self._lock_key, id(self))

    def _nothing_to_resume(self) -> CheckpointError:
        """The :class:`CheckpointError` for ``--resume`` or ``--export-only`` on a run folder
        without a complete state. A relative ``run_dir`` is read from the working directory: the
        message names the folder looked in and that directory, and how to reach a run started
        elsewhere (dropping ``--resume`` would start a new run here, not continue that one)."""
        option = _option("export_only" if self.export_only else "resume")
        found = "holds no complete training state" + (" to export" if self.export_only else "")
        partial = [p.name for p in _children(self.run_dir / "checkpoints")]
        if partial:
            found += f" (only {', '.join(sorted(partial))}, left by a launch stopped while saving)"
        missing = not (self.run_dir.exists() or self.run_dir.is_symlink())
        if self.export_only:
            fix = f"train first (drop {option}) or point run_dir at a run with states"
        else:
            fix = f"drop {option} to start a new run"
        if self.run_dir.is_absolute():
            found += " (there is no such folder)" if missing else ""
        else:
            cwd = os.getcwd()
            looked = os.path.join(cwd, self.run_dir)
            found += (
                f" (looked for in {looked!r}{', no such folder' if missing else ''}: a relative "
                f"run_dir is read from the current working directory, {cwd!r})"
            )
            fix = (
                f"to {'export' if self.export_only else 'continue'} a run started in another "
                "directory, run from that directory or give run_dir as an absolute path"
                + (
                    ""
                    if self.export_only
                    else f" (without {option} a new run starts in {looked!r})"
                )
            )
        return CheckpointError(f"{option} given but run_dir {str(self.run_dir)!r} {found}; {fix}")

    def _check_run_dir_is_a_folder(self) -> None:
        """``run_dir`` (or a folder above it) that exists as a file: refused before the data are
        opened (it used to fail with ``[Errno 17] File exists`` after loading them)."""
        for path in (self.run_dir, *self.run_dir.parents):
            if path.exists():
                if not path.is_dir():
                    what = "run_dir" if path == self.run_dir else f"{str(path)!r}, above run_dir,"
                    raise ConfigError(
                        f"run_dir = {str(self.run_dir)!r} cannot be a run folder: {what} is an "
                        "existing file; choose a run_dir that is a new or an existing folder"
                    )
                return

    def _check_run_dir_is_writable(self) -> None:
        """``run_dir`` (or, when it is still to be made, the folder it would be made in) must
        take new files: refused before the data are opened, naming run_dir (it used to fail
        with ``[Errno 1] Operation not permitted: '.../.config.toml.tmp'``). Tried with a
        temporary file, removed at once (permission bits do not tell, e.g. for root on an
        immutable or read-only folder)."""
        folder = next((p for p in (self.run_dir, *self.run_dir.parents) if p.is_dir()), None)
        if folder is None:  # pragma: no cover - a relative run_dir's "." exists
            return
        try:
            handle, probe = tempfile.mkstemp(prefix=".flexdownscale-probe-", dir=folder)
            os.close(handle)
            os.unlink(probe)
        except OSError as err:
            raise self._unwritable_run_dir(folder, err) from err

    def _unwritable_run_dir(self, folder: Path, err: OSError) -> ConfigError:
        """The :class:`ConfigError` for a run folder that cannot be written: run_dir as the
        user gave it (not the temporary file that failed), the cause and the fix."""
        where = (
            "in it"
            if folder == self.run_dir
            else f"in {str(folder)!r}, where run_dir would be created,"
        )
        why = err.strerror or _one_line(err)
        if err.errno == errno.ENOSPC:
            fix = f"free space on the disk of {str(folder)!r} or set run_dir to another disk"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = f"set run_dir to a folder you can write to, or fix the permissions of {str(folder)!r}"
        else:
            fix = "set run_dir to another folder"
        return ConfigError(
            f"run_dir = {str(self.run_dir)!r} cannot be written: creating a file {where} "
            f"failed ({why}); {fix}"
        )

    def _changed_against(self, previous: TrainConfig, latest: Path) -> dict[str, tuple[Any, Any]]:
        """:func:`_changed_settings` of this launch against the run's saved config, less
        ``data.variables`` set to the very variables an empty one read (the state's marker
        records them): naming them is how a run whose files gained a variable resumes."""
        changed = _changed_settings(previous, self.config)
        if "data.variables" in changed and not previous.data.variables:
            marker = _read_json_file(latest / STATE_MARKER, "the state's completion marker")
            if marker.get("variables") == list(self.config.data.variables):
                del changed["data.variables"]
        return changed

    def _check_same_run(
        self, previous: TrainConfig, saved: Path, changed: dict[str, tuple[Any, Any]]
    ) -> None:
        """A resume whose ``[model]``, ``[diffusion]`` or ``[data]`` section or optimiser differs
        from the run's saved config is refused, naming the keys and values (``changed``:
        :meth:`_changed_against`). So is one that starts from another model than the run did
        (``init_from``, ``init_normalization``): a resume loads no weights from ``init_from``."""
        for key in ("init_from", "init_normalization"):
            if key in changed:
                old, new = changed[key]
                raise CheckpointError(
                    f"cannot resume: the run was started with {key} = {_shown(old)} and this "
                    f"launch gives {_shown(new)}; a resume continues the run's own state (it "
                    "loads no weights from init_from) with the run's settings. Resume with "
                    f"{key}={'none' if old is None else _toml_value(old)}, or start a new "
                    "run_dir"
                )
        for section in ("model", "diffusion", "data"):
            keys = {k: v for k, v in changed.items() if k.startswith(f"{section}.")}
            if not keys:
                continue
            listing = "; ".join(f"{k} {_shown(a)} -> {_shown(b)}" for k, (a, b) in keys.items())
            restore = " ".join(
                f"{k}={'none' if a is None else _toml_value(a)}" for k, (a, _) in keys.items()
            )
            raise CheckpointError(
                f"cannot resume: the [{section}] section differs from the run's saved config "
                f"({saved}): {listing}; the saved state belongs to the run's settings. Resume "
                f"with them ({restore}) or use a new run_dir"
            )
        if previous.optim.optimizer != self.config.optim.optimizer:
            raise CheckpointError(
                f"cannot resume: the run was trained with optim.optimizer = "
                f"{previous.optim.optimizer!r}, whose state cannot continue as "
                f"{self.config.optim.optimizer!r}; resume with "
                f"optim.optimizer={previous.optim.optimizer} (another optimiser needs "
                "a new run_dir)"
            )

    def _check_steps_ahead(self, latest: Path) -> None:
        """``steps`` is the run's total: a resume asking for fewer steps than the state already
        has would train nothing and record a shorter run than the model's; it is refused."""
        done = _read_json_file(latest / STATE_MARKER, "the state's completion marker").get("step")
        if isinstance(done, int) and done > self.config.steps:
            raise CheckpointError(
                f"cannot resume {str(self.run_dir)!r} with steps = {self.config.steps}: its "
                f"latest state {latest.name} is already at step {done} (steps counts the whole "
                f"run, not this launch). Pass steps > {done} to train longer, or "
                f"{_option('export_only')} to export the model of that state"
            )

    def _prepare_run_folder(self) -> None:
        """After every check has passed: clear what a fresh start replaces and write its config.

        A resume writes its config only once the state has loaded (:meth:`load_latest_state`),
        so a resume refused on a damaged state leaves the run folder as it was.
        """
        acc = self.accelerator
        if self.changed_settings and not self.export_only:
            acc.print(
                "resuming with changed settings: "
                + "; ".join(
                    f"{k} {_shown(a)} -> {_shown(b)}" for k, (a, b) in self.changed_settings.items()
                )
            )
        error = None
        if acc.is_main_process and not self.resume:
            try:
                self._start_run_folder()
            except Exception as err:  # every rank must hear of it
                error = err
        self._agree_main_succeeded(error, "preparing the run folder")

    def _start_run_folder(self) -> None:
        """Main process, fresh start: lock the folder (made now when new), clear what a fresh
        start replaces and write the run's configuration."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # e.g. a disk that filled since the check
            raise self._unwritable_run_dir(self.run_dir.parent, err) from err
        locked = self._lock_on_main()  # a no-op when the existing folder was locked already
        if locked is not None:
            raise locked
        self._refuse_existing_states()  # a launch that ended between the check and the lock
        self._remove_incomplete_states()
        try:
            self._move_old_logs_aside()
            self._write_run_config()
            if self.source is not None:  # what a resume reads instead of the source
                _atomic_write_text(
                    self.run_dir / INIT_FROM_FILE,
                    json.dumps(self.source, indent=2, default=_json_default),
                )
        except OSError as err:  # e.g. a disk that filled since the check
            raise self._unwritable_run_dir(self.run_dir, err) from err

    def _remove_incomplete_states(self) -> None:
        """Main process: remove the ``.tmp_step_*`` folders of ``run_dir/checkpoints``,
        incomplete states of an earlier launch (killed while saving one, or a save that failed
        on a full disk, which such a folder may still fill): nothing in them is kept."""
        for partial in _children(self.run_dir / "checkpoints"):
            if partial.name.startswith(".tmp_step_"):
                self.accelerator.print(
                    f"removing {partial}, an incomplete state of an earlier launch"
                )
                shutil.rmtree(partial, ignore_errors=True)

    def _write_run_config(self) -> None:
        """Main process: the resolved configuration as ``config.toml`` and ``config.json``."""
        if not self.accelerator.is_main_process:
            return
        # the model section as the model was built: channels, past frames and condition as
        # the data decide them (earlier versions recorded the configuration's unset values)
        values = to_dict(dataclasses.replace(self.config, model=self._model_config()))
        _atomic_write_text(self.run_dir / "config.toml", dump_toml(values))
        _atomic_write_text(
            self.run_dir / "config.json",
            json.dumps(values, indent=2, default=_json_default),
        )

    def _sample_layout(self) -> dict[str, int]:
        """What fixes the order of the training samples and where a state is in it."""
        return {
            "seed": self.config.seed,
            "batch_size": self.config.batch_size,
            "micro_batch_size": self.micro_batch_size,
            "processes": self.accelerator.num_processes,
            "train_items": len(self.train_set),
        }

    def _check_same_variables(self, latest: Path) -> None:
        """Refuse a resume whose data give other variables (or another order) than the run's.

        With ``data.variables`` empty every numeric variable of the files is read, so a file
        that gained or lost a variable between launches changes the model's channels; the
        state then fails to load as "damaged". The state's marker records the variables
        (states written before 0.1.0 do not: those are left to the load, whose message says
        the model's shape differs).
        """
        marker = _read_json_file(latest / STATE_MARKER, "the state's completion marker")
        recorded = marker.get("variables")
        now = list(self.train_set.variables)
        if not isinstance(recorded, list) or recorded == now:
            return
        given = list(self.config.data.variables)
        how = (
            "data.variables is empty, so every numeric variable of the files is read"
            if not given
            else f"data.variables = {_toml_value(given)}"
        )
        lost = [name for name in recorded if name not in now]
        if lost:  # naming the recorded list would fail on the variables the files lost
            which = "that variable" if len(lost) == 1 else "those variables"
            fix = (
                f"The files no longer hold {_toml_value(lost)}: restore {which} in the files "
                "to resume, or train the variables the files hold now in a new run_dir; the "
                "state is kept"
            )
        else:
            fix = (
                f"Resume with data.variables={_toml_value(recorded)}, or train the new "
                "variables in a new run_dir; the state is kept"
            )
        raise CheckpointError(
            f"cannot resume {str(self.run_dir)!r}: its state {latest.name} holds a model of "
            f"the variables {_toml_value(recorded)} but the data now give "
            f"{_toml_value(now)} ({how}); the model's channels are these variables, in this "
            f"order. {fix}"
        )

    def _check_sample_order(self, previous: TrainConfig | None, latest: Path) -> None:
        """Refuse a resume that would draw the training samples in another order.

        The seed, the batch size, the micro-batch size, the number of processes and the number
        of training items (files added to a glob, a changed file) fix which samples every
        process draws and where a state's counters point in that sequence; with any of them
        changed a resumed run would repeat or skip samples without saying so. The state's
        marker records them (states written before 0.1.0 hold only the step; their seed and
        batch size come from the saved config). Without the run's ``config.json`` (states
        copied into a new run_dir) the marker alone is checked; a marker without the layout is
        then refused.
        """
        marker = _read_json_file(latest / STATE_MARKER, "the state's completion marker")
        now = self._sample_layout()
        recorded: dict[str, Any] = {}
        if previous is not None:
            recorded = {"seed": previous.seed, "batch_size": previous.batch_size}
        else:
            # checkpoints copied into a new run_dir: the marker is all there is to check against
            self.accelerator.print(
                f"{str(self.run_dir / 'config.json')!r} is missing: the [model], [diffusion] and "
                "[data] sections cannot be compared with the run's; the sample order is checked "
                f"against {latest.name}'s marker"
            )
            if not isinstance(marker.get("layout"), dict):
                raise CheckpointError(
                    f"cannot resume {str(self.run_dir)!r}: it has no config.json and its state "
                    f"{latest.name} records no sample order (written before 0.1.0), so a changed "
                    "seed or batch size would go unnoticed and the run would repeat or skip "
                    "samples; copy the run's config.json into run_dir and resume again"
                )
        recorded.update({k: v for k, v in marker.get("layout", {}).items() if k in now})
        changed = {k: (v, now[k]) for k, v in recorded.items() if now[k] != v}
        if not changed:
            return
        listing = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        hints = {
            "processes": (
                "one process: python -m flexdownscale.train"
                if recorded.get("processes") == 1
                # accelerate's --cpu with --num_processes N starts one process: not a hint
                else "{0} processes: accelerate launch --multi_gpu --num_processes {0} (also on "
                "a CPU machine) or torchrun --nproc_per_node {0}"
            ),
            "train_items": "the data the run was trained on ({} training items)",
        }
        how = ", ".join(hints.get(k, k + "={}").format(a) for k, (a, _) in changed.items())
        raise CheckpointError(
            f"cannot resume {str(self.run_dir)!r}: {listing} since its state {latest.name} was "
            "saved; they fix the order in which training samples are drawn, so the resumed run "
            f"would repeat or skip samples. Resume with the run's values ({how}) or start a new "
            "run_dir"
        )

    def _recorded_normalization(self) -> tuple[Any, Any]:
        """On resume (and ``--export-only``): the normalization of the latest state, which the
        run goes on with (a :class:`~flexdownscale.data.Normalizer`), or ``None`` to keep the
        statistics fitted now; with the state's record of its data (its marker's ``data``).

        The network's weights are trained for the statistics the run started with. The training
        split is opened with a refit (as on a fresh start), which is kept only to compare the
        data with the state's record (:meth:`_warn_changed_data`); the validation split is
        opened with the recorded statistics (its fill screen and its scores are those of the
        weights), and :meth:`_resume_normalization` gives them to the training split. A state
        of an earlier version records none: the refit stays (``None``), and a line says that
        the data could not be checked; so it does for an export of other variables (its load
        says that the model's shape differs).

        Returns
        -------
        tuple
            ``(normalizer or None, the state's data record or None)``.

        Raises
        ------
        CheckpointError
            When the data give other variables than the state's model (see
            :meth:`_check_same_variables`), or the recorded statistics cannot be read.
        """
        from .data.normalize import Normalizer

        latest = list_states(self.run_dir)[-1]
        if not self.export_only:  # the statistics are per variable: the variables first
            self._check_same_variables(latest)
        path = latest / STATE_MARKER
        marker = _read_json_file(path, "the state's completion marker")
        recorded = marker.get("normalization")
        fitted = self.train_set.normalizer
        if not isinstance(recorded, dict):
            if fitted is not None:
                uses = "the export records" if self.export_only else "this launch normalizes with"
                self.accelerator.print(
                    f"flexdownscale.train: the state {latest.name} records neither the "
                    "normalization its weights were trained with nor a fingerprint of its data "
                    "(it was written by an earlier version), so whether the data changed since "
                    f"cannot be checked; {uses} the statistics fitted now "
                    f"({_normalization_words(fitted)}), and the states saved from now on "
                    "record them"
                )
            return None, None
        try:
            stored = Normalizer.from_dict(recorded)
        except (DataError, ConfigError) as err:
            raise CheckpointError(
                f"{str(path)!r} (the state's completion marker) records normalization "
                f"statistics that cannot be read ({_one_line(err)}); the state is damaged: "
                "remove it to fall back to the previous state"
            ) from err
        if stored.variables != tuple(self.train_set.variables):
            return None, None  # an export of other variables: its load says the shape differs
        return stored, marker.get("data")

    def _resume_normalization(self, stored: Any, recorded_data: Any) -> None:
        """On resume (and ``--export-only``), once both splits are open: note how the data
        differ from the state's record of them (``recorded_data``), and normalize the training
        split with ``stored`` (the state's statistics, :meth:`_recorded_normalization`; the
        validation split was opened with them). The export writes them."""
        if not self.export_only:
            self.data_changes = _data_changes(recorded_data, self._data_record())
        for data in (self.train_set, self.val_set):
            if data is not None:
                data.normalizer = stored

    def _data_record(self) -> dict[str, Any]:
        """What a state records of this launch's data (computed once): the statistics fitted
        on the training split, the fingerprints of both splits (:func:`_split_fingerprint`)
        and the grid; as JSON gives it back."""
        if self._data_record_cache is None:
            record = {
                "fitted": self._fitted.to_dict() if self._fitted is not None else None,
                "train": _split_fingerprint(self.train_set),
                "validation": _split_fingerprint(self.val_set),
                "grid": self.train_set.grid_metadata().get("grid"),
            }
            self._data_record_cache = _json_plain(record)
        return self._data_record_cache

    def _warn_changed_data(self, latest: Path) -> None:
        """Main process, on resume: warn when the data differ from the state's record (its
        launch's statistics, splits or grid); the run goes on with the state's normalization.

        A warning, not a refusal: what would make the state unusable or the sample order
        wrong (other variables, another number of training items, changed ``[data]``
        settings) is refused already; with the recorded statistics kept, the weights still
        see the inputs on the scale they were trained for, and a file corrected or rewritten
        on purpose may go on training. The user hears what changed and how to undo it.
        """
        if not self.data_changes or not self.accelerator.is_main_process:
            return
        normalizer = self.train_set.normalizer
        warnings.warn(
            f"resuming {str(self.run_dir)!r} on data that differ from those its state "
            f"{latest.name} was trained on: {'; '.join(self.data_changes)}. The run keeps the "
            "normalization it started with"
            + (f" ({_normalization_words(normalizer)})" if normalizer is not None else "")
            + ", which its weights are trained for, and exports it; it trains on the data as "
            "they are now. If the files changed by mistake, restore them and resume again "
            "(the state is kept); to train on these data from scratch, use a new run_dir",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )

    def _move_old_logs_aside(self) -> Path | None:
        """Move the logs of an earlier run that saved no state into ``run_dir/old-<n>/``.

        A fresh start must not append to them (the old validation record would end up in the new
        model card); nothing is deleted. Returns the folder they went to, or ``None``.
        """
        found = [name for name in RUN_LOGS if (self.run_dir / name).exists()]
        if not found:
            return None
        n = 1
        while (self.run_dir / f"old-{n}").exists():
            n += 1
        target = self.run_dir / f"old-{n}"
        target.mkdir()
        for name in found:
            os.replace(self.run_dir / name, target / name)
        print(
            f"flexdownscale.train: {str(self.run_dir)!r} holds logs of an earlier run but no "
            f"training state; moved {', '.join(found)} to {str(target)!r} so this run starts "
            "afresh",
            file=sys.stderr,
        )
        return target

    # -- checkpoints -------------------------------------------------------------------------

    @_keeps_callers_state
    def save_state(self) -> Path:
        """Write the full training state atomically; rotate old states (``total_limit``).

        Every process takes part (each writes its own optimiser and random states).

        Returns
        -------
        pathlib.Path
            The complete state folder, ``run_dir/checkpoints/step_<step, 8 digits>``.

        Raises
        ------
        CheckpointError
            When the state cannot be written (a full disk, a file-size limit): it names the
            state, the cause and the previous state, which is kept; the incomplete temporary
            folder is removed.
        """
        acc = self.accelerator
        root = self.run_dir / "checkpoints"
        final = root / f"step_{self.progress.step:08d}"
        tmp = root / f".tmp_step_{self.progress.step:08d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            root.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        try:  # every rank: optimiser shards and RNG states are per rank
            acc.save_state(str(tmp))
        except Exception as err:  # a full disk: torch.save's or safetensors' own error
            unsaved = self._unsaved_state(final, err)  # while the disk is still full
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)  # what filled the disk
            raise unsaved from err
        acc.wait_for_everyone()
        error = None
        if acc.is_main_process:
            try:
                self._complete_state(tmp, final)
            except Exception as err:  # e.g. disk full: every rank must hear of it
                error = self._unsaved_state(final, err)  # while the disk is still full
                error.__cause__ = err
                shutil.rmtree(tmp, ignore_errors=True)
        self._agree_main_succeeded(error, f"completing the training state {final.name}")
        return final

    def _unsaved_state(self, final: Path, err: BaseException) -> CheckpointError:
        """The :class:`CheckpointError` for the state ``final`` that could not be written
        (``err``: a full disk, a file-size limit): the state's path, the cause, the fix and
        the state that a resume starts from instead (the caller removes the temporary folder
        afterwards: the cause of an error that does not say it is found from the full disk)."""
        from ._output import write_cause, write_fix

        if isinstance(err, CheckpointError):
            return err
        why, code = write_cause(err, final.parent)
        kept = [state for state in list_states(self.run_dir) if state.name != final.name]
        if final.is_dir() and (final / STATE_MARKER).is_file():
            kept.append(final)  # an earlier save of this very step (the replace never ran)
        if kept:
            after = (
                f"the previous state {kept[-1].name} is kept, and {_option('resume')} starts "
                "from it"
            )
        else:
            after = "no earlier state is kept: a new launch starts from the beginning"
        fix = write_fix(code, final.parent)
        return CheckpointError(
            f"cannot save the training state {str(final)!r}: {why}; {fix}. The incomplete "
            f"state was removed; {after}"
        )

    def _complete_state(self, tmp: Path, final: Path) -> None:
        """Main process: add the EMA and the counters, mark ``tmp`` complete, flush it, rename it
        to ``final``, rotate."""
        from safetensors.torch import save_file

        processes = self.accelerator.num_processes
        absent = _absent_rank_states(tmp, processes)
        if absent and _appears(lambda: not _absent_rank_states(tmp, processes)):
            absent = []  # another node's file, shown late by a network file system
        if absent:  # another node wrote them into a folder of its own
            raise CheckpointError(
                f"cannot complete the training state {str(final)!r}: the random states of "
                f"process{'es' if len(absent) > 1 else ''} {', '.join(map(str, absent))} "
                f"({_absent_names(absent)}) are not in {str(tmp)!r}, where every process saved "
                "its own. run_dir is not one folder for all the processes: it must be on a file "
                "system that every node of the launch sees (a shared or network file system, not "
                "a node's local disk)"
            )
        save_file(
            {name: t.detach().cpu().contiguous() for name, t in self.ema.shadow.items()},
            str(tmp / EMA_FILE),
            metadata={"updates": str(self.ema.updates), "decay": repr(self.ema.decay)},
        )
        (tmp / PROGRESS_FILE).write_text(json.dumps(self.progress.state_dict()), encoding="utf-8")
        normalizer = self.train_set.normalizer
        (tmp / STATE_MARKER).write_text(
            json.dumps(
                {
                    "step": self.progress.step,
                    "layout": self._sample_layout(),
                    # the model's channels, in order: a resume checks them before loading
                    "variables": list(self.train_set.variables),
                    # the statistics the weights are trained for (kept from the run's start:
                    # a resume normalizes with them) and what this launch's data were
                    "normalization": normalizer.to_dict() if normalizer is not None else None,
                    "data": self._data_record(),
                    # a fine-tuning run: the source's record (identity, settings,
                    # normalization), which a resume without init_from.json takes from here
                    **({"init_from": self.source} if self.source is not None else {}),
                },
                default=_json_default,
            ),
            encoding="utf-8",
        )
        for child in tmp.iterdir():
            if child.is_file():
                with child.open("rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_states(self.run_dir)[: -self.config.total_limit]:
            shutil.rmtree(old, ignore_errors=True)

    @_keeps_callers_state
    def load_latest_state(self) -> Path:
        """Load the newest complete state (errors clearly on a damaged one).

        Nothing in the state is unpickled beyond tensors and numbers: the weights and the EMA are
        safetensors, the counters JSON, and the optimiser and random states are read with
        ``torch.load(weights_only=True)`` (a file holding anything else is refused with a
        :class:`CheckpointError`; its code never runs). States of earlier versions, whose EMA and
        counters are accelerate pickles (``custom_checkpoint_*.pkl``), load the same way.
        On a resume the run's configuration is written once the state has loaded.

        Returns
        -------
        pathlib.Path
            The state folder that was loaded (the newest complete one under
            ``run_dir/checkpoints``).

        Raises
        ------
        CheckpointError
            When the state is damaged, was altered (a file that is not plain data) or belongs to
            another model.
        """
        states = list_states(self.run_dir)
        latest = states[-1]
        try:
            self._load_state(latest)
        except CheckpointError:
            raise
        except Exception as err:
            previous = ", ".join(p.name for p in states[:-1]) or "none"
            if _refused_unpickling(err):
                raise CheckpointError(
                    f"a file of the training state {str(latest)!r} cannot be loaded safely: "
                    f"torch.load(weights_only=True) refused it ({_one_line(err)}). "
                    f"{_NOT_UNPICKLED} (previous states: {previous})"
                ) from err
            if "size mismatch" in str(err):  # a whole state of another model: not damage
                raise CheckpointError(
                    f"the training state {str(latest)!r} holds a model of another shape than "
                    f"this configuration builds ({_one_line(err)}): the variables, "
                    "data.past_frames or the [model] settings differ from the run's. Resume "
                    f"with the run's settings ({str(self.run_dir / 'config.toml')!r}); the "
                    "state is kept"
                ) from err
            raise CheckpointError(
                f"the training state {str(latest)!r} cannot be loaded ({_one_line(err)}); "
                "it is damaged or belongs to a different model. Remove it to fall back to the "
                f"previous state ({previous})"
            ) from err
        # the saved param_groups came back with the state: the configuration's values win, so
        # that a resume with another optim.betas / weight_decay applies them (lr is set per step)
        optim = self.config.optim
        for group in self.optimizer.param_groups:
            group["betas"] = tuple(optim.betas)
            # no weight decay on 1-D parameters (see _parameter_groups)
            matrices = all(parameter.ndim >= 2 for parameter in group["params"])
            group["weight_decay"] = optim.weight_decay if matrices else 0.0
        if self._converted_groups and optim.weight_decay > 0 and len(self._group_positions) > 1:
            self.accelerator.print(
                f"flexdownscale.train: the state's optimiser decays every parameter (one "
                f"parameter group, as earlier versions did); from step {self.progress.step} "
                f"on, optim.weight_decay = {optim.weight_decay:g} applies to the parameters of "
                f"two or more dimensions only ({len(self._group_positions[1])} 1-D parameters, "
                "biases and normalization gains, are no longer decayed)"
            )
        marker = _read_json_file(latest / STATE_MARKER, "the state's completion marker")
        if marker.get("step") != self.progress.step:
            raise CheckpointError(
                f"{str(latest)!r} says step {marker.get('step')} but holds step {self.progress.step}"
            )
        if not self.export_only:  # the state loaded: the resumed run's settings go on record
            self._write_run_config()
            self._write_source_record()
            if self.accelerator.is_main_process:  # a failed save's leftovers, at any step
                self._remove_incomplete_states()
        return latest

    def _load_state(self, state: Path) -> None:
        """Read the EMA and the counters, then the model, optimiser and random states."""
        entries = sorted(state.iterdir())
        folders = [p.name for p in entries if p.is_dir()]
        if folders:
            raise CheckpointError(
                f"the training state {str(state)!r} holds folders ({', '.join(folders)}): "
                "sharded FSDP or DeepSpeed checkpoints, whose files are unpickled without "
                "restriction, so flexdownscale does not read them. Train with plain DDP or FSDP "
                "with fsdp_state_dict_type FULL_STATE_DICT; states are single files then"
            )
        pickles = [p.name for p in entries if _OLD_CUSTOM_STATE.match(p.name)]
        new_layout = (state / EMA_FILE).is_file() or (state / PROGRESS_FILE).is_file()
        if new_layout and pickles:
            raise CheckpointError(
                f"the training state {str(state)!r} holds {', '.join(pickles)} besides "
                f"{EMA_FILE}: flexdownscale never writes both, so the folder was altered; the "
                "pickles are not read. Remove them (or the whole state, to fall back to the "
                "previous one)"
            )
        if new_layout:
            ema, progress = self._read_ema_and_progress(state)
            source = contextlib.nullcontext(state)
        elif pickles == ["custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl"]:
            ema, progress = self._read_old_ema_and_progress(state)
            source = _without_pickled_objects(state)
        else:
            raise CheckpointError(
                f"the training state {str(state)!r} has no {EMA_FILE} and {PROGRESS_FILE}: it is "
                "damaged or was not written by flexdownscale. Remove it to fall back to the "
                "previous state"
            )
        with source as folder, _weights_only_loads():
            self.accelerator.load_state(str(folder), load_kwargs={"weights_only": True})
        if not self.export_only:  # an export draws no random numbers
            self._restore_random_state(state)
        self.ema.load_state_dict(ema)
        self.progress.load_state_dict(progress)

    def _read_ema_and_progress(self, state: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = state / EMA_FILE
        try:
            shadow = load_file(str(path), device="cpu")
            with safe_open(str(path), framework="pt") as fh:
                metadata = fh.metadata() or {}
            updates = int(metadata["updates"])
        except Exception as err:
            raise CheckpointError(
                f"{str(path)!r} (the EMA weights) cannot be loaded ({type(err).__name__}: {err}); "
                "the state is damaged: remove it to fall back to the previous state"
            ) from err
        progress = _read_json_file(state / PROGRESS_FILE, "the step and sample counters")
        _check_counters(progress, state / PROGRESS_FILE)
        return {"updates": updates, "shadow": shadow}, progress

    def _read_old_ema_and_progress(self, state: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """A state of an earlier version: accelerate's pickles of the EMA and the counters, read
        with ``weights_only=True`` (they hold tensors and numbers only)."""
        ema_path, progress_path = (
            state / "custom_checkpoint_0.pkl",
            state / "custom_checkpoint_1.pkl",
        )
        ema = _load_pickle_safely(ema_path, "the EMA weights of a state of an earlier version")
        progress = _load_pickle_safely(
            progress_path, "the counters of a state of an earlier version"
        )
        if not (
            isinstance(ema, dict)
            and isinstance(ema.get("shadow"), dict)
            and all(torch.is_tensor(t) for t in ema["shadow"].values())
            and isinstance(ema.get("updates"), int)
        ):
            raise CheckpointError(
                f"{str(ema_path)!r} does not hold the EMA of a flexdownscale state (expected "
                "'updates' and the 'shadow' tensors); the state is damaged: remove it to fall "
                "back to the previous state"
            )
        _check_counters(progress, progress_path)
        return ema, progress

    def _restore_random_state(self, state: Path) -> None:
        """Set this process's random states from the state (accelerate's own attempt passes
        over a failure silently: the resumed run would then draw other noise than an
        uninterrupted one)."""
        index = self.accelerator.process_index
        path = state / f"random_states_{index}.pkl"
        if not path.is_file():
            raise CheckpointError(
                f"the training state {str(state)!r} has no random state for process {index} "
                f"({path.name}); it is damaged: remove it to fall back to the previous state"
            )
        saved = _load_pickle_safely(path, "the random states", numpy_rng=True)
        try:
            random.setstate(saved["random_state"])
            import numpy as np

            np.random.set_state(saved["numpy_random_seed"])  # noqa: NPY002 (the global one)
            torch.set_rng_state(saved["torch_manual_seed"])
            if torch.cuda.is_available() and "torch_cuda_manual_seed" in saved:
                torch.cuda.set_rng_state_all(saved["torch_cuda_manual_seed"])
        except Exception as err:
            raise CheckpointError(
                f"{str(path)!r} does not hold the random states of a training state "
                f"({type(err).__name__}: {err}); remove the state to fall back to the previous one"
            ) from err

    def _agree_main_succeeded(self, error: BaseException | None, what: str) -> None:
        """A collective after work done on the main process alone: every rank learns whether it
        failed and stops with a clear error. (``accelerate launch`` / torchrun kill the other
        ranks when one exits; a launcher without that agent, one ``srun`` task per rank, left
        them waiting at the barrier until the collective timed out.)

        The main process re-raises its own error; the others raise ``CheckpointError`` quoting
        it (type and message, sent with the main's host name: on several nodes the main's
        traceback is in another node's log). Replaces the ``wait_for_everyone`` that followed
        the work.
        """
        failed = self._main_says(error is not None)
        if not failed:
            return
        said = [_one_line(error) if error is not None else "", platform.node()]
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(said, from_process=0)
        if error is not None:
            raise error
        summary, host = said
        raise CheckpointError(
            f"the main process failed while {what} (rank 0, on host {host!r}): {summary} "
            "(this process stops with it; rank 0's output has the traceback)"
        )

    # -- the loop ----------------------------------------------------------------------------

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # The prepared (possibly DDP-wrapped) backbone is called directly so that gradient
        # synchronisation hooks run; the residual bookkeeping is the data layer's `base`.
        residual = batch["fine"] - batch["base"]
        per_sample = self.objective.loss(
            self.model, residual, batch["cond"], phys=batch.get("phys")
        )
        return per_sample.mean()

    def _open_sample_log(self) -> None:
        if not self.accelerator.is_main_process:
            return
        path = self.run_dir / "samples.jsonl"
        # drop what a killed run logged after its last saved state (it is drawn again)
        _trim_jsonl(path, lambda record: record["micro_batch"] < self.progress.micro_batches)
        validation = self.run_dir / "validation.jsonl"
        if validation.is_file():  # evaluations after the last state are made again on resume
            _trim_jsonl(validation, lambda record: record["step"] <= self.progress.step)
        self._sample_log = path.open("a", encoding="utf-8")

    def _check_run_export(self, *, before_training: bool) -> None:
        """Refuse when ``run_dir/model``, which each export replaces, holds more than a model
        folder's files (a ``.gitattributes`` added for an upload, say): replacing it would
        delete them. Said in the run's terms, before training when the launch starts (its
        export would be refused at the end), else with the ``--export-only`` command to export
        once the folder is cleared (the training states are untouched)."""
        from .hub import _overwrite_problem

        target = self.run_dir / "model"
        if not (target.exists() or target.is_symlink()):
            return
        problem = _overwrite_problem(target)
        if problem is None:
            return
        export = (
            f"python -m flexdownscale.train --config {str(self.run_dir / 'config.toml')!r} "
            "--export-only"
        )
        then = (
            " before training (this launch's export would be refused at its end)"
            if before_training
            else f", then export again ({export}; the training states are untouched)"
        )
        raise ModelFolderError(
            f"the run's model folder {str(target)!r}, which each export replaces, cannot be "
            f"replaced: {problem}; move that content out of it{then}"
        )

    @_keeps_callers_state
    def fit(self) -> Path | None:
        """Train for ``config.steps`` optimiser steps; returns the exported model folder.

        A resumed trainer loads the latest state first. At the end of the launch (all steps, or
        ``time_limit_minutes`` reached) a state is saved (unless its last step saved one), the run validates once more when its
        last step was not a validation step (skipped on the time limit) and the EMA model is
        exported (:meth:`export`).

        Returns
        -------
        pathlib.Path or None
            The exported model folder (``run_dir/model``) on the main process, ``None`` on the
            others.

        Raises
        ------
        TrainingInterrupted
            When SIGINT (Ctrl-C) or SIGTERM came while training (on any rank): the optimiser
            step under way was finished and its state saved; no final validation or export.
            The signal handlers ``fit`` installed (in the main thread) are removed again.
        NonFiniteLossError
            When the loss or the gradient norm is not finite; the last saved state is kept.
            Under a gradient scaler (``precision = "fp16"`` on a GPU) a non-finite gradient
            norm skips the optimiser step instead (the scaler lowers its scale; the step counts,
            the weights and the EMA are unchanged), and only ``MAX_SKIPPED_STEPS_IN_A_ROW``
            skipped steps in a row stop the run.
        CheckpointError
            When another launch trains in the run folder (it took the folder's lock after this
            trainer's lock was released by an earlier ``fit`` or ``export``), or when a state
            cannot be written (a full disk: the message names the state, the cause and the
            previous state a resume starts from; the incomplete state is removed).
        """
        with self._run_folder_locked():
            return self._fit()

    def _claim_process_state(self) -> None:
        """Put back what this trainer set in accelerate's process-wide state, which a trainer
        built after it replaced: the gradient accumulation (accelerate keeps one per process:
        another trainer's would decide when this one steps and how its loss is scaled), and, at
        a fresh run's first fit, the random states its noise starts from (every trainer seeds
        the process when it is built). A resume takes its random states from the state."""
        acc = self.accelerator
        state = acc.gradient_state
        if state.plugin_kwargs != self._accumulation_kwargs:
            state.plugin_kwargs = dict(self._accumulation_kwargs)
        acc.step = 0  # fit starts at an optimiser step's first micro-batch
        saved, self._random_state_at_build = self._random_state_at_build, None
        if saved is not None and not self.resume:
            _set_global_random_state(saved)

    def _fit(self) -> Path | None:
        """:meth:`fit`, with the run folder locked."""
        acc, config = self.accelerator, self.config
        self._check_run_export(before_training=True)  # not after hours of training
        self._claim_process_state()
        if self.resume:
            latest = self.load_latest_state()
            acc.print(f"resumed from {latest} at step {self.progress.step}")
        self._start_trackers()
        self._open_sample_log()
        if self.resume and self._evaluation_missing():
            # the state of an evaluation step is saved before validating: a launch stopped
            # during that validation left no record of it, so it is made now
            self.evaluate()

        advice = _one_thread_advice(  # before the progress bar: a line of its own
            acc.device,
            threads=torch.get_num_threads(),
            cores=_usable_cores(),
            processes=int(os.environ.get("LOCAL_WORLD_SIZE", acc.num_processes)),
            environ=os.environ,
        )
        if advice and acc.is_main_process:
            warnings.warn(advice, FlexDownscaleWarning, stacklevel=user_stacklevel())

        tqdm = bar_class()
        # a terminal (or a notebook) gets the bar; a log file (CI, SLURM) a plain line every
        # few steps instead of the bar's carriage-return frames
        plain = acc.is_main_process and not draws_a_bar(tqdm)
        every = _progress_every(config.steps)
        bar = tqdm(
            total=config.steps,
            initial=self.progress.step,
            disable=not acc.is_main_process or plain,
            desc="train",
            dynamic_ncols=True,
        )
        fault_step = int(os.environ.get(FAULT_NAN_ENV, "-1"))
        batches_per_epoch = self.batches_per_epoch
        self.model.train()
        started, samples_at_start = time.perf_counter(), self.progress.samples
        step_at_start, overhead = self.progress.step, 0.0  # overhead: validation and states
        stopped = ""
        self._last_step_end, self._longest_step = started, 0.0
        self._longest_save = 0.0
        if acc.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(acc.device)
        # fp32 convolutions on a GPU run in TF32 by torch's default: launches.jsonl says which
        tf32 = _tf32_flags() if acc.device.type == "cuda" else None
        # the end of the launch's first optimiser step, for a rate without its one-time costs
        # (on a GPU: kernel loading, cuDNN's set-up, the optimiser's state): time, samples and
        # overhead then
        first: tuple[float, int, float] | None = None
        # fp16 on a GPU: the gradient scaler skips the optimiser steps whose gradients overflow
        scaled = acc.scaler is not None
        skipped_steps, skips_in_a_row = 0, 0

        def steady_rate() -> float | None:
            if first is None or self.progress.step - step_at_start < 2:
                return None
            seconds = time.perf_counter() - first[0] - (overhead - first[2])
            return round((self.progress.samples - first[1]) / max(seconds, 1e-9), 3)

        # the losses of the current optimiser step's micro-batches: train/loss is their mean
        step_loss, step_micro_batches = torch.zeros((), device=acc.device), 0
        stops, interrupted = _StopRequests(), 0  # SIGINT or SIGTERM: stop after the step
        with stops:
            try:
                while self.progress.step < config.steps:
                    epoch, offset = divmod(self.progress.micro_batches, batches_per_epoch)
                    self.loader.set_epoch(epoch)
                    if hasattr(self.train_set, "set_epoch"):
                        self.train_set.set_epoch(epoch)
                    loader = self.loader
                    if offset:
                        loader = acc.skip_first_batches(self.loader, offset)
                        # accelerate < 1.15 builds the skipping loader at epoch 0 and, iterated,
                        # sets the shared sampler back to epoch 0: a resume mid-epoch replayed
                        # another epoch's samples
                        loader.set_epoch(epoch)
                    for batch in itertools.islice(loader, batches_per_epoch - offset):
                        with acc.accumulate(self.model):
                            loss = self._loss(batch)
                            if self.progress.step == fault_step:
                                loss = loss * float("nan")
                            finite = torch.isfinite(loss.detach()).float()
                            if acc.gather(finite.reshape(1)).min() < 1:
                                self._stop_non_finite(loss)
                            acc.backward(loss)
                            if acc.sync_gradients:
                                # a finite loss can still have non-finite gradients (an overflow in the
                                # backward pass): they must not reach the weights, the EMA or a state
                                clip = (
                                    config.optim.grad_clip
                                    if config.optim.grad_clip > 0
                                    else math.inf
                                )
                                norm = acc.clip_grad_norm_(self.model.parameters(), clip)
                                finite = torch.isfinite(torch.as_tensor(norm, device=acc.device))
                                # the norm is of the all-reduced gradients: every rank agrees.
                                # A gradient scaler (fp16) skips the step and lowers its scale
                                if acc.gather(finite.float().reshape(1)).min() < 1 and not scaled:
                                    self._stop_non_finite(loss, gradient_norm=float(norm))
                            lr = learning_rate(
                                self.progress.step,
                                base_lr=config.optim.lr,
                                warmup_steps=config.optim.warmup_steps,
                                total_steps=config.steps,
                                schedule=config.optim.schedule,
                            )
                            for group in self.optimizer.param_groups:
                                group["lr"] = lr
                            self.optimizer.step()
                            self.optimizer.zero_grad(set_to_none=True)
                        self._log_indices(batch)
                        self.progress.micro_batches += 1
                        step_loss += loss.detach().float()
                        step_micro_batches += 1
                        if not acc.sync_gradients:
                            continue
                        # bookkeeping once per optimiser step; a step the gradient scaler
                        # skipped counts too (its data were used: the sample order, the
                        # learning-rate schedule and a resume stay as they are)
                        self.progress.step += 1
                        self.progress.samples += config.batch_size
                        # the step's loss: the mean over its micro-batches and the processes (each
                        # process has as many micro-batches of as many samples)
                        step_loss /= step_micro_batches
                        # gathered with the loss, in the collective every step makes: whether a
                        # rank got SIGINT or SIGTERM, so that every rank stops after this step,
                        # and whether a rank's gradient scaler skipped the step
                        noted = torch.tensor(float(stops.signal_number), device=acc.device)
                        skipped = float(scaled and acc.optimizer_step_was_skipped)
                        both = acc.gather(
                            torch.stack(
                                (step_loss.float(), noted, torch.full_like(noted, skipped))
                            ).reshape(1, 3)
                        )
                        mean_loss = both[:, 0].mean().item()
                        interrupted = int(both[:, 1].max().item())
                        step_loss, step_micro_batches = torch.zeros((), device=acc.device), 0
                        if both[:, 2].max().item() > 0:  # the weights did not change
                            skipped_steps, skips_in_a_row = skipped_steps + 1, skips_in_a_row + 1
                            if skips_in_a_row >= MAX_SKIPPED_STEPS_IN_A_ROW:
                                self._stop_non_finite(loss, skipped_in_a_row=skips_in_a_row)
                        else:
                            skips_in_a_row = 0
                            self.ema.update(self._plain_model())
                        if first is None:
                            first = (time.perf_counter(), self.progress.samples, overhead)
                        # training samples per second, as launches.jsonl's train_samples_per_s:
                        # the time spent validating and saving states left out
                        rate = (self.progress.samples - samples_at_start) / max(
                            1e-9, time.perf_counter() - started - overhead
                        )
                        bar.update(1)
                        bar.set_postfix(
                            loss=f"{mean_loss:.4g}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}"
                        )
                        if plain and (
                            self.progress.step % every == 0 or self.progress.step == config.steps
                        ):
                            print(
                                f"train: step {self.progress.step}/{config.steps}, loss "
                                f"{mean_loss:.4g}, lr {lr:.2e}, {rate:.1f} samples/s",
                                file=sys.stderr,
                                flush=True,
                            )
                        acc.log(
                            {"train/loss": mean_loss, "train/lr": lr, "train/samples_per_s": rate},
                            step=self.progress.step,
                        )
                        if interrupted:  # the state is saved below; its validation on resume
                            stopped = "interrupted"
                            break
                        paused = time.perf_counter()
                        # the state first: a validation that fails or is killed loses no training
                        if (
                            config.checkpoint_every
                            and self.progress.step % config.checkpoint_every == 0
                        ):
                            with stops.writing():
                                self.save_state()
                            self._longest_save = max(
                                self._longest_save, time.perf_counter() - paused
                            )
                        if config.eval_every and self.progress.step % config.eval_every == 0:
                            self.evaluate()
                        overhead += time.perf_counter() - paused
                        if self.progress.step >= config.steps:
                            break
                        if self._out_of_time(self._created):
                            stopped = "time_limit"
                            break
                    if stopped:
                        break
            except NonFiniteLossError:
                self._write_launch_summary(
                    steps=self.progress.step - step_at_start,
                    samples=self.progress.samples - samples_at_start,
                    seconds=time.perf_counter() - started,
                    overhead=overhead,
                    stopped="non_finite",
                    steady=steady_rate(),
                    skipped_steps=skipped_steps,
                    tf32=tf32,
                )
                raise
            bar.close()
            self._write_launch_summary(
                steps=self.progress.step - step_at_start,
                samples=self.progress.samples - samples_at_start,
                seconds=time.perf_counter() - started,
                overhead=overhead,
                stopped=stopped or "done",
                steady=steady_rate(),
                skipped_steps=skipped_steps,
                tf32=tf32,
            )
            if self._final_save_needed():
                with stops.writing():
                    self.save_state()
            if not interrupted:  # a signal after the last step's: the state is saved, stop now
                interrupted = self._agreed_signal(stops.signal_number)
        # the handlers the launch replaced are back
        if interrupted:
            self._stop_interrupted(interrupted)
        skipped_validation = False
        if self.config.eval_every and self.progress.step % self.config.eval_every:
            if stopped == "time_limit":
                # a full validation may take longer than the margin the limit keeps: skipped,
                # the export's card reports the last evaluation (made again when the run ends)
                skipped_validation = True
            else:
                self.evaluate()
        self._record_rank_fingerprints()
        folder = self.export()
        acc.end_training()
        if self._sample_log is not None:
            self._sample_log.close()
        if stopped == "time_limit":
            last = self._last_validation().get("step")
            acc.print(
                f"time limit of {config.time_limit_minutes:g} min reached at step "
                f"{self.progress.step} of {config.steps}: the state is saved and the EMA model "
                "exported"
                + (
                    " (the final validation was skipped to stay within the limit; the model "
                    + (f"card reports step {last}'s" if last is not None else "has none yet")
                    + ")"
                    if skipped_validation
                    else ""
                )
                + f"; continue with {_option('resume')}"
            )
        return folder

    def _plain_model(self) -> torch.nn.Module:
        """The network being trained without the wrappers of ``accelerate.prepare``.

        Without DDP's wrapper and without ``torch.compile``'s (a ``dynamo_backend`` in the
        accelerate configuration, or ``ACCELERATE_DYNAMO_BACKEND``): the compiled module's
        state dict names every tensor with an ``_orig_mod.`` prefix, which neither the EMA (built
        from the plain module) nor a model folder knows. The plain module shares the compiled
        one's parameters, so it holds the trained weights.
        """
        return _unwrapped(self.accelerator, self.model)

    def _agreed_signal(self, noted: int) -> int:
        """The stop signal every rank agrees on: the largest any rank noted (``noted``: this
        rank's, 0 for none), so that all stop, or none."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return noted
        flag = torch.tensor([float(noted)], device=acc.device)
        return int(acc.gather(flag).max().item())

    def _stop_interrupted(self, number: int) -> None:
        """End a launch that SIGINT or SIGTERM stopped, its state saved: close the trackers and
        the sample log, and raise :class:`TrainingInterrupted` (no final validation and no
        export: a scheduler's grace period is short, and the resumed run makes both)."""
        acc = self.accelerator
        acc.end_training()
        if self._sample_log is not None:
            self._sample_log.close()
        step = self.progress.step
        state = self.run_dir / "checkpoints" / f"step_{step:08d}"
        raise TrainingInterrupted(
            f"{_interrupted_head(number, step, self.config.steps, state)}; continue with "
            f"{_option('resume')}",
            signal_number=number,
            step=step,
            state=state,
        )

    def _final_save_needed(self) -> bool:
        """Whether the launch's last step still needs its state (every rank gets the answer).

        The main process reads the run folder and broadcasts what it found: a rank deciding
        from its own file system (a run folder on each node's local disk) would skip the save
        that the others make, and the launch hung in their collectives.
        """
        needed = True
        if self.accelerator.is_main_process:
            needed = _state_missing_for_step(list_states(self.run_dir), self.progress.step)
        return self._main_says(needed)

    def _evaluation_missing(self) -> bool:
        """Whether the resumed state is at an evaluation step that ``validation.jsonl`` lacks
        (the main process reads the log; every rank gets its answer)."""
        step, every = self.progress.step, self.config.eval_every
        missing = False
        if every and step and step % every == 0 and self.accelerator.is_main_process:
            missing = self._last_validation().get("step") != step
        return self._main_says(missing)

    @torch.no_grad()
    def _out_of_time(self, started: float) -> bool:
        """Whether this launch has used its ``time_limit_minutes`` (every rank agrees).

        The main process's clock decides and the answer is broadcast, so all ranks stop after the
        same optimiser step. ``started`` is when the Trainer was created: opening the data,
        fitting the normalizer and loading the state count against the limit too. The launch
        stops when what is left is less than a margin of 1.5 times the longest step so far (a
        step that validated or saved a state counts with that time) plus the longest state save:
        enough for the final state and the export. The final validation is skipped when the
        launch stops on the limit (it can take much longer than a step; the run's last launch
        makes it).
        """
        limit = self.config.time_limit_minutes
        if limit <= 0:
            return False
        now = time.perf_counter()
        self._longest_step = max(self._longest_step, now - self._last_step_end)
        self._last_step_end = now
        margin = 1.5 * self._longest_step + self._longest_save
        local = now - started + margin >= 60.0 * limit
        flag = torch.tensor([float(local)], device=self.accelerator.device)
        from accelerate.utils import broadcast

        return bool(broadcast(flag, from_process=0).item())

    def _write_launch_summary(
        self,
        *,
        steps: int,
        samples: int,
        seconds: float,
        overhead: float,
        stopped: str,
        steady: float | None = None,
        skipped_steps: int = 0,
        tf32: dict[str, bool] | None = None,
    ) -> None:
        """Append this launch's throughput and peak memory to ``launches.jsonl`` in the run folder.

        ``samples_per_s`` counts the whole loop; ``train_samples_per_s`` leaves out the time spent
        in validation and in saving states (as the progress bar's ``samples_s`` and the logged
        ``train/samples_per_s`` do); ``steady_train_samples_per_s`` (``steady``) is that rate
        counted from the end of the launch's first optimiser step, without its one-time costs
        (``None`` for a launch of fewer than 2 steps). ``skipped_steps`` counts the optimiser
        steps the gradient scaler (fp16 on a GPU) skipped for overflowing gradients; ``tf32``
        (on a GPU only) whether float32 matrix products and cuDNN convolutions could run in TF32
        (:func:`_tf32_flags`). ``peak_memory_gib`` is the main process's peak memory, and
        ``peak_memory_source`` says which: on a GPU the peak of allocated accelerator memory in
        this launch (``"torch.cuda.max_memory_allocated"``), on a CPU the peak resident memory
        of the process since it started (``"ru_maxrss"``; ``null`` both where the system does
        not report it). ``nan_fields_dropped`` counts the
        fields each split left out for holding NaN; a forecast run adds ``nan_windows_dropped``,
        the windows (training items) that read one of them. ``data_files`` lists the files
        ``data.paths`` resolved to in this launch (absolute paths; the configuration keeps the
        globs as written).
        """
        acc = self.accelerator
        if not acc.is_main_process:
            return
        cuda = acc.device.type == "cuda"
        peak, source = _peak_memory_gib(acc.device)
        splits = (("train", self.train_set), ("validation", self.val_set))
        record = {
            "end_step": self.progress.step,
            "stopped": stopped,
            "steps": steps,
            "samples": samples,
            "processes": acc.num_processes,
            "seconds": round(seconds, 3),
            "samples_per_s": round(samples / max(seconds, 1e-9), 3),
            "train_samples_per_s": round(samples / max(seconds - overhead, 1e-9), 3),
            # the same from the end of the first step (on a GPU it pays one-time costs)
            "steady_train_samples_per_s": steady,
            "precision": self.precision,  # what ran (fp16 asked for on a CPU ran fp32: "no")
            # steps the gradient scaler (fp16) skipped: overflowing gradients, weights unchanged
            "skipped_steps": skipped_steps,
            "device_type": acc.device.type,
            "device": _device_name(acc.device),
            "peak_memory_gib": peak,
            "peak_memory_source": source,
            "torch": torch.__version__,
            "changed_settings": {k: list(v) for k, v in self.changed_settings.items()},
            # how the data differ from those of the state this launch resumed (warned about)
            "data_changed": self.data_changes,
            # the files data.paths resolved to (globs matched, "~" expanded), absolute
            "data_files": self.data_files,
            # fields left out for holding NaN (data.nan_fields = "drop"), per split
            "nan_fields_dropped": {
                name: len(data.dropped_fields) for name, data in splits if data is not None
            },
        }
        if tf32 is not None:  # a GPU: whether fp32 products and convolutions may run in TF32
            record["tf32"] = tf32
        if self.source is not None:  # where the run's weights started
            record["init_from"] = {
                **_provenance(self.source, self.config.init_normalization),
                "weights_loaded": self._source_folder is not None,
            }
        if self.config.model.task == "forecast":  # and the windows (items) that read them
            record["nan_windows_dropped"] = {
                name: data.dropped_windows for name, data in splits if data is not None
            }
        with (self.run_dir / "launches.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        acc.print(
            f"launch: {steps} steps, {record['train_samples_per_s']:.1f} training samples/s"
            + (
                f", peak memory {peak:.2f} GiB"
                + ("" if cuda else " (resident, since the process started)")
                if peak is not None
                else ""
            )
        )

    def _record_rank_fingerprints(self) -> None:
        """Write every rank's parameter fingerprint to ``ranks.json`` (they must be equal) and a
        fingerprint of its random-number state (they must differ: each rank draws its own
        noise)."""
        acc = self.accelerator
        # summed a chunk at a time: bounded memory whatever the model's size
        plain = _unwrapped(acc, self.model)
        fingerprint = _parameter_fingerprint(plain.parameters())
        fingerprint = fingerprint.to(acc.device)
        gathered = acc.gather(fingerprint.reshape(1, 2)).cpu().tolist()
        rng = torch.get_rng_state().double()
        rng_print = (rng * torch.arange(1, rng.numel() + 1, dtype=torch.float64)).sum()
        rng_gathered = acc.gather(rng_print.reshape(1).to(acc.device)).cpu().tolist()
        if acc.is_main_process:
            _atomic_write_text(
                self.run_dir / "ranks.json",
                json.dumps(
                    {
                        "step": self.progress.step,
                        "parameter_fingerprints": gathered,
                        "rng_fingerprints": rng_gathered,
                    }
                ),
            )

    def _log_indices(self, batch: dict[str, torch.Tensor]) -> None:
        indices = self.accelerator.gather(batch["index"].to(self.accelerator.device))
        if self._sample_log is not None:
            record = {
                "micro_batch": self.progress.micro_batches,
                "step": self.progress.step,
                "indices": [int(i) for i in indices.tolist()],
            }
            self._sample_log.write(json.dumps(record) + "\n")
            self._sample_log.flush()

    def _stop_non_finite(
        self,
        loss: torch.Tensor,
        gradient_norm: float | None = None,
        skipped_in_a_row: int = 0,
    ) -> None:
        """Stop the launch with :class:`NonFiniteLossError`: a non-finite loss, non-finite
        gradients (``gradient_norm``) without a gradient scaler, or ``skipped_in_a_row`` steps
        in a row that the gradient scaler (fp16) skipped for overflowing gradients."""
        states = list_states(self.run_dir)
        last = states[-1].name if states else "none yet"
        if self._sample_log is not None:
            self._sample_log.close()
        self.accelerator.end_training()
        if states:
            advice = (
                f"the run stopped and the last good state ({last}) is intact. Lower optim.lr, "
                f"check the data for NaNs, or resume from that state with {_option('resume')}"
            )
        else:
            advice = (
                "the run stopped before saving any state, so there is nothing to resume. Lower "
                "optim.lr or check the data for NaNs, then start the run again (without "
                f"{_option('resume')})"
            )
        if skipped_in_a_row:
            scaler = self.accelerator.scaler
            scale = f", its scale down to {scaler.get_scale():g}" if scaler is not None else ""
            what = (
                f"non-finite gradients in {skipped_in_a_row} optimiser steps in a row (the "
                f"gradient scaler of precision = 'fp16' skipped them as overflows{scale}; the "
                f"loss was {loss.item():.4g})"
            )
            clip = self.config.optim.grad_clip
            clipping = (
                "set optim.grad_clip (now 0: off)"
                if clip == 0
                else f"lower optim.grad_clip (now {clip:g})"
            )
            advice = (
                "gradients that stay non-finite as the scale falls are beyond float16 or NaN: "
                f"train in precision = 'bf16' where the GPU has it, lower optim.lr, or {clipping}; "
                + advice
            )
        elif gradient_norm is None:
            what = f"non-finite loss ({loss.item()})"
        else:
            what = f"non-finite gradients (norm {gradient_norm}; the loss was {loss.item():.4g})"
        raise NonFiniteLossError(f"{what} at optimiser step {self.progress.step}; {advice}")

    # -- validation and export ---------------------------------------------------------------

    @torch.no_grad()
    @_keeps_callers_state
    def evaluate(self) -> dict[str, float]:
        """Validation on the held-out split: the loss with the raw (trained) weights, and
        sampled skill with the EMA weights.

        Runs on the main process (the others wait). The loss is the objective's over every item
        of the split, each item with its own time and noise, drawn from the run's seed and the
        item's index: the same at every evaluation, whatever the micro-batch size or the number
        of processes, so evaluations are comparable. The skill is computed in normalized units on
        ``eval_fields`` validation fields spread evenly over the split
        (:func:`validation_indices`) with ``eval_members`` members.

        Returns
        -------
        dict of str to float
            On the main process ``"val/loss"``, ``"val/rmse"`` (ensemble mean),
            ``"val/rmse_base"`` (upsampled coarse field), ``"val/rfne"``, ``"val/crps"`` and
            ``"val/spread_skill"`` (NaN with ``eval_members = 1``); also appended to
            ``validation.jsonl``. An empty dict on the other processes.
        """
        acc, config = self.accelerator, self.config
        metrics: dict[str, float] = {}
        error = None
        self._start_trackers()
        if acc.is_main_process:
            try:
                metrics = self._evaluate_main()
                # strict JSON: a metric that does not apply (spread-skill of one member) is null
                record = {"step": self.progress.step, **metrics}
                record = {k: finite_or_null(v) for k, v in record.items()}
                # what the skill was sampled with: a later export may store another sampler
                record["sampler"] = self._sampler_options()
                with (self.run_dir / "validation.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record, allow_nan=False) + "\n")
            except Exception as err:
                error = err
            else:
                acc.print(
                    f"step {self.progress.step}: "
                    + ", ".join(
                        f"{k.split('/')[-1]}={v:.4g}"
                        if math.isfinite(v)
                        else f"{k.split('/')[-1]}=n/a"
                        for k, v in metrics.items()
                    )
                )
        self._agree_main_succeeded(error, f"validating at step {self.progress.step}")
        if metrics:
            acc.log(metrics, step=self.progress.step)
        self.evaluations += 1
        del config
        return metrics

    def _evaluate_main(self) -> dict[str, float]:
        import numpy as np
        import xarray as xr

        if self.val_set is None:
            raise ConfigError(
                "no validation split to evaluate on: set data.validation (eval_every = 0 and "
                "no data.validation train without one)"
            )

        from . import metrics as fm
        from .diffusion import ResidualModel

        config = self.config
        model = self._plain_model()
        was_training = model.training
        model.eval()
        device = self.accelerator.device
        # its own generator: iterating a DataLoader without one draws a seed from the global
        # RNG, which made the training noise depend on when (and on which rank) validation ran
        loader = torch.utils.data.DataLoader(
            self.val_set,
            batch_size=self.micro_batch_size,
            generator=torch.Generator().manual_seed(config.seed),
        )
        total, count = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            # each item's time and noise come from its own seed (the run's seed and the item's
            # index), the same at every evaluation whatever the batches: one generator for the
            # split made val/loss depend on micro_batch_size, so on the number of processes
            seeds = [_validation_item_seed(config.seed, int(i)) for i in batch["index"]]
            loss = _item_seeded_loss(
                self.objective,
                model,
                batch["fine"] - batch["base"],
                batch["cond"],
                batch.get("phys"),
                seeds,
                autocast=self.accelerator.autocast,
            )
            total += float(loss.double().sum())
            count += loss.shape[0]
        metrics = {"val/loss": total / max(1, count)}

        indices = validation_indices(len(self.val_set), config.eval_fields)
        n = len(indices)
        items = [self.val_set[i] for i in indices]
        batch = {
            k: torch.stack([it[k] for it in items]).to(device) for k in ("fine", "base", "cond")
        }
        phys = (
            torch.stack([items[i]["phys"] for i in range(n)]).to(device)
            if "phys" in items[0]
            else None
        )
        wrapper = ResidualModel(model, task=config.model.task, past_frames=config.data.past_frames)
        with self.ema.swapped(model), self.accelerator.autocast():
            ensemble = wrapper.sample(
                self.objective,
                batch["cond"],
                base=batch["base"],
                members=config.eval_members,
                generator=config.seed,
                phys=phys,
                **self._sampler_options(),
            )
        model.train(was_training)
        dims = ("field", "channel", "y", "x")
        truth = xr.DataArray(batch["fine"].float().cpu().numpy(), dims=dims)
        base = xr.DataArray(batch["base"].float().cpu().numpy(), dims=dims)
        ens = xr.DataArray(ensemble.float().cpu().numpy(), dims=("field", "member", *dims[1:]))
        mean = ens.mean("member")
        metrics.update(
            {
                "val/rmse": float(fm.rmse(mean, truth)),
                "val/rmse_base": float(fm.rmse(base, truth)),
                "val/rfne": float(fm.rfne(mean, truth, dims=("y", "x"))),
                # the fair CRPS needs two members; one member gives the plain CRPS (the MAE)
                "val/crps": float(fm.crps_ensemble(ens, truth, fair=config.eval_members > 1)),
                "val/spread_skill": float(
                    fm.spread_skill_ratio(ens, truth) if config.eval_members > 1 else np.nan
                ),
            }
        )
        if config.plot_every and self.evaluations % config.plot_every == 0:
            # the coarse field itself (super-resolution), not its upsampling; a forecast has none
            coarse = (
                xr.DataArray(items[0]["coarse"].float().numpy()[None], dims=dims)
                if "coarse" in items[0]
                else None
            )
            self._plot(coarse, base, truth, ens, field=int(indices[0]))
        return metrics

    def _sampler_options(self) -> dict[str, Any]:
        """Sampler name, steps and options from ``[sampler]``, as resolved for the objective
        (:func:`resolve_sampler`) when the trainer was built: the settings the export stores."""
        sampler = self.config.sampler
        options: dict[str, Any] = {"sampler": sampler.sampler, "steps": sampler.steps}
        if sampler.sampler == "ddim":
            options["eta"] = sampler.eta
        if sampler.sampler == "sde":
            options["delta"] = sampler.delta
        if sampler.sampler == "idff":
            options.update(g1=sampler.g1, g2=sampler.g2)
        return options

    def _plot(self, coarse: Any, base: Any, truth: Any, ens: Any, *, field: int) -> None:
        """Panels and spectra of the first validation field scored, first channel, in
        normalized units (what the network sees), as PNGs under ``run_dir/plots`` (and
        TensorBoard); ``field`` is its index in the validation split."""
        from . import plot

        folder = self.run_dir / "plots"
        folder.mkdir(parents=True, exist_ok=True)
        step = self.progress.step
        one = {"field": 0, "channel": 0}
        variable = self.val_set.variables[0] if self.val_set.variables else "channel 0"
        attrs = {"long_name": f"{variable}, normalized", "units": "1"}

        def named(da: Any) -> Any:
            return da.isel(one).assign_attrs(attrs).rename(str(variable))

        where = f"validation item {field}"
        figures = {
            "panels": plot.plot_panels(
                named(coarse) if coarse is not None else None,
                named(truth),
                named(ens),
                member_dim="member",
                title=f"{variable} (normalized), {where}, step {step}",
            ),
            # crops carry no coordinates: wavenumbers in cycles per grid cell
            "spectra": plot.plot_spectra(
                {
                    "truth": named(truth),
                    "ensemble mean": named(ens).mean("member", keep_attrs=True),
                    "member 0": named(ens).isel(member=0),
                    "upsampled coarse": named(base),
                },
                reference="truth",
                spectrum_kwargs={"spacing": 1.0, "spacing_units": "1"},
            ),
        }
        for name, figure in figures.items():
            path = folder / f"{name}_step{step:08d}.png"
            figure.savefig(path, dpi=100)
            if self.config.logger == "tensorboard":
                # the PNG just written, not the figure again: add_figure drew every figure a
                # second time (~0.4 s of each plotting validation on a CPU)
                tracker = self.accelerator.get_tracker("tensorboard", unwrap=True)
                tracker.add_image(
                    f"val/{name}", _png_pixels(path), global_step=step, dataformats="HWC"
                )

    @keyword_hints
    @_keeps_callers_state
    def export(
        self, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False
    ) -> Path | None:
        """Export the EMA model as a model folder (:mod:`flexdownscale.hub`); main process writes.

        Parameters
        ----------
        path
            Where to write the folder (a leading ``~`` is the home folder). Default:
            ``run_dir/model``, the run's own export, which each export replaces.
        overwrite
            Replace an existing model folder at ``path`` (see
            :func:`flexdownscale.hub.save_model_folder`; anything other than a model folder or an
            empty folder is never replaced). Without it an existing ``path`` is refused.

        Returns
        -------
        pathlib.Path or None
            The folder on the main process, ``None`` elsewhere.

        Raises
        ------
        ModelFolderError
            When ``path`` exists and cannot or may not be replaced.
        CheckpointError
            When another launch trains in the run folder (see :meth:`fit`).
        """
        from .hub import check_target

        acc = self.accelerator
        target = _user_path(path) if path is not None else self.run_dir / "model"
        overwrite = overwrite or path is None  # run_dir/model is the run's own export
        with self._run_folder_locked():
            if path is None:  # on every rank: all refuse, none waits
                self._check_run_export(before_training=False)
            check_target(target, overwrite=overwrite)
            folder, error = None, None
            if acc.is_main_process:
                try:
                    folder = self._export_main(target, overwrite)
                except Exception as err:  # disk full, permissions: every rank must hear of it
                    error = err
            self._agree_main_succeeded(error, f"exporting the model to {str(target)!r}")
        return folder

    def _export_main(self, target: Path, overwrite: bool) -> Path:
        """Main process: write the EMA model folder at ``target``."""
        from .hub import model_card_lines, save_model_folder

        acc, config = self.accelerator, self.config
        model = self._plain_model()
        state = self.ema.averaged_state_dict(model)
        normalizer = self.train_set.normalizer
        validation = self._last_validation()
        changes = self._settings_changes()
        condition = None
        if config.data.condition is not None:
            condition = {"name": config.data.condition, "scale": config.data.condition_scale}
            seen = self.train_set.condition_range()
            if seen is not None:
                condition["range"] = list(seen)  # the Downscaler warns outside it
        folder = save_model_folder(
            target,
            state_dict=state,
            model=self._model_config(),
            diffusion=config.diffusion,
            sampler=config.sampler,
            variables=self.train_set.variables,
            units=self._units(),
            factor=config.data.factor if config.model.task == "superres" else 1,
            normalization=normalizer.to_dict() if normalizer is not None else {},
            grid=self.train_set.grid_metadata(),
            card=self._model_card(
                validation,
                changes,
                model_card_lines(condition, normalizer.to_dict() if normalizer is not None else {}),
            ),
            task=config.model.task,
            condition=condition,
            extra={
                "train_steps": self.progress.step,
                "train_samples": self.progress.samples,
                "validation": validation,
                "settings_changes": changes,
                # the run's whole configuration (its config.json): seed, schedule, batches,
                # data ranges, ... as the last launch ran; the card names the main ones
                "training_config": self._training_config(),
                # what the configuration leaves to the launch (micro_batch_size unset, "auto")
                "training_setup": {
                    "processes": acc.num_processes,
                    "micro_batch_size": self.micro_batch_size,
                    "accumulation_steps": self.accumulation,
                    "mixed_precision": self._trained_precision(),
                },
                **(
                    {"fine_tuned_from": _provenance(self.source, config.init_normalization)}
                    if self.source is not None
                    else {}
                ),
            },
            overwrite=overwrite,
        )
        acc.print(f"exported the EMA model to {folder}")
        return folder

    def _training_config(self) -> dict[str, Any]:
        """The run's resolved configuration as its ``config.json`` holds it (the model section
        as the model was built), JSON-ready: what an export records of how it was trained."""
        values = to_dict(dataclasses.replace(self.config, model=self._model_config()))
        return _json_plain(values)

    def _ema_line(self) -> str:
        """The model card's line on the exported weights' average: the decay its warm-up had
        reached at the last update (``optim.ema_decay`` is reached only after many updates:
        8990 for 0.999, so a 1000-step run ends at 0.991)."""
        decay, updates = self.ema.decay, self.ema.updates
        # the first update whose warm-up decay (1 + n) / (10 + n) reaches the configured one
        full = max(1, math.ceil((10.0 * decay - 1.0) / (1.0 - decay) - 1e-9))
        warm_up = f"warm-up min({decay:g}, (1 + n) / (10 + n)) at update n"
        if updates == 0:
            return f"- EMA of the weights (exported): no update yet; {warm_up}\n"
        reached = min(decay, (1.0 + updates) / (10.0 + updates))
        span = round(1.0 / (1.0 - reached))  # the average's time scale, in steps
        if updates >= full:
            return (
                f"- EMA of the weights (exported): decay {decay:g} over its last updates, "
                f"reached at update {full} ({warm_up}; {updates} updates)\n"
            )
        return (
            f"- EMA of the weights (exported): decay {reached:.4g} at its last update "
            f"({updates}; {warm_up}, which reaches {decay:g} at update {full}), an average "
            f"over about the last {span} step{'s' if span != 1 else ''}\n"
        )

    def _trained_precision(self) -> str:
        """The precision the run's last launch that trained ran in (``launches.jsonl``), in
        accelerate's words (``"no"`` is fp32); this launch's when none is recorded (an export
        on another machine than the training's reports the training's)."""
        path = self.run_dir / "launches.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        for line in reversed(lines):
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a kill while it was written
                continue
            if isinstance(record, dict) and record.get("steps") and record.get("precision"):
                if record["precision"] == "fp16" and record.get("device_type") == "cpu":
                    return "no"  # recorded so by earlier versions; a CPU ran it in fp32
                return str(record["precision"])
        return self.precision

    def _training_lines(self) -> str:
        """The model card's bullets of the settings that retrain the model the same way (seed,
        batches, precision, schedule), and where the export keeps the rest."""
        config, optim = self.config, self.config.optim
        processes = self.accelerator.num_processes
        micro = (
            f"{self.micro_batch_size} per process x {processes} process"
            f"{'es' if processes != 1 else ''}"
        )
        if self.accumulation > 1:
            micro += f" x {self.accumulation} accumulated micro-batches"
        ran = self._trained_precision()
        precision = {"no": "fp32", "bf16": "bf16 (mixed)", "fp16": "fp16 (mixed)"}.get(ran, ran)
        if config.precision == "fp16" and ran == "no":
            precision += " (precision = 'fp16' has no effect on a CPU)"
        schedule = (
            f"{optim.schedule} learning-rate schedule over steps = {config.steps} after "
            f"{optim.warmup_steps} warm-up step{'s' if optim.warmup_steps != 1 else ''}"
        )
        return (
            f"- seed: {config.seed}; micro-batches: {micro}; precision: {precision}\n"
            f"- {schedule}; betas {list(optim.betas)}, weight decay {optim.weight_decay}, "
            f"gradient clip {optim.grad_clip}\n"
            "- every setting of the run (its `config.toml`: seed, schedule, batches, data "
            "paths and ranges, ...) is in `config.json` as `extra.training_config`: as a TOML "
            "file it trains the model again with the same settings (`python -m "
            "flexdownscale.train --config run.toml`)\n"
        )

    def _units(self) -> dict[str, str]:
        units: dict[str, str] = {}
        source = self.train_set.sources[0]
        ds = getattr(source, "ds", None)
        for name in self.train_set.variables:
            attrs = (
                ds[name].attrs if ds is not None and name in getattr(ds, "data_vars", {}) else {}
            )
            units[name] = str(attrs.get("units", ""))
        return units

    def _last_validation(self) -> dict[str, float | None]:
        """The last record of ``validation.jsonl`` (``{}`` without one); a metric that does not
        apply is ``None`` (also in logs of earlier versions, which wrote ``NaN``)."""
        path = self.run_dir / "validation.jsonl"
        if not path.is_file():
            return {}
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            return {}
        return {k: finite_or_null(v) for k, v in json.loads(lines[-1]).items()}

    def _validation_section(self, validation: dict[str, Any], skill: str) -> str:
        """The model card's validation section: the last record's table, or, for a run that
        scored no validation split (``eval_every = 0``, or stopped before its first
        validation), what the card cannot say and how to measure it."""
        if not skill:
            return (
                "## Validation\n\nNot measured: the run left no validation record "
                f"(eval_every = {self.config.eval_every}; 0 turns validation off). Score the "
                "model on held-out data with `flexdownscale evaluate`, or train with "
                "eval_every > 0.\n\n"
            )
        return (
            f"## Validation (held-out split, normalized units, step {validation.get('step', 'n/a')})"
            f"\n\n{self._validation_sampler(validation)}"
            f"| metric | value |\n|---|---|\n{skill}\n\n"
        )

    def _validation_sampler(self, validation: dict[str, Any]) -> str:
        """The model card's line on what the validation ensembles were sampled with, from the
        validation record itself (an export with ``sampler.steps=7`` stores 7 steps while the
        table was measured with the training's sampler); ``""`` without a record."""
        if not validation:
            return ""
        used = validation.get("sampler")
        if not isinstance(used, dict):  # a record of an earlier version
            return "Sampled with a sampler the validation record does not name.\n\n"

        def words(options: dict[str, Any]) -> str:
            rest = ", ".join(
                f"{k} {v}" for k, v in options.items() if k not in ("sampler", "steps")
            )
            steps = options.get("steps")
            return f"`{options.get('sampler')}`, {steps} step{'' if steps == 1 else 's'}" + (
                f" ({rest})" if rest else ""
            )

        line = (
            f"Sampled with {words(used)}, the sampler `config.json` stores"
            if used == self._sampler_options()
            else f"Sampled with {words(used)}; this folder's default sampler "
            f"(`config.json`) is {words(self._sampler_options())}, which these numbers do not "
            "describe"
        )
        return line + ".\n\n"

    def _settings_changes(self) -> list[dict[str, Any]]:
        """The settings each resumed launch changed, from ``launches.jsonl``: one
        ``{"from_step": S, "changed": {key: [old, new]}}`` per launch that changed any (``[]``
        for a run that never did; lines of earlier versions without the entry are skipped)."""
        path = self.run_dir / "launches.jsonl"
        if not path.is_file():
            return []
        changes = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a kill while it was written
                continue
            changed = record.get("changed_settings") if isinstance(record, dict) else None
            if changed and isinstance(changed, dict):
                start = int(record.get("end_step", 0)) - int(record.get("steps", 0))
                changes.append({"from_step": start, "changed": changed})
        return changes

    def _task_line(self) -> str:
        """The model card's line of what the model does with its input: the super-resolution
        settings (factor, degradation, upsampling), or a forecast's past frames, lead and time
        step (a forecast works on its input grid: it has no factor)."""
        from .hub import _forecast_settings

        data = self.config.data
        if self.config.model.task == "forecast":
            forecast = _forecast_settings(self.train_set.grid_metadata())
            if forecast is not None:
                return f"- forecast: {forecast}\n"
        return (
            f"- factor: {data.factor}, degradation: {data.degradation}, "
            f"upsampling: {data.upsample}\n"
        )

    def _crops_line(self) -> str:
        """The model card's line of what the samples are: the fields of the split (with the
        dims they run along when there are several, e.g. time and level pooled), the crops
        drawn from each, and the windows validation scored."""
        data = self.config.data
        n = data.crops_per_field
        fields = len(self.train_set) // n  # the split's items are n crops of each field
        dims = self.train_set.sources[0].sample_dims
        along = f" (every {' x '.join(dims)} combination)" if len(dims) > 1 else ""
        crops = f"{n} random window{'s' if n != 1 else ''}"
        line = (
            f"- samples: {fields} training field{'s' if fields != 1 else ''}{along}, "
            f"{crops} of {data.crop_size} x {data.crop_size} cells of each per epoch"
        )
        if self.val_set is not None:
            held = "the centre window" if n == 1 else f"{n} windows, drawn once from the seed,"
            line += f"; validation scored {held} of each field"
        return line + "\n"

    def _model_card(
        self,
        validation: dict[str, float | None],
        changes: list[dict[str, Any]] | None = None,
        data_lines: Sequence[str] = (),
    ) -> str:
        """The generated model card (README.md of the exported folder); ``data_lines`` are
        extra bullets of its Data section (the condition and transforms,
        :func:`~flexdownscale.hub.model_card_lines`)."""
        config = self.config
        history = _settings_history(changes or [])
        skill = "\n".join(
            f"| {k} | {'n/a' if v is None else format(v, '.6g')} |"
            for k, v in validation.items()
            if k not in ("step", "sampler")
        )
        origin, started = "", ""
        if self.source is not None:
            origin = f" fine-tuned from {_provenance_words(self.source, code=True, lineage=False)}"
            normalization = (
                "the source's statistics"
                if config.init_normalization == "source"
                else "refitted on this run's train split"
            )
            started = (
                f"- fine-tuned from {_provenance_words(self.source, code=True)}: the run "
                "started from its "
                "weights (the EMA too), with a fresh optimiser and step counter; "
                f"normalization: {normalization}\n"
                + (f"- {self._spacing_change}\n" if self._spacing_change else "")
            )
        return (
            f"# {self.run_dir.name}\n\n"
            f"A {config.model.backbone} ({config.model.preset}) {config.model.task} model"
            f"{origin or ' trained'} with flexdownscale's `{config.diffusion.objective}` "
            "objective.\n\n"
            f"## Data\n\n- files: {', '.join(config.data.paths)}\n"
            # each with its units, as `flexdownscale info` shows them
            "- variables: "
            + ", ".join(
                f"{name} [{units}]" if units else f"{name} (no units attribute)"
                for name, units in self._units().items()
            )
            + "\n"
            + self._task_line()
            + f"- split along `{config.data.split_dim}`: train {list(config.data.train)}, "
            f"validation {list(config.data.validation)}\n"
            + self._crops_line()
            + "".join(f"{line}\n" for line in data_lines)
            + "\n"
            f"## Training\n\n- optimiser steps: {self.progress.step}, samples seen: "
            f"{self.progress.samples}, global batch: {config.batch_size}\n"
            f"{self._training_lines()}"
            f"{self._ema_line()}"
            f"- optimiser: {config.optim.optimizer}, lr {config.optim.lr}, EMA {config.optim.ema_decay}\n"
            f"{started}"
            f"{history}\n"
            f"{self._validation_section(validation, skill)}"
            "## Licence\n\nWeights: MIT, like the code; the training data keep their own licences.\n"
        )


#: Settings whose value may be a mapping: compared, reported and restored as one value.
_MAPPING_SETTINGS = frozenset({"data.transforms"})


def _shown(value: Any) -> str:
    """A setting's value in a message: ``none`` (as typed on the command line) for None."""
    return "none" if value is None else repr(value)


def _settings_history(changes: Sequence[dict[str, Any]]) -> str:
    """The model card's bullet of the settings changed on resume, one sub-bullet per resumed
    launch (``{"from_step": int, "changed": {key: (old, new)}}``, as in ``launches.jsonl``);
    values are written as the resume message writes them (an unset one as ``none``)."""
    lines = [
        f"  - from step {c['from_step']}: "
        + "; ".join(f"{k} {_shown(old)} -> {_shown(new)}" for k, (old, new) in c["changed"].items())
        for c in changes
    ]
    if not lines:
        return ""
    return (
        "- settings changed on resume (the lines above give the last launch's values):\n"
        + "\n".join(lines)
        + "\n"
    )


def _normalization_words(normalizer: Any) -> str:
    """A normalizer's formulas for a message: ``"(t2m [K] - 280.303) / 2.28843"``."""
    return "; ".join(stats.describe(name) for name, stats in normalizer.stats.items())


def _changed_settings(previous: TrainConfig, current: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted keys (as on the command line) whose values differ: ``{key: (old, new)}``."""

    def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            # a mapping-valued key (data.transforms: "auto" or a table) is one setting
            if isinstance(value, dict) and f"{prefix}{key}" not in _MAPPING_SETTINGS:
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    before = flat(_json_plain(to_dict(previous)))
    after = flat(_json_plain(to_dict(current)))
    # the model keys the data decide are compared as the model takes them: a run folder's
    # config records them resolved (model.past_frames = data.past_frames), the configuration
    # a run resumes with leaves them unset, and a run saved by an earlier version holds the
    # unset values (in_channels = 1, past_frames = 1, physical_condition false or null)
    taken = (_model_takes(previous), _model_takes(current))
    for values, resolved in zip((before, after), taken, strict=True):
        values.update(resolved)
    for key in _DERIVED_MODEL_KEYS:
        if _FROM_THE_DATA in (taken[0][key], taken[1][key]):
            # not known before the data are open (every variable of the files): the data
            # section's keys say whether the data changed
            before.pop(key)
            after.pop(key)
    changed = {
        key: (before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }
    # a model key that changed because the setting it follows did (data.condition -> none
    # switches model.physical_condition off): the setting the user changed is the one named
    for key, sources in _DERIVED_MODEL_KEYS.items():
        if key in changed and any(source in changed for source in sources):
            del changed[key]
    return changed


# the model keys training sets from other settings, and the settings each follows
_DERIVED_MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "model.in_channels": ("data.variables",),
    "model.out_channels": ("data.variables", "diffusion.objective"),
    "model.past_frames": ("data.past_frames", "model.task"),
    "model.physical_condition": ("data.condition",),
}
# a derived value that only the opened data decide (the channels of data.variables = [])
_FROM_THE_DATA = "<from the data>"


def _model_takes(config: TrainConfig) -> dict[str, Any]:
    """The values of :data:`_DERIVED_MODEL_KEYS` the model is built with (as
    :meth:`Trainer._model_config` sets them), from the configuration alone.

    A value set against what the data decide is kept as set (training refuses it once the data
    are open); a channel count that depends on which variables the files hold is
    :data:`_FROM_THE_DATA`.
    """
    model, data = config.model, config.data
    channels = len(data.variables) if data.variables else None
    in_channels: Any = model.in_channels
    if model.in_channels == 1 and channels is None:
        in_channels = _FROM_THE_DATA
    elif channels is not None and model.in_channels in (1, channels):
        in_channels = channels
    out_channels: Any = model.out_channels
    if config.diffusion.objective == "idff":  # data endpoint and score heads: twice the channels
        if channels is None:
            out_channels = _FROM_THE_DATA
        elif model.out_channels in (None, channels, 2 * channels):
            out_channels = 2 * channels
    past_frames = model.past_frames
    if model.task == "forecast" and model.past_frames in (1, data.past_frames):
        past_frames = data.past_frames
    return {
        "model.in_channels": in_channels,
        "model.out_channels": out_channels,
        "model.past_frames": past_frames,
        # data.condition decides it (a configuration saved before it defaulted to None holds
        # false next to a condition, which was switched on; true without a condition and false
        # with one are refused)
        "model.physical_condition": data.condition is not None,
    }


def _flat_scalars(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_scalars(value, f"{name}/"))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, default=_json_default)
    return flat


_OVERRIDES_HELP = """\
overrides:
  Each key=value changes one value of the TOML file, before or after the options; a key
  given twice takes the last value. A dotted key reaches into a section (optim.lr, not lr).
  Values are read as TOML: numbers, true/false, "strings" (a bare word is a string too),
  lists and inline tables (which change only the keys they name); the bare word none unsets
  a key that may be unset. Quote lists and strings for the shell:

    steps=2000 optim.lr=3e-4 model.preset=small
    'data.variables=["u","v"]' 'data.train=["2019-03-01","2019-03-17T23"]'
    'optim={lr=1e-4,warmup_steps=10}' micro_batch_size=none

  Every key, with its default: --print-config, and the Training guide
  (https://flexdownscale.readthedocs.io).

examples:
  python -m flexdownscale.train --config run.toml --print-config steps=500
  python -m flexdownscale.train --config run.toml optim.lr=3e-4 steps=2000
  accelerate launch -m flexdownscale.train --config run.toml --resume

Ctrl-C (SIGINT) or SIGTERM (a scheduler ending the job) stops after the optimiser step under
way, saves the training state and prints the command that resumes it (exit status 130 or 143).
"""


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parse ``--config run.toml [--resume] [--export-only] [--print-config] [key=value ...]``.

    The ``key=value`` overrides may come before, between or after the options. ``--help``
    explains them; ``--version`` prints the package's version (both exit 0).
    """
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="python -m flexdownscale.train",
        description=(
            "Train a flexdownscale model as a TOML file configures it (on several processes,\n"
            "GPUs or nodes: accelerate launch -m flexdownscale.train ...)."
        ),
        epilog=_OVERRIDES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", required=True, help="a TOML file with a TrainConfig (its keys: see below)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest state of run_dir"
    )
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="export the EMA model of the latest state and exit",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the configuration the file and the overrides give, as TOML (every key "
        "that is set), and exit without training",
    )
    parser.add_argument("--version", action="version", version=f"flexdownscale {__version__}")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="change a value of the file (section.key=value, the value in TOML; see below)",
    )
    args = parser.parse_intermixed_args(argv)
    config = from_toml(TrainConfig, args.config)
    return apply_overrides(config, args.overrides), args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m flexdownscale.train``.

    Parameters
    ----------
    argv : sequence of str, optional
        The command-line arguments (``--config run.toml [--resume] [--export-only]
        [key=value ...]``); default None: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 when the launch ended (all steps done, the time limit reached or
        the model exported) and after ``--print-config``; 2 on a
        :class:`~flexdownscale.errors.FlexDownscaleError` or an ``OSError``, whose message is
        printed to stderr on one line; 130 when SIGINT (Ctrl-C) stopped it, 143 when SIGTERM
        did: training stops after the optimiser step under way, saves the state and prints on
        one line where it is and the command that resumes it.
    """
    from .errors import FlexDownscaleError

    argv = list(sys.argv[1:] if argv is None else argv)
    token = _COMMAND_LINE.set(True)  # messages name --resume and --export-only
    config = args = None
    try:
        config, args = parse_args(argv)
        if args.print_config:
            print(dump_toml(to_dict(config)), end="")
            return 0
        trainer = Trainer(config, resume=args.resume, export_only=args.export_only)
        if args.export_only:
            trainer.load_latest_state()
            trainer.export()
        else:
            trainer.fit()
    except FlexDownscaleError as err:
        print(f"flexdownscale.train: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permissions: the file and the cause on one line
        print(f"flexdownscale.train: error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:  # the state is saved: where, and how to go on
        if _main_rank():
            head = _interrupted_head(
                err.signal_number, err.step, config.steps if config else "?", err.state
            )
            print(
                f"flexdownscale.train: {head}; resume with: {_resume_command(argv, args)}",
                file=sys.stderr,
            )
        return 128 + err.signal_number
    except KeyboardInterrupt:  # before or after the training steps, or Ctrl-C twice
        if _main_rank():
            print(f"flexdownscale.train: {_interrupted_words(config, args, argv)}", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        _COMMAND_LINE.reset(token)
    return 0


def _interrupted_head(number: int, step: int, steps: int | str, state: Path) -> str:
    """The start of what a launch stopped by signal ``number`` says: which signal, the step it
    stopped at of ``steps``, and the saved training ``state`` (the caller says how to go on).

    Parameters
    ----------
    number : int
        The signal (SIGINT or SIGTERM).
    step : int
        The step the launch stopped at.
    steps : int or str
        The steps the launch was to train.
    state : pathlib.Path
        The training state saved at ``step``.

    Returns
    -------
    str
        ``"SIGTERM received: stopped at step 40 of 100; the training state is saved in '...'"``.
    """
    try:
        name = signal.Signals(number).name
    except ValueError:  # pragma: no cover - only SIGINT and SIGTERM are handled
        name = f"signal {number}"
    return (
        f"{name} received: stopped at step {step} of {steps}; the training state is saved in "
        f"{str(state)!r}"
    )


def _main_rank() -> bool:
    """Whether this process is a launch's first (``RANK`` 0, or started alone): the one that
    prints what stopped the launch."""
    return os.environ.get("RANK", "0") == "0"


def _resume_command(argv: Sequence[str], args: argparse.Namespace | None) -> str:
    """The command that resumes the launch started with the arguments ``argv``: the same
    arguments, and ``--resume`` unless they have it; under a launcher (``accelerate launch``,
    ``torchrun``) its options are the user's to repeat."""
    import shlex

    words = list(argv) + ([] if args is not None and args.resume else ["--resume"])
    launcher = _launcher(os.environ).name
    head = (
        f"{launcher} [the same launch options] -m flexdownscale.train"
        if launcher is not None
        else "python -m flexdownscale.train"
    )
    return f"{head} {shlex.join(words)}"


def _interrupted_words(
    config: TrainConfig | None, args: argparse.Namespace | None, argv: Sequence[str]
) -> str:
    """What a Ctrl-C outside the training steps left: the newest state and the command that
    resumes from it, or that none was saved."""
    if config is None or args is None:
        return "interrupted"
    if args.export_only:
        return "interrupted: the export did not finish and left nothing; run the command again"
    states = list_states(_user_path(config.run_dir))
    if not states:
        return "interrupted before a training state was saved: run the command again to start"
    return (
        f"interrupted; the newest training state is {str(states[-1])!r} (any step after it "
        f"was not saved); resume with: {_resume_command(argv, args)}"
    )


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
    *,
    default: Callable[..., None],
) -> None:
    """Print one of the package's warnings as a line of the command
    (``flexdownscale.train: warning: ...``); other libraries' warnings as Python prints them.

    Run as ``python -m flexdownscale.train`` no line of the user's leads to a warning (the
    outermost frame is Python's ``runpy``), so Python's own format would point at
    ``<frozen runpy>``.
    """
    from .errors import FlexDownscaleWarning

    if not issubclass(category, FlexDownscaleWarning):
        default(message, category, filename, lineno, file, line)
        return
    text = " ".join(str(message).split())
    print(f"flexdownscale.train: warning: {text}", file=sys.stderr if file is None else file)


def _command_line_main() -> int:
    """:func:`main` for ``python -m flexdownscale.train`` and ``accelerate launch -m
    flexdownscale.train``: the package's warnings printed by :func:`_show_warning`."""
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, default=warnings.showwarning)
        return main()


if __name__ == "__main__":
    sys.exit(_command_line_main())
