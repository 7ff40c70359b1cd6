"""``flexdownscale evaluate`` reads its inputs in time chunks and scores them in one pass.

It opened netCDF files without dask, so each score read whole variables into memory (16
members of a year of hourly 256 x 256 fields is about 36 GB), and each score was computed on
its own: a zarr store was read about ten times. The files are now read lazily in chunks of
``--time-chunk`` time steps (by default as many as fit in 16 MB of the prediction), every
member and the whole grid in each; the checks are computed together in one pass and every
score, spectrum and rank histogram in one more, chunk after chunk (dask's own order could read
every chunk before scoring one).
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

from flexdownscale import evaluation
from flexdownscale.cli import main

MEMBERS, TIMES, N = 4, 24, 16  # a prediction of 4 x 24 x 16 x 16 float32: 96 kB
STEPS = 5  # time steps per chunk in these tests: 5 chunks


def _files(
    folder: Path, members: int = MEMBERS, times: int = TIMES, n: int = N
) -> tuple[Path, Path]:
    """A latitude-longitude truth (float32, hourly) and a noisy prediction of it."""
    rng = np.random.default_rng(3)
    coords = {
        "time": np.datetime64("2020-01-01T00") + np.arange(times) * np.timedelta64(1, "h"),
        "latitude": ("latitude", 50.0 + 0.25 * np.arange(n), {"units": "degrees_north"}),
        "longitude": ("longitude", -5.0 + 0.25 * np.arange(n), {"units": "degrees_east"}),
    }
    field = 280 + np.cumsum(rng.normal(size=(times, n, n)), axis=0)
    truth = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), field.astype("float32"), {"units": "K"})},
        coords=coords,
    )
    ensemble = field[None] + rng.normal(0.1, 1.0, size=(members, times, n, n))
    pred = xr.Dataset(
        {
            "t2m": (
                ("member", "time", "latitude", "longitude"),
                ensemble.astype("float32"),
                {"units": "K"},
            )
        },
        coords={"member": np.arange(members), **coords},
    )
    pred.to_netcdf(folder / "pred.nc", engine="netcdf4")
    truth.to_netcdf(folder / "truth.nc", engine="netcdf4")
    return folder / "pred.nc", folder / "truth.nc"


def _evaluate(pred: Path, truth: Path, out: Path, *extra: str) -> list[dict]:
    """The rows of metrics.json of one evaluation (which must succeed)."""
    assert main(["evaluate", str(pred), str(truth), "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def _same_rows(a: list[dict], b: list[dict]) -> None:
    """Equal rows, scores equal to float round-off (the sums run over other chunks)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert list(x) == list(y)
        for key, value in x.items():
            if isinstance(value, float):
                assert y[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
            else:
                assert y[key] == value, key


def test_time_chunk_gives_the_default_and_the_whole_file_scores(tmp_path, monkeypatch, capsys):
    pred, truth = _files(tmp_path)
    whole = _evaluate(pred, truth, tmp_path / "whole", "--time-chunk", str(TIMES))
    chunked = _evaluate(pred, truth, tmp_path / "chunked", "--time-chunk", str(STEPS))
    one = _evaluate(pred, truth, tmp_path / "one", "--time-chunk", "1")
    default = _evaluate(pred, truth, tmp_path / "default")
    # a default chunk of 20 kB: 5 time steps of the 4 members' 16 x 16 float32 fields
    monkeypatch.setattr(evaluation, "CHUNK_BYTES", STEPS * MEMBERS * N * N * 4)
    small = _evaluate(pred, truth, tmp_path / "small")
    for rows in (chunked, one, default, small):
        _same_rows(whole, rows)
    assert set(whole[0]) >= {"RMSE (ens. mean)", "CRPS", "spread/skill", "LSD (dB)"}
    for folder in ("whole", "chunked", "small"):  # the same report, to its 4 digits
        text = (tmp_path / folder / "metrics.md").read_text(encoding="utf-8")
        assert text == (tmp_path / "default" / "metrics.md").read_text(encoding="utf-8")
    assert (tmp_path / "small" / "spectra_t2m.png").stat().st_size > 1000
    assert (tmp_path / "small" / "rank_histogram_t2m.png").stat().st_size > 1000
    capsys.readouterr()


def _count_reads(monkeypatch) -> dict[str, list[int]]:
    """Per netCDF variable name, the number of values of each read of the file."""
    from xarray.backends.netCDF4_ import NetCDF4ArrayWrapper

    reads: dict[str, list[int]] = {}
    getitem = NetCDF4ArrayWrapper.__getitem__

    def counting(self, key):
        values = getitem(self, key)
        reads.setdefault(self.variable_name, []).append(int(np.size(values)))
        return values

    monkeypatch.setattr(NetCDF4ArrayWrapper, "__getitem__", counting)
    return reads


def test_each_file_is_read_twice_a_chunk_at_a_time(tmp_path, monkeypatch):
    """Once for the checks (finite values, missing values), once for every score, spectrum
    and rank histogram; never a whole variable at once (it was read whole, then held)."""
    pred, truth = _files(tmp_path)
    # the lazy DataArrays handed to the computes: each dask-backed, the fields in chunks
    computes: list[list] = []
    compute = evaluation._compute_together

    def recording(reads, *lazy):
        found: list = []

        def walk(obj):
            if isinstance(obj, xr.DataArray):
                found.append(obj)
            elif isinstance(obj, dict):
                for value in obj.values():
                    walk(value)
            elif isinstance(obj, list | tuple):
                for value in obj:
                    walk(value)

        walk(lazy)
        computes.append(found)
        return compute(reads, *lazy)

    fields = []
    pooled = evaluation._pooled_scores

    def scoring(p, t, *args, **kwargs):
        fields.extend([p, t])
        return pooled(p, t, *args, **kwargs)

    monkeypatch.setattr(evaluation, "_compute_together", recording)
    monkeypatch.setattr(evaluation, "_pooled_scores", scoring)
    reads = _count_reads(monkeypatch)
    _evaluate(pred, truth, tmp_path / "r", "--time-chunk", str(STEPS))
    size = MEMBERS * TIMES * N * N
    assert sum(reads["t2m"]) == 2 * size + 2 * size // MEMBERS  # two passes over each file
    assert max(reads["t2m"]) <= STEPS * MEMBERS * N * N  # a chunk at a time
    assert len(computes) == 2  # the checks, then every score
    assert all(len(found) > 0 for found in computes)
    for found in computes:
        assert all(da.chunks is not None for da in found if da.ndim), "not dask-backed"
    assert [f.chunks is not None for f in fields] == [True, True]
    assert len(fields[0].chunksizes["time"]) == -(-TIMES // STEPS)  # 5 chunks, not loaded
    assert fields[0].chunksizes["member"] == (MEMBERS,)  # the ensemble and grid whole
    assert fields[0].chunksizes["latitude"] == (N,)


def test_a_zarr_prediction_is_read_twice(tmp_path, monkeypatch):
    """A zarr store (dask-backed) was read by every score: ten passes."""
    pytest.importorskip("zarr")
    from xarray.backends.zarr import ZarrArrayWrapper

    pred, truth = _files(tmp_path)
    store = tmp_path / "pred.zarr"
    with xr.open_dataset(pred) as ds:
        ds.chunk({"time": STEPS}).to_zarr(store, consolidated=False)
    read = []
    getitem = ZarrArrayWrapper.__getitem__

    def counting(self, key):
        values = getitem(self, key)
        if np.ndim(values) == 4:
            read.append(int(np.size(values)))
        return values

    monkeypatch.setattr(ZarrArrayWrapper, "__getitem__", counting)
    _evaluate(store, truth, tmp_path / "r")
    assert sum(read) == 2 * MEMBERS * TIMES * N * N


def test_only_a_few_chunks_are_held_at_a_time(tmp_path, monkeypatch):
    """dask's own order read 6 of the 13 chunks of this prediction before scoring one (for
    larger files, every chunk: the whole file in memory). Chunk by chunk, a chunk is read when
    the earlier ones are freed, but for the one read ahead."""
    pred, truth = _files(tmp_path, members=8, times=26, n=32)
    held: list = []  # weak references to the arrays of each chunk read
    most = []
    read_chunk = evaluation._read_chunk

    def tracking(fields, dim, start, stop):
        alive = sum(ref() is not None for ref in held)
        most.append(alive)
        chunk = read_chunk(fields, dim, start, stop)
        held.extend(weakref.ref(values) for values in chunk.values())
        return chunk

    monkeypatch.setattr(evaluation, "_read_chunk", tracking)
    with dask.config.set(num_workers=2):  # a thread may read the next chunk ahead
        _evaluate(pred, truth, tmp_path / "r", "--time-chunk", "2")  # 13 chunks
    assert len(most) == 2 * 13  # the checks' pass and the scores'
    # each chunk is two arrays (prediction and truth): at most the chunk read ahead is held
    assert max(most) <= 2 * 2, most


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "x"])
def test_a_bad_time_chunk_is_a_usage_error(tmp_path, capsys, value):
    pred, truth = _files(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["evaluate", str(pred), str(truth), "--out", str(tmp_path / "r"), "--time-chunk", value]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"argument --time-chunk: {value!r} is not a positive whole number; give the number of "
        "time steps per chunk, e.g. 24, or leave the option out for chunks of about 16 MB of "
        "the prediction"
    ) in err
    assert not (tmp_path / "r").exists()


