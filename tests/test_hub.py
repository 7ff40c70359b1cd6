from __future__ import annotations

import json
import os

import pytest
import torch

from flexdownscale import errors
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import Normalizer, VariableStats
from flexdownscale.hub import (
    import_foreign_checkpoint,
    load_model_folder,
    read_model_header,
    resolve_model_path,
    save_model_folder,
)


def _save(path, **overrides):
    state = {"a.weight": torch.randn(3, 4), "b.bias": torch.arange(5, dtype=torch.float32)}
    kwargs = dict(
        state_dict=state,
        model=ModelConfig(preset="tiny", physical_condition=True),
        diffusion=DiffusionConfig(objective="flow"),
        sampler=SamplerConfig(sampler="euler", steps=8),
        variables=["t2m"],
        units={"t2m": "K"},
        factor=4,
        normalization=Normalizer({"t2m": VariableStats(mean=280.0, std=5.0)}).to_dict(),
        grid={"spacing": [0.25, 0.25]},
        card="# test model\n",
    )
    kwargs.update(overrides)
    return state, save_model_folder(path, **kwargs)


def test_round_trip(tmp_path):
    state, path = _save(tmp_path / "m")
    folder = load_model_folder(path)
    assert folder.model == ModelConfig(preset="tiny", physical_condition=True)
    assert folder.diffusion.objective == "flow"
    assert folder.sampler.steps == 8
    assert folder.variables == ("t2m",)
    assert folder.units == {"t2m": "K"}
    assert folder.factor == 4
    assert Normalizer.from_dict(folder.normalization).stats["t2m"].std == 5.0
    for key, value in state.items():
        assert torch.equal(folder.state_dict[key], value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    # the usual permissions (not mkdtemp's 0700): a shared model folder is readable by others
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (path / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def test_bf16_export(tmp_path):
    _, path = _save(tmp_path / "m", dtype=torch.bfloat16)
    folder = load_model_folder(path)
    assert folder.state_dict["a.weight"].dtype == torch.bfloat16
    assert json.loads((path / "config.json").read_text())["weights_dtype"] == "torch.bfloat16"


def test_weights_dtype_is_the_dtype_of_most_weights(tmp_path):
    """A bfloat16 export with a float32 buffer first (the time frequencies) says bfloat16."""
    state = {
        "enc_time.freqs": torch.randn(8),
        "a.weight": torch.randn(16, 16).bfloat16(),
        "b.bias": torch.randn(16).bfloat16(),
        "steps": torch.arange(3),
    }
    _, path = _save(tmp_path / "m", state_dict=state)
    assert json.loads((path / "config.json").read_text())["weights_dtype"] == "torch.bfloat16"


def test_refuses_to_overwrite_without_asking(tmp_path):
    _save(tmp_path / "m")
    with pytest.raises(errors.ModelFolderError, match="already exists"):
        _save(tmp_path / "m")
    _, path = _save(tmp_path / "m", factor=8, overwrite=True)
    assert load_model_folder(path).factor == 8


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "grid.json", "README.md"])
def test_missing_file(tmp_path, missing):
    _, path = _save(tmp_path / "m")
    (path / missing).unlink()
    with pytest.raises(errors.ModelFolderError, match=f"missing {missing}"):
        load_model_folder(path)


@pytest.mark.parametrize("name", ["model.safetensors", "normalization.json", "grid.json"])
def test_tampered_file(tmp_path, name):
    _, path = _save(tmp_path / "m")
    data = bytearray((path / name).read_bytes())
    data[-2] ^= 0x01
    (path / name).write_bytes(bytes(data))
    with pytest.raises(errors.ModelFolderError, match="checksum"):
        load_model_folder(path)


