"""``progress=True`` where stderr is not a terminal (a log file, a pipe, a CI log): the
Downscaler, the Forecaster and the demo print a start line, a line at each quarter and an end
line, as training does, instead of tqdm's carriage-return frames piling up on one line."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from flexdownscale import _output
from flexdownscale._output import PlainProgress

#: A line's time in seconds.
SECONDS = re.compile(r"\d+\.\d s")


def _lines(log: Path) -> list[str]:
    text = log.read_bytes().decode()  # not read_text: it reads "\r" as a line end
    assert "\r" not in text  # no bar frames
    assert "\x1b" not in text  # no cursor moves
    return [SECONDS.sub("T s", line) for line in text.splitlines()]


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """stderr redirected to the file ``path``, as ``2> run.log`` does."""
    with path.open("w") as f, contextlib.redirect_stderr(f):
        yield


def test_plain_lines_start_quarters_end(tmp_path):
    log = tmp_path / "run.log"
    with _stderr_to(log):
        _count_to_12_and_stop_at_3()
    assert _lines(log) == [
        "downscaling: step 0/12",
        "downscaling: step 3/12, T s",
        "downscaling: step 6/12, T s",
        "downscaling: step 9/12, T s",
        "downscaling: step 12/12, done in T s",
        "forecasting: lead 0/8",
        "forecasting: lead 3/8, T s",
        "forecasting: lead 3/8 (member 2), stopped in T s",
    ]


def _count_to_12_and_stop_at_3() -> None:
    done = PlainProgress(12, "downscaling", "step")
    for _ in range(12):
        done.update()
    done.close()
    done.close()  # said once
    stopped = PlainProgress(8, "forecasting", "lead")
    stopped.update(3)
    stopped.set_postfix_str("member 2")
    stopped.close()


def test_a_terminal_still_gets_the_bar(monkeypatch):
    monkeypatch.setattr(_output, "stderr_is_terminal", lambda: True)
    bar = _output.progress_bar(3, "demo", "step")
    try:
        assert not isinstance(bar, PlainProgress)
    finally:
        bar.close()
    monkeypatch.setattr(_output, "stderr_is_terminal", lambda: False)
    assert isinstance(_output.progress_bar(3, "demo", "step"), PlainProgress)


def test_the_downscaler(shared_data, tmp_path):
    from test_pipeline import era5_pair, make_downscaler

    fine, coarse = era5_pair(shared_data, times=8, ny=16, nx=16)
    downscaler, log = make_downscaler(fine), tmp_path / "run.log"
    with _stderr_to(log):
        downscaler(coarse, members=2, progress=True, batch_size=2)
    lines = _lines(log)
    assert lines[0] == "downscaling: step 0/8"
    assert lines[-1] == "downscaling: step 8/8, done in T s"
    assert 2 <= len(lines) <= 5
    assert all(re.fullmatch(r"downscaling: step \d/8, T s", line) for line in lines[1:-1])


def test_the_forecaster(tmp_path):
    from test_forecast_fixes import box, box_grid, tiny_forecaster

    forecaster, log = tiny_forecaster(box_grid()), tmp_path / "run.log"
    with _stderr_to(log):
        forecaster(box(), lead_steps=4, members=2, progress=True)
    assert _lines(log) == [
        "forecasting: lead 0/4",
        "forecasting: lead 1/4, T s",
        "forecasting: lead 2/4, T s",
        "forecasting: lead 3/4, T s",
        "forecasting: lead 4/4, done in T s",
    ]


def test_the_demo(tmp_path, monkeypatch):
    """The demo's steps, with each case's work replaced by nothing."""
    from flexdownscale import demo

    monkeypatch.setattr(demo, "load_case", lambda case: {case.variable: _Field()})
    monkeypatch.setattr(demo, "_downscale_case", lambda *a, **k: (None, None, None))
    monkeypatch.setattr(demo, "_score", lambda *a, **k: {})
    monkeypatch.setattr(demo, "_plots", lambda *a, **k: [])
    monkeypatch.setattr(demo, "_write_netcdf", lambda *a, **k: tmp_path / "x.nc")
    chosen = demo.CASES[:2]
    log = tmp_path / "run.log"
    with _stderr_to(log):
        demo._run_cases(tmp_path, chosen, members=2, seed=0, progress=True)
    first = chosen[0].name
    assert _lines(log) == [
        "demo: step 0/10",
        f"demo: step 3/10 ({first}: score), T s",
        f"demo: step 5/10 ({first}: write), T s",
        f"demo: step 8/10 ({chosen[1].name}: score), T s",
        "demo: step 10/10 (" + chosen[1].name + ": write), done in T s",
    ]


class _Field:
    attrs = {"units": "K"}  # noqa: RUF012 - a stand-in's class attribute


def test_an_interrupted_downscaling_says_where_it_stopped(shared_data, tmp_path, monkeypatch):
    """An interrupt (or an error) inside the sampling loop closes the progress display: a
    log's last line says where it stopped (before: it ended at the start line, and a notebook's
    bar stayed among tqdm's live bars)."""
    from test_pipeline import era5_pair, make_downscaler

    import flexdownscale.pipeline as pipeline

    fine, coarse = era5_pair(shared_data, times=8, ny=16, nx=16)
    downscaler, log = make_downscaler(fine), tmp_path / "run.log"
    calls = []
    upsample = pipeline.upsample_array

    def interrupted_at_the_third_group(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return upsample(*args, **kwargs)

    monkeypatch.setattr(pipeline, "upsample_array", interrupted_at_the_third_group)
    with _stderr_to(log), contextlib.suppress(KeyboardInterrupt):
        downscaler(coarse, members=2, progress=True, batch_size=2)
    lines = _lines(log)
    assert lines[0] == "downscaling: step 0/8"
    assert lines[-1] == "downscaling: step 2/8, stopped in T s"


def test_a_notebook_without_ipywidgets_gets_no_tqdm_warning(monkeypatch):
    """In a Jupyter kernel without ipywidgets, tqdm.auto warned "IProgress not found" (a
    TqdmWarning pointing at tqdm's file) at the first progress display, then used tqdm.std's
    bar anyway: that bar class is now taken directly."""
    import sys
    import types
    import warnings

    import tqdm.std

    class ZMQInteractiveShell:  # what a Jupyter kernel's get_ipython() returns
        pass

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = ZMQInteractiveShell
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("zmqshell"))
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    for name in ("tqdm.auto", "tqdm.autonotebook"):  # imported afresh, as in a new kernel
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(_output.importlib.util, "find_spec", lambda name, *a: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _output.bar_class() is tqdm.std.tqdm
        _output.progress_bar(3, "downscaling", "step").close()
    assert [str(w.message) for w in caught] == []


def test_progress_asked_for_with_lazy_input_is_answered(shared_data, tmp_path):
    """``progress=True`` with dask-backed input showed nothing and said nothing (the work runs
    at .compute()): it now warns with the way to see it; the default stays quiet."""
    import warnings

    import pytest
    from test_pipeline import era5_pair, make_downscaler

    from flexdownscale.errors import FlexDownscaleWarning

    fine, coarse = era5_pair(shared_data, times=2, ny=16, nx=16)
    downscaler, lazy = make_downscaler(fine), coarse.chunk(time=1)
    with pytest.warns(FlexDownscaleWarning, match=r"dask\.diagnostics\.ProgressBar") as caught:
        downscaler(lazy, members=1, progress=True)
    assert caught[0].filename == __file__  # said at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        downscaler(lazy, members=1)
        downscaler(lazy, members=1, progress=False)
