"""The command line's words for a condition whose sources disagree.

``flexdownscale downscale`` on a file whose scalar coordinate ``reynolds_number`` (4000) and
global attribute (1000) disagree warned with the pipeline's Python fix, ``ds.attrs.pop(
'reynolds_number') (or ds.attrs['reynolds_number'] = 4000.0)``, which a command-line user cannot
apply. :func:`~flexdownscale.cli.cli_spelling` now gives the edit of the file with NCO's
``ncatted`` (``-a NAME,global,d,,`` deletes a global attribute, ``-a NAME,VAR,o,d,VALUE``
overwrites one with a double)."""

from __future__ import annotations

import sys
import warnings

import pytest
import xarray as xr

from flexdownscale.cli import cli_spelling, console_main
from flexdownscale.data import degrade
from flexdownscale.demo import open_sample
from flexdownscale.errors import FlexDownscaleWarning
from flexdownscale.pipeline import Downscaler

RE = "reynolds_number"


@pytest.fixture(scope="module")
def coarse() -> xr.Dataset:
    """One snapshot at Re = 4000 (a scalar coordinate) with a stale global attribute 1000."""
    kf = degrade(open_sample("kolmogorov"), 8)
    return kf.sel({RE: 4000.0}).assign_attrs({RE: 1000.0})


def _command(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["flexdownscale", *argv])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert console_main() == 0


def test_the_command_gives_the_ncatted_edit(coarse, tmp_path, capsys, monkeypatch):
    path = tmp_path / "re.nc"
    coarse.to_netcdf(path)
    argv = ["downscale", str(path), str(tmp_path / "o.nc"), "--model", "kolmogorov-x8"]
    argv += ["--members", "1", "--steps", "1", "--quiet"]
    _command(argv, monkeypatch)
    err = capsys.readouterr().err
    assert err.startswith("flexdownscale downscale: warning: the input disagrees on")
    assert err.count("\n") == 1
    assert (
        "drop or update the other: delete the input file's global attribute 'reynolds_number' "
        "(with NCO, for example: ncatted -a reynolds_number,global,d,, FILE) or set it to "
        "4000.0 (ncatted -a reynolds_number,global,o,d,4000.0 FILE); if not, pass "
        "--condition <value>"
    ) in err
    assert "ds.attrs" not in err
    assert "xr.concat" not in err
    # the file with the attribute deleted (what the ncatted line does) runs silently
    fixed = tmp_path / "fixed.nc"
    with xr.open_dataset(path) as ds:
        ds.load()
    del ds.attrs[RE]
    ds.to_netcdf(fixed)
    argv[1:3] = [str(fixed), str(tmp_path / "o2.nc")]
    _command(argv, monkeypatch)
    assert capsys.readouterr().err == ""


def test_a_variables_attribute_is_named_with_its_variable(coarse):
    """The stale value on the variable (a DataArray's own attribute): ncatted names the
    variable instead of ``global``."""
    sel = coarse.copy()
    sel.attrs = {k: v for k, v in sel.attrs.items() if k != RE}
    sel["vorticity"].attrs[RE] = 1000.0
    model = Downscaler.from_pretrained("kolmogorov-x8")
    with pytest.warns(FlexDownscaleWarning, match="disagrees") as caught:
        model(sel, members=None, steps=1, seed=0, progress=False)
    said = cli_spelling(str(caught[0].message))
    assert (
        "delete the attribute 'reynolds_number' of variable 'vorticity' in the input file "
        "(with NCO, for example: ncatted -a reynolds_number,vorticity,d,, FILE) or set it to "
        "4000.0 (ncatted -a reynolds_number,vorticity,o,d,4000.0 FILE)"
    ) in said
    assert ".attrs" not in said
