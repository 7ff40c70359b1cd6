"""The command line as a user meets it (reviewer-162): Ctrl-C, ``-`` and patterns as paths,
the overwrite check of an unquoted pattern, interrupted reports of ``evaluate``, help texts,
the progress bar off a terminal and the folders the commands make."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from flexdownscale import cli, evaluation, pipeline
from flexdownscale.cli import main


def _field(seed: int = 0, members: int | None = None, day: int = 19) -> xr.Dataset:
    """A small 2 m temperature field on a regular latitude / longitude grid (3 hours of
    ``day`` March 2019)."""
    rng = np.random.default_rng(seed)
    lat = np.arange(50.0, 58.0, 0.25)
    lon = np.arange(-6.0, 6.0, 0.25)
    shape = (3, lat.size, lon.size)
    values = 280 + np.cumsum(rng.normal(size=shape), axis=-1).astype("float32")
    da = xr.DataArray(
        values,
        dims=("time", "latitude", "longitude"),
        coords={
            "time": pd.date_range(f"2019-03-{day}", periods=3, freq="h"),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
        attrs={"units": "K"},
    )
    if members is not None:
        da = da.expand_dims(member=members) + xr.DataArray(
            np.linspace(-0.5, 0.5, members), dims="member"
        )
        da.attrs["units"] = "K"
    return xr.Dataset({"t2m": da})


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working folder holding ``coarse.nc`` (relative paths as a user types them)."""
    monkeypatch.chdir(tmp_path)
    _field().to_netcdf("coarse.nc")
    return tmp_path


@pytest.fixture
def fake_model(monkeypatch):
    """``downscale`` without a network: the "downscaled" output is the input, marked as an
    output of flexdownscale; the keywords of each call are recorded."""
    calls: list[dict] = []

    def downscaler_for(model, names, **kwargs):
        def run(ds, **options):
            calls.append(options)
            return ds.assign_attrs(flexdownscale_version="test")

        return run

    monkeypatch.setattr(pipeline, "downscaler_for", downscaler_for)
    return calls


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- Ctrl-C -------------------------------------------------------------------------------------


def test_interrupted_downscale_is_one_line_and_writes_nothing(
    here, fake_model, monkeypatch, capsys
):
    """A KeyboardInterrupt while the output is written: one line saying what was left, status
    130, the half-written store and its hidden folder removed; an earlier output kept."""

    def interrupted(ds, target):
        Path(target).mkdir()
        (Path(target) / "zarr.json").write_text("{}")  # half a store
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_write_zarr", interrupted)
    code = cli._run(["downscale", "coarse.nc", "fine.zarr", "--quiet"], command_line=True)
    assert code == cli.INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err == (
        "flexdownscale downscale: interrupted; the output was not written: 'fine.zarr' was not "
        "created\n"
    )
    assert not (here / "fine.zarr").exists()
    assert _hidden(here) == []
    # an earlier output: left as it was, and the line says so
    assert main(["downscale", "coarse.nc", "fine.nc", "--quiet"]) == 0
    before = (here / "fine.nc").read_bytes()
    monkeypatch.setattr(
        cli, "_run_downscaler", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    code = cli._run(["downscale", "coarse.nc", "fine.nc"], command_line=True)
    assert code == 130
    assert capsys.readouterr().err == (
        "flexdownscale downscale: interrupted; the output was not written: 'fine.nc' is left as "
        "it was\n"
    )
    assert (here / "fine.nc").read_bytes() == before
    # called from Python, Ctrl-C stays Python's KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        main(["downscale", "coarse.nc", "fine.nc"])


def test_interrupted_evaluate_leaves_the_folder_as_it_was(here, monkeypatch, capsys):
    """Interrupted while its figures are written (after the scores), ``evaluate`` leaves no
    folder it made and an earlier report whole; the report is moved into place complete."""
    _field(1, members=2).to_netcdf("pred.nc")
    _field(2).to_netcdf("truth.nc")
    real = evaluation.write_figure

    def interrupted(fig, path, dpi, metadata=None, shown=None):
        real(fig, path, dpi, metadata, shown)
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "write_figure", interrupted)
    argv = ["evaluate", "pred.nc", "truth.nc", "--out", "report"]
    assert cli._run(argv, command_line=True) == 130
    assert capsys.readouterr().err == (
        "flexdownscale evaluate: interrupted; the report was not written: --out 'report' was "
        "not created\n"
    )
    assert not (here / "report").exists()
    monkeypatch.setattr(evaluation, "write_figure", real)
    assert main(argv) == 0
    capsys.readouterr()
    earlier = {p.name: p.read_bytes() for p in (here / "report").iterdir()}
    assert {"metrics.md", "metrics.json", "spectra_t2m.png", "rank_histogram_t2m.png"} <= set(
        earlier
    )
    _field(3, members=2).to_netcdf("pred2.nc")  # another prediction: another report
    monkeypatch.setattr(evaluation, "write_figure", interrupted)
    argv = ["evaluate", "pred2.nc", "truth.nc", "--out", "report"]
    assert cli._run(argv, command_line=True) == 130
    assert "--out 'report' is left as it was" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (here / "report").iterdir()} == earlier


