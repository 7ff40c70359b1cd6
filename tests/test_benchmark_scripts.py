"""The benchmark scripts write where ``--out`` / ``--output`` says, and leave the reference
reports in ``benchmarks/results`` alone unless run with the reference settings.

The scripts are not a package: they are imported by path. Their heavy parts (sampling the
shipped models, timing) are replaced by stand-ins returning results of the saved shape, so that
what is tested is the argument handling and every file the scripts write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import xarray as xr
from benchmark_modules import load_benchmark

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
REFERENCE = BENCHMARKS / "results"


@pytest.fixture(scope="module")
def skill() -> ModuleType:
    return load_benchmark("skill")


@pytest.fixture(scope="module")
def calibration() -> ModuleType:
    return load_benchmark("calibration")


@pytest.fixture(autouse=True)
def reference_untouched():
    """No test may write into benchmarks/results: names, sizes and times stay the same."""

    def snapshot() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in REFERENCE.iterdir()}

    before = snapshot()
    yield
    assert snapshot() == before


def _skill_row(**over: float) -> dict[str, float]:
    row = {
        "rmse": 1.0,
        "rfne": 0.1,
        "crps": 0.5,
        "spread_skill": 0.6,
        "lsd": 3.0,
        "spectral_ratio_small": 0.9,
    }
    return row | over


def _fields(members: int = 3) -> tuple[xr.Dataset, xr.DataArray]:
    """A small truth (2 times of 16 x 16 on a regular y/x grid) and a noisy ensemble of it."""
    rng = np.random.default_rng(0)
    axis = xr.DataArray(np.arange(16.0), dims="y", attrs={"units": "km"})
    coords = {"time": np.arange(2), "y": axis, "x": axis.rename(y="x")}
    truth = xr.DataArray(rng.normal(size=(2, 16, 16)), dims=("time", "y", "x"), coords=coords)
    ens = truth + xr.DataArray(
        rng.normal(scale=0.3, size=(members, 2, 16, 16)), dims=("member", "time", "y", "x")
    )
    return xr.Dataset({"t2m": truth}), ens.transpose("member", "time", "y", "x")


def _fake_skill_run(skill: ModuleType, calls: list[dict[str, Any]]):
    """A stand-in of ``skill.run_case``: the real figures from small fields, rows of the
    saved shape, and a record of the arguments."""

    def run_case(case: str, **kw: Any) -> dict[str, Any]:
        calls.append({"case": case, **kw})
        assert set(skill.SKILL_COLUMNS) == set(_skill_row())
        fine, ens = _fields(kw["members"])
        preds = {"FLEX members": ens, "FLEX mean": ens.mean("member"), "bicubic": fine["t2m"]}
        rows = {"FLEX ensemble (ddim 2 steps, eta 0)": _skill_row(rmse=0.5, lsd=1.0)}
        rows |= {f"{m} interpolation": _skill_row() for m in skill.BASELINES}
        return {
            "by_condition": {},
            "machine": "test machine",
            "members": kw["members"],
            "shipped_steps": 1,
            "rows": rows,
            "card": "card table",
            "figures": skill._figures(case, fine, preds, "t2m", kw["out"]),
            "fields": 2,
            "units": "K",
            "seconds": {"FLEX (shipped, default sampler)": 1.0},
            "total_seconds": 1.0,
            "grid": "16 x 16",
        }

    return run_case


def _links(report: Path) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", report.read_text())


def test_skill_out_receives_every_file_and_the_report_links_resolve(skill, tmp_path, monkeypatch):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(skill, "run_case", _fake_skill_run(skill, calls))
    monkeypatch.setattr(skill, "write_card", lambda *a: pytest.fail("wrote a model card"))
    out = tmp_path / "trial" / "skill"  # created by the script
    assert skill.main(["--fields", "2", "--members", "3", "--no-variants", "--out", str(out)]) == 0
    assert [c["out"] for c in calls] == [out, out]
    assert [c["members"] for c in calls] == [3, 3]
    expected = {"skill.md"}
    for case in skill.CASES:
        expected |= {f"skill_{case}.json"}
        expected |= {f"skill_{case}_{k}.png" for k in ("spectra", "rank_histogram", "panels")}
    assert {p.name for p in out.iterdir()} == expected
    for case in skill.CASES:
        record = json.loads((out / f"skill_{case}.json").read_text())
        assert record["command"].endswith(f"--out {out}")
        assert "card" not in record
    links = _links(out / "skill.md")
    # every figure is linked by its bare name, next to the report; the calibration report is
    # not in this folder, so the report names the reference one instead of a broken link
    assert sorted(x for x in links if x.endswith(".png")) == sorted(
        x for x in expected if x.endswith(".png")
    )
    assert all((out / x).is_file() for x in links)
    assert "benchmarks/results/calibration.md" in (out / "skill.md").read_text()


def test_skill_report_names_a_case_not_run_into_its_folder(skill, tmp_path, monkeypatch):
    monkeypatch.setattr(skill, "run_case", _fake_skill_run(skill, []))
    assert skill.main(["--case", "kolmogorov-x8", "--members", "2", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "skill.md").read_text()
    assert "## kolmogorov-x8" in text
    assert "## era5-t2m-x4" not in text
    assert "Not in this report (no `skill_<case>.json` in its folder): era5-t2m-x4" in text
    # the reference folder's ERA5 results were not read into this report
    assert not list(tmp_path.glob("skill_era5*"))


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--fields", "2", "--no-variants"], "--fields 2, --no-variants"),
        (["--members", "4"], "--members 4"),
        (["--case", "era5-t2m-x4", "--no-variants", "--out", str(REFERENCE)], "--no-variants"),
    ],
)
def test_skill_refuses_other_settings_into_the_reference_folder(
    skill, monkeypatch, capsys, argv, named
):
    monkeypatch.setattr(skill, "run_case", lambda *a, **k: pytest.fail("ran a case"))
    with pytest.raises(SystemExit) as exc:
        skill.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"({named}) would overwrite them in benchmarks/results" in err
    assert "pass --out DIR" in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--fields", "0"], "0 is not a positive whole number"),
        (["--members", "-2"], "-2 is not a positive whole number"),
        (["--fields", "two"], "'two' is not a whole number"),
    ],
)
def test_skill_counts_must_be_positive(skill, tmp_path, monkeypatch, capsys, argv, said):
    """``--fields 0`` was read as the default (``args.fields or REPORT_FIELDS``)."""
    monkeypatch.setattr(skill, "run_case", lambda *a, **k: pytest.fail("ran a case"))
    with pytest.raises(SystemExit) as exc:
        skill.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert said in capsys.readouterr().err


def test_skill_reference_settings_are_not_refused(skill):
    def opts(*argv: str):
        ns = skill.argparse.Namespace(fields=None, members=skill.MEMBERS, no_variants=False)
        for flag, value in zip(argv[::2], argv[1::2], strict=True):
            setattr(ns, flag, value)
        return ns

    assert skill.non_reference_options(opts(), skill.CASES) == []
    era5 = ("era5-t2m-x4",)
    assert skill.non_reference_options(opts("fields", skill.REPORT_FIELDS[era5[0]]), era5) == []
    # the variants run on ERA5 only: leaving them out of a Kolmogorov run changes nothing
    assert skill.non_reference_options(opts("no_variants", True), ("kolmogorov-x8",)) == []
    assert skill.non_reference_options(opts("no_variants", True), era5) == ["--no-variants"]


def test_skill_write_cards_only_into_the_default_folder(skill, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(skill, "run_case", lambda *a, **k: pytest.fail("ran a case"))
    with pytest.raises(SystemExit) as exc:
        skill.main(["--write-cards", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--write-cards rewrites the shipped models' cards" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_out_that_is_a_file_is_refused(skill, calibration, tmp_path, capsys):
    cpu_batch = load_benchmark("cpu_batch")
    path = tmp_path / "a_file"
    path.write_text("x")
    for main, argv in [
        (skill.main, ["--case", "kolmogorov-x8", "--out", str(path)]),
        (calibration.main, ["--out", str(path)]),
        (cpu_batch.main, ["--out", str(path)]),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert f"--out {path} is a file; give a folder" in capsys.readouterr().err
    assert path.read_text() == "x"


def _fake_calibration_run(calibration: ModuleType, skill: ModuleType):
    def run_case(case: str) -> dict[str, Any]:
        samplers = list(calibration.SAMPLERS[case])
        rows = {label: _skill_row() for label in samplers}
        rows |= {f"{m} interpolation": _skill_row() for m in skill.BASELINES}
        return {
            "fields": 2,
            "members": 4,
            "grid": "16 x 16",
            "rows": rows,
            "by_condition": {},
            "seconds": dict.fromkeys(samplers, 1.0),
            "histograms": {label: [0.2] * 5 for label in samplers},
            "machine": "test machine",
            "units": "K",
        }

    return run_case


def test_calibration_out_receives_every_file(calibration, skill, tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "run_case", _fake_calibration_run(calibration, skill))
    out = tmp_path / "cal"
    assert calibration.main(["--case", "era5-t2m-x4", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "calibration.md",
        "calibration_era5-t2m-x4.json",
        "calibration_era5-t2m-x4_rank_histograms.png",
    }
    links = _links(out / "calibration.md")
    assert links == ["calibration_era5-t2m-x4_rank_histograms.png"]
    text = (out / "calibration.md").read_text()
    assert "Not in this report (no `calibration_<case>.json` in its folder): kolmogorov-x8" in text
    # the commentary reads both cases' tables (Kolmogorov by Reynolds number, ...): not written
    # into a report without one of them, which points to the reference report instead
    assert "Kolmogorov with delta 1" not in text
    assert "reference report (`benchmarks/results/calibration.md`)" in text


def test_cpu_batch_out_receives_the_report(tmp_path, monkeypatch):
    cpu_batch = load_benchmark("cpu_batch")
    monkeypatch.setattr(
        cpu_batch, "measure", lambda: ["| 64 x 64 | 25 | 1 | 2 | 3 | 4 | 5 | 1 | 8 |"]
    )
    out = tmp_path / "cpu"
    assert cpu_batch.main(["--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["cpu_batch.md"]
    text = (out / "cpu_batch.md").read_text()
    assert f"Command: `python benchmarks/cpu_batch.py --out {out}`" in text
    assert "| 64 x 64 | 25 |" in text


@pytest.mark.parametrize("flag", ["--out", "--output"])
def test_metrics_speed_output_folder(tmp_path, capsys, monkeypatch, flag):
    """``--out`` (as the other benchmarks spell it) and ``--output`` write the report into a
    folder; its command line names OMP_NUM_THREADS only as the run had it (it said
    ``OMP_NUM_THREADS=1`` whatever the run's setting)."""
    metrics_speed = load_benchmark("metrics_speed")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    metrics_speed.main([flag, str(tmp_path), "--points", "500", "--members", "4", "--repeats", "1"])
    assert [p.name for p in tmp_path.iterdir()] == ["metrics_speed.md"]
    text = (tmp_path / "metrics_speed.md").read_text()
    assert "500 points x M members" in text
    assert re.search(r"^\| 4 \| ", text, flags=re.M)
    assert f"Command: `python benchmarks/metrics_speed.py {flag} {tmp_path} " in text
    assert "OMP_NUM_THREADS=unset" in text
    assert f"wrote {tmp_path / 'metrics_speed.md'}" in capsys.readouterr().out


def test_metrics_speed_output_file_and_bad_outputs(tmp_path, capsys, monkeypatch):
    metrics_speed = load_benchmark("metrics_speed")
    assert metrics_speed.output_file(tmp_path / "new" / "r.md") == tmp_path / "new" / "r.md"
    assert (tmp_path / "new").is_dir()
    assert metrics_speed.output_file(tmp_path / "dir") == tmp_path / "dir" / "metrics_speed.md"
    (tmp_path / "old.txt").write_text("x")
    assert metrics_speed.output_file(tmp_path / "old.txt") == tmp_path / "old.txt"
    # refused before any timing: a folder named like the report, a file in the folder's way,
    # other settings into the reference report
    monkeypatch.setattr(metrics_speed, "best_time", lambda *a, **k: pytest.fail("timed"))
    (tmp_path / "d.md").mkdir()
    (tmp_path / "d.md" / "metrics_speed.md").mkdir()
    for argv, message in [
        (["--out", str(tmp_path / "d.md")], "is a folder; give another file name"),
        (["--output", str(tmp_path / "old.txt" / "sub")], "a file is in its way"),
        (["--points", "500"], "settings other than the reference report's (--points)"),
    ]:
        with pytest.raises(SystemExit) as exc:
            metrics_speed.main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_reports_and_cards_say_when_they_score_part_of_the_split(skill):
    """The Kolmogorov card said "8 fields" of a validation split that holds 48 (24 times at two
    Reynolds numbers); it scores 8 of them, evenly spaced."""
    assert skill.split_size("kolmogorov-x8") == 48
    assert skill.fields_of_split("kolmogorov-x8", 8) == "8 of its 48 fields, evenly spaced"
    assert skill.fields_of_split("era5-t2m-x4", 168) == "168 fields"
    from flexdownscale.hub import shipped_models

    # 4 evenly spaced times per Reynolds number (CASE_FIELDS), the whole ERA5 week
    for case, said in (
        ("kolmogorov-x8", "(trajectory [3]; 8 of its 48 fields, evenly spaced)"),
        ("era5-t2m-x4", "(time ['2019-03-18', '2019-03-24T23']; 168 fields)"),
    ):
        assert said in (shipped_models()[case] / "README.md").read_text()


def test_speed_training_rows_alternate_and_compare_each_dtype_with_its_own_peak(monkeypatch):
    """benchmarks/speed.py's training rows (a tiny FLEX, 32 x 32, batch 2, CPU): a matmul peak
    for fp32 and for bf16, each training row's fraction against its own dtype's peak (the fp32
    row was taken against the bf16 peak on a GPU), a bf16 / fp32 rate row equal to the ratio
    of the samples/s rows (it replaced a fixed sentence that a run contradicted), and the two
    training steps timed in alternation (recorded here by wrapping ``_time``)."""
    import torch

    from flexdownscale.config import ModelConfig
    from flexdownscale.models import build_model

    speed = load_benchmark("speed")
    peaks = {torch.float32: 2e11, torch.bfloat16: 1e11}
    monkeypatch.setattr(speed, "matmul_peak", lambda device, dtype: peaks[dtype])
    order: list[str] = []
    timed = speed._time

    def record(fn, device, warmup, repeats):
        order.append(getattr(fn, "label", "?"))
        return timed(fn, device, warmup, repeats)

    steps = speed.training_steps

    def labelled(*args):
        out = steps(*args)
        for label, fn in out.items():
            fn.label = label
        return out

    monkeypatch.setattr(speed, "_time", record)
    monkeypatch.setattr(speed, "training_steps", labelled)
    model = build_model(ModelConfig(backbone="flex", preset="tiny", image_size=(32, 32)))
    rows = dict(speed.training_rows(model, 2, 32, torch.device("cpu"), 3, 1e9))
    assert rows["measured float32 matmul peak"] == "0.20 TFLOP/s"
    assert rows["measured bfloat16 matmul peak"] == "0.10 TFLOP/s"
    for label, peak in (("fp32", 2e11), ("bf16 autocast", 1e11)):
        rate = float(rows[f"training, {label}: samples/s"])
        dtype = "float32" if label == "fp32" else "bfloat16"
        share = float(rows[f"training, {label}: fraction of the {dtype} matmul peak"][:-1])
        assert share == pytest.approx(100 * rate * 1e9 / peak, rel=0.05, abs=0.05)
    ratio = float(rows["training rate, bf16 autocast / fp32 (IEEE)"][:-1])
    fp32, bf16 = (float(rows[f"training, {k}: samples/s"]) for k in ("fp32", "bf16 autocast"))
    assert ratio == pytest.approx(bf16 / fp32, rel=0.05)
    assert order[2:] == ["fp32", "bf16 autocast"] * 3  # after one warm-up pass each
    assert not any("TF32" in row for row in rows)  # a CPU leaves the TF32-convolution row out


def test_speed_fp32_row_and_peak_run_without_tf32_and_the_tf32_row_keeps_the_flags(monkeypatch):
    """benchmarks/speed.py compared a true-float32 matmul peak with fp32 steps whose cuDNN
    convolutions ran in TF32 (torch's default ``cudnn.allow_tf32 = True``), so the fraction could
    read over 100 %. The fp32 row and the float32 peak now run with both TF32 switches off; the
    ``"fp32, TF32 convolutions"`` row (CUDA by default, forced here on a CPU) and the bf16 row
    keep the process's switches, the TF32 row has no fraction of a peak, it gets its own bf16
    ratio, and the switches are restored afterwards. Recorded by a forward pre-hook, which
    reads the switches while each step runs."""
    import torch

    from flexdownscale.config import ModelConfig
    from flexdownscale.models import build_model

    speed = load_benchmark("speed")
    seen: dict[str, set[tuple[bool, bool]]] = {}
    current = ["?"]

    def flags() -> tuple[bool, bool]:
        return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    def untimed_peak(device, dtype):  # the peak's switches, without its 13 timed matmuls
        def fake_time(fn, *args, **kwargs):
            seen.setdefault(f"peak {dtype}", set()).add(flags())
            return 1.0

        with monkeypatch.context() as m:
            m.setattr(speed, "_time", fake_time)
            return matmul_peak(device, dtype)

    matmul_peak = speed.matmul_peak
    monkeypatch.setattr(speed, "matmul_peak", untimed_peak)
    steps = speed.training_steps

    def labelled(*args):
        out = {}
        for label, fn in steps(*args).items():

            def run(fn=fn, label=label):
                current[0] = label
                fn()

            out[label] = run
        return out

    monkeypatch.setattr(speed, "training_steps", labelled)
    model = build_model(ModelConfig(backbone="flex", preset="tiny", image_size=(32, 32)))
    model.register_forward_pre_hook(lambda *_: seen.setdefault(current[0], set()).add(flags()))
    saved = flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        rows = dict(speed.training_rows(model, 2, 32, torch.device("cpu"), 2, 1e9, True))
        after = flags()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert after == (True, True)
    assert seen["peak torch.float32"] == {(False, False)}
    assert seen["fp32"] == {(False, False)}
    assert seen["bf16 autocast"] == seen[speed.TF32_CONV] == {(True, True)}
    tf32 = speed.TF32_CONV
    assert f"training, {tf32}: samples/s" in rows
    assert not any(k.startswith(f"training, {tf32}: fraction") for k in rows)
    ratio = float(rows[f"training rate, bf16 autocast / {tf32}"][:-1])
    bf16, conv = (float(rows[f"training, {k}: samples/s"]) for k in ("bf16 autocast", tf32))
    assert ratio == pytest.approx(bf16 / conv, rel=0.05)
    assert speed.tf32_flags() == dict(
        zip(
            ["torch.backends.cuda.matmul.allow_tf32", "torch.backends.cudnn.allow_tf32"],
            saved,
            strict=True,
        )
    )
