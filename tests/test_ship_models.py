"""benchmarks/ship_models.py: the shipped model's card states the run's own settings."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_modules import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SHIPPED = ROOT / "flexdownscale" / "_data" / "models"


@pytest.fixture(scope="module")
def ship() -> ModuleType:
    """``benchmarks/ship_models.py``, imported once under its own name."""
    return load_benchmark("ship_models")


def _section(card: str, start: str, end: str) -> str:
    return card[card.index(start) : card.index(end)]


def test_card_states_the_runs_batch_steps_precision_and_gpu(ship, tmp_path, monkeypatch):
    """A rehearsal model trained at batch 4 for 40 steps got a card saying "40 optimiser steps,
    160 samples, batch 16" (benchmarks/configs' batch) and "trained on a small machine": the
    card now reads the run folder's config.toml and launches.jsonl."""
    monkeypatch.chdir(ROOT)
    name = "era5-t2m-x4"
    run = tmp_path / "runs" / "gpu" / name
    run.mkdir(parents=True)
    toml = (BENCHMARKS / "configs" / f"{name}.toml").read_text(encoding="utf-8")
    assert "batch_size = 16\n" in toml
    assert "steps = 4000\n" in toml
    toml = toml.replace("batch_size = 16\n", "batch_size = 64\n", 1)
    toml = toml.replace("steps = 4000\n", "steps = 700\n", 1)
    (run / "config.toml").write_text(toml, encoding="utf-8")
    launch = {"device_type": "cuda", "device": "NVIDIA H100 80GB HBM3", "precision": "bf16"}
    (run / "launches.jsonl").write_text(json.dumps(launch) + "\n", encoding="utf-8")
    (run / "gpu_run.txt").write_text(
        "name: era5-t2m-x4\ncommand: accelerate launch -m flexdownscale.train steps=700\n"
        "wall_seconds: 270\nwall_minutes: 4.5\n",
        encoding="utf-8",
    )
    config = ship.run_config(run, name)
    assert config.batch_size == 64
    recorded = ship.run_record(run)
    assert recorded["device"] == "NVIDIA H100 80GB HBM3"
    assert recorded["wall_minutes"] == pytest.approx(4.5)
    assert recorded["command"].endswith("steps=700")
    card = ship.card_text(
        name,
        config,
        {"train_steps": 700, "train_samples": 44800},
        str(recorded["device"]),
        float(recorded["wall_minutes"]),
        str(recorded["command"]),
        model_folder=SHIPPED / name,
        device_type=str(recorded["device_type"]),
        precision=str(recorded["precision"]),
    )
    training = " ".join(_section(card, "## Training", "## Validation skill").split())
    assert "700 optimiser steps, 44800 samples, batch 64, bf16 mixed precision" in training
    assert "about 4 minutes on NVIDIA H100 80GB HBM3" in training
    assert "trained briefly on one GPU" in training
    assert "batch 16" not in training
    assert "small machine" not in training


def test_run_folder_without_config_falls_back_to_the_case_config(ship, tmp_path, monkeypatch):
    """A run folder holding only model/ (the CPU-trained shipped models) is carded from
    benchmarks/configs/<name>.toml, as a CPU run without a machine of its own record."""
    monkeypatch.chdir(ROOT)
    assert ship.run_config(tmp_path, "kolmogorov-x8").batch_size == 8
    assert ship.run_record(tmp_path) == {"device_type": "cpu", "precision": "no"}


@pytest.mark.parametrize("name", ["kolmogorov-x8", "era5-t2m-x4"])
def test_card_of_the_committed_cpu_run_is_reproduced(ship, name, monkeypatch):
    """The committed cards' description and training sections come out unchanged from the
    case config and the shipped extra (a CPU run, float32)."""
    monkeypatch.chdir(ROOT)
    shipped = json.loads((SHIPPED / name / "config.json").read_text(encoding="utf-8"))
    extra = shipped["extra"]
    committed = (SHIPPED / name / "README.md").read_text(encoding="utf-8")
    card = ship.card_text(
        name,
        ship.run_config(Path("no-such-run"), name),
        extra,
        extra["machine"],
        extra["train_wall_minutes"],
        extra.get("train_history", ""),
        model_folder=SHIPPED / name,
    )
    end = "## Validation skill"
    assert card[: card.index(end)] == committed[: committed.index(end)]