def test_report_figures_left_without_metrics_are_replaced(here, capsys):
    """A folder holding only figures that ``evaluate`` wrote (a run killed while moving its
    report into place) is an unfinished report: the rerun writes over them. Figures that are
    not the command's are refused, with the reason that fits (no metrics.md at all)."""
    _field(1, members=2).to_netcdf("pred.nc")
    _field(2).to_netcdf("truth.nc")
    assert main(["evaluate", "pred.nc", "truth.nc", "--out", "done"]) == 0
    capsys.readouterr()
    unfinished = here / "unfinished"
    unfinished.mkdir()
    for name in ("spectra_t2m.png", "rank_histogram_t2m.png", "spectra_u10.png"):
        source = here / "done" / name.replace("u10", "t2m")
        (unfinished / name).write_bytes(source.read_bytes())
    assert main(["evaluate", "pred.nc", "truth.nc", "--out", "unfinished"]) == 0
    capsys.readouterr()
    left = sorted(p.name for p in unfinished.iterdir())
    assert "metrics.md" in left
    assert "spectra_u10.png" not in left  # a figure the new report does not draw
    mine = here / "mine"
    mine.mkdir()
    (mine / "spectra_t2m.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a report figure")
    code = cli._run(["evaluate", "pred.nc", "truth.nc", "--out", "mine"], command_line=True)
    assert code == 2
    assert capsys.readouterr().err == (
        "flexdownscale evaluate: error: --out 'mine' holds spectra_t2m.png, which the report "
        "would overwrite, and it is not an earlier evaluation's folder (it holds no metrics.md "
        "of one, and those files were not written by flexdownscale evaluate); give a new or "
        "empty folder, or move those files away\n"
    )


