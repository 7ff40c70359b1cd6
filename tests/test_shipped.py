"""The models and the demo that ship inside the package (issue 8)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale import Downscaler
from flexdownscale._links import REPOSITORY
from flexdownscale.cli import main
from flexdownscale.data import degrade, grid_spec
from flexdownscale.demo import CASES, load_case, run_demo
from flexdownscale.errors import ConfigError
from flexdownscale.hub import load_model_folder, shipped_models
from flexdownscale.models import build_model

SHIPPED = ("era5-t2m-x4", "kolmogorov-x8")


def test_shipped_models_are_small_bf16_folders():
    found = shipped_models()
    assert set(SHIPPED) <= set(found)
    total = 0
    for name in SHIPPED:
        folder = load_model_folder(name)  # checks files and checksums
        assert folder.model.backbone == "flex"
        # bfloat16 weights; the fixed time-embedding frequencies exact in float32
        fresh = build_model(folder.model).state_dict()
        for key, tensor in folder.state_dict.items():
            if key.endswith(".freqs"):
                assert tensor.dtype == torch.float32
                assert torch.equal(tensor, fresh[key])
            else:
                assert tensor.dtype == torch.bfloat16, key
        total += sum(p.stat().st_size for p in found[name].iterdir())
        assert "## Validation skill" in folder.card
        assert "| FLEX ensemble" in folder.card  # the table of benchmarks/skill.py
    assert total < 25e6
    assert load_model_folder("kolmogorov-x8").condition == {
        "name": "reynolds_number",
        "scale": 40000.0,
        "range": [1000.0, 4000.0],  # the Re values of the training split
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_round_trip_gives_identical_samples(case, tmp_path):
    fine = load_case(case)
    coarse = degrade(fine, case.factor)
    coarse[case.variable].attrs = dict(fine[case.variable].attrs)
    if case.condition_dim:
        coarse = coarse.isel({case.condition_dim: 1}, drop=True).assign_attrs(
            reynolds_number=4000.0
        )
    else:
        coarse = coarse.isel(time=[0])
    model = Downscaler.from_pretrained(case.model)
    first = model(coarse, members=2, seed=3)
    again = Downscaler.from_pretrained(model.save_pretrained(tmp_path / "copy"))
    np.testing.assert_array_equal(
        again(coarse, members=2, seed=3)[case.variable].values, first[case.variable].values
    )
    assert np.isfinite(first[case.variable].values).all()


def test_accessor_picks_the_shipped_model():
    case = CASES[0]
    fine = load_case(case)
    coarse = degrade(fine.isel(time=[0]), 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    out = coarse.flex.downscale(factor=4, members=2)
    assert out.attrs["flexdownscale_model"].endswith("era5-t2m-x4")
    assert out["t2m"].shape == (2, 1, 32, 48)


def test_accessor_picks_the_shipped_folder_not_a_local_one_of_its_name(tmp_path, monkeypatch):
    """Without ``model=``, the shipped model is run even where the working directory holds a
    folder of its name (e.g. the user's output folder): the name is taken from the shipped
    models' headers, so the folder loaded must be the shipped one (it was the local one, which
    here is no model folder at all)."""
    case = CASES[0]
    fine = load_case(case)
    coarse = degrade(fine.isel(time=[0]), 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    (tmp_path / "era5-t2m-x4").mkdir()
    (tmp_path / "era5-t2m-x4" / "notes.txt").write_text("my outputs")
    monkeypatch.chdir(tmp_path)
    out = coarse.flex.downscale(factor=4, members=2, seed=0)
    assert out.attrs["flexdownscale_model"] == "era5-t2m-x4"
    assert np.isfinite(out["t2m"].values).all()


def test_info_says_where_the_folder_it_describes_is(tmp_path, monkeypatch, capsys):
    """``flexdownscale info NAME`` describes a local folder of a shipped model's name (an
    explicit name takes a local folder first) and said ``model: era5-t2m-x4 (era5-t2m-x4)``,
    as for the shipped one; it now gives the absolute path and says which it is."""
    assert main(["info", "era5-t2m-x4"]) == 0
    shipped_line = capsys.readouterr().out.splitlines()[0]
    assert shipped_line == f"model: era5-t2m-x4 ({shipped_models()['era5-t2m-x4'].resolve()})"
    Downscaler.from_pretrained("era5-t2m-x4").save_pretrained(tmp_path / "era5-t2m-x4")
    monkeypatch.chdir(tmp_path)
    assert main(["info", "era5-t2m-x4"]) == 0
    local_line = capsys.readouterr().out.splitlines()[0]
    assert local_line == (
        f"model: era5-t2m-x4 ({(tmp_path / 'era5-t2m-x4').resolve()}: a local folder, not the "
        "shipped model of this name)"
    )


@pytest.mark.slow
@pytest.mark.slow
def test_stored_sde_strength_gives_calibrated_era5_ensembles():
    """The shipped models store the Langevin strength of their calibrated SDE setting
    (benchmarks/results/calibration.md): ``sampler="sde", steps=20`` on the packaged ERA5
    sample (4 validation hours, 16 members) is inside the calibrated band where the 2-step
    default is not, with a better fair CRPS and still far better RMSE than interpolation."""
    from flexdownscale.data import up
    from flexdownscale.metrics import downscaling_skill

    assert load_model_folder("era5-t2m-x4").sampler.delta == 1.0
    assert load_model_folder("kolmogorov-x8").sampler.delta == 0.5
    case = next(c for c in CASES if c.model == "era5-t2m-x4")
    fine = load_case(case)
    coarse = degrade(fine, 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    model = Downscaler.from_pretrained("era5-t2m-x4")
    scores = {}
    for label, kwargs in (("ddim", {}), ("sde", {"sampler": "sde", "steps": 20})):
        out = model(coarse, members=16, seed=0, progress=False, **kwargs)
        scores[label] = downscaling_skill(out["t2m"], fine["t2m"])
    assert out.attrs["flexdownscale_sampler_options"] == "delta=1"
    assert scores["ddim"]["spread_skill"] < 0.5  # the bound of 2-step DDIM
    assert 0.8 <= scores["sde"]["spread_skill"] <= 1.25
    assert scores["sde"]["crps"] < scores["ddim"]["crps"]
    conservative = up(coarse, 4, method="conservative")
    assert scores["sde"]["rmse"] < 0.6 * downscaling_skill(conservative["t2m"], fine["t2m"])["rmse"]


def _check_demo_file_attributes(case, ds):
    """What a demo file's attributes say is true of the file (CF and provenance)."""
    for name in ds.variables:  # every bounds attribute names a variable of the file
        bounds = ds[name].attrs.get("bounds")
        assert bounds is None or bounds in ds.variables, (name, bounds)
    bounds = {ds[c].attrs["bounds"] for c in ds.coords if "bounds" in ds[c].attrs}
    for name in [*ds.coords, *bounds]:  # CF: no missing-value marker on coordinates and bounds
        assert "_FillValue" not in ds[name].encoding, name
    spec = grid_spec(ds[f"{case.variable}_truth"])
    for name, var in ds.data_vars.items():
        # one layout (..., y, x) in every variable, as the ensemble's; the Kolmogorov sample
        # is stored (x, y) and its truth and baselines were written that way
        if name.endswith("_coarse"):
            assert var.dims[-2:] == (f"{spec.y}_coarse", f"{spec.x}_coarse"), name
        elif spec.y in var.dims:
            assert var.dims[-2:] == (spec.y, spec.x), name
        # no list of auxiliary coordinates naming variables the file lacks, no "unknown"
        assert "coordinates" not in var.encoding or set(var.encoding["coordinates"].split()) <= set(
            ds.variables
        ), name
        assert var.attrs.get("standard_name") != "unknown", name
    with xr.open_dataset(ds.encoding["source"], decode_coords=False) as raw:
        for name, var in raw.variables.items():
            listed = var.attrs.get("coordinates", "").split()
            assert set(listed) <= set(raw.variables), (name, listed)
    for name in (f"{spec.y}_coarse", f"{spec.x}_coarse"):  # the coarse cells keep their bounds
        assert ds[name].attrs.get("bounds") == f"{name}_bnds"
        lo, hi = ds[f"{name}_bnds"].values.T
        np.testing.assert_allclose((lo + hi) / 2, ds[name].values)
    conditions = [k for k in ds.attrs if k.startswith("flexdownscale_condition_")]
    history = ds.attrs["history"].splitlines()
    if case.condition_dim is None:
        assert not conditions
        assert len(history) == 1
        return
    # one downscaling call per condition: each call's condition and history line, in order
    values = ds[case.condition_dim].values
    assert conditions == [f"flexdownscale_condition_{case.condition_dim}"]
    np.testing.assert_array_equal(ds.attrs[conditions[0]], values)
    assert len(history) == values.size
    for value in values:
        assert sum(line.endswith(f"; {case.condition_dim} = {value:g}") for line in history) == 1


