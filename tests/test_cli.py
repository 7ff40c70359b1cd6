"""End-to-end tests of ``flexdownscale downscale`` and ``flexdownscale evaluate``."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from test_pipeline import FACTOR, era5_pair, make_downscaler

from flexdownscale.cli import main
from flexdownscale.data import refine_grid


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    fine, coarse = era5_pair(shared_data, times=2)
    coarse.to_netcdf(root / "coarse.nc")
    fine.to_netcdf(root / "truth.nc")
    model = make_downscaler(fine).save_pretrained(root / "model")
    return root, model


def test_downscale_netcdf_and_zarr(files, capsys):
    root, model = files
    args = ["--model", str(model), "--factor", "4", "--members", "3", "--steps", "2"]
    assert main(["downscale", str(root / "coarse.nc"), str(root / "out.nc"), *args]) == 0
    said = capsys.readouterr()
    assert "wrote" in said.out
    # stderr is no terminal here (a batch job's log): progress as whole lines, no bar frames
    assert "downscaling: step 0/" in said.err
    assert "done in" in said.err
    assert "\r" not in said.err
    out = xr.open_dataset(root / "out.nc")
    coarse = xr.open_dataset(root / "coarse.nc")
    assert out["t2m"].dims == ("member", "time", "latitude", "longitude")
    assert out.sizes["member"] == 3
    ref = refine_grid(coarse, FACTOR)
    np.testing.assert_array_equal(out["latitude"].values, ref["latitude"].values)
    np.testing.assert_array_equal(out["longitude_bnds"].values, ref["longitude_bnds"].values)
    assert out.attrs["flexdownscale_members"] == 3
    assert out["t2m"].attrs["units"] == "K"
    # zarr output, lazily in time chunks: the same numbers (per-time-step seeds)
    zarr_out = root / "out.zarr"
    zargs = [str(root / "coarse.nc"), str(zarr_out), *args, "--time-chunk", "1", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zarr notice when writing, no fallback when opening
        assert main(["downscale", *zargs]) == 0
        assert "downscaling" not in capsys.readouterr().err  # --quiet: no progress
        z = xr.open_zarr(zarr_out)  # consolidated metadata
        np.testing.assert_array_equal(z["t2m"].values, out["t2m"].values)
    # a zarr v2 input (most public archives) written as zarr: its Blosc compressor travelled
    # with the time coordinate and zarr v3 refused it (TypeError traceback, exit 1)
    coarse.load().to_zarr(root / "coarse_v2.zarr", mode="w", zarr_format=2, consolidated=True)
    v2args = [str(root / "coarse_v2.zarr"), str(root / "from_v2.zarr"), *args, "--quiet"]
    assert main(["downscale", *v2args]) == 0
    with xr.open_zarr(root / "from_v2.zarr") as from_v2:
        np.testing.assert_array_equal(from_v2["t2m"].values, out["t2m"].values)
    # CF: coordinates and bounds carry no missing-value marker, in either format
    for written in (out, z):
        for name in ("latitude", "longitude", "latitude_bnds", "longitude_bnds"):
            assert "_FillValue" not in written[name].encoding, name
    # --time-chunk finds a time dim under another name, as the Downscaler does
    from flexdownscale.cli import _time_dim

    renamed = coarse.rename(time="t")
    renamed["t"].attrs["standard_name"] = "time"
    assert _time_dim(renamed, {}) == "t"
    assert _time_dim(coarse.rename(time="step"), {"time": "step"}) == "step"
    renamed.to_netcdf(root / "coarse_t.nc")
    targs = [str(root / "coarse_t.nc"), str(root / "out_t.nc"), *args, "--time-chunk", "1"]
    assert main(["downscale", *targs, "--quiet"]) == 0
    np.testing.assert_array_equal(
        xr.open_dataset(root / "out_t.nc")["t2m"].values, out["t2m"].values
    )
    coarse.isel(time=0).to_netcdf(root / "coarse_single.nc")
    code = main(
        [
            "downscale",
            str(root / "coarse_single.nc"),
            str(root / "o3.nc"),
            *args,
            "--time-chunk",
            "1",
        ]
    )
    assert code == 2
    assert "--time-chunk given but the input has no time dim" in capsys.readouterr().err
    # --batch-invariant: the same bits for any --batch-size
    bi = [*args, "--batch-invariant", "--quiet"]
    for b in ("1", "4"):
        target = str(root / f"bi{b}.nc")
        assert main(["downscale", str(root / "coarse.nc"), target, *bi, "--batch-size", b]) == 0
    one, four = (xr.open_dataset(root / f"bi{b}.nc") for b in ("1", "4"))
    np.testing.assert_array_equal(one["t2m"].values, four["t2m"].values)
    assert one.attrs["flexdownscale_batch_invariant"] == 1
    assert out.attrs["flexdownscale_batch_invariant"] == 0


def test_downscale_errors_exit_2(files, capsys):
    root, model = files
    code = main(
        [
            "downscale",
            str(root / "coarse.nc"),
            str(root / "x.nc"),
            "--model",
            str(model),
            "--factor",
            "8",
        ]
    )
    assert code == 2
    assert "downscales by 4 only" in capsys.readouterr().err
    assert not (root / "x.nc").exists()
    code = main(["downscale", str(root / "missing.nc"), str(root / "x.nc"), "--model", str(model)])
    assert code == 2


def test_evaluate(files, tmp_path, capsys, monkeypatch):
    root, model = files
    import flexdownscale.plot

    drawn = []  # the bar heights of the rank histograms evaluate draws
    plot_rank_histogram = flexdownscale.plot.plot_rank_histogram

    def recording(*args, **kwargs):
        fig = plot_rank_histogram(*args, **kwargs)
        drawn.append([bar.get_height() for bar in fig.axes[0].patches])
        return fig

    monkeypatch.setattr(flexdownscale.plot, "plot_rank_histogram", recording)
    pred = tmp_path / "pred.nc"
    assert (
        main(
            [
                "downscale",
                str(root / "coarse.nc"),
                str(pred),
                "--model",
                str(model),
                "--members",
                "4",
                "--quiet",
            ]
        )
        == 0
    )
    out = tmp_path / "eval"
    assert main(["evaluate", str(pred), str(root / "truth.nc"), "--out", str(out)]) == 0
    table = (out / "metrics.md").read_text()
    assert "| t2m | K |" in table
    rows = json.loads((out / "metrics.json").read_text())
    assert "weighted by cell area" in table
    # cross-check the area-weighted RMSE of the ensemble mean by hand: a cell between latitude
    # edges phi- and phi+ has area proportional to sin(phi+) - sin(phi-)
    p = xr.open_dataset(pred)["t2m"].mean("member")
    t = xr.open_dataset(root / "truth.nc")["t2m"]
    lat = np.deg2rad(t["latitude"].values)
    half = 0.5 * (lat[1] - lat[0])
    w = (np.sin(lat + half) - np.sin(lat - half))[None, :, None] * np.ones(t.shape)
    expected = float(np.sqrt((w * (p.values - t.values) ** 2).sum() / w.sum()))
    assert rows[0]["RMSE (ens. mean)"] == pytest.approx(expected, rel=1e-5)
    unweighted = float(np.sqrt(((p.values - t.values) ** 2).mean()))
    assert abs(expected - unweighted) > 1e-6 * unweighted  # the weighting is seen
    # fair ensemble CRPS by hand: mean |x_i - y| - sum_ij |x_i - x_j| / (2 M (M - 1))
    x = xr.open_dataset(pred)["t2m"].values
    m = x.shape[0]
    skill = np.abs(x - t.values[None]).mean(axis=0)
    spread = np.abs(x[:, None] - x[None]).sum(axis=(0, 1)) / (2 * m * (m - 1))
    crps = float((w * (skill - spread)).sum() / w.sum())
    assert rows[0]["CRPS"] == pytest.approx(crps, rel=1e-5)
    # the rank histogram is area-weighted like the CRPS: rank = 1 + members below the truth
    ranks = 1 + (x < t.values[None]).sum(axis=0)
    weighted = [float(w[ranks == r].sum() / w.sum()) for r in range(1, m + 2)]
    assert len(drawn) == 1
    assert drawn[0] == pytest.approx(weighted, abs=1e-6)
    assert rows[0]["LSD (dB)"] > 0
    assert (out / "spectra_t2m.png").stat().st_size > 1000
    assert (out / "rank_histogram_t2m.png").stat().st_size > 1000


def _run(argv, capsys):
    """(exit status, stderr) of one CLI call; stderr must be a single line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") <= 1, err
    return code, err.strip()


