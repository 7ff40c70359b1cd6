"""Model-folder names and paths: ``~`` on save, empty and misspelt names, offline advice."""

from __future__ import annotations

import pytest
import torch

from flexdownscale import errors
from flexdownscale.hub import check_target, read_model_header, resolve_model_path, shipped_models


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


# ---------------------------------------------------------------------------------------------
# an empty model name is refused (it was the working directory); a near miss of a shipped name
# is named


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_an_empty_model_name_is_refused_with_what_to_pass(home, blank):
    from flexdownscale import Downscaler

    with pytest.raises(errors.ModelFolderError) as info:
        resolve_model_path(blank)
    message = str(info.value)
    assert message.startswith(f"the model name is empty ({blank!r}); give a shipped model (")
    assert all(name in message for name in shipped_models())
    assert "folder's path" in message
    with pytest.raises(errors.ModelFolderError, match="the model name is empty"):
        Downscaler.from_pretrained(blank)


def test_the_accessor_refuses_an_empty_model_name(home):
    import numpy as np
    import xarray as xr

    import flexdownscale  # noqa: F401  (registers the .flex accessor)

    coarse = xr.Dataset(
        {"t2m": (("latitude", "longitude"), np.full((8, 12), 280.0), {"units": "K"})},
        coords={"latitude": np.arange(50.0, 58.0), "longitude": np.arange(-8.0, 4.0)},
    )
    with pytest.raises(errors.ModelFolderError, match="the model name is empty"):
        coarse.flex.downscale(model="", members=1)


def test_a_path_to_the_working_directory_is_still_a_path(home):
    # "." (or Path("")) is an explicit folder: only an empty *string* is refused
    from pathlib import Path

    assert resolve_model_path(".") == Path(".")
    assert resolve_model_path(Path("")) == Path(".")


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("era5-t2m-x5", "era5-t2m-x4"),
        ("era5_t2m_x4", "era5-t2m-x4"),
        ("ERA5-T2M-X4", "era5-t2m-x4"),
        ("kolmogorov-x4", "kolmogorov-x8"),
    ],
)
def test_a_misspelt_shipped_name_gets_a_suggestion(home, typed, meant):
    if meant not in shipped_models():
        pytest.skip(f"{meant} is not shipped in this install")
    with pytest.raises(errors.ModelFolderError) as info:
        resolve_model_path(typed)
    assert str(info.value).startswith(
        f"no model folder at {typed!r} (did you mean the shipped model {meant!r}?); give a local "
        "folder, a shipped model ("
    )


def test_an_unrelated_name_gets_no_suggestion(home):
    with pytest.raises(errors.ModelFolderError) as info:
        resolve_model_path("my-model")
    assert "did you mean" not in str(info.value)
    assert str(info.value).startswith("no model folder at 'my-model'; give a local folder")


# ---------------------------------------------------------------------------------------------
# a Hub id missing from the local cache: the advice fits the offline setting


def _hub_offline(monkeypatch, tmp_path, offline):
    """huggingface_hub's offline switch as it reads HF_HUB_OFFLINE, and an empty cache."""
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return hub


def test_offline_and_not_cached_says_how_to_get_the_folder(home, tmp_path, monkeypatch):
    _hub_offline(monkeypatch, tmp_path, True)  # the real snapshot_download: it never connects
    with pytest.raises(errors.ModelFolderError) as info:
        resolve_model_path("someone/t2m@v1")
    message = str(info.value)
    assert message.startswith(
        "no local folder 'someone/t2m@v1', and 'someone/t2m' at revision 'v1' is not in the local "
        "Hugging Face cache (HF_HUB_OFFLINE is set, so nothing is downloaded); download it on a "
        "machine with internet ("
    )
    assert "download someone/t2m --revision v1 --local-dir DIR), copy DIR here" in message
    assert "HF_HUB_OFFLINE=1 uses" not in message  # the advice to do what is already done
    assert "HF_HUB_OFFLINE=0" not in message  # huggingface_hub's own advice is not quoted
    assert "\n" not in message


def _not_cached_because(monkeypatch, hub, cause: Exception) -> None:
    """``snapshot_download`` fails as huggingface_hub's does when nothing is cached and the
    lookup met ``cause``: a ``LocalEntryNotFoundError`` raised from it."""
    from huggingface_hub.utils import LocalEntryNotFoundError

    def download(repo_id, allow_patterns):
        try:
            raise cause
        except type(cause) as err:
            raise LocalEntryNotFoundError("cannot find the snapshot; set HF_HUB_OFFLINE=0") from err

    monkeypatch.setattr(hub, "snapshot_download", download)


