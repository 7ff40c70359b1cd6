"""Output paths that are symbolic links are written through, as ``cp`` and the shell's ``>``
write: the file or zarr store the link points to gets the new output and the link stays.

Before, ``downscale c.nc link.nc --overwrite`` replaced the link by a file (its target kept the
old output) and a link to a zarr store was refused with "Not a directory"; the atomic writers of
``evaluate`` and the demo replaced a linked report file the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_pipeline import era5_pair, make_downscaler

from flexdownscale import cli
from flexdownscale._output import write_text_atomically
from flexdownscale.cli import main


def _small(value: float) -> xr.Dataset:
    ds = xr.Dataset({"t": (("y", "x"), np.full((3, 4), value))})
    ds.attrs["flexdownscale_version"] = "test"  # an earlier output of ours: replaceable
    return ds


def _hidden_leftovers(*folders: Path) -> list[str]:
    return [p.name for f in folders for p in f.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_a_linked_output_is_written_through_the_link(tmp_path, suffix):
    real_dir, link_dir = tmp_path / "store", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    target, link = real_dir / f"out{suffix}", link_dir / f"out{suffix}"
    cli._write_output(_small(1.0), str(target))
    link.symlink_to(target)
    cli._check_output(str(tmp_path / "in.nc"), str(link), overwrite=True)
    cli._write_output(_small(2.0), str(link))
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    opener = xr.open_zarr if suffix == ".zarr" else xr.open_dataset
    with opener(target) as written:
        assert float(written["t"].max()) == 2.0
    assert _hidden_leftovers(real_dir, link_dir) == []


def test_a_dangling_link_gets_its_target_written(tmp_path):
    target, link = tmp_path / "later.nc", tmp_path / "link.nc"
    link.symlink_to(target)  # points at a file that does not exist yet
    cli._check_output(str(tmp_path / "in.nc"), str(link))
    cli._write_output(_small(3.0), str(link))
    assert link.is_symlink()
    with xr.open_dataset(target) as written:
        assert float(written["t"].min()) == 3.0


def test_atomic_report_files_are_written_through_a_link(tmp_path):
    target, link = tmp_path / "kept" / "metrics.md", tmp_path / "metrics.md"
    target.parent.mkdir()
    target.write_text("old\n", encoding="utf-8")
    link.symlink_to(target)
    write_text_atomically(link, "new\n")
    assert link.is_symlink()
    assert target.read_text(encoding="utf-8") == "new\n"
    assert _hidden_leftovers(tmp_path, target.parent) == []


def test_downscale_command_through_a_linked_output(shared_data, tmp_path, capsys):
    fine, coarse = era5_pair(shared_data, times=1)
    coarse.to_netcdf(tmp_path / "coarse.nc")
    model = make_downscaler(fine).save_pretrained(tmp_path / "model")
    (tmp_path / "runs").mkdir()
    target, link = tmp_path / "runs" / "out.nc", tmp_path / "latest.nc"
    args = ["--model", str(model), "--factor", "4", "--steps", "2", "--quiet"]
    assert main(["downscale", str(tmp_path / "coarse.nc"), str(target), *args]) == 0
    link.symlink_to(target)
    before = target.stat().st_mtime_ns
    assert main(["downscale", str(tmp_path / "coarse.nc"), str(link), *args, "--overwrite"]) == 0
    capsys.readouterr()
    assert link.is_symlink()
    assert target.stat().st_mtime_ns >= before
    with xr.open_dataset(link) as via_link:
        assert "t2m" in via_link
