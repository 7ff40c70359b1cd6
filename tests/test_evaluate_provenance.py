"""``flexdownscale evaluate``'s report never said which model, sampler and steps made the
ensemble it scores, though its spread/skill column depends on them (reviewer-79: the shipped
era5-t2m-x4 on the same fields gives 0.29 with DDIM-2 and 0.76 with SDE-20), so a report
separated from its prediction file could not be read. metrics.md and every row of metrics.json
now give what the prediction's ``flexdownscale_*`` attributes record, and say "not recorded"
(claiming nothing) for a file without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarray as xr

from flexdownscale import __version__
from flexdownscale.cli import main
from flexdownscale.data import degrade, normalize_grid
from flexdownscale.evaluation import _prediction_provenance, _provenance_words

ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"


@pytest.fixture(scope="module")
def prediction(shared_data, tmp_path_factory):
    """(folder, prediction of the shipped era5-t2m-x4 with SDE 2 steps, 2 members, truth)."""
    root = tmp_path_factory.mktemp("provenance")
    ds = xr.open_dataset(shared_data / ERA5)
    fine = normalize_grid(ds.isel(time=[0]))  # latitude ascending, on the model's lattice
    fine = fine.isel(latitude=slice(0, 32), longitude=slice(0, 48)).load()
    coarse = degrade(fine, 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    coarse.to_netcdf(root / "coarse.nc")
    fine.to_netcdf(root / "truth.nc")
    argv = ["downscale", str(root / "coarse.nc"), str(root / "pred.nc")]
    argv += ["--model", "era5-t2m-x4", "--sampler", "sde", "--steps", "2", "--members", "2"]
    argv += ["--sampler-option", "delta=0.3", "--seed", "7", "--quiet"]
    assert main(argv) == 0
    return root


def _evaluate(root: Path, pred: str, out: str, capsys) -> tuple[list[str], list[dict]]:
    """(metrics.md lines, metrics.json rows) of one evaluation."""
    argv = ["evaluate", str(root / pred), str(root / "truth.nc"), "--out", str(root / out)]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    lines = (root / out / "metrics.md").read_text(encoding="utf-8").splitlines()
    rows = json.loads((root / out / "metrics.json").read_text(encoding="utf-8"))
    return lines, rows


def test_the_report_names_the_model_sampler_steps_and_members(prediction, capsys):
    root = prediction
    with xr.open_dataset(root / "pred.nc") as written:  # what the downscale recorded
        assert written.attrs["flexdownscale_sampler_options"] == "delta=0.3"
        threads = int(written.attrs["flexdownscale_torch_threads"])
    lines, rows = _evaluate(root, "pred.nc", "r", capsys)
    assert lines[0].startswith("# Evaluation of ")
    assert "spread/skill Fortin-corrected over the 2 members" in lines[2]
    assert lines[4] == (
        f"Prediction (as its file records): model `era5-t2m-x4` (flexdownscale {__version__}), "
        "objective vp (target v), sampler sde (delta=0.3), 2 steps, 2 members, seed 7, on cpu "
        f"(batch size auto, {threads} thread{'' if threads == 1 else 's'})."
    )
    (row,) = rows
    assert row["spread/skill"] > 0
    assert row["prediction"] == {
        "model": "era5-t2m-x4",
        "version": __version__,
        "objective": "vp (target v)",
        "sampler": "sde",
        "sampler_options": "delta=0.3",
        "steps": 2,
        "members": 2,
        "seed": 7,
        "batch_size": "auto",
        "device": "cpu",
        "torch_threads": threads,
    }


def test_a_prediction_without_the_attributes_claims_nothing(prediction, capsys):
    root = prediction
    _, (row,) = _evaluate(root, "pred.nc", "with", capsys)
    with xr.open_dataset(root / "pred.nc") as written:
        bare = written.load()
    bare.attrs = {}  # another tool's ensemble of the same numbers
    bare.to_netcdf(root / "bare.nc")
    lines, (bare_row,) = _evaluate(root, "bare.nc", "bare", capsys)
    assert lines[4].startswith("Prediction: not recorded (the file has no flexdownscale_model")
    report = "\n".join(lines)
    for claim in ("era5-t2m-x4", "sde", "seed"):
        assert claim not in report.split("\n", 1)[1], claim  # the title names only the path
    assert "prediction" not in bare_row
    # the scores are those of the same numbers with their attributes
    assert bare_row == {k: v for k, v in row.items() if k != "prediction"}


def test_a_file_cut_to_fewer_members_says_both_counts(prediction, capsys):
    root = prediction
    with xr.open_dataset(root / "pred.nc") as written:
        written.load().isel(member=[0]).to_netcdf(root / "one.nc")  # keeps the attributes
    lines, (row,) = _evaluate(root, "one.nc", "one", capsys)
    assert "2 steps, 2 members (1 in the file), seed 7, on cpu" in lines[4]
    assert row["prediction"]["members"] == 2


def test_provenance_words_of_partial_and_conditioned_records():
    """A record with some attributes gives those and names the missing ones; a forecast's lead
    and a physical condition are told; numpy values become plain JSON numbers."""
    import numpy as np

    attrs = {
        "flexdownscale_model": "kf",
        "flexdownscale_steps": np.int64(4),
        "flexdownscale_lead_steps": np.array([3]),
        "flexdownscale_condition_reynolds_number": np.float64(4000.0),
        "history": "not provenance",
    }
    found = _prediction_provenance(attrs)
    assert found == {
        "model": "kf",
        "steps": 4,
        "lead_steps": 3,
        "condition": {"reynolds_number": 4000.0},
    }
    assert type(found["steps"]) is int
    json.dumps(found, allow_nan=False)
    assert _provenance_words(found, 1) == (
        "Prediction (as its file records): model `kf`, 4 steps, forecast 3 steps ahead, "
        "condition reynolds_number = 4000.0; objective, sampler not recorded."
    )
    assert _prediction_provenance({"history": "x", "title": "y"}) == {}


def test_provenance_words_say_one_member_and_one_step():
    """A one-member forecast's report said "1 members" (reviewer-87)."""
    found = {"model": "m", "objective": "vp (target v)", "sampler": "ddim", "steps": 1}
    assert _provenance_words({**found, "members": 1}, 1) == (
        "Prediction (as its file records): model `m`, objective vp (target v), sampler ddim, "
        "1 step, 1 member."
    )
    assert "2 steps, 3 members (1 in the file)" in _provenance_words(
        {**found, "steps": 2, "members": 3}, 1
    )
