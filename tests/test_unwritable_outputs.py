"""The one message of an output folder that cannot be made or written in (the command line's
output, the demo's folder, evaluate's report): what to do is told apart by the cause's errno
(a full disk or quota, a folder one cannot write in, a missing folder, anything else)."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from flexdownscale.errors import DataError

#: errno -> the end of the message for a folder 'F'.
FIXES = {
    errno.ENOSPC: "; free space on the disk of 'F' or write to another disk",
    errno.EDQUOT: (
        "; free space within your disk quota on the disk of 'F' (or have it raised) or write "
        "to another disk"
    ),
    errno.EACCES: "; write to a folder you can write to, or fix that folder's permissions",
    errno.EPERM: "; write to a folder you can write to, or fix that folder's permissions",
    errno.EROFS: "; write to a folder you can write to, or fix that folder's permissions",
    errno.ENOENT: "; the folder 'F' does not exist: make it (mkdir -p F) or write to a folder "
    "that exists",
    errno.ENOTDIR: "",  # any other cause: the system's message alone
    errno.EIO: "",
}


@pytest.mark.parametrize("code", list(FIXES), ids=errno.errorcode.get)
def test_the_fix_is_told_apart_by_the_cause(code):
    from flexdownscale._output import unwritable_folder

    err = OSError(code, os.strerror(code), "F/.o.nc.x.partial")
    made = unwritable_folder("write 'F/o.nc'", err, "F")
    assert isinstance(made, DataError)
    assert str(made) == f"cannot write 'F/o.nc': {os.strerror(code)}{FIXES[code]}"
    doing = unwritable_folder("write 'F/o.nc'", err, "F", "creating a file in 'F'")
    assert str(doing) == (
        f"cannot write 'F/o.nc': creating a file in 'F' failed ({os.strerror(code)}){FIXES[code]}"
    )


SITE_CODES = [errno.ENOSPC, errno.EACCES, errno.ENOENT, errno.ENOTDIR]


@pytest.mark.parametrize("code", SITE_CODES, ids=errno.errorcode.get)
def test_the_command_lines_output(code, tmp_path, monkeypatch, capsys):
    """A full disk is not told to "give a folder you can write to"."""
    from flexdownscale.cli import main

    real = tempfile.mkdtemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path:
            raise OSError(code, os.strerror(code), str(Path(dir) / ".o.nc.x.probe"))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    target = tmp_path / "o.nc"
    (tmp_path / "in.nc").write_bytes(b"")
    assert main(["downscale", str(tmp_path / "in.nc"), str(target), "--quiet"]) == 2
    fix = FIXES[code].replace("'F'", repr(str(tmp_path))).replace(" F)", f" {tmp_path})")
    assert capsys.readouterr().err == (
        f"flexdownscale downscale: error: cannot write the output {str(target)!r}: creating a "
        f"file in its folder {str(tmp_path)!r} failed ({os.strerror(code)}){fix}\n"
    )


@pytest.mark.parametrize("code", SITE_CODES, ids=errno.errorcode.get)
def test_the_demos_folder(code, tmp_path, monkeypatch):
    from flexdownscale.demo import run_demo

    out = tmp_path / "demo"
    real = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self == out:
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(DataError) as caught:
        run_demo(out)
    fix = FIXES[code].replace("'F'", repr(str(tmp_path))).replace(" F)", f" {tmp_path})")
    assert str(caught.value) == (
        f"cannot make the output folder {str(out)!r}: {os.strerror(code)}{fix}"
    )
    assert not out.exists()


@pytest.fixture(scope="module")
def pair(shared_data, tmp_path_factory) -> Path:
    from evaluate_files import write_noisy_pair

    return write_noisy_pair(shared_data, tmp_path_factory.mktemp("unwritable_report"), 2)


@pytest.mark.parametrize("code", SITE_CODES, ids=errno.errorcode.get)
def test_evaluates_report_folder(code, pair, tmp_path, monkeypatch):
    from flexdownscale.evaluation import evaluate

    out = tmp_path / "ev"
    real = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self == out:
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(DataError) as caught:
        evaluate(pair / "pred.nc", pair / "truth.nc", out=str(out))
    fix = FIXES[code].replace("'F'", repr(str(tmp_path))).replace(" F)", f" {tmp_path})")
    assert str(caught.value) == f"cannot use {str(out)!r}: {os.strerror(code)}{fix}"