def test_downscale_refuses_bad_output_paths_before_loading_the_model(files, capsys):
    root, _ = files
    coarse = str(root / "coarse.nc")
    no_model = ["--model", str(root / "no-such-model")]  # the paths are checked first
    folder = root / "no" / "such"
    code, err = _run(["downscale", coarse, str(folder / "out.nc"), *no_model], capsys)
    assert code == 2
    assert err == (
        f"flexdownscale downscale: error: the folder of the output {str(folder / 'out.nc')!r}, "
        f"{str(folder)!r}, does not exist; create it first (mkdir -p {folder}) or give another "
        "output path"
    )
    before = (root / "coarse.nc").read_bytes()
    for same in (coarse, str(root / "." / "coarse.nc")):
        code, err = _run(["downscale", coarse, same, *no_model], capsys)
        assert code == 2
        assert err == (
            f"flexdownscale downscale: error: the output {same!r} is the input file; the input "
            "is read while the output is written, so this would destroy it: give another "
            "output path"
        )
    assert (root / "coarse.nc").read_bytes() == before


def test_downscale_refuses_unknown_or_absent_devices(files, capsys):
    root, _ = files
    argv = ["downscale", str(root / "coarse.nc"), str(root / "x.nc")]
    argv += ["--model", str(root / "no-such-model")]
    available = ", ".join(["cpu", *(["cuda"] if torch.cuda.is_available() else [])])
    code, err = _run([*argv, "--device", "gpu"], capsys)
    assert code == 2
    assert err.startswith(
        f"flexdownscale downscale: error: --device 'gpu' is not a device name; available here: "
        f"{available}"
    )
    assert err.endswith("(or leave --device out: CUDA when available, else the CPU)")
    if torch.cuda.is_available():
        code, err = _run([*argv, "--device", f"cuda:{torch.cuda.device_count()}"], capsys)
        assert code == 2
        assert f"--device 'cuda:{torch.cuda.device_count()}' is not available;" in err
    else:
        code, err = _run([*argv, "--device", "cuda"], capsys)
        assert code == 2
        assert err.startswith(
            "flexdownscale downscale: error: --device 'cuda' is not available (this machine "
            f"has no CUDA device; torch {torch.__version__}"
        )
        assert "; available here: cpu (or leave --device out" in err
    assert not (root / "x.nc").exists()


def test_unreadable_input_is_one_line_naming_the_file(files, tmp_path, capsys):
    root, model = files
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netCDF file at all\n" * 10)
    code, err = _run(["downscale", str(bad), str(tmp_path / "o.nc"), "--model", str(model)], capsys)
    assert code == 2
    assert err.startswith(f"flexdownscale downscale: error: cannot read {str(bad)!r} as netCDF: ")
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    code, err = _run(["evaluate", str(empty), str(root / "truth.nc"), "--out", "r"], capsys)
    assert code == 2
    assert err.startswith(f"flexdownscale evaluate: error: cannot read {str(empty)!r} as a zarr")


def test_downscale_refuses_a_folder_as_netcdf_output(files, tmp_path, capsys):
    root, _ = files
    taken = tmp_path / "taken.nc"
    taken.mkdir()
    argv = ["downscale", str(root / "coarse.nc"), str(taken), "--model", str(root / "nothing")]
    code, err = _run(argv, capsys)
    assert code == 2
    assert err == (
        f"flexdownscale downscale: error: the output {str(taken)!r} is an existing folder, but "
        "a netCDF output is a file: give a file path, or a name ending in .zarr to write a zarr "
        "store"
    )


@pytest.fixture(scope="module")
def fake_prediction(files):
    """The truth with a member dim: a prediction file for the evaluate checks (no model run)."""
    root, _ = files
    truth = xr.open_dataset(root / "truth.nc").load()
    pred = truth.expand_dims(member=2).copy()
    pred["t2m"] = pred["t2m"] + xr.DataArray([-0.5, 0.5], dims="member")
    pred.to_netcdf(root / "fake_pred.nc")
    return root / "fake_pred.nc", truth


def test_evaluate_refuses_truth_missing_times(fake_prediction, tmp_path, capsys):
    pred, truth = fake_prediction
    partial = tmp_path / "truth_t0.nc"
    truth.isel(time=[0]).to_netcdf(partial)
    argv = ["evaluate", str(pred), str(partial), "--out", str(tmp_path / "r")]
    code, err = _run(argv, capsys)
    assert code == 2
    second = str(truth.indexes["time"][1])
    assert err == (
        "flexdownscale evaluate: error: the truth lacks 1 of the prediction's 2 time values "
        f"({second}); give truth for every predicted time"
    )
    assert not (tmp_path / "r").exists()


def test_evaluate_refuses_truth_covering_part_of_the_grid(fake_prediction, tmp_path, capsys):
    pred, truth = fake_prediction
    part = tmp_path / "truth_part.nc"
    truth.isel(latitude=slice(4, -2)).to_netcdf(part)
    code, err = _run(["evaluate", str(pred), str(part), "--out", str(tmp_path / "r")], capsys)
    assert code == 2
    lat = truth["latitude"].values
    step = float(np.abs(np.diff(lat)).mean())
    assert err == (
        "flexdownscale evaluate: error: the truth does not cover the prediction grid: 6 of the "
        f"{lat.size} prediction latitude values have no truth point within {1e-3 * step:.3g} "
        f"({lat[0]:g} .. {lat[3]:g}, {lat[-2]:g} .. {lat[-1]:g}; prediction latitude "
        f"{lat.min():g} .. {lat.max():g}, truth {lat[4]:g} .. {lat[-3]:g}); give truth "
        "covering the whole prediction grid, on the fine grid the prediction was made on"
    )