def test_newer_format_and_foreign_config(tmp_path):
    _, path = _save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    config["format_version"] = 99
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(errors.ModelFolderError, match="upgrade flexdownscale"):
        load_model_folder(path)
    (path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(errors.ModelFolderError, match="not a flexdownscale model config"):
        load_model_folder(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(errors.ModelFolderError, match="not valid JSON"):
        load_model_folder(path)


def test_invalid_config_inside_folder(tmp_path):
    _, path = _save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    config["model"]["preset"] = "gigantic"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(errors.ModelFolderError, match="invalid configuration"):
        load_model_folder(path)


def test_resolve_errors(tmp_path):
    with pytest.raises(errors.ModelFolderError, match="no model folder"):
        resolve_model_path(tmp_path / "absent")


def test_foreign_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, bad)
    with pytest.raises(errors.ModelFolderError, match="cannot be loaded safely") as err:
        import_foreign_checkpoint(bad)
    # the refused object is named; torch's advice to load it with weights_only=False is not
    # passed on (reviewer-49)
    assert "(Unsupported global: GLOBAL print); it is not unpickled" in str(err.value)
    assert "weights_only` set to `False`" not in str(err.value)
    assert "\n" not in str(err.value)
    good = tmp_path / "good.pt"
    torch.save({"ema": {"w": torch.ones(2)}, "epoch": 3}, good)
    assert torch.equal(import_foreign_checkpoint(good, key="ema")["w"], torch.ones(2))
    with pytest.raises(errors.ModelFolderError) as err:
        import_foreign_checkpoint(good, key="model")
    assert str(err.value).endswith("has no entry 'model' (its entries: 'ema', 'epoch')")
    # without key=, a checkpoint dict is not returned as if it were the state dict
    with pytest.raises(errors.ModelFolderError) as err:
        import_foreign_checkpoint(good)
    assert str(err.value).endswith(
        "is not a state dict of tensors: its entries 'ema', 'epoch' are not tensors; pass "
        "key= one of 'ema' to pick the state dict inside"
    )


def _fake_hub(monkeypatch, download):
    """Replace ``huggingface_hub.snapshot_download`` (no network in tests)."""
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "snapshot_download", download)


def test_hub_id_downloads_only_the_model_files(tmp_path, monkeypatch):
    import shutil

    import numpy as np
    import xarray as xr

    from flexdownscale import Downscaler
    from flexdownscale.hub import shipped_models

    calls = []

    def download(repo_id, allow_patterns):
        calls.append((repo_id, list(allow_patterns)))
        target = tmp_path / "cache" / repo_id.replace("/", "--")
        shutil.copytree(shipped_models()["era5-t2m-x4"], target)
        (target / "evil.pt").write_bytes(b"not fetched by the real hub either")
        return str(target)

    _fake_hub(monkeypatch, download)
    from_hub = Downscaler.from_pretrained("someone/era5-t2m-x4")
    assert calls[0][0] == "someone/era5-t2m-x4"
    assert set(calls[0][1]) == {
        "config.json",
        "model.safetensors",
        "normalization.json",
        "grid.json",
        "README.md",
    }
    shipped = Downscaler.from_pretrained("era5-t2m-x4")
    assert from_hub.name.startswith("someone/era5-t2m-x4@")  # provenance: id and revision
    assert shipped.name == "era5-t2m-x4"
    lat = np.arange(57.375, 49.9, -1.0)  # the model's coarse lattice (checked by the Downscaler)
    lon = np.arange(-9.625, 2.0, 1.0)
    rng = np.random.default_rng(0)
    coarse = xr.Dataset(
        {"t2m": (("latitude", "longitude"), 280 + rng.normal(size=(lat.size, lon.size)))},
        coords={"latitude": lat, "longitude": lon},
    )
    coarse.t2m.attrs["units"] = "K"
    a = from_hub(coarse, members=2, seed=3)
    b = shipped(coarse, members=2, seed=3)
    xr.testing.assert_equal(a.t2m, b.t2m)


@pytest.mark.parametrize(
    "failure",
    [OSError("connection refused"), ValueError("Repo id must use alphanumeric chars")],
)
def test_hub_failures_are_model_folder_errors(monkeypatch, failure):
    def download(repo_id, allow_patterns):
        raise failure

    _fake_hub(monkeypatch, download)
    with pytest.raises(errors.ModelFolderError, match=r"someone/absent.*Hugging Face Hub"):
        resolve_model_path("someone/absent")


def test_hub_id_without_the_hub_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(errors.BackendNotAvailableError, match=r"flexdownscale\[hub\]"):
        resolve_model_path("someone/model")


# ---------------------------------------------------------------------------------------------
# overwrite=True replaces only a model folder or an empty folder, and rolls back on failure


