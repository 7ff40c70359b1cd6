"""``python -m flexdownscale.train`` prints the package's warnings as lines of the command (no
line of the user's leads to them: Python's format pointed at ``<frozen runpy>``)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import xarray as xr

from flexdownscale import train
from flexdownscale.errors import SkillWarning

ROOT = Path(__file__).resolve().parents[1]


def test_package_warning_is_a_line_of_the_command(tmp_path, shared_data):
    with xr.open_dataset(shared_data / "kolmogorov/kf_re1000.nc") as raw:
        window = raw.isel(x=slice(0, 64), y=slice(0, 64), time=slice(0, 2)).load()
    window.to_netcdf(tmp_path / "window.nc")  # keeps periodic = "true": warns when it opens
    (tmp_path / "run.toml").write_text(
        "\n".join(
            [
                f'run_dir = "{tmp_path / "run"}"',
                'logger = "none"',
                "[model]",
                'preset = "tiny"',
                "[data]",
                f'paths = ["{tmp_path / "window.nc"}"]',
                'variables = ["vorticity"]',
                "factor = 8",
                "crop_size = 128",  # too large: the run stops once the data are open
                'split_dim = "trajectory"',
                "train = [0, 2]",
                "validation = [3, 3]",
            ]
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "flexdownscale.train", "--config", str(tmp_path / "run.toml")],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "runpy" not in result.stderr
    assert lines[0].startswith("flexdownscale.train: warning: '")
    assert "opposite edges are not neighbours" in lines[0]
    assert lines[-1].startswith("flexdownscale.train: error: data.crop_size = 128")
    assert len(lines) == 2  # one line each


def test_other_warnings_keep_python_format(capsys):
    seen = []

    def default(*args):
        seen.append(args)

    warning = RuntimeWarning("Mean of empty slice")
    train._show_warning(warning, RuntimeWarning, "np.py", 7, default=default)
    assert seen == [(warning, RuntimeWarning, "np.py", 7, None, None)]
    train._show_warning(SkillWarning("a\n  b"), SkillWarning, "x.py", 1, default=default)
    assert capsys.readouterr().err == "flexdownscale.train: warning: a b\n"
    assert len(seen) == 1


def test_command_line_main_restores_warning_display(monkeypatch, capsys):
    before = warnings.showwarning

    def fake_main():
        warnings.warn("check the crops", SkillWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(train, "main", fake_main)
    assert train._command_line_main() == 0
    assert capsys.readouterr().err == "flexdownscale.train: warning: check the crops\n"
    assert warnings.showwarning is before