def test_evaluate_matches_truth_within_round_off_and_in_any_order(
    fake_prediction, tmp_path, capsys
):
    pred, truth = fake_prediction
    truth.to_netcdf(tmp_path / "t.nc")
    shifted = truth.assign_coords(latitude=truth.latitude + 1e-6 * 0.25)  # 4e-6 cells off
    shifted.isel(latitude=slice(None, None, -1)).to_netcdf(tmp_path / "t2.nc")  # descending
    assert main(["evaluate", str(pred), str(tmp_path / "t.nc"), "--out", str(tmp_path / "a")]) == 0
    assert main(["evaluate", str(pred), str(tmp_path / "t2.nc"), "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    rows = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert json.loads((tmp_path / "b" / "metrics.json").read_text()) == rows
    assert rows[0]["RMSE (ens. mean)"] == 0.0
    # members truth -/+ 0.5: fair CRPS = mean |x_i - y| - sum_ij |x_i - x_j| / (2 M (M - 1))
    assert rows[0]["CRPS"] == pytest.approx(0.5 - 2 * 1.0 / (2 * 2 * 1), abs=1e-6)


def _rows(argv, capsys):
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    return json.loads((Path(argv[argv.index("--out") + 1]) / "metrics.json").read_text())


def _evaluate_argv(folder, prediction, truth, out):
    """``flexdownscale evaluate`` of two files of ``folder`` into its subfolder ``out``."""
    return ["evaluate", str(folder / prediction), str(folder / truth), "--out", str(folder / out)]


def test_evaluate_an_ensemble_dim_under_another_name(fake_prediction, tmp_path, capsys):
    """An ensemble dim not called ``member`` was pooled into the RMSE as if it were space
    (exit 0, no CRPS): it is refused with the option to name it, ``--dims member=NAME``."""
    pred_path, truth = fake_prediction
    truth.to_netcdf(tmp_path / "t.nc")
    expected = _rows(
        ["evaluate", str(pred_path), str(tmp_path / "t.nc"), "--out", str(tmp_path / "a")], capsys
    )
    pred = xr.open_dataset(pred_path).load().rename(member="realization")
    pred.to_netcdf(tmp_path / "p.nc")
    argv = _evaluate_argv(tmp_path, "p.nc", "t.nc", "b")
    code, err = _run(argv, capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the prediction's 't2m' has dims ['realization'] that the "
        "truth lacks; if 'realization' is the ensemble dim, pass --dims member=realization, else "
        "select one value of it (or give truth along it)"
    )
    assert _rows([*argv, "--dims", "member=realization"], capsys) == expected
    assert (tmp_path / "b" / "rank_histogram_t2m.png").exists()


def test_evaluate_header_names_the_ensemble_scores_only_for_an_ensemble(
    fake_prediction, tmp_path, capsys
):
    """The report's header said "CRPS fair, spread/skill Fortin-corrected" and "member-averaged"
    spectra for one prediction per point too, whose table has no such columns: it now says why
    they are missing (and names the member count for an ensemble)."""
    pred_path, truth = fake_prediction
    truth.to_netcdf(tmp_path / "t.nc")
    xr.open_dataset(pred_path).load().isel(member=0).to_netcdf(tmp_path / "one.nc")
    xr.open_dataset(pred_path).load().isel(member=[1]).to_netcdf(tmp_path / "one_member.nc")
    argv = ["evaluate", str(pred_path), str(tmp_path / "t.nc"), "--out", str(tmp_path / "ens")]
    rows = _rows(argv, capsys)
    header = (tmp_path / "ens" / "metrics.md").read_text().splitlines()[2]
    assert "CRPS fair, spread/skill Fortin-corrected over the 2 members" in header
    assert "member-averaged" in header
    assert "CRPS" in rows[0]
    for name in ("one.nc", "one_member.nc"):
        out = name.removesuffix(".nc")
        (row,) = _rows(_evaluate_argv(tmp_path, name, "t.nc", out), capsys)
        header = (tmp_path / out / "metrics.md").read_text().splitlines()[2]
        assert "no CRPS, spread/skill or rank histogram" in header, header
        assert "Fortin" not in header
        assert "member-averaged" not in header
        assert "CRPS" not in row
        assert "spread/skill" not in row
        assert not (tmp_path / out / "rank_histogram_t2m.png").exists()


def test_evaluate_a_truth_dim_the_prediction_lacks(fake_prediction, tmp_path, capsys):
    """A truth with more along a dim (all trajectories of a file, several members) was
    broadcast against the prediction and every score pooled over it (exit 0): the truth is
    taken at the prediction's own label of that dim (a scalar coordinate, as downscaling one
    trajectory leaves), and without one the dim is refused."""
    pred_path, truth = fake_prediction
    truth.to_netcdf(tmp_path / "t.nc")
    expected = _rows(
        ["evaluate", str(pred_path), str(tmp_path / "t.nc"), "--out", str(tmp_path / "a")], capsys
    )
    other = truth + 5.0  # another trajectory, far from the prediction
    both = xr.concat([other, truth], dim="trajectory").assign_coords(trajectory=[2, 3])
    both["t2m"].attrs = truth["t2m"].attrs
    both.to_netcdf(tmp_path / "both.nc")
    pred = xr.open_dataset(pred_path).load()
    pred.assign_coords(trajectory=3).to_netcdf(tmp_path / "p3.nc")
    assert _rows(_evaluate_argv(tmp_path, "p3.nc", "both.nc", "b"), capsys) == expected
    pred.to_netcdf(tmp_path / "p.nc")  # no label: which trajectory is it?
    code, err = _run(_evaluate_argv(tmp_path, "p.nc", "both.nc", "c"), capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the truth's 't2m' has a dim 'trajectory' (2 values) "
        "that the prediction lacks: every score would pool the prediction against all of them. "
        "Give truth for the prediction's 'trajectory' only (cut it out of the truth file), or a "
        "prediction along it"
    )
    # the arguments swapped: the "truth" has members
    code, err = _run(_evaluate_argv(tmp_path, "t.nc", "p.nc", "d"), capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the truth's 't2m' has the ensemble dim 'member' (2 "
        "values) and the prediction's has none: were the files given the other way round? The "
        "prediction comes first: flexdownscale evaluate PREDICTION TRUTH --out DIR"
    )


def test_evaluate_a_masked_field_scores_the_valid_points(fake_prediction, tmp_path, capsys):
    """A land-sea mask (NaN in both files) made the spectra raise after every score was
    computed, and the report was lost; NaN in the truth alone wrote non-standard JSON."""
    pred_path, truth = fake_prediction
    pred = xr.open_dataset(pred_path).load()
    land = truth["latitude"] > truth["latitude"].values[-4]  # 3 rows
    lat_rows = int(land.sum())
    pred.where(~land).to_netcdf(tmp_path / "p.nc")
    truth.where(~land).to_netcdf(tmp_path / "t.nc")
    rows = _rows(
        _evaluate_argv(tmp_path, "p.nc", "t.nc", "r"),
        capsys,
    )
    valid = truth.where(~land, drop=True)
    # the scores of the valid points: the fake ensemble is the truth -/+ 0.5
    assert rows[0]["RMSE (ens. mean)"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["CRPS"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["LSD (dB)"] is None
    report = (tmp_path / "r" / "metrics.md").read_text()
    cells = lat_rows * valid.sizes["longitude"] * valid.sizes["time"]
    assert (
        f"`t2m` ({2 * cells} missing values in the prediction, {cells} missing values in the "
        "truth, in each of its 2 time steps): no LSD or spectrum plot" in report
    )
    assert "| n/a |" in report
    assert not (tmp_path / "r" / "spectra_t2m.png").exists()
    assert (tmp_path / "r" / "rank_histogram_t2m.png").exists()
    # strict JSON whatever the scores: members equal to the truth have spread/skill 0 / 0
    truth.expand_dims(member=2).to_netcdf(tmp_path / "exact.nc")
    argv = _evaluate_argv(tmp_path, "exact.nc", "t.nc", "e")
    rows = _rows(argv, capsys)
    json.loads((tmp_path / "e" / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert rows[0]["spread/skill"] is None
    # a prediction with no value at all is refused, as a truth with none is
    pred.where(False).to_netcdf(tmp_path / "empty.nc")
    argv = _evaluate_argv(tmp_path, "empty.nc", "t.nc", "n")
    code, err = _run(argv, capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the prediction's 't2m' has no finite value; check the "
        "file (a failed run, or a fill value that was not decoded?)"
    )


def test_evaluate_aligns_time_however_each_side_stores_it(fake_prediction, tmp_path, capsys):
    """A single field on either side, a scalar time, another time dim name: matched by value,
    never broadcast (which inflated every score silently)."""
    pred_path, truth = fake_prediction
    pred = xr.open_dataset(pred_path).load()
    out = str(tmp_path / "r")
    # the prediction's first time alone (scalar time coordinate) against the full truth ...
    pred.isel(time=0).to_netcdf(tmp_path / "p0.nc")
    truth.to_netcdf(tmp_path / "t.nc")
    truth.isel(time=1).to_netcdf(tmp_path / "t1.nc")
    first = _rows(
        ["evaluate", str(tmp_path / "p0.nc"), str(tmp_path / "t.nc"), "--out", out], capsys
    )
    assert first[0]["RMSE (ens. mean)"] == 0.0  # matched to truth time 0, not all times
    # ... against the wrong single truth time: refused
    code, err = _run(
        ["evaluate", str(tmp_path / "p0.nc"), str(tmp_path / "t1.nc"), "--out", out], capsys
    )
    assert code == 2
    assert "the truth is for time" in err or "does not have" in err
    # a truth whose time dim has another name
    truth.rename(time="valid_time").to_netcdf(tmp_path / "tv.nc")
    renamed = _rows(["evaluate", str(pred_path), str(tmp_path / "tv.nc"), "--out", out], capsys)
    assert renamed[0]["RMSE (ens. mean)"] == 0.0
    # a single field without any time against several truth times: refused, not broadcast
    pred.isel(time=0, drop=True).to_netcdf(tmp_path / "pn.nc")
    code, err = _run(
        ["evaluate", str(tmp_path / "pn.nc"), str(tmp_path / "t.nc"), "--out", out], capsys
    )
    assert code == 2
    assert "select the matching truth time first" in err
    # a prediction whose time dim has a name nothing recognises (made with --dims time=step):
    # named with --dims (applied to the file that has it), not taken for a single field
    stamp = pred.rename(time="step")
    stamp["step"].attrs = {}
    stamp.to_netcdf(tmp_path / "ps.nc")
    argv = ["evaluate", str(tmp_path / "ps.nc"), str(tmp_path / "t.nc"), "--out", out]
    code, err = _run(argv, capsys)
    assert code == 2
    assert "the prediction has dims ['step'] that are neither its grid nor 'member'" in err
    assert "pass --dims time=step" in err
    named = _rows([*argv, "--dims", "time=step"], capsys)
    assert named[0]["RMSE (ens. mean)"] == 0.0


def test_evaluate_refuses_other_units_and_wraps_longitudes(fake_prediction, tmp_path, capsys):
    pred_path, truth = fake_prediction
    out = str(tmp_path / "r")
    celsius = truth.assign(t2m=(truth["t2m"] - 273.15).assign_attrs(units="degC"))
    celsius.to_netcdf(tmp_path / "c.nc")
    code, err = _run(["evaluate", str(pred_path), str(tmp_path / "c.nc"), "--out", out], capsys)
    assert code == 2
    assert "'K' in the prediction but in 'degC' in the truth" in err
    assert "(values in degC = values in K - 273.15)" in err
    kelvin = truth.assign(t2m=truth["t2m"].copy().assign_attrs(units="kelvin"))
    kelvin.to_netcdf(tmp_path / "k.nc")
    rows = _rows(["evaluate", str(pred_path), str(tmp_path / "k.nc"), "--out", out], capsys)
    assert rows[0]["RMSE (ens. mean)"] == 0.0  # the same unit spelled out
    # units on one side only: scored as if they agreed (RMSE 273 for degC against K); refused
    bare = xr.open_dataset(pred_path).load()
    del bare["t2m"].attrs["units"]
    bare.to_netcdf(tmp_path / "bare.nc")
    code, err = _run(
        ["evaluate", str(tmp_path / "bare.nc"), str(tmp_path / "c.nc"), "--out", out], capsys
    )
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: variable 't2m' is in 'degC' in the truth but has no "
        "'units' attribute in the prediction; set it in the prediction file (after converting "
        "the values if they are in other units)"
    )
    # the truth in 0..360 longitudes, the prediction in -180..180 (western Europe: both signs)
    lon360 = truth.assign_coords(longitude=truth["longitude"] % 360).sortby("longitude")
    lon360.to_netcdf(tmp_path / "l.nc")
    assert (lon360["longitude"] > 180).any()
    rows = _rows(["evaluate", str(pred_path), str(tmp_path / "l.nc"), "--out", out], capsys)
    assert rows[0]["RMSE (ens. mean)"] == 0.0


def test_evaluate_out_must_be_a_folder(fake_prediction, tmp_path, capsys):
    pred, _ = fake_prediction
    root = pred.parent
    (tmp_path / "file").write_text("x")
    argv = ["evaluate", str(pred), str(root / "truth.nc"), "--out"]
    code, err = _run([*argv, str(tmp_path / "file")], capsys)
    assert code == 2
    assert err == (
        f"flexdownscale evaluate: error: --out {str(tmp_path / 'file')!r} is a file, not a "
        "folder; give a folder for the report"
    )
    # below a file: the folder cannot be made (an OSError from the file system, one line)
    code, err = _run([*argv, str(tmp_path / "file" / "report")], capsys)
    assert code == 2
    assert err == (
        f"flexdownscale evaluate: error: cannot use {str(tmp_path / 'file' / 'report')!r}: "
        "Not a directory"
    )


def test_evaluate_periodic_physics_grid_uses_fft_and_equal_weights(shared_data, tmp_path, capsys):
    """Kolmogorov flow (axes marked periodic): FFT spectra, unweighted means, LSD as the metrics
    compute it."""
    from flexdownscale import metrics

    ds = xr.open_dataset(shared_data / "kolmogorov" / "kf_re4000.nc")
    truth = ds[["vorticity"]].isel(trajectory=3, time=slice(0, 2)).load()
    rng = np.random.default_rng(0)
    pred = truth.expand_dims(member=2).copy()
    pred["vorticity"] = pred["vorticity"] + 0.1 * xr.DataArray(
        rng.normal(size=pred["vorticity"].shape), dims=pred["vorticity"].dims
    )
    pred.to_netcdf(tmp_path / "p.nc")
    truth.to_netcdf(tmp_path / "t.nc")
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "p.nc"),
                str(tmp_path / "t.nc"),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    table = (tmp_path / "r" / "metrics.md").read_text()
    assert "over all grid points" in table
    assert "FFT power spectra" in table
    row = json.loads((tmp_path / "r" / "metrics.json").read_text())[0]
    mean = pred["vorticity"].mean("member")
    expected = float(np.sqrt(((mean - truth["vorticity"]) ** 2).mean()))
    assert row["RMSE (ens. mean)"] == pytest.approx(expected, rel=1e-5)
    dims = ["y", "x"]
    fft = {"method": "fft"}
    lsd = metrics.log_spectral_distance(
        metrics.mean_spectrum(pred["vorticity"], dims=dims, spectrum_kwargs=fft),
        metrics.mean_spectrum(truth["vorticity"], dims=dims, spectrum_kwargs=fft),
    )
    assert row["LSD (dB)"] == pytest.approx(float(lsd), rel=1e-6)


def test_evaluate_prediction_across_a_periodic_seam(shared_data, tmp_path, capsys):
    """A prediction cut across the seam of a periodic box (bbox=, x from -0.5) is compared
    with the truth's points modulo the box length, as longitudes are modulo 360."""
    ds = xr.open_dataset(shared_data / "kolmogorov" / "kf_re4000.nc")
    truth = ds[["vorticity"]].isel(trajectory=3, time=slice(0, 2)).load()
    length = float(truth["x"].size * (truth["x"][1] - truth["x"][0]))
    cut = truth.roll(x=24, roll_coords=True).isel(x=slice(0, 48), y=slice(40, 88))
    cut = cut.assign_coords(x=cut["x"].where(cut["x"] < length / 2, cut["x"] - length))
    assert float(cut["x"].min()) < 0 < float(cut["x"].max())  # across the seam
    pred = cut.expand_dims(member=2) + xr.DataArray([0.1, -0.1], dims="member")
    pred["vorticity"].attrs = dict(truth["vorticity"].attrs)
    pred.to_netcdf(tmp_path / "p.nc")
    truth.to_netcdf(tmp_path / "t.nc")
    args = ["evaluate", str(tmp_path / "p.nc"), str(tmp_path / "t.nc"), "--out"]
    assert main([*args, str(tmp_path / "r")]) == 0, capsys.readouterr().err
    row = json.loads((tmp_path / "r" / "metrics.json").read_text())[0]
    assert row["RMSE (ens. mean)"] == pytest.approx(0.0, abs=1e-6)  # the members' mean is exact


def test_evaluate_a_crop_of_a_periodic_box_uses_the_dct(shared_data, tmp_path, capsys):
    """A --bbox crop of the doubly periodic box does not wrap around: its spectra are the DCT's
    (the truth's periodic attributes, copied onto the crop, gave FFT spectra: LSD 6.31 dB
    instead of 9.75 on a downscaled crop). The whole box, even rotated across its seam, keeps
    FFT spectra."""
    from flexdownscale import metrics

    ds = xr.open_dataset(shared_data / "kolmogorov" / "kf_re4000.nc")
    truth = ds[["vorticity"]].isel(trajectory=3, time=slice(0, 2)).load()
    truth.to_netcdf(tmp_path / "t.nc")
    assert truth["x"].attrs["periodic"] == "true"
    rng = np.random.default_rng(1)
    length = float(truth["x"].size * (truth["x"][1] - truth["x"][0]))
    crop = truth.isel(x=slice(40, 88), y=slice(100, 140))  # coordinates keep periodic = true
    rotated = truth.roll(x=8, roll_coords=True)  # the whole axis from x = -8 cells
    step = float(truth["x"][1] - truth["x"][0])
    shifted = float(truth["x"][0]) + step * np.arange(-8, truth["x"].size - 8)
    rotated = rotated.assign_coords(x=("x", shifted))
    rotated["x"].attrs = dict(truth["x"].attrs)
    for name, part, method in (("crop", crop, "dct"), ("rotated", rotated, "fft")):
        pred = part.expand_dims(member=2).copy()
        noise = rng.normal(size=pred["vorticity"].shape)
        pred["vorticity"] = pred["vorticity"] + 0.3 * xr.DataArray(
            noise, dims=pred["vorticity"].dims
        )
        pred.to_netcdf(tmp_path / f"{name}.nc")
        report = tmp_path / f"r_{name}"
        argv = ["evaluate", str(tmp_path / f"{name}.nc"), str(tmp_path / "t.nc"), "--out"]
        assert main([*argv, str(report)]) == 0, capsys.readouterr().err
        capsys.readouterr()
        assert f"{method.upper()} power spectra" in (report / "metrics.md").read_text(), name
        row = json.loads((report / "metrics.json").read_text())[0]
        kwargs = {"method": method}
        lsd = metrics.log_spectral_distance(
            metrics.mean_spectrum(pred["vorticity"], dims=["y", "x"], spectrum_kwargs=kwargs),
            metrics.mean_spectrum(part["vorticity"], dims=["y", "x"], spectrum_kwargs=kwargs),
        )
        assert row["LSD (dB)"] == pytest.approx(float(lsd), rel=1e-6), name
    # the truth aligned to the crop is not periodic; aligned to the whole box it stays so
    from flexdownscale.evaluation import _truth_on_prediction_grid

    periods = {"x": length, "y": length}
    on_crop = _truth_on_prediction_grid(crop, truth, ("y", "x"), periods=periods)
    assert "periodic" not in on_crop["x"].attrs
    assert "periodic" not in on_crop["y"].attrs
    on_whole = _truth_on_prediction_grid(rotated, truth, ("y", "x"), periods=periods)
    assert on_whole["x"].attrs["periodic"] == on_whole["y"].attrs["periodic"] == "true"
    assert truth["x"].attrs["periodic"] == "true"  # the truth itself is left as it was


def _downscale_args(model, *extra):
    return ["--model", str(model), "--members", "2", "--steps", "2", "--quiet", *extra]


def test_downscale_options_match_the_python_call(files, tmp_path, capsys):
    """--rename, --variables, --bbox, --blend, --tile and --overlap reach the Downscaler: the
    file equals ``Downscaler.__call__`` with the same keywords."""
    from flexdownscale.pipeline import Downscaler

    root, model = files
    coarse = xr.open_dataset(root / "coarse.nc").load()
    renamed = coarse.rename(t2m="tas")
    renamed.to_netcdf(tmp_path / "tas.nc")
    call = Downscaler.from_pretrained(model)
    expected = call(coarse, members=2, steps=2, progress=False)["t2m"]
    for extra in (["--rename", "tas=t2m"], ["--variables", "tas"]):
        out = tmp_path / f"{extra[0][2:]}.nc"
        assert (
            main(["downscale", str(tmp_path / "tas.nc"), str(out), *_downscale_args(model, *extra)])
            == 0
        )
        np.testing.assert_array_equal(xr.open_dataset(out)["t2m"].values, expected.values)
    lat, lon = coarse["latitude"].values, coarse["longitude"].values
    bbox = [float(lon[2]), float(lat[-3]), float(lon[6]), float(lat[-6])]
    if bbox[1] > bbox[3]:
        bbox[1], bbox[3] = bbox[3], bbox[1]
    keywords = {"bbox": bbox, "blend": "gaussian", "tile": 16, "overlap": 8}
    expected = call(coarse, members=2, steps=2, progress=False, **keywords)["t2m"]
    extra = ["--bbox", *map(str, bbox), "--blend", "gaussian", "--tile", "16", "--overlap", "8"]
    out = tmp_path / "bbox.nc"
    assert (
        main(["downscale", str(root / "coarse.nc"), str(out), *_downscale_args(model, *extra)]) == 0
    )
    got = xr.open_dataset(out)["t2m"]
    assert got.sizes["latitude"] == 4 * FACTOR
    assert got.sizes["longitude"] == 5 * FACTOR
    np.testing.assert_array_equal(got.values, expected.values)
    assert xr.open_dataset(out).attrs["flexdownscale_blend"] == "gaussian"


def test_downscale_dims_names_an_unrecognised_time_dimension(files, tmp_path):
    root, model = files
    coarse = xr.open_dataset(root / "coarse.nc").load().rename(time="step")
    coarse.to_netcdf(tmp_path / "step.nc")
    out = tmp_path / "out.nc"
    extra = ["--dims", "time=step", "--time-chunk", "1"]
    assert (
        main(["downscale", str(tmp_path / "step.nc"), str(out), *_downscale_args(model, *extra)])
        == 0
    )
    assert xr.open_dataset(out)["t2m"].dims == ("member", "step", "latitude", "longitude")


def test_downscale_condition_option(tmp_path, capsys):
    """--condition gives a conditioned model (kolmogorov-x8) its Reynolds number; without it and
    without the attribute the error names the flag."""
    from flexdownscale.data import degrade
    from flexdownscale.demo import CASES, load_case
    from flexdownscale.pipeline import Downscaler

    case = next(c for c in CASES if c.model == "kolmogorov-x8")
    fine = (
        load_case(case).sel(reynolds_number=4000.0, drop=True).isel(x=slice(0, 64), y=slice(0, 64))
    )
    coarse = degrade(fine, 8)
    coarse["vorticity"].attrs = dict(fine["vorticity"].attrs)
    coarse.attrs.pop("reynolds_number", None)
    coarse.to_netcdf(tmp_path / "kf.nc")
    argv = [
        "downscale",
        str(tmp_path / "kf.nc"),
        str(tmp_path / "out.nc"),
        "--model",
        "kolmogorov-x8",
    ]
    code, err = _run([*argv, "--quiet"], capsys)
    assert code == 2
    assert "pass --condition <value>" in err
    assert "condition=" not in err
    assert main([*argv, "--condition", "4000", "--members", "2", "--quiet"]) == 0
    expected = Downscaler.from_pretrained("kolmogorov-x8")(
        coarse, members=2, condition=4000.0, progress=False
    )
    out = xr.open_dataset(tmp_path / "out.nc")
    np.testing.assert_array_equal(out["vorticity"].values, expected["vorticity"].values)
    assert out.attrs["flexdownscale_condition_reynolds_number"] == 4000.0


def test_downscale_errors_name_the_flags_not_python_keywords(files, tmp_path, capsys):
    root, model = files
    coarse = xr.open_dataset(root / "coarse.nc").load().rename(t2m="tas")
    coarse.to_netcdf(tmp_path / "tas.nc")
    argv = ["downscale", str(tmp_path / "tas.nc"), str(tmp_path / "o.nc"), "--model", str(model)]
    code, err = _run(argv, capsys)
    assert code == 2
    assert err.endswith(
        "the model needs variables ['t2m'] but ['t2m'] are not in the input (found ['tas']); "
        "if ['tas'] are the model's ['t2m'] under other names, pass --rename tas=t2m or "
        "--variables NAME,NAME,... in the model's order"
    )
    code, err = _run(
        [*argv[:3], "--factor", "8", "--model", str(model), "--rename", "tas=t2m"], capsys
    )
    assert code == 2
    assert "--factor 8 but model" in err
    assert "use --factor 4 or a model trained for x8" in err
    code, err = _run([*argv, "--variables", "tas,t2m"], capsys)
    assert code == 2
    assert "--variables tas,t2m has 2 entries; the model takes 1" in err
    assert not (tmp_path / "o.nc").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rename", "tas", "'tas' is not NAME=VALUE"),
        ("--dims", "x=", "'x=' is not NAME=VALUE"),
        ("--variables", ",", "expected variable names"),
        ("--blend", "linear", "invalid choice: 'linear'"),
        ("--time-chunk", "0", "argument --time-chunk: '0' is not a positive whole number"),
        ("--time-chunk", "-2", "argument --time-chunk: '-2' is not a positive whole number"),
        ("--time-chunk", "1.5", "argument --time-chunk: '1.5' is not a positive whole number"),
    ],
)
def test_downscale_option_syntax_is_a_usage_error(files, capsys, option, value, message):
    root, model = files
    with pytest.raises(SystemExit) as exit_info:
        main(["downscale", str(root / "coarse.nc"), "o.nc", "--model", str(model), option, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_spelling_of_pipeline_hints():
    from flexdownscale.cli import cli_spelling

    assert cli_spelling("pass rename={'tas': 't2m', 'u': 'u10'} (model 'x')") == (
        "pass --rename tas=t2m,u=u10 (model 'x')"
    )
    assert cli_spelling("pass dims={'x': 'lon', 'y': 'lat'}") == "pass --dims x=lon,y=lat"
    assert cli_spelling("bbox = (1.0, 2.0, 3.0, 4.0) is reversed") == (
        "--bbox 1.0 2.0 3.0 4.0 is reversed"
    )
    assert cli_spelling("or pass model='path/to/model-folder' (a folder") == (
        "or pass --model path/to/model-folder (a folder"
    )
    assert cli_spelling("use device='cpu' or None; batch_size=0") == (
        "use --device cpu or None; --batch-size 0"
    )
    # fixes of the data are done to the input file, regions chosen with --bbox
    assert cli_spelling(
        "so fill them first (e.g. ds.fillna(...) or ds.interpolate_na(dim=...)) or select a "
        "region without them (bbox=)"
    ) == (
        "so fill them in the input file first (e.g. with xarray's fillna or interpolate_na) or "
        "select a region without them (--bbox)"
    )
    assert cli_spelling("; with bbox= the region is read with a halo") == (
        "; with --bbox the region is read with a halo"
    )
    assert cli_spelling("select or stack the extra dims ['level'] first") == (
        "select one value of the extra dims ['level'] in the input file first and run each value "
        "as its own file (e.g. xr.open_dataset(IN).isel(level=0).to_netcdf(ONE))"
    )
    assert cli_spelling("mask them (ds.where(np.isfinite(ds))) and fill them like NaNs") == (
        "mask them in the input file and fill them like NaNs"
    )
    # other keywords and attribute access stay as they are
    assert cli_spelling("crop_size=8; ds.attrs['x'] = 1; self.factor=4") == (
        "crop_size=8; ds.attrs['x'] = 1; self.factor=4"
    )


def test_downscale_sampler_option(files, tmp_path, capsys):
    from flexdownscale.pipeline import Downscaler

    root, model = files
    coarse = xr.open_dataset(root / "coarse.nc").load()
    extra = ["--sampler", "sde", "--steps", "3", "--sampler-option", "delta=0.5"]
    out = tmp_path / "sde.nc"
    argv = ["downscale", str(root / "coarse.nc"), str(out), "--model", str(model), "--quiet"]
    assert main([*argv, "--members", "2", *extra]) == 0
    expected = Downscaler.from_pretrained(model)(
        coarse, members=2, sampler="sde", steps=3, sampler_options={"delta": 0.5}, progress=False
    )
    np.testing.assert_array_equal(xr.open_dataset(out)["t2m"].values, expected["t2m"].values)
    assert xr.open_dataset(out).attrs["flexdownscale_sampler_options"] == "delta=0.5"
    code, err = _run([*argv, "--sampler", "sde", "--sampler-option", "eta=1"], capsys)
    assert code == 2
    assert "--sampler-option ['eta'] do not apply to sampler 'sde'" in err
    with pytest.raises(SystemExit):
        main([*argv, "--sampler-option", "delta=much"])
    assert "values must be numbers" in capsys.readouterr().err


def test_version_flag(capsys):
    """``flexdownscale --version`` was a usage error ("the following arguments are required:
    COMMAND")."""
    from flexdownscale import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"flexdownscale {__version__}\n"


def test_info_package_and_models(capsys):
    """``flexdownscale info``: version, every backbone x preset with its parameter count, the
    backends and the device; ``info MODEL``: a model's variables, factor, sampler settings,
    grid and card; an unknown model is one error line."""
    from flexdownscale import __version__
    from flexdownscale.models.registry import parameter_table

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"flexdownscale {__version__} (torch {torch.__version__}")
    table = parameter_table()
    assert len(table) == 16  # 4 backbones x 4 presets
    for backbone, preset, count in table:
        assert f"  {backbone:<5} {preset:<7} {count / 1e6:8.2f} M" in out
    assert "  flex  small      49.26 M" in out
    assert "xarray-regrid     found" in out
    # every optional extra's backend, with the extra to install (quoted, as zsh needs)
    for extra in ("esmf", "hub", "train", "distributed", "wandb", "zarr", "proj"):
        assert f"pip install 'flexdownscale[{extra}]'" in out
    assert "\ndevice: " in out
    assert main(["info", "kolmogorov-x8"]) == 0
    out = capsys.readouterr().out
    assert "  task: superres, factor: 8" in out
    assert "  variables: vorticity [1]" in out
    assert "sampler default: ddim 2 steps (stored options: eta=0, delta=0.5, g1=0, g2=0;" in out
    assert '"range": [1000.0, 4000.0]' in out
    assert (
        "grid: projected, trained on 256 x 256 fine cells (y, x) of 0.0245437 x 0.0245437 " in out
    )
    assert "periodic in x and y; degradation area_mean, upsampling bilinear, factor 8" in out
    assert "## Validation skill" in out
    assert (
        "  backbone: flex tiny, 2.34 M parameters (stored as bfloat16, float32; the weights " in out
    )
    code, err = _run(["info", "no-such-model"], capsys)
    assert code == 2
    assert err.startswith("flexdownscale info: error: no model folder at 'no-such-model'")


# ---------------------------------------------------------------------------------------------
# the output is written beside the target and moved into place only when complete


def _contents(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) and its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_failed_downscale_keeps_the_previous_output(files, tmp_path, capsys):
    root, model = files
    args = ["--model", str(model), "--factor", "4", "--steps", "2", "--quiet"]
    bad = xr.open_dataset(root / "coarse.nc").load()
    bad["t2m"][{"time": 1, "latitude": 0, "longitude": 0}] = np.nan  # in the second time chunk
    bad.to_netcdf(tmp_path / "bad.nc")
    for name in ("out.nc", "out.zarr"):
        target = tmp_path / name
        assert main(["downscale", str(root / "coarse.nc"), str(target), *args]) == 0
        before = _contents(target)
        argv = ["downscale", str(tmp_path / "bad.nc"), str(target), *args, "--time-chunk", "1"]
        code, err = _run(argv, capsys)
        assert code == 2
        assert "contains NaN at time index 1" in err
        assert _contents(target) == before, name
        # a successful run replaces the earlier output (another seed: other numbers)
        again = ["downscale", str(root / "coarse.nc"), str(target), *args, "--seed", "1"]
        assert main(again) == 0
        assert _contents(target) != before
        opened = xr.open_zarr(target) if name.endswith(".zarr") else xr.open_dataset(target)
        with opened:
            assert opened["t2m"].sizes["time"] == 2
    # no temporary file or folder is left beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nc", "out.nc", "out.zarr"]


def test_downscale_refuses_to_replace_a_folder_that_is_not_a_zarr_store(files, tmp_path, capsys):
    root, _ = files
    taken = tmp_path / "results.zarr"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    argv = ["downscale", str(root / "coarse.nc"), str(taken), "--model", str(root / "nothing")]
    code, err = _run(argv, capsys)
    assert code == 2
    assert err == (
        f"flexdownscale downscale: error: the output {str(taken)!r} is an existing folder that "
        "is not a zarr store (it holds notes.txt); writing the output would replace it: give "
        "another path"
    )
    assert (taken / "notes.txt").read_text() == "mine"


def test_reports_are_utf8_whatever_the_locale(fake_prediction, tmp_path):
    """metrics.md / metrics.json of evaluate and the demo's report.md, in a C (ASCII) locale."""
    import os
    import subprocess
    import sys

    pred, truth = fake_prediction
    celsius = "\u00b0C"
    for name, ds in (("pred.nc", xr.open_dataset(pred).load()), ("truth.nc", truth.copy())):
        ds["t2m"] = ds["t2m"] - 273.15
        ds["t2m"].attrs["units"] = celsius
        ds.to_netcdf(tmp_path / name)
    # the command line itself is ASCII (!a); stdout is UTF-8 so that only the files are tested
    code = f"""
import locale, sys
assert locale.getpreferredencoding(False).lower() not in ("utf-8", "utf8"), "not a C locale"
from pathlib import Path
from flexdownscale.cli import main
from flexdownscale.demo import CASES, DemoResult, _report
from flexdownscale.metrics import SKILL_COLUMNS
out = {str(tmp_path / "report")!a}
assert main(["evaluate", {str(tmp_path / "pred.nc")!a}, {str(tmp_path / "truth.nc")!a},
             "--out", out]) == 0
result = DemoResult(output=Path(out))
result.skill = {{c.name: {{"FLEX": dict.fromkeys(SKILL_COLUMNS, 1.0)}} for c in CASES}}
_report(result, CASES, {{c.name: {celsius!a} for c in CASES}}, 2, 0)
"""
    env = dict(os.environ, LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    env["PYTHONIOENCODING"] = "utf-8"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, encoding="utf-8"
    )
    if "not a C locale" in result.stderr:
        pytest.skip("this system has no ASCII C locale")
    assert result.returncode == 0, result.stderr[-2000:]
    report = tmp_path / "report"
    assert f"| t2m | {celsius} |" in (report / "metrics.md").read_text(encoding="utf-8")
    assert json.loads((report / "metrics.json").read_text(encoding="utf-8"))[0]["units"] == celsius
    assert f"units of rmse and crps: {celsius}" in (report / "report.md").read_text(
        encoding="utf-8"
    )


def test_model_errors_are_one_line_and_name_the_missing_folder(
    files, tmp_path, monkeypatch, capsys
):
    hub = pytest.importorskip("huggingface_hub")

    def download(repo_id, allow_patterns):
        raise OSError("404 Client Error.\n\nRepository Not Found for url: https://hf.co/...")

    monkeypatch.setattr(hub, "snapshot_download", download)
    monkeypatch.chdir(tmp_path)
    root, _ = files
    expected = (
        "no local folder 'runs/my-model' and could not fetch it from the Hugging Face Hub "
        "(OSError: 404 Client Error. Repository Not Found for url: https://hf.co/...)"
    )
    code, err = _run(["info", "runs/my-model"], capsys)  # _run: at most one line
    assert code == 2
    assert err.startswith(f"flexdownscale info: error: {expected}; check the path")
    argv = ["downscale", str(root / "coarse.nc"), "out.nc", "--model", "runs/my-model"]
    code, err = _run(argv, capsys)
    assert code == 2
    assert err.startswith(f"flexdownscale downscale: error: {expected}; check the path")
    assert not (tmp_path / "out.nc").exists()


def test_multi_line_model_errors_are_printed_on_one_line(files, tmp_path, capsys):
    import hashlib

    from flexdownscale.hub import shipped_models

    root, _ = files
    model = tmp_path / "mismatched"  # the weights of another architecture, checksums updated
    shutil.copytree(shipped_models()["era5-t2m-x4"], model)
    shutil.copy(shipped_models()["kolmogorov-x8"] / "model.safetensors", model)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
    config["sha256"]["model.safetensors"] = digest
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    argv = ["downscale", str(root / "coarse.nc"), str(tmp_path / "o.nc"), "--model", str(model)]
    code, err = _run(argv, capsys)  # _run: at most one line
    assert code == 2
    assert err.startswith(f"flexdownscale downscale: error: weights in {str(model)!r} do not fit")
    # torch's own message listed every tensor; ours counts them (and is short: a line to read)
    # the Kolmogorov model's weights: its physical-condition layers are extra
    assert "8 tensors of the weights are not in it (first 'dec_phys.mlp.0.bias')" in err
    assert err.endswith(
        "the config.json was changed after export, or the weights are another "
        "model's: export the model again (or download it again)"
    )
    assert len(err) < 700


def test_members_below_one_is_said_in_command_line_terms(files, tmp_path, capsys):
    from flexdownscale.cli import cli_spelling

    root, model = files
    for members in ("0", "-1"):
        argv = ["downscale", str(root / "coarse.nc"), str(tmp_path / "o.nc")]
        code, err = _run([*argv, "--model", str(model), "--members", members], capsys)
        assert code == 2
        assert err == (
            f"flexdownscale downscale: error: --members {members} must be a positive integer, "
            "or leave --members out"
        )
    assert not (tmp_path / "o.nc").exists()
    assert cli_spelling("batch_size = 0 must be a positive integer or None") == (
        "--batch-size 0 must be a positive integer, or leave --batch-size out"
    )


def test_info_prints_a_non_ascii_card_under_an_ascii_locale(tmp_path):
    """A card holding a degree sign is printed with escapes under a C locale, not a traceback."""
    import os
    import shutil
    import subprocess
    import sys

    from flexdownscale.hub import shipped_models

    folder = tmp_path / "celsius-model"
    shutil.copytree(shipped_models()["era5-t2m-x4"], folder)
    with (folder / "README.md").open("a", encoding="utf-8") as fh:
        fh.write("\nValid from -40 \u00b0C to 40 \u00b0C.\n")
    code = f"""
import locale, sys
assert locale.getpreferredencoding(False).lower() not in ("utf-8", "utf8"), "not a C locale"
from flexdownscale.cli import main
sys.exit(main(["info", {str(folder)!a}]))
"""
    env = dict(os.environ, LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    env.pop("PYTHONIOENCODING", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    if b"not a C locale" in result.stderr:
        pytest.skip("this system has no ASCII C locale")
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")[-2000:]
    assert b"Valid from -40 \\xb0C to 40 \\xb0C." in result.stdout


def test_evaluate_a_forecast_matches_leads_at_valid_time_and_scores_each_lead(tmp_path, capsys):
    """A Forecaster output (dims member, lead, y, x; valid_time along lead) was refused with a
    hint, --dims time=lead, that led to a second refusal (lead numbers matched against the
    truth's times; reviewer-48). Its leads are now matched at valid_time, pooled in the table
    and scored per lead in a second table and metrics_by_lead.json."""
    from flexdownscale import metrics

    rng = np.random.default_rng(0)
    n, times = 32, np.arange(6) * 0.5 + 10.0
    axis = {"units": "m"}
    coords = {"y": ("y", np.arange(n) * 1e3, axis), "x": ("x", np.arange(n) * 1e3, axis)}
    truth = xr.Dataset(
        {"w": (("time", "y", "x"), rng.normal(size=(6, n, n)), {"units": "m s-1"})},
        coords={"time": ("time", times, {"units": "1"}), **coords},
    )
    truth.to_netcdf(tmp_path / "truth.nc")
    valid = times[[3, 4, 5]]  # a forecast from 11.0 with 3 leads of 0.5
    noise = rng.normal(size=(4, 3, n, n)) * np.array([0.5, 1.0, 2.0])[None, :, None, None]
    fc = xr.Dataset(
        {
            "w": (
                ("member", "lead", "y", "x"),
                truth["w"].values[None, 3:] + noise,
                {"units": "m s-1"},
            )
        },
        coords={
            "member": np.arange(4),
            "lead": ("lead", [1, 2, 3], {"units": "1"}),
            "valid_time": ("lead", valid, {"units": "1"}),
            "forecast_reference_time": ((), 11.0, {"units": "1"}),
            **coords,
        },
    )
    fc.to_netcdf(tmp_path / "fc.nc")
    (row,) = _rows(_evaluate_argv(tmp_path, "fc.nc", "truth.nc", "r"), capsys)
    # the pooled row is the evaluation of the same fields as a time series at valid_time
    series = fc.swap_dims(lead="valid_time").drop_vars("lead").rename(valid_time="time")
    series.to_netcdf(tmp_path / "series.nc")
    assert _rows(_evaluate_argv(tmp_path, "series.nc", "truth.nc", "s"), capsys) == [row]
    # per lead: the library's scores on that lead's field against the truth at its valid_time
    by_lead = json.loads((tmp_path / "r" / "metrics_by_lead.json").read_text())
    assert [(r["variable"], r["lead"], r["valid_time"]) for r in by_lead] == [
        ("w", 1, "11.5"),
        ("w", 2, "12.0"),
        ("w", 3, "12.5"),
    ]
    for k, r in enumerate(by_lead):
        p, t = fc["w"].isel(lead=k), truth["w"].isel(time=3 + k)
        assert r["RMSE (ens. mean)"] == pytest.approx(float(metrics.rmse(p.mean("member"), t)))
        assert r["CRPS"] == pytest.approx(float(metrics.crps_ensemble(p, t, member_dim="member")))
        ratio = float(metrics.spread_skill_ratio(p, t, member_dim="member"))
        assert r["spread/skill"] == pytest.approx(ratio)
        assert r["MAE (ens. mean)"] == pytest.approx(float(metrics.mae(p.mean("member"), t)))
        # the LSD of that lead's member-averaged spectra (the DCT: the box is not periodic)
        spectra = {"method": "dct"}
        lsd = metrics.log_spectral_distance(
            metrics.mean_spectrum(p, dims=["y", "x"], spectrum_kwargs=spectra),
            metrics.mean_spectrum(t, dims=["y", "x"], spectrum_kwargs=spectra),
        )
        assert r["LSD (dB)"] == pytest.approx(float(lsd))
    # the per-lead table has the pooled table's scores (units and the lead's labels apart)
    assert [c for c in by_lead[0] if c not in ("lead", "valid_time")] == [
        c for c in row if c != "units"
    ]
    assert (
        by_lead[0]["RMSE (ens. mean)"]
        < by_lead[1]["RMSE (ens. mean)"]
        < by_lead[2]["RMSE (ens. mean)"]
    )
    report = (tmp_path / "r" / "metrics.md").read_text()
    assert "By lead (the forecast's 3 leads, each against the truth at its valid_time" in report
    # the old hint's spelling gives the same report
    argv = [*_evaluate_argv(tmp_path, "fc.nc", "truth.nc", "h"), "--dims", "time=lead"]
    assert _rows(argv, capsys) == [row]
    assert json.loads((tmp_path / "h" / "metrics_by_lead.json").read_text()) == by_lead
    # a gap in the truth: scores over the valid points, no LSD (as in the pooled table)
    truth.where(truth.x > 0).to_netcdf(tmp_path / "gaps.nc")
    (gappy,) = _rows(_evaluate_argv(tmp_path, "fc.nc", "gaps.nc", "g"), capsys)
    gap_rows = json.loads((tmp_path / "g" / "metrics_by_lead.json").read_text())
    assert gappy["LSD (dB)"] is None
    assert [r["LSD (dB)"] for r in gap_rows] == [None, None, None]
    assert all(r["MAE (ens. mean)"] > 0 for r in gap_rows)
    # a lead the truth lacks is refused like any missing time
    truth.isel(time=slice(0, 5)).to_netcdf(tmp_path / "short.nc")
    code, err = _run(_evaluate_argv(tmp_path, "fc.nc", "short.nc", "x"), capsys)
    assert code == 2
    assert "the truth lacks 1 of the prediction's 3 valid_time values (12.5)" in err


def test_evaluate_never_overwrites_files_of_the_user(fake_prediction, tmp_path, capsys):
    """``--out`` wrote metrics.md, metrics.json and the plots over files of those names in any
    folder (a notes folder with its own metrics.md lost it, exit 0). A folder holding one of the
    report's names is refused before anything is computed unless it is an earlier evaluation's,
    which a rerun replaces, dropping an earlier forecast's per-lead table."""
    pred, _ = fake_prediction
    truth_path = pred.parent / "truth.nc"
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "metrics.md").write_text("# my notes\n")
    (notes / "spectra_t2m.png").write_bytes(b"mine")
    (notes / "other.txt").write_text("kept")
    argv = ["evaluate", str(pred), str(truth_path), "--out", str(notes)]
    code, err = _run(argv, capsys)
    assert code == 2
    assert err == (
        f"flexdownscale evaluate: error: --out {str(notes)!r} holds metrics.md, "
        "spectra_t2m.png, which the report would overwrite, and it is not an earlier "
        "evaluation's folder (its metrics.md is not a report of flexdownscale evaluate); give "
        "a new or empty folder, or move those files away"
    )
    assert sorted(p.name for p in notes.iterdir()) == ["metrics.md", "other.txt", "spectra_t2m.png"]
    assert (notes / "metrics.md").read_text() == "# my notes\n"
    # a folder with other files only is written into, and theirs kept
    (notes / "metrics.md").unlink()
    (notes / "spectra_t2m.png").unlink()
    first = _rows(argv, capsys)
    assert (notes / "other.txt").read_text() == "kept"
    assert (notes / "metrics.md").read_text().startswith(f"# Evaluation of {pred} against")
    # an earlier evaluation's folder is replaced; a stale per-lead table of a forecast goes
    (notes / "metrics_by_lead.json").write_text("[]")
    assert _rows(argv, capsys) == first
    assert not (notes / "metrics_by_lead.json").exists()


def test_info_and_loading_check_that_the_weights_fit_the_config(tmp_path, capsys):
    """A model folder whose config.json was edited to another preset printed its card with exit
    0 under ``info``, and loading it raised torch's message listing every tensor (about 80 kB
    on one line). ``info`` now fits the weights as loading does, and the error counts what
    differs, names the first of each kind and the preset the weights fit."""
    from flexdownscale.errors import WeightsMismatchError
    from flexdownscale.hub import shipped_models
    from flexdownscale.pipeline import Downscaler

    folder = tmp_path / "kf"
    shutil.copytree(shipped_models()["kolmogorov-x8"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["preset"] = "small"
    (folder / "config.json").write_text(json.dumps(config))
    code, err = _run(["info", str(folder)], capsys)
    assert code == 2
    message = (
        f"weights in {str(folder)!r} do not fit the flex small architecture of its config.json: "
        "372 tensors of it are not in the weights (first "
        "'task_encoder.pyramid.blocks.3.skip.weight'), 24 tensors of the weights are not in it "
        "(first 'decoder.2.layers.1.conv1.bias'), 341 have another shape (first "
        "'task_encoder.embedding': [64] in the weights, [256] in the architecture); they fit "
        "flex tiny. The config.json was changed after export: set its model.preset back to "
        '"tiny", or export the model again'
    )
    assert err == f"flexdownscale info: error: {message}"
    with pytest.raises(WeightsMismatchError) as raised:
        Downscaler.from_pretrained(folder)
    assert str(raised.value) == message
    # weights that fit no preset: the fix is to export again
    config["model"]["in_channels"] = 2  # two variables: no preset has those input layers
    config["model"]["preset"] = "tiny"
    (folder / "config.json").write_text(json.dumps(config))
    code, err = _run(["info", str(folder)], capsys)
    assert code == 2
    assert err.endswith(
        "the config.json was changed after export, or the weights are another model's: export "
        "the model again (or download it again)"
    )


def test_evaluate_says_which_prediction_variables_the_truth_lacks(
    fake_prediction, tmp_path, capsys, monkeypatch
):
    """A prediction of t2m and sp against a truth of t2m only scored t2m and said nothing of
    sp, exit 0 (reviewer-50): a warning on stderr and a line of the report name it."""
    import sys
    import warnings

    from flexdownscale.cli import console_main
    from flexdownscale.errors import FlexDownscaleWarning

    pred_path, truth = fake_prediction
    pred = xr.open_dataset(pred_path).load()
    pred["sp"] = (pred["t2m"] * 0 + 1e5).assign_attrs(units="Pa")
    pred.to_netcdf(tmp_path / "two.nc")
    truth.to_netcdf(tmp_path / "t.nc")
    argv = _evaluate_argv(tmp_path, "two.nc", "t.nc", "r")
    monkeypatch.setattr(sys, "argv", ["flexdownscale", *argv])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert console_main() == 0
    assert capsys.readouterr().err == (
        "flexdownscale evaluate: warning: the truth has no 'sp': it is not scored (only 't2m'); "
        "give truth with those variables to score them\n"
    )
    report = (tmp_path / "r" / "metrics.md").read_text()
    assert report.endswith("\nNot scored (the truth has no such variable): `sp`.\n")
    rows = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert [r["variable"] for r in rows] == ["t2m"]
    with pytest.warns(FlexDownscaleWarning, match="the truth has no 'sp'"):  # from Python
        assert main([*argv[:-1], str(tmp_path / "b")]) == 0
    # the t2m scores are those of the one-variable prediction
    one = ["evaluate", str(pred_path), str(tmp_path / "t.nc"), "--out", str(tmp_path / "a")]
    assert _rows(one, capsys) == rows


def test_evaluate_a_prediction_in_another_calendar(fake_prediction, tmp_path, capsys):
    """A noleap prediction against the datetime64 ERA5 truth was refused with "the truth lacks
    2 of the prediction's 2 time values (2019-03-01 00:00:00, ...)" of a truth showing those
    dates (reviewer-50): the error names both calendars and the conversion."""
    pred_path, truth = fake_prediction
    pred = xr.open_dataset(pred_path).load().convert_calendar("noleap")
    pred.to_netcdf(tmp_path / "noleap.nc")
    truth.to_netcdf(tmp_path / "t.nc")
    code, err = _run(_evaluate_argv(tmp_path, "noleap.nc", "t.nc", "r"), capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the prediction's time is in the noleap calendar "
        "(cftime) and the truth's in the proleptic_gregorian calendar (numpy datetime64): the "
        "same dates in two calendars never match; convert one file to the other's calendar "
        "first (with xarray, for example: ds.convert_calendar('noleap') on the truth)"
    )
    truth.convert_calendar("noleap").to_netcdf(tmp_path / "t_noleap.nc")
    same_calendar = ["evaluate", str(pred_path), str(tmp_path / "t.nc"), "--out"]
    expected = _rows([*same_calendar, str(tmp_path / "a")], capsys)
    assert _rows(_evaluate_argv(tmp_path, "noleap.nc", "t_noleap.nc", "b"), capsys) == expected


def test_an_ensemble_written_as_zarr_evaluates_as_its_netcdf(files, tmp_path, capsys):
    """``downscale ... out.zarr --members 16`` let zarr chunk the members (2 chunks of 8), and
    ``evaluate`` of the store then failed ("dim 'member' ... split into 2 dask chunks"), which
    the netCDF of the same ensemble did not (reviewer-52). The store keeps the members in one
    chunk, and evaluate rechunks a store written otherwise."""
    root, model = files
    args = ["--model", str(model), "--members", "16", "--steps", "2", "--quiet"]
    reports = {}
    for name in ("pred.nc", "pred.zarr"):
        assert main(["downscale", str(root / "coarse.nc"), str(tmp_path / name), *args]) == 0
    with xr.open_zarr(tmp_path / "pred.zarr") as store:
        assert store["t2m"].data.chunksize[:2] == (16, 1)  # every member of a field together
        # a store written by xarray's defaults (another tool): members split by zarr
        store.load().to_zarr(
            tmp_path / "split.zarr", mode="w", encoding={"t2m": {"chunks": (8, 1, 8, 8)}}
        )
    with xr.open_zarr(tmp_path / "split.zarr") as split:
        assert split["t2m"].data.numblocks[0] == 2
    for name in ("pred.nc", "pred.zarr", "split.zarr"):
        out = tmp_path / f"eval_{name}"
        argv = ["evaluate", str(tmp_path / name), str(root / "truth.nc"), "--out", str(out)]
        assert main(argv) == 0, capsys.readouterr().err
        reports[name] = json.loads((out / "metrics.json").read_text())
    (row,) = reports["pred.nc"]
    assert row["CRPS"] > 0
    for name in ("pred.zarr", "split.zarr"):  # the same numbers, up to the order of the sums
        (other,) = reports[name]
        assert other == {
            k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for k, v in row.items()
        }


def test_evaluate_a_truth_that_names_the_variable_otherwise(fake_prediction, tmp_path, capsys):
    """A truth with ``tas`` for the prediction's ``t2m`` was refused with no way on (evaluate had
    no ``--rename``; reviewer-52)."""
    pred, truth = fake_prediction
    truth.to_netcdf(tmp_path / "t2m.nc")
    truth.rename(t2m="tas").to_netcdf(tmp_path / "tas.nc")
    truth.assign(tas=truth["t2m"]).to_netcdf(tmp_path / "both.nc")
    base = ["evaluate", str(pred)]
    code, err = _run([*base, str(tmp_path / "tas.nc"), "--out", str(tmp_path / "a")], capsys)
    assert code == 2
    assert err.endswith(
        "have none in common; if the truth names a variable otherwise, say which: --rename "
        "tas=t2m (truth name = prediction name)"
    ), err
    for truth_file, out in (("t2m.nc", "ref"), ("tas.nc", "renamed")):
        argv = [*base, str(tmp_path / truth_file), "--out", str(tmp_path / out)]
        assert main([*argv, "--rename", "tas=t2m"] if out == "renamed" else argv) == 0
    ref, renamed = (
        json.loads((tmp_path / o / "metrics.json").read_text()) for o in ("ref", "renamed")
    )
    assert renamed == ref
    code, err = _run(
        [*base, str(tmp_path / "tas.nc"), "--out", str(tmp_path / "b"), "--rename", "foo=t2m"],
        capsys,
    )
    assert code == 2
    assert "--rename names ['foo'], which the truth does not hold (its variables: ['tas'])" in err
    code, err = _run(
        [*base, str(tmp_path / "both.nc"), "--out", str(tmp_path / "c"), "--rename", "tas=t2m"],
        capsys,
    )
    assert code == 2
    assert "--rename would give the truth a second 't2m'" in err
    with xr.open_dataset(tmp_path / "tas.nc") as kept:
        assert list(kept.data_vars) == ["tas"]  # the file is not changed