def test_overwrite_refuses_a_folder_that_is_not_a_model_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint-1000.pt").write_bytes(b"x" * 100)
    (run / "logs").mkdir()
    (run / "config.json").write_text(json.dumps({"steps": 10}))  # a run's config, not a model's
    with pytest.raises(errors.ModelFolderError, match=r"not a flexdownscale model folder.*"):
        _save(run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-1000.pt", "config.json", "logs"]
    assert (run / "checkpoint-1000.pt").read_bytes() == b"x" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left


def test_overwrite_error_names_what_is_there(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint-1000.pt").write_bytes(b"x")
    (run / "logs").mkdir()
    with pytest.raises(errors.ModelFolderError) as info:
        _save(run, overwrite=True)
    assert "checkpoint-1000.pt, logs/" in str(info.value)
    assert "choose a new path" in str(info.value)


def test_overwrite_refuses_a_file(tmp_path):
    data = tmp_path / "data.nc"
    data.write_text("important")
    for overwrite in (False, True):
        with pytest.raises(errors.ModelFolderError, match="it is a file, not a folder"):
            _save(data, overwrite=overwrite)
    assert data.read_text() == "important"


def test_overwrite_refuses_a_model_folder_holding_other_files(tmp_path):
    _, path = _save(tmp_path / "m")
    (path / "notes.txt").write_text("mine")
    with pytest.raises(errors.ModelFolderError, match=r"also holds notes\.txt"):
        _save(path, factor=8, overwrite=True)
    assert (path / "notes.txt").read_text() == "mine"
    assert load_model_folder(path).factor == 4


def test_overwrite_replaces_an_empty_folder(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(errors.ModelFolderError, match="already exists"):
        _save(tmp_path / "m")
    _, path = _save(tmp_path / "m", overwrite=True)
    assert load_model_folder(path).factor == 4


def test_overwrite_keeps_a_users_hidden_old_folder(tmp_path):
    mine = tmp_path / ".m.old"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    _save(tmp_path / "m")
    _save(tmp_path / "m", factor=8, overwrite=True)
    assert (mine / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.old", "m"]


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_overwrite_restores_the_previous_folder(tmp_path, monkeypatch, failure):
    from pathlib import Path

    _, path = _save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    rename = Path.rename

    def flaky(self, target):  # the new folder cannot be put in place
        if Path(target) == path and self.parent == tmp_path:
            raise failure
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", flaky)
    with pytest.raises(type(failure)):
        _save(path, factor=8, overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert load_model_folder(path).factor == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # nothing else left behind


def _c_locale_env() -> dict[str, str]:
    """Environment of a process whose locale encoding is ASCII (no UTF-8 mode, no coercion)."""
    env = dict(os.environ, LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    env.pop("PYTHONIOENCODING", None)
    return env


def test_model_folder_text_is_utf8_whatever_the_locale(tmp_path):
    import subprocess
    import sys

    card = "# t2m model\n\nTrained by Jos\u00e9; units \u00b0C\n"
    units = {"t2m": "\u00b0C"}
    grid = {"note": "0.25\u00b0"}
    # ascii(): the command line itself must be ASCII in a C locale
    code = f"""
import locale, sys
assert locale.getpreferredencoding(False).lower() not in ("utf-8", "utf8"), "not a C locale"
import torch
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import Normalizer, VariableStats
from flexdownscale.hub import load_model_folder, save_model_folder
path = save_model_folder(
    {str(tmp_path / "m")!a}, state_dict={{"w": torch.ones(2)}},
    model=ModelConfig(preset="tiny"), diffusion=DiffusionConfig(), sampler=SamplerConfig(),
    variables=["t2m"], units={units!a}, factor=4, grid={grid!a},
    normalization=Normalizer({{"t2m": VariableStats(mean=0.0, std=1.0)}}).to_dict(),
    card={card!a},
)
folder = load_model_folder(path)
assert folder.card == {card!a}, ascii(folder.card)
assert folder.units == {units!a} and folder.grid == {grid!a}
"""
    result = subprocess.run(
        [sys.executable, "-c", code], env=_c_locale_env(), capture_output=True, text=True
    )
    if "not a C locale" in result.stderr:
        pytest.skip("this system has no ASCII C locale")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "m" / "README.md").read_bytes() == card.encode("utf-8")


# ---------------------------------------------------------------------------------------------
# config.json entries of the wrong type or missing: ModelFolderError naming key, value, expected


def _edit_config(path, edit):
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    edit(config)
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("units", ["K"], r'units = \["K"\], expected an object of units per variable'),
        ("extra", [1], r"extra = \[1\], expected an object"),
        ("sha256", ["x"], r'sha256 = \["x"\], expected an object of SHA-256'),
        ("factor", "four", r'factor = "four", expected a whole number >= 1'),
        ("factor", 4.7, r"factor = 4.7, expected a whole number >= 1"),
        ("factor", True, r"factor = true, expected a whole number >= 1"),
        ("variables", "t2m", r'variables = "t2m", expected a non-empty list of distinct names'),
        ("variables", [], r"variables = \[\], expected a non-empty list"),
        ("task", "classification", r'task = "classification", expected "superres" or "forecast"'),
        ("condition", 1000.0, r"condition = 1000.0, expected null or an object"),
        ("model", [], r"model = \[\], expected an object"),
    ],
)
def test_config_entries_of_the_wrong_type(tmp_path, key, value, message):
    _, path = _save(tmp_path / "m")
    _edit_config(path, lambda config: config.update({key: value}))
    for read in (load_model_folder, read_model_header):
        with pytest.raises(errors.ModelFolderError, match=message) as info:
            read(path)
        assert "config.json" in str(info.value)


@pytest.mark.parametrize(
    ("key", "message"),
    [("variables", "has no 'variables' entry"), ("sha256", "has no 'sha256' entry")],
)
def test_config_without_a_required_entry(tmp_path, key, message):
    _, path = _save(tmp_path / "m")
    _edit_config(path, lambda config: config.pop(key))
    with pytest.raises(errors.ModelFolderError, match=message):
        load_model_folder(path)


def test_config_without_the_checksum_of_a_file(tmp_path):
    _, path = _save(tmp_path / "m")
    _edit_config(path, lambda config: config["sha256"].pop("grid.json"))
    with pytest.raises(errors.ModelFolderError, match=r"records no checksum for grid\.json"):
        load_model_folder(path)


@pytest.mark.parametrize("name", ["config.json", "README.md"])
def test_files_that_are_not_utf8(tmp_path, name):
    _, path = _save(tmp_path / "m")
    (path / name).write_bytes(b"\xff\xfe garbage \x00\x81")
    with pytest.raises(errors.ModelFolderError, match=rf"{name}' is not UTF-8 text \(byte 0"):
        load_model_folder(path)


@pytest.mark.parametrize("name", ["grid.json", "normalization.json"])
def test_metadata_files_must_hold_objects(tmp_path, name):
    import hashlib

    _, path = _save(tmp_path / "m")
    (path / name).write_text("[1, 2]", encoding="utf-8")
    digest = hashlib.sha256((path / name).read_bytes()).hexdigest()
    _edit_config(path, lambda config: config["sha256"].update({name: digest}))
    with pytest.raises(errors.ModelFolderError, match=rf"{name}' holds a list, expected a JSON"):
        load_model_folder(path)


@pytest.mark.parametrize("content", [b"garbage", b""])
def test_foreign_safetensors_that_is_damaged(tmp_path, content):
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_file({"w": torch.ones(2)}, good)
    assert torch.equal(import_foreign_checkpoint(good)["w"], torch.ones(2))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with pytest.raises(errors.ModelFolderError, match=r"bad\.safetensors' is not a readable"):
        import_foreign_checkpoint(bad)
    bad.write_bytes(good.read_bytes()[:-3])  # truncated
    with pytest.raises(errors.ModelFolderError, match="damaged or incomplete"):
        import_foreign_checkpoint(bad)


# ---------------------------------------------------------------------------------------------
# Hub ids: a mistyped local path is named as such; org/name@revision pins a revision


def test_mistyped_local_path_says_there_is_no_such_folder(tmp_path, monkeypatch):
    def download(repo_id, allow_patterns):
        raise OSError("404 Client Error.\n\nRepository Not Found for url: https://hf.co/...")

    _fake_hub(monkeypatch, download)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.ModelFolderError) as info:
        resolve_model_path("runs/my-model")
    message = str(info.value)
    assert message.startswith(
        "no local folder 'runs/my-model' and could not fetch it from the Hugging Face Hub "
        "(OSError: 404 Client Error. Repository Not Found for url: https://hf.co/...); check "
        "the path, or the id and your network"
    )
    assert "\n" not in message


def test_hub_id_with_a_revision_is_fetched_at_that_revision(tmp_path, monkeypatch):
    import shutil

    from flexdownscale import Downscaler
    from flexdownscale.hub import shipped_models

    commit = "0123456789abcdef0123456789abcdef01234567"
    calls = []

    def download(repo_id, allow_patterns, revision=None, local_files_only=False):
        calls.append((repo_id, revision))
        # the layout of the Hub cache: one snapshot folder per commit
        target = tmp_path / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit
        if not target.exists():
            shutil.copytree(shipped_models()["era5-t2m-x4"], target)
        return str(target)

    _fake_hub(monkeypatch, download)
    latest = Downscaler.from_pretrained("someone/t2m")
    assert calls == [("someone/t2m", None)]
    assert latest.name == f"someone/t2m@{commit}"  # provenance: id and revision
    again = Downscaler.from_pretrained(latest.name)  # what provenance records loads again
    assert calls[1] == ("someone/t2m", commit)
    assert again.variables == latest.variables
    assert resolve_model_path("someone/t2m@v1.0") == tmp_path / (
        f"models--someone--t2m/snapshots/{commit}"
    )
    assert calls[2] == ("someone/t2m", "v1.0")
    assert resolve_model_path("someone/t2m@refs/pr/1").name == commit
    assert calls[3] == ("someone/t2m", "refs/pr/1")
    with pytest.raises(errors.ModelFolderError, match="no model folder at 'someone/t2m@'"):
        resolve_model_path("someone/t2m@")  # an empty revision: not a Hub id


def _resign(path, name):
    """Record ``name``'s new checksum, as someone editing a folder by hand would."""
    import hashlib

    digest = hashlib.sha256((path / name).read_bytes()).hexdigest()
    _edit_config(path, lambda config: config["sha256"].update({name: digest}))


def test_edited_statistics_and_grid_are_model_folder_errors(tmp_path):
    """A hand-edited normalization.json gave a DataError naming no file ("format_version
    None", or "no statistics for ['t2m']" only when the model was built)."""
    _, path = _save(tmp_path / "m")
    original = (path / "normalization.json").read_text()
    (path / "normalization.json").write_text(json.dumps({"t2m": {"mean": 1, "std": 2}}))
    _resign(path, "normalization.json")
    with pytest.raises(
        errors.ModelFolderError,
        match=r"normalization.json' holds no valid statistics: .*format_version None",
    ):
        load_model_folder(path)
    other = json.loads(original)
    other["variables"][0]["name"] = "tas"
    (path / "normalization.json").write_text(json.dumps(other))
    _resign(path, "normalization.json")
    with pytest.raises(
        errors.ModelFolderError, match=r"has no statistics for \['t2m'\] \(it has \['tas'\]\)"
    ):
        load_model_folder(path)
    (path / "normalization.json").write_text(original)
    _resign(path, "normalization.json")
    (path / "grid.json").write_text(json.dumps({"factor": 8}))
    _resign(path, "grid.json")
    with pytest.raises(
        errors.ModelFolderError, match=r"grid.json.*factor = 8.*4, the factor of config.json"
    ):
        load_model_folder(path)


def test_a_run_folder_given_as_a_model_points_to_its_model(tmp_path):
    _save(tmp_path / "run" / "model")
    with pytest.raises(
        errors.ModelFolderError,
        match=r"looks like a training run folder: its exported model is '.*run/model'",
    ):
        load_model_folder(tmp_path / "run")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused_on_loading(tmp_path, bad):
    """A folder whose weights hold NaN (checksums consistent) loaded, ran and wrote an all-NaN
    ensemble with exit status 0 (reviewer-49): a ModelFolderError naming the first tensor."""
    from safetensors.torch import save_file

    weight = torch.randn(3, 4)
    state = {"a.weight": torch.randn(3, 4), "b.weight": weight, "c.bias": torch.zeros(5)}
    _, path = _save(tmp_path / "m", state_dict=state)
    weight[1, 2] = bad  # saving refuses it (test_hub_review109): written in afterwards
    save_file(state, path / "model.safetensors")
    _resign(path, "model.safetensors")
    with pytest.raises(errors.ModelFolderError) as err:
        load_model_folder(path)
    message = str(err.value)
    assert "hold NaN or infinite values (1 of 3 tensors, the first 'b.weight')" in message
    assert "--export-only" in message
    # integer tensors (counters) are not floats to check; finite weights load as before
    state = {"a.weight": torch.randn(3, 4), "steps": torch.tensor([3], dtype=torch.int64)}
    _, path = _save(tmp_path / "fine", state_dict=state)
    assert torch.equal(load_model_folder(path).state_dict["steps"], torch.tensor([3]))


def test_a_model_task_other_than_the_folders_is_refused(tmp_path):
    """``model.task = "forecast"`` beside the folder's ``task = "superres"`` loaded and ran
    (reviewer-49): the network's inputs follow ``model.task``, so the two must agree."""
    _, path = _save(tmp_path / "m")
    _edit_config(path, lambda config: config["model"].update(task="forecast"))
    with pytest.raises(errors.ModelFolderError) as err:
        load_model_folder(path)
    assert str(err.value) == (
        f'{str(path / "config.json")!r} has model.task = "forecast", expected "superres", '
        "the folder's task; the file was edited or damaged: correct that entry or re-download "
        "/ re-export the model"
    )
    _edit_config(path, lambda config: config["model"].update(task="superres"))
    assert load_model_folder(path).task == "superres"
