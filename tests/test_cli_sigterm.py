"""SIGTERM (what ``kill``, ``timeout`` and SLURM send) stops a command as Ctrl-C does: one line
saying what is left, no traceback, no hidden temporary output or half-made folder, and the
process ends by SIGTERM (the shell's status 143). A SIGTERM ignored or handled by whoever
started the command is left alone.

Each command runs in a child process whose work waits at a known point (a lazy chunk, a figure,
a demo case) until the test sends SIGTERM. The children inherit SIGINT ignored, as a test run
started in the background (``cmd &``) does: SIGTERM's handling must not depend on SIGINT's.
"""

from __future__ import annotations

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

from flexdownscale import cli

PACKAGE_ROOT = Path(cli.__file__).resolve().parents[1]

#: Prints RUNNING once a child's work waits (then SIGTERM comes), then waits ``seconds``
#: (a lazy chunk, in one of dask's threads, cannot be stopped: the command waits for it).
WAIT = """
def wait(*args, seconds=30, **kwargs):
    sys.stdout.write("RUNNING\\n")
    sys.stdout.flush()
    time.sleep(seconds)
"""


def _field(members: int | None = None) -> xr.Dataset:
    """Three hours of a small 2 m temperature field on a latitude / longitude grid."""
    rng = np.random.default_rng(0)
    lat = np.arange(50.0, 54.0, 0.25)
    lon = np.arange(-4.0, 4.0, 0.25)
    shape = (3, lat.size, lon.size) if members is None else (members, 3, lat.size, lon.size)
    dims = (
        ("time", "latitude", "longitude")
        if members is None
        else ("member", "time", "latitude", "longitude")
    )
    values = 280 + np.cumsum(rng.normal(size=shape), axis=-1).astype("float32")
    t2m = xr.DataArray(
        values,
        dims=dims,
        coords={
            "time": pd.date_range("2019-03-19", periods=3, freq="h"),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
        attrs={"units": "K"},
    )
    return xr.Dataset({"t2m": t2m})


def _ignore_sigint_default_sigterm() -> None:
    """In a child before exec: SIGINT ignored (as a background test run inherits it), SIGTERM
    at its default."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _terminated(folder: Path, setup: str, argv: list[str]) -> tuple[int, str]:
    """Run the command ``argv`` in a child in ``folder`` after ``setup`` (which makes it wait
    at one point, printing RUNNING), send SIGTERM once it waits; (its return code, stderr)."""
    child = "import sys, time\nfrom flexdownscale import cli\n" + WAIT + textwrap.dedent(setup)
    child += f"\nsys.argv = {['flexdownscale', *argv]!r}\nsys.exit(cli.console_main())\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(PACKAGE_ROOT)),
        preexec_fn=_ignore_sigint_default_sigterm,
    )
    assert proc.stdout is not None
    try:
        assert "RUNNING" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    return proc.returncode, err


@pytest.mark.slow
def test_sigterm_stops_downscale_and_removes_its_partial_output(tmp_path):
    _field().to_netcdf(tmp_path / "coarse.nc")
    setup = """
    import dask.array as da
    from flexdownscale import pipeline

    def slow(block):
        wait(seconds=4)
        return block

    def downscaler_for(model, names, **kwargs):
        def run(ds, **options):
            out = ds.copy()
            data = ds["t2m"].data
            out["t2m"] = ds["t2m"].copy(data=da.map_blocks(slow, data, meta=data._meta))
            return out.assign_attrs(flexdownscale_version="test")
        return run

    pipeline.downscaler_for = downscaler_for
    """
    argv = ["downscale", "coarse.nc", "fine.nc", "--time-chunk", "3", "--quiet"]
    code, err = _terminated(tmp_path, setup, argv)
    assert code == -signal.SIGTERM
    assert err.splitlines()[-1] == (
        "flexdownscale downscale: stopped by SIGTERM; the output was not written: 'fine.nc' was "
        "not created"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coarse.nc"]  # no .partial folder


def test_sigterm_stops_evaluate_and_leaves_no_report(tmp_path):
    truth = _field()
    truth.to_netcdf(tmp_path / "truth.nc")
    _field(members=2).to_netcdf(tmp_path / "pred.nc")
    setup = """
    from flexdownscale import evaluation

    evaluation.write_figure = wait
    """
    code, err = _terminated(tmp_path, setup, ["evaluate", "pred.nc", "truth.nc", "--out", "r"])
    assert code == -signal.SIGTERM
    assert err.splitlines()[-1] == (
        "flexdownscale evaluate: stopped by SIGTERM; the report was not written: --out 'r' was "
        "not created"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.nc", "truth.nc"]


def test_sigterm_stops_the_demo_and_removes_the_folder_it_made(tmp_path):
    setup = """
    from flexdownscale import demo

    def cases(out, chosen, **kwargs):
        (out / "era5_t2m_x4.nc").write_bytes(b"part of a demo")
        wait()

    demo._run_cases = cases
    """
    code, err = _terminated(tmp_path, setup, ["demo", "--out", "d"])
    assert code == -signal.SIGTERM
    assert err.splitlines()[-1] == (
        "flexdownscale demo: stopped by SIGTERM; the demo was not written: 'd' was not created"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_sigterm_not_at_its_default_is_left_alone_and_handlers_are_put_back(monkeypatch):
    """Nothing is installed over an ignored SIGTERM (``nohup``-like launchers) or a caller's
    handler, and the handlers found are there again after the command."""
    seen = []

    def command(args):
        seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))
        return 0

    def callers(signum, frame):  # pragma: no cover - never called
        pass

    monkeypatch.setattr(cli, "_command", command)
    monkeypatch.setattr(sys, "argv", ["flexdownscale", "info", "x"])
    found = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        for sigint, sigterm in [
            (signal.SIG_IGN, signal.SIG_IGN),
            (callers, callers),
            (signal.default_int_handler, signal.SIG_DFL),
        ]:
            signal.signal(signal.SIGINT, sigint)
            signal.signal(signal.SIGTERM, sigterm)
            assert cli.console_main() == 0
            assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == (
                sigint,
                sigterm,
            )
    finally:
        signal.signal(signal.SIGINT, found[0])
        signal.signal(signal.SIGTERM, found[1])
    assert seen[0] == (signal.SIG_IGN, signal.SIG_IGN)
    assert seen[1] == (callers, callers)
    assert seen[2][0] is seen[2][1]  # one handler of the command's for both
    assert seen[2][1] not in (signal.SIG_DFL, signal.SIG_IGN)