def test_unreachable_hub_and_not_cached_says_so(home, tmp_path, monkeypatch):
    hub = _hub_offline(monkeypatch, tmp_path, False)
    _not_cached_because(monkeypatch, hub, ConnectionError("[Errno -2] Name or service not known"))
    with pytest.raises(errors.ModelFolderError) as info:
        resolve_model_path("someone/t2m")
    assert str(info.value).startswith(
        "no local folder 'someone/t2m', and the Hugging Face Hub could not be reached "
        "(ConnectionError: [Errno -2] Name or service not known) with no copy of 'someone/t2m' "
        "in the local cache; check your network, or download it on a machine with internet ("
    )
    assert "HF_HUB_OFFLINE" not in str(info.value)
    # the message says the cause: huggingface_hub's chain is not printed under it (a notebook
    # cell showed 44 traceback parts, 24.6k characters), and stays reachable
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert type(info.value.hub_error).__name__ == "LocalEntryNotFoundError"
    assert isinstance(info.value.hub_error.__cause__, ConnectionError)


def test_a_hub_server_error_is_not_called_unreachable(home, tmp_path, monkeypatch):
    """A 5xx answer reaching the cache lookup was worded "could not be reached" (session 22)."""
    hub = _hub_offline(monkeypatch, tmp_path, False)
    from types import SimpleNamespace

    class ServerError(Exception):
        response = SimpleNamespace(status_code=503)

    cause = ServerError("503 Server Error: Service Unavailable for url: https://hf.co/x")
    _not_cached_because(monkeypatch, hub, cause)
    with pytest.raises(errors.ModelFolderError) as info:
        resolve_model_path("someone/t2m")
    message = str(info.value)
    assert message.startswith(
        "no local folder 'someone/t2m', and the Hugging Face Hub answered with a server error "
        "(HTTP 503; ServerError: 503 Server Error: Service Unavailable for url: https://hf.co/x) "
        "with no copy of 'someone/t2m' in the local cache; the Hub is having trouble, not your "
        "network: try again later, or download it on a machine with internet ("
    )
    assert "could not be reached" not in message


@pytest.mark.parametrize(("version", "cli"), [("0.30.2", "huggingface-cli"), ("1.0.0", "hf")])
def test_the_download_command_fits_the_installed_huggingface_hub(monkeypatch, version, cli):
    hub = pytest.importorskip("huggingface_hub")
    from flexdownscale.hub import _download_command

    monkeypatch.setattr(hub, "__version__", version)
    assert _download_command("someone/t2m", None) == f"{cli} download someone/t2m --local-dir DIR"


def test_a_local_folder_is_taken_before_the_shipped_model_of_its_name(home):
    # documented order: an explicit name that is an existing folder is that folder
    import shutil
    from pathlib import Path

    shutil.copytree(shipped_models()["era5-t2m-x4"], "era5-t2m-x4")
    assert resolve_model_path("era5-t2m-x4") == Path("era5-t2m-x4")
    assert resolve_model_path("kolmogorov-x8") == shipped_models()["kolmogorov-x8"]


@pytest.mark.parametrize(
    ("written", "repo_id", "revision"),
    [
        ("hf://someone/t2m", "someone/t2m", None),
        ("hf://someone/t2m@v1", "someone/t2m", "v1"),
        ("https://huggingface.co/someone/t2m", "someone/t2m", None),
        ("https://huggingface.co/someone/t2m/", "someone/t2m", None),
        ("https://huggingface.co/someone/t2m/tree/v1", "someone/t2m", "v1"),
        ("huggingface.co/someone/t2m", "someone/t2m", None),
    ],
)
def test_hub_ids_written_as_addresses_are_downloaded(home, monkeypatch, written, repo_id, revision):
    # the hf:// form of huggingface_hub's file system and the model page's address were a
    # generic "no model folder" error
    hub = pytest.importorskip("huggingface_hub")
    calls = []

    def download(repo_id, allow_patterns, **pinned):
        calls.append((repo_id, pinned.get("revision")))
        return str(home)

    monkeypatch.setattr(hub, "snapshot_download", download)
    assert resolve_model_path(written) == home
    assert calls == [(repo_id, revision)]


@pytest.mark.parametrize(
    "written", ["hf://datasets/someone/t2m", "https://huggingface.co/spaces/someone/app"]
)
def test_hub_datasets_and_spaces_are_not_models(home, written):
    with pytest.raises(errors.ModelFolderError, match="no model folder at"):
        resolve_model_path(written)
