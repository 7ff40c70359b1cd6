"""``benchmarks/gpu/run.sh``'s plumbing of a ``ship-*`` part, with a stand-in for Python.

The runbook waits on a GPU session, so its shell logic is rehearsed here: ``run.sh`` runs from a
copy in a temporary tree, with ``PYTHON`` pointing at a stand-in that records how it was called,
answers the throughput probe (however launched) with a ``launches.jsonl`` line of the test's
choosing and runs the script's own step-count snippet (``python -``) with the real interpreter.
Nothing trains.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

RUN_SH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "run.sh"

STAND_IN = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:1] == ["-"]:  # run.sh's own snippet: run it
    sys.argv = args
    exec(compile(sys.stdin.read(), "<run.sh snippet>", "exec"), {{"__name__": "__main__"}})
elif args[:1] == ["-c"]:  # the device name and torch version of gpu_run.txt
    print("stand-in")
elif args[:2] in (["-m", "accelerate.commands.launch"], ["-m", "flexdownscale.train"]):
    run = Path(next(a for a in args if a.startswith("run_dir="))[len("run_dir="):])
    run.mkdir(parents=True, exist_ok=True)
    if run.name == "probe":
        (run / "launches.jsonl").write_text(os.environ["PROBE_RECORD"] + "\\n")
else:
    sys.exit(3)
"""


def ship_kolmogorov(tmp_path: Path, record: dict, **env: str) -> tuple[list[list[str]], str]:
    """Run ``run.sh ship-kolmogorov`` (MINUTES=5, batch 32) in a copy of the script under
    ``tmp_path``; the stand-in's calls and the run's ``gpu_run.txt``."""
    script = tmp_path / "benchmarks" / "gpu" / "run.sh"
    script.parent.mkdir(parents=True)
    shutil.copy(RUN_SH, script)
    python = tmp_path / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    environ = {
        k: v for k, v in os.environ.items() if k not in ("STEPS", "THREADS", "MINUTES", "BATCH")
    }
    environ.update(
        PYTHON=str(python),
        CALLS=str(calls),
        PROBE_RECORD=json.dumps(record),
        OUT=str(tmp_path / "out"),
        MINUTES="5",
        **env,
    )
    done = subprocess.run(
        ["bash", str(script), "ship-kolmogorov"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with tarfile.open(tmp_path / "out" / "kolmogorov-x8.tar.gz") as tar:
        member = tar.extractfile("kolmogorov-x8/gpu_run.txt")
        assert member is not None
        gpu_run = member.read().decode()
    return [json.loads(line) for line in calls.read_text().splitlines()], gpu_run


@pytest.mark.parametrize(
    ("record", "steps"),
    [
        # 0.75 * 300 s * 400 samples/s / batch 32 = 2812 -> 2800 (the steady rate wins)
        ({"train_samples_per_s": 100.0, "steady_train_samples_per_s": 400.0}, 2800),
        # a package without the steady rate, or a probe of one step: the whole-run rate
        ({"train_samples_per_s": 100.0}, 700),
        ({"train_samples_per_s": 100.0, "steady_train_samples_per_s": None}, 700),
    ],
)
def test_ship_steps_come_from_the_probes_steady_rate(tmp_path, record, steps):
    """The probe's ``train_samples_per_s`` counts the first optimiser step, whose one-time GPU
    set-up could make the sized run 2-4x too short: ``steady_train_samples_per_s`` is used where
    launches.jsonl has it and it is not null, else ``train_samples_per_s``."""
    calls, gpu_run = ship_kolmogorov(tmp_path, record, THREADS="3")
    runs = [c for c in calls if "run_dir=runs/gpu/kolmogorov-x8" in c]
    assert len(runs) == 1
    assert f"steps={steps}" in runs[0]
    assert f"eval_every={(steps + 3) // 4}" in runs[0]
    assert f"steps={steps} " in gpu_run


def test_probe_and_run_share_the_launcher_and_threads(tmp_path):
    """The probe ran as plain ``python -m flexdownscale.train`` (torch on every core) while the
    run went through ``accelerate launch``, which sets OMP_NUM_THREADS=1 on a GPU machine unless
    told otherwise: both now go through ``accelerate launch`` with
    ``--num_cpu_threads_per_process THREADS``, and gpu_run.txt's command says so."""
    calls, gpu_run = ship_kolmogorov(tmp_path, {"train_samples_per_s": 100.0}, THREADS="3")
    launches = [c for c in calls if c[:2] == ["-m", "accelerate.commands.launch"]]
    assert [next(a for a in c if a.startswith("run_dir=")) for c in launches] == [
        "run_dir=runs/gpu/probe",
        "run_dir=runs/gpu/kolmogorov-x8",
    ]
    for call in launches:
        head = call[: call.index("flexdownscale.train") + 1]
        assert head == [
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "1",
            "--num_cpu_threads_per_process",
            "3",
            "-m",
            "flexdownscale.train",
        ]
    assert "command: accelerate launch --num_cpu_threads_per_process 3 -m flexdownscale" in gpu_run


def test_threads_default_to_the_cores_the_shell_may_use(tmp_path):
    """Without THREADS both launches get ``nproc`` threads (torch's own default for one
    process, as a plain ``python -m flexdownscale.train`` had)."""
    calls, _ = ship_kolmogorov(tmp_path, {"train_samples_per_s": 100.0})
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    launches = [c for c in calls if c[:2] == ["-m", "accelerate.commands.launch"]]
    assert len(launches) == 2
    for call in launches:
        at = call.index("--num_cpu_threads_per_process")
        assert call[at + 1] == nproc
