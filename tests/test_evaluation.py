"""``flexdownscale.evaluation``: the work of ``flexdownscale evaluate`` as one Python call.

The command line parses its options and prints what :func:`evaluate` returns, the text it wrote
to ``metrics.md``; the module imports neither the command line nor torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from evaluate_files import write_noisy_pair

from flexdownscale.cli import main
from flexdownscale.errors import ConfigError
from flexdownscale.evaluation import evaluate


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory) -> Path:
    """truth.nc (three ERA5 hours, 16 x 24) and pred.nc (two noisy members of it)."""
    return write_noisy_pair(shared_data, tmp_path_factory.mktemp("evaluation"), 3)


def test_the_command_prints_what_evaluate_wrote(files, capsys):
    """The command's output is the call's report, which is metrics.md, for paths given as
    strings or as paths (the report names them as given)."""
    argv = ["evaluate", str(files / "pred.nc"), str(files / "truth.nc"), "--out"]
    assert main([*argv, str(files / "cli"), "--time-chunk", "2"]) == 0
    printed = capsys.readouterr().out
    report = evaluate(files / "pred.nc", files / "truth.nc", out=files / "py", time_chunk=2)
    assert report == printed
    assert (files / "py" / "metrics.md").read_text(encoding="utf-8") == report
    assert report.startswith(f"# Evaluation of {files / 'pred.nc'} against {files / 'truth.nc'}")
    for name in ("metrics.json", "spectra_t2m.png", "rank_histogram_t2m.png"):
        assert (files / "py" / name).read_bytes() == (files / "cli" / name).read_bytes()


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_a_time_chunk_that_is_no_positive_whole_number_is_refused(files, steps):
    """The command's parser refuses these; the Python call says so itself (not a crash in the
    chunking, and before anything is read or written)."""
    with pytest.raises(ConfigError, match=r"time_chunk = .* must be a positive whole number"):
        evaluate(files / "pred.nc", files / "truth.nc", out=files / "bad", time_chunk=steps)
    assert not (files / "bad").exists()


def test_the_module_imports_neither_the_command_line_nor_torch():
    code = (
        "import sys, flexdownscale.evaluation; "
        "assert 'flexdownscale.cli' not in sys.modules, 'cli'; "
        "assert 'torch' not in sys.modules, 'torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