@pytest.mark.slow
def test_second_ctrl_c_does_not_break_the_clean_up(tmp_path):
    """Ctrl-C twice in a lazy run: the second arrives while the first's clean-up waits for a
    chunk running in dask's threads. It printed a double traceback and could abort the process
    (SIGABRT: 'terminate called without an active exception'); now it waits, and the command
    ends with its one line, as SIGINT ends a program, leaving no output or hidden folder."""
    _field().to_netcdf(tmp_path / "coarse.nc")
    child = textwrap.dedent(
        """
        import sys, time
        import dask.array as da
        import dask.threaded
        from concurrent.futures import ThreadPoolExecutor
        from flexdownscale import cli, pipeline

        pool = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)
        shutdown = pool.shutdown

        def told_shutdown(self, *args, **kwargs):
            print("SHUTDOWN", flush=True)
            return shutdown(self, *args, **kwargs)

        pool.shutdown = told_shutdown

        def slow(block):
            sys.stdout.write("RUNNING\\n")  # one write: two threads print whole lines
            sys.stdout.flush()
            time.sleep(4)  # a network call: it cannot be stopped midway
            return block

        def downscaler_for(model, names, **kwargs):
            def run(ds, **options):
                out = ds.copy()
                data = ds["t2m"].data  # meta given: map_blocks does not try slow on a sample
                out["t2m"] = ds["t2m"].copy(data=da.map_blocks(slow, data, meta=data._meta))
                return out.assign_attrs(flexdownscale_version="test")
            return run

        pipeline.downscaler_for = downscaler_for
        sys.argv = ["flexdownscale", "downscale", "coarse.nc", "fine.zarr", "--time-chunk", "1"]
        sys.exit(cli.console_main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT to its default in the child: a test run started in the background (`cmd &`)
        # inherits it ignored, and the command rightly leaves an ignored SIGINT alone
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    assert "RUNNING" in proc.stdout.readline()  # a chunk is running
    proc.send_signal(signal.SIGINT)
    line = "RUNNING"
    while line and "SHUTDOWN" not in line:  # until the clean-up waits for the running chunks
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    assert "terminate called" not in err
    assert proc.returncode == -signal.SIGINT
    assert err.splitlines()[-1] == (
        "flexdownscale downscale: interrupted; the output was not written: 'fine.zarr' was not "
        "created"
    )
    assert "flexdownscale: stopping: the computations running now end first" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coarse.nc"]


# -- paths --------------------------------------------------------------------------------------


def test_dash_is_no_file(here, fake_model, capsys):
    """``-`` is refused as every command's input and output: no file named '-' is written."""
    code = cli._run(["downscale", "coarse.nc", "-", "--quiet"], command_line=True)
    assert code == 2
    assert capsys.readouterr().err == (
        "flexdownscale downscale: error: OUTPUT '-': standard output is not supported (netCDF "
        "and zarr are read and written at random places, which a pipe cannot do); give a file "
        "path (./- for a file named '-')\n"
    )
    assert not (here / "-").exists()
    assert main(["downscale", "-", "fine.nc"]) == 2
    assert "INPUT '-': standard input is not supported" in capsys.readouterr().err
    assert main(["evaluate", "coarse.nc", "-", "--out", "r"]) == 2
    assert "TRUTH '-': standard input" in capsys.readouterr().err
    assert main(["evaluate", "coarse.nc", "coarse.nc", "--out", "-"]) == 2
    assert "give a folder path (./- for a folder named '-')" in capsys.readouterr().err
    assert sorted(p.name for p in here.iterdir()) == ["coarse.nc"]


def test_quoted_pattern_is_said_to_be_one(here, fake_model, capsys):
    """A quoted pattern is not expanded: the message says it is a pattern, what it matches
    and how to run several files."""
    for name in ("coarse_a.nc", "coarse_b.nc"):
        _field().to_netcdf(name)
    assert main(["downscale", "coarse_*.nc", "fine.nc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "flexdownscale downscale: error: INPUT 'coarse_*.nc' does not exist: it is a file-name "
        "pattern, which flexdownscale downscale does not expand (it matches 2 files "
        "('coarse_a.nc', 'coarse_b.nc')); downscale takes one file as INPUT: run the command "
        'once per file (for f in coarse_*.nc; do flexdownscale downscale "$f" '
    )
    assert main(["evaluate", "coarse_?.nc", "coarse.nc", "--out", "r"]) == 2
    assert "PREDICTION 'coarse_?.nc' does not exist: it is a file-name pattern" in (
        capsys.readouterr().err
    )
    assert not fake_model


def test_unquoted_pattern_does_not_replace_another_inputs_output(here, fake_model, capsys):
    """``flexdownscale downscale coarse_*.nc`` unquoted: the second match is OUTPUT. An
    earlier output of other times than the input's (another day's input) is refused like a
    file of other origin; one of the input's times is replaced (a re-run, a fixed input),
    and --overwrite replaces either."""
    _field(day=20).to_netcdf("coarse_a.nc")
    assert main(["downscale", "coarse.nc", "coarse_b.nc", "--quiet"]) == 0
    before = (here / "coarse_b.nc").read_bytes()
    code = cli._run(["downscale", "coarse_a.nc", "coarse_b.nc", "--quiet"], command_line=True)
    assert code == 2
    assert capsys.readouterr().err == (
        "flexdownscale downscale: error: the output 'coarse_b.nc' exists and is an earlier "
        "output of flexdownscale for other times (3 times from 2019-03-19T00:00:00 to "
        "2019-03-19T02:00:00) than the input's (3 times from 2019-03-20T00:00:00 to "
        "2019-03-20T02:00:00), not this input's (an unquoted pattern such as coarse_*.nc "
        "that matches two files puts the second in OUTPUT's place), so writing the output "
        "would replace it: give another output path, or add --overwrite to replace it\n"
    )
    assert (here / "coarse_b.nc").read_bytes() == before
    _field(seed=5).to_netcdf("fixed.nc")  # the same times: a re-run replaces its output
    assert main(["downscale", "fixed.nc", "coarse_b.nc", "--quiet"]) == 0
    assert (here / "coarse_b.nc").read_bytes() != before
    argv = ["downscale", "coarse_a.nc", "coarse_b.nc", "--quiet", "--overwrite"]
    assert main(argv) == 0
    with xr.open_dataset("coarse_b.nc") as written:
        assert str(written["time"].values[0]).startswith("2019-03-20")


# -- messages, help, progress ----------------------------------------------------------------------


def test_bbox_warning_ends_in_the_flag():
    """The halo warning ends with "with bbox=": said as the flag, not the Python keyword."""
    said = cli.cli_spelling("Leave overlap unset (or give overlap=64) with bbox=")
    assert said == "Leave overlap unset (or give --overlap 64) with --bbox"
    assert cli.cli_spelling("read with bbox= and overlap = 0") == (
        "read with --bbox and --overlap 0"
    )


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"flexdownscale": parser, **sub.choices}


@pytest.mark.parametrize(
    "name", ["flexdownscale", "info", "downscale", "forecast", "demo", "evaluate"]
)
def test_help_says_defaults_and_examples(name):
    """Every option that takes a value says what it does and its default (or that it is
    required), and every command's help ends with examples."""
    command = _commands()[name]
    text = command.format_help()
    assert "\nexamples:\n  flexdownscale " in text
    for action in command._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help, action.dest
        takes_value = action.nargs != 0
        optional = action.option_strings and not action.required
        optional = optional or action.nargs == "?"
        if takes_value and optional and not getattr(action, "usage_required", False):
            assert "default" in action.help, (name, action.dest, action.help)
    if name in ("downscale", "forecast"):
        sampler = command._option_string_actions["--sampler"].help
        assert all(choice in sampler for choice in ("ddim", "euler", "heun", "sde", "idff"))
        assert "flexdownscale info MODEL" in sampler


def test_progress_on_and_off_a_terminal_unless_quiet(here, fake_model, monkeypatch):
    """Progress is asked for unless --quiet, on a terminal or not: off a terminal (stderr piped
    into a file, a batch job's log) it is whole lines, not the bar's ``\\r`` frames (the display
    is chosen by ``_output.progress_bar``; tests/test_cli.py reads the lines)."""
    assert main(["downscale", "coarse.nc", "a.nc"]) == 0
    assert fake_model[-1]["progress"] is True

    class Terminal:
        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert main(["downscale", "coarse.nc", "b.nc"]) == 0
    assert fake_model[-1]["progress"] is True
    assert main(["downscale", "coarse.nc", "c.nc", "--quiet"]) == 0
    assert fake_model[-1]["progress"] is False
    assert os.path.exists("c.nc")