def test_demo_runs_offline_and_beats_interpolation(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a caller's own backend (a notebook's inline one, say)
    try:
        result = run_demo(tmp_path / "demo", members=4, progress=False, log=None)
        # left alone: the demo switched every caller to Agg
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    names = {p.name for p in result.files}
    for case in CASES:
        assert f"{case.name}.nc" in names
        # one panel and one spectrum figure per condition (Reynolds number), else one
        suffixes = ["_0", "_1"] if case.condition_dim is not None else [""]
        for kind in ("panels", "spectra"):
            assert {f"{case.name}_{kind}{s}.png" for s in suffixes} <= names
        rows = result.skill[case.name]
        flex = rows["FLEX ensemble (4 members)"]
        for name, row in rows.items():
            if name.endswith("interpolation"):
                assert flex["rmse"] < row["rmse"], (case.name, name)
                assert flex["lsd"] < row["lsd"], (case.name, name)
        assert flex["spread_skill"] > 0
        with xr.open_dataset(tmp_path / "demo" / f"{case.name}.nc") as ds:
            v = case.variable
            assert {f"{v}_truth", f"{v}_flex", f"{v}_coarse", f"{v}_bilinear"} <= set(ds)
            assert ds[f"{v}_flex"].sizes["member"] == 4
            _check_demo_file_attributes(case, ds)
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "| FLEX ensemble (4 members) |" in report
    assert "log-spectral distance" in report
    # the validated numbers' file by its address: a wheel has no benchmarks/ folder
    assert f"{REPOSITORY}benchmarks/results/skill.md" in report


