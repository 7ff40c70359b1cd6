"""Model-folder names and paths: ``~`` on save, empty and misspelt names, offline advice."""

from __future__ import annotations

import pytest
import torch

from flexdownscale import errors
from flexdownscale.hub import check_target, read_model_header


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A scratch home folder (``~``) and a separate working directory."""
    home = tmp_path / "home"
    home.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home


# ---------------------------------------------------------------------------------------------
# "~" is expanded when saving, as it is when loading


def test_save_pretrained_expands_home_and_loads_back(home):
    from flexdownscale import Downscaler

    down = Downscaler.from_pretrained("era5-t2m-x4")
    written = down.save_pretrained("~/models/my-copy")
    assert written == home / "models" / "my-copy"
    assert (written / "config.json").is_file()
    assert not (home.parent / "cwd" / "~").exists()  # no folder literally named "~"
    again = Downscaler.from_pretrained("~/models/my-copy")
    assert again.variables == down.variables
    mine, theirs = down.backbone.state_dict(), again.backbone.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert read_model_header("~/models/my-copy").path == written
    # the existing folder is found under "~" too: refused without overwrite, replaced with it
    with pytest.raises(errors.ModelFolderError, match=f"{home}/models/my-copy.*already exists"):
        check_target("~/models/my-copy")
    assert down.save_pretrained("~/models/my-copy", overwrite=True) == written


def test_import_foreign_checkpoint_expands_home(home):
    from safetensors.torch import save_file

    from flexdownscale.hub import import_foreign_checkpoint

    save_file({"w": torch.arange(3.0)}, home / "ckpt.safetensors")
    state = import_foreign_checkpoint("~/ckpt.safetensors")
    assert torch.equal(state["w"], torch.arange(3.0))


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_save_path_is_refused(home, blank):
    from flexdownscale import Downscaler

    down = Downscaler.from_pretrained("era5-t2m-x4")
    with pytest.raises(errors.ModelFolderError, match=r"path is empty .*nothing was written"):
        down.save_pretrained(blank, overwrite=True)
    assert list((home.parent / "cwd").iterdir()) == []