def test_time_chunk_of_a_single_field_is_refused_as_downscale_refuses_it(tmp_path, capsys):
    pred, truth = _files(tmp_path)
    with xr.open_dataset(pred) as ds:
        ds.isel(time=0, drop=True).to_netcdf(tmp_path / "one.nc")
    with xr.open_dataset(truth) as ds:
        ds.isel(time=0, drop=True).to_netcdf(tmp_path / "one_truth.nc")
    argv = ["evaluate", str(tmp_path / "one.nc"), str(tmp_path / "one_truth.nc")]
    assert main([*argv, "--out", str(tmp_path / "r"), "--time-chunk", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "flexdownscale evaluate: error: --time-chunk given but the input has no time dim "
        "(dims: member, latitude, longitude); name it with --dims time=NAME"
    )
    _evaluate(tmp_path / "one.nc", tmp_path / "one_truth.nc", tmp_path / "r")  # by default


def test_forecasts_from_several_starts_score_the_same_in_chunks(tmp_path):
    """The (start, lead) fields of forecasts from several starts are one series, chunked by
    whole starts: the per-lead table is the same for any --time-chunk."""
    pred, truth = _files(tmp_path)
    with xr.open_dataset(pred) as ds:
        ensemble = ds.load()
    times = ensemble["time"].values
    forecasts = []
    for start in range(0, 12, 2):  # six starts two hours apart, 6 leads each: they overlap
        lead = np.arange(1, 7)
        one = ensemble.isel(time=start + lead).rename(time="lead")
        one = one.assign_coords(
            lead=("lead", lead, {"units": "1"}),
            valid_time=("lead", times[start + lead]),
            forecast_reference_time=times[start],
        )
        one["t2m"] = one["t2m"] + 0.1 * xr.DataArray(lead, dims="lead")
        forecasts.append(one)
    both = xr.concat(forecasts, dim="forecast_reference_time", coords=["valid_time"])
    both.to_netcdf(tmp_path / "fc.nc")
    by_lead = []
    for steps in ("1", "13", "1000"):
        out = tmp_path / f"fc{steps}"
        _evaluate(tmp_path / "fc.nc", truth, out, "--time-chunk", steps)
        by_lead.append(json.loads((out / "metrics_by_lead.json").read_text(encoding="utf-8")))
    assert [row["starts"] for row in by_lead[0]] == [6] * 6
    for rows in by_lead[1:]:
        _same_rows(by_lead[0], rows)


def test_a_warning_counted_in_points_is_given_once_for_all_chunks(tmp_path):
    """The fair CRPS's warning of points with one valid member came from every chunk with
    that chunk's count (the same count for chunks of the same size); it is given once, with
    the count of the whole file, as it was before the files were read in chunks."""
    from flexdownscale.errors import UndefinedMetricWarning

    pred, truth = _files(tmp_path)
    with xr.open_dataset(pred) as ds:
        ensemble = ds.load()
    ensemble["t2m"][1:, :, :2, :3] = np.nan  # 6 points of one member, at every time
    ensemble.to_netcdf(tmp_path / "one_member.nc")
    with pytest.warns(UndefinedMetricWarning) as caught:
        _evaluate(tmp_path / "one_member.nc", truth, tmp_path / "r", "--time-chunk", str(STEPS))
    said = [str(w.message) for w in caught if issubclass(w.category, UndefinedMetricWarning)]
    assert len(said) == 1, said
    assert f"only one ensemble member is valid ({6 * TIMES} point(s))" in said[0]