def test_demo_cli_and_bad_arguments(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--case", "era5_t2m_x4", "--members", "2"]) == 0
    out = capsys.readouterr().out
    assert "era5_t2m_x4: FLEX ensemble-mean RMSE" in out
    assert (tmp_path / "report.md").is_file()
    with pytest.raises(ConfigError, match="at least 2"):
        run_demo(tmp_path, members=1)
    with pytest.raises(SystemExit) as usage:  # a usage error; --help lists the cases
        main(["demo", "--out", str(tmp_path), "--case", "nope", "--quiet"])
    assert usage.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    report = (tmp_path / "report.md").read_text()
    assert "seed 0" in report
    # command-line words in the errors; a file as --out is named as such
    assert main(["demo", "--out", str(tmp_path), "--members", "1", "--quiet"]) == 2
    assert "--members 1: the demo needs an ensemble of at least 2" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["demo", "--out", str(tmp_path / "afile"), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    # the --case choices are the demo's cases; a repeated case runs once
    from flexdownscale.cli import build_parser

    demo_parser = build_parser()._subparsers._group_actions[0].choices["demo"]
    (case_action,) = [a for a in demo_parser._actions if a.dest == "case"]
    assert list(case_action.choices) == [c.name for c in CASES]
    twice = run_demo(
        tmp_path / "twice",
        members=2,
        cases=("era5_t2m_x4", "era5-t2m-x4"),  # the case's name and its shipped model's
        log=None,
        progress=False,
    )
    assert (tmp_path / "twice" / "report.md").read_text().count("## ERA5 2 m temperature") == 1
    assert len(twice.files) == len(set(twice.files))
    one = run_demo(tmp_path, members=2, cases="era5_t2m_x4", log=None, progress=False)
    assert list(one.skill) == ["era5_t2m_x4"]  # one name alone is one case, not its letters
    json.dumps(one.skill)
    with pytest.raises(ConfigError, match=r"unknown demo case\(s\) \['nope'\]"):
        run_demo(tmp_path, members=2, cases="nope")


def test_demo_never_overwrites_files_of_yours(tmp_path, capsys):
    """``flexdownscale demo --out DIR`` replaced a report.md of the user's in DIR and exited 0
    (reviewer-49). A file with one of the demo's names is refused before anything runs, unless
    the folder is an earlier demo's (its report.md is the demo's); other files are no matter."""
    from flexdownscale.demo import _check_output_folder

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own notes\n")
    assert main(["demo", "--out", str(mine), "--case", "era5_t2m_x4", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"flexdownscale demo: error: output folder {str(mine)!r} holds report.md, which the demo "
        "would overwrite, and it is not an earlier demo's folder (its report.md is not the "
        "demo's); give a new or empty folder, or move those files away\n"
    )
    assert [p.name for p in mine.iterdir()] == ["report.md"]
    assert (mine / "report.md").read_text() == "my own notes\n"
    # a data file of the demo's name without the demo's report: refused too, and named
    (mine / "report.md").unlink()
    (mine / "kolmogorov_x8.nc").write_text("")
    (mine / "kolmogorov_x8_panels_re1000.png").write_text("")
    with pytest.raises(ConfigError, match=r"holds kolmogorov_x8\.nc, kolmogorov_x8_panels_re1000"):
        run_demo(mine, members=2, cases=("kolmogorov_x8",), log=None, progress=False)
    # ... but only the chosen cases' names count, other files never do, and an earlier demo's
    # folder is the demo's to write over (test_demo_cli_and_bad_arguments reruns into one)
    _check_output_folder(mine, tuple(c for c in CASES if c.name == "era5_t2m_x4"))
    (tmp_path / "notes.txt").write_text("")
    _check_output_folder(tmp_path, CASES)
    (mine / "report.md").write_text("# flexdownscale demo\n\nflexdownscale 0.1.0; ...\n")
    _check_output_folder(mine, CASES)


@pytest.mark.slow
def test_era5_card_numbers_are_reproduced(shared_data):
    """The model card's validation table is what benchmarks/skill.py computes (full split)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import skill

    case = "era5-t2m-x4"
    table = skill.card_for(case, skill.CASE_FIELDS[case])
    assert table in load_model_folder(case).card


@pytest.mark.parametrize("case", ["era5-t2m-x4", "kolmogorov-x8"])
def test_card_prose_is_what_the_shipping_script_writes(case):
    """The paragraphs after each card's skill table come from benchmarks/ship_models.py (its
    measured numbers in one place): a card edited by hand, or a template changed without
    ``--refresh-prose``, fails here."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import ship_models

    folder = load_model_folder(case)
    assert ship_models.card_prose(case, folder.sampler.delta) in folder.card


def test_open_sample_gives_a_fresh_copy_of_each_sample():
    from flexdownscale.demo import SAMPLES, open_sample

    era5 = open_sample("era5_t2m_uk")
    assert era5.t2m.attrs["units"] == "K"
    assert dict(era5.sizes) == {
        "time": 4,
        "latitude": 33,
        "longitude": 49,
    }
    era5["t2m"] += 1.0  # in memory: a second call is unchanged
    assert float(open_sample("era5_t2m_uk").t2m.max()) == pytest.approx(float(era5.t2m.max()) - 1)
    kolmogorov = open_sample("kolmogorov")
    assert list(kolmogorov.reynolds_number.values) == [1000.0, 4000.0]
    assert sorted(SAMPLES) == ["era5_t2m_uk", "kolmogorov"]
    with pytest.raises(ConfigError, match=r"no sample named 'era5'.*'era5_t2m_uk'"):
        open_sample("era5")


def test_era5_sample_attributes_describe_its_fields():
    """The ERA5 sample's title and comment say what it holds: four fields 6 hours apart on
    20 March 2019 (they said "hourly, March 2019 (1-24 March)" and "Four hours", copied from
    the source file into every tutorial output)."""
    from flexdownscale.demo import open_sample

    era5 = open_sample("era5_t2m_uk")
    hours = np.diff(era5.time.values).astype("timedelta64[h]").astype(int)
    assert hours.tolist() == [6, 6, 6]
    assert str(era5.time.values[0])[:10] == "2019-03-20"
    assert era5.attrs["title"].endswith("20 March 2019, 6-hourly")
    assert era5.attrs["comment"].startswith("Four fields 6 hours apart (00, 06, 12 and 18 UTC")
