"""Model folders: what reviewer-109 found in saving and loading them.

- a ``config.json`` without its ``diffusion`` (or ``diffusion.objective``), ``sampler`` or
  ``model`` settings loaded with defaults (a flow model ran as VP: 13 K off);
- ``read_model_header`` raised a raw ``FileNotFoundError`` / ``NotADirectoryError``;
- ``grid.json``'s entries were not checked (``dx = "a"`` loaded and crashed later);
- ``import_foreign_checkpoint`` did not name torch 2.13's refusal of ``posix.system`` and passed
  on torch's advice to load with ``weights_only=False``; files that are no checkpoint read as
  unsafe; ``key=`` listed every entry, reached no nested dict, and ``{}`` was returned;
- a local non-model folder hiding a shipped model did not say so; an incomplete Hub download
  named only its cache path;
- ``save_model_folder`` wrote folders the loader refuses;
- a pinned commit asked the Hub (26 s of retries offline) before using its cached copy;
- ``format_version: true`` loaded; a damaged weights file gave no fix; a model folder's own file
  given as the model said only "no model folder".
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from flexdownscale import errors
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import GridSpec, Normalizer, VariableStats
from flexdownscale.hub import (
    import_foreign_checkpoint,
    load_model_folder,
    read_model_header,
    resolve_model_path,
    save_model_folder,
    shipped_models,
)

SPEC = GridSpec(
    x="longitude",
    y="latitude",
    kind="latlon",
    nx=8,
    ny=8,
    x0=-10.0,
    y0=50.0,
    dx=0.25,
    dy=0.25,
    x_units="degrees_east",
    y_units="degrees_north",
    time="time",
).to_dict()

#: grid.json as a training run writes it (SuperResolutionDataset.grid_metadata())
TRAINED_GRID = {
    "grid": SPEC,
    "degradation": "area_mean",
    "sigma": None,
    "upsample": "bilinear",
    "factor": 4,
    "crop_size": 32,
}


def _arguments(**overrides):
    kwargs = dict(
        state_dict={"a.weight": torch.randn(3, 4), "b.bias": torch.zeros(5)},
        model=ModelConfig(preset="tiny"),
        diffusion=DiffusionConfig(objective="flow"),
        sampler=SamplerConfig(sampler="euler", steps=4),
        variables=["t2m"],
        units={"t2m": "K"},
        factor=4,
        normalization=Normalizer({"t2m": VariableStats(mean=280.0, std=5.0)}).to_dict(),
        grid=TRAINED_GRID,
        card="# test model\n",
    )
    kwargs.update(overrides)
    return kwargs


def _save(path, **overrides):
    return save_model_folder(path, **_arguments(**overrides))


def _edit_json(path, name, edit):
    """Edit ``name`` of the folder ``path`` and record its checksum, as a hand edit would."""
    file = path / name
    value = json.loads(file.read_text(encoding="utf-8"))
    edit(value)
    file.write_text(json.dumps(value), encoding="utf-8")
    if name != "config.json":
        _resign(path, name)


def _resign(path, name):
    digest = hashlib.sha256((path / name).read_bytes()).hexdigest()
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config["sha256"][name] = digest
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# finding 2: the settings that decide what the model computes are required


@pytest.mark.parametrize(
    ("section", "key", "named"),
    [
        ("diffusion", None, "has no diffusion entry"),
        ("diffusion", "objective", "has no diffusion.objective entry"),
        ("diffusion", "target", "has no diffusion.target entry"),
        ("sampler", None, "has no sampler entry"),
        ("sampler", "sampler", "has no sampler.sampler entry"),
        ("model", None, "has no model entry"),
        ("model", "backbone", "has no model.backbone entry"),
        ("model", "preset", "has no model.preset entry"),
    ],
)
def test_a_config_without_its_settings_is_refused(tmp_path, section, key, named):
    """Without ``diffusion`` a flow model loaded as VP (output off by up to 12.96 K)."""
    path = _save(tmp_path / "m")

    def drop(config):
        config.pop(section) if key is None else config[section].pop(key)

    _edit_json(path, "config.json", drop)
    for read in (load_model_folder, read_model_header):
        with pytest.raises(errors.ModelFolderError) as err:
            read(path)
        message = str(err.value)
        assert message.startswith(f"{str(path / 'config.json')!r} {named}, which every folder")
        assert "a flow model would run as vp" in message
        assert "--export-only" in message


def test_missing_settings_are_listed_together(tmp_path):
    path = _save(tmp_path / "m")
    _edit_json(path, "config.json", lambda c: [c["diffusion"].pop(k) for k in ("shift", "base")])
    with pytest.raises(errors.ModelFolderError, match=r"has no diffusion\.shift, diffusion\.base "):
        load_model_folder(path)


def test_settings_that_may_be_unset_or_only_train_may_be_missing(tmp_path):
    path = _save(tmp_path / "m", diffusion=DiffusionConfig(objective="flow", loss="l2"))

    def drop(config):
        config["diffusion"].pop("loss")
        config["diffusion"].pop("loss_scale")
        config["model"].pop("dropout")

    _edit_json(path, "config.json", drop)
    folder = load_model_folder(path)
    assert folder.diffusion.objective == "flow"
    assert folder.diffusion.loss is None


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_the_shipped_models_hold_every_required_setting(name):
    assert read_model_header(shipped_models()[name]).variables
    assert load_model_folder(name).path == shipped_models()[name]


# ---------------------------------------------------------------------------------------------
# finding 4: read_model_header raises ModelFolderError


def test_read_model_header_on_what_is_not_a_model_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.ModelFolderError, match="no model folder at 'absent'; "):
        read_model_header("absent")
    with pytest.raises(errors.ModelFolderError) as err:
        read_model_header("era5-t2m-x4")  # a shipped name, no local folder: how to get it
    assert "shipped_models()['era5-t2m-x4']" in str(err.value)
    Path("empty").mkdir()
    with pytest.raises(errors.ModelFolderError, match=r"model folder 'empty' has no config\.json"):
        read_model_header("empty")
    Path("file.pt").write_bytes(b"x")
    with pytest.raises(errors.ModelFolderError, match=r"'file\.pt' is a file, not a model folder"):
        read_model_header("file.pt")
    path = _save(tmp_path / "m")
    with pytest.raises(errors.ModelFolderError, match=r"pass its folder, '.*m'$"):
        read_model_header(path / "config.json")


# ---------------------------------------------------------------------------------------------
# finding 5: grid.json's entries are checked when loading


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda g: g["grid"].update(dx="a"), 'grid.dx = "a", expected a number > 0'),
        (lambda g: g["grid"].update(nx=0), "grid.nx = 0, expected a whole number >= 1"),
        (lambda g: g["grid"].update(kind="polar"), 'grid.kind = "polar", expected "latlon" or'),
        (lambda g: g["grid"].update(periodic_x="yes"), 'grid.periodic_x = "yes", expected true'),
        (lambda g: g["grid"].update(spacing=1), "has a grid entry that is not a grid description"),
        (lambda g: g.update(grid=[1]), "has grid = [1], expected null or a grid description"),
        (lambda g: g.update(upsample="lanczos"), 'upsample = "lanczos", expected "bilinear" or'),
        (lambda g: g.update(degradation="box"), 'degradation = "box", expected "area_mean" or'),
        (lambda g: g.update(sigma=-1), "sigma = -1, expected null or a number > 0"),
        (lambda g: g.update(crop_size="32"), 'crop_size = "32", expected null or a whole'),
        (lambda g: g.update(factor=True), "factor = true, expected a whole number >= 1"),
        (lambda g: g.update(lead=0), "lead = 0, expected a whole number >= 1"),
        (lambda g: g.update(time_step={"value": "1h"}), 'time_step = {"value": "1h"}, expected'),
    ],
)
def test_grid_entries_of_the_wrong_type_are_refused_naming_grid_json(tmp_path, edit, named):
    path = _save(tmp_path / "m")
    _edit_json(path, "grid.json", edit)
    with pytest.raises(errors.ModelFolderError) as err:
        load_model_folder(path)
    message = str(err.value)
    assert message.startswith(f"{str(path / 'grid.json')!r} "), message
    assert named in message
    assert "edited or damaged" in message


@pytest.mark.parametrize(
    ("task", "factor", "grid"),
    [
        ("superres", 4, TRAINED_GRID),  # a training run's
        ("superres", 4, {**TRAINED_GRID, "grid": None}),  # HDF5 data without coordinates
        ("superres", 4, {**TRAINED_GRID, "degradation": "gaussian", "sigma": 2.0}),
        ("superres", 4, {}),  # a Downscaler built from its parts
        ("superres", 4, {"grid": None, "factor": 4}),
        ("superres", 4, {"note": "kept as it is"}),
        (  # a forecast training run's (ForecastDataset.grid_metadata())
            "forecast",
            1,
            {
                "grid": SPEC,
                "past_frames": 2,
                "lead": 1,
                "time_dim": "time",
                "time_step": {"value": 3600.0, "units": "s"},
                "crop_size": None,
            },
        ),
        ("forecast", 1, {"grid": None, "past_frames": 1, "lead": 3, "time_step": None}),
    ],
)
def test_every_grid_this_package_writes_still_loads(tmp_path, task, factor, grid):
    model = ModelConfig(preset="tiny", task=task)
    path = _save(tmp_path / "m", model=model, task=task, factor=factor, grid=grid)
    assert load_model_folder(path).grid == grid


# ---------------------------------------------------------------------------------------------
# findings 6 and 7: import_foreign_checkpoint


class _Shell:
    """A pickle that runs a shell command when unpickled (os.system pickles as posix.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_an_os_system_pickle_is_refused_by_name_without_torchs_advice(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Shell(marker)}, evil)
    with pytest.raises(errors.ModelFolderError) as err:
        import_foreign_checkpoint(evil)
    message = str(err.value)
    assert not marker.exists()  # nothing ran
    global_name = f"{os.system.__module__}.system"  # posix.system here
    assert (
        f"refused it (Unsupported global: GLOBAL {global_name}, whose module "
        f"{os.system.__module__} is blocked); it is not unpickled" in message
    )
    assert f"Weights have no reason to call {global_name}" in message
    assert "False" not in message
    assert "\n" not in message
    assert "if you trust" not in message


def test_the_refusal_gist_names_the_blocked_global(tmp_path):
    """train.py words a refused training state with the same helper."""
    from flexdownscale.hub import _weights_only_refusal

    evil = tmp_path / "evil.pt"
    torch.save([_Shell(tmp_path / "ran")], evil)
    with pytest.raises(pickle.UnpicklingError) as err:
        torch.load(evil, weights_only=True)
    gist = _weights_only_refusal(err.value)
    assert gist is not None
    assert f"GLOBAL {os.system.__module__}.system" in gist
    assert "weights_only" not in gist


def _damaged(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(1000)}, good)
    data = good.read_bytes()
    files = {
        "random.pt": bytes(range(256)) * 16,
        "truncated.pt": data[: len(data) // 2],
        "plain.pkl": pickle.dumps({"w": [1.0, 2.0]}, protocol=4),
        "text.pt": b"hello world\n",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return list(files)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_files_that_are_no_checkpoint_are_called_damaged_not_unsafe(tmp_path):
    for name in _damaged(tmp_path):
        with pytest.raises(errors.ModelFolderError) as err:
            import_foreign_checkpoint(tmp_path / name)
        message = str(err.value)
        assert f"{name}' is damaged or not a PyTorch checkpoint" in message, message
        assert "cannot be loaded safely" not in message
        assert "False" not in message
        assert "\n" not in message
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(errors.ModelFolderError, match=r"empty\.pt' is empty \(0 bytes\)"):
        import_foreign_checkpoint(tmp_path / "empty.pt")


def test_a_safetensors_file_under_another_name_is_read_as_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.arange(3.0)}, tmp_path / "st.pt")
    assert torch.equal(import_foreign_checkpoint(tmp_path / "st.pt")["w"], torch.arange(3.0))


def test_a_wrong_key_lists_a_few_entries_and_their_count(tmp_path):
    big = {f"block{i}.weight": torch.zeros(1) for i in range(358)}
    torch.save(big, tmp_path / "big.pt")
    with pytest.raises(errors.ModelFolderError) as err:
        import_foreign_checkpoint(tmp_path / "big.pt", key="model")
    message = str(err.value)
    assert "has no entry 'model' (its 358 entries: 'block0.weight', " in message
    assert "'block4.weight' and 353 more; it is itself a state dict of tensors: leave" in message
    assert len(message) < 400


def test_nested_state_dicts_are_reached_and_named(tmp_path):
    state = {"w": torch.ones(2)}
    path = tmp_path / "lightning.pt"
    torch.save({"lightning": {"state_dict": state, "epoch": 3}, "version": 1}, path)
    for key in ("lightning.state_dict", ("lightning", "state_dict")):
        assert torch.equal(import_foreign_checkpoint(path, key=key)["w"], state["w"])
    with pytest.raises(errors.ModelFolderError) as err:
        import_foreign_checkpoint(path)
    assert str(err.value).endswith(
        "pass key= one of 'lightning.state_dict' to pick the state dict inside"
    )
    with pytest.raises(errors.ModelFolderError) as err:
        import_foreign_checkpoint(path, key="lightning")
    assert "pass key= one of 'lightning.state_dict'" in str(err.value)
    with pytest.raises(errors.ModelFolderError) as err:
        import_foreign_checkpoint(path, key="lightning.ema")
    assert str(err.value).endswith(
        "has no entry 'lightning.ema': its entry 'lightning' has no 'ema' (its entries: "
        "'state_dict', 'epoch')"
    )


def test_an_empty_state_dict_is_refused(tmp_path):
    torch.save({}, tmp_path / "empty-dict.pt")
    with pytest.raises(errors.ModelFolderError, match="holds an empty state dict"):
        import_foreign_checkpoint(tmp_path / "empty-dict.pt")
    torch.save({"ema": {}}, tmp_path / "empty-ema.pt")
    with pytest.raises(errors.ModelFolderError, match="entry 'ema' holds an empty state dict"):
        import_foreign_checkpoint(tmp_path / "empty-ema.pt", key="ema")


# ---------------------------------------------------------------------------------------------
# finding 8: a local folder hiding a shipped model


def test_a_local_folder_hiding_a_shipped_model_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("era5-t2m-x4").mkdir()
    (tmp_path / "era5-t2m-x4" / "notes.txt").write_text("not a model")
    shipped = str(shipped_models()["era5-t2m-x4"])
    # the name, and the absolute path the accessor passes on
    for given in ("era5-t2m-x4", str(tmp_path / "era5-t2m-x4")):
        with pytest.raises(errors.ModelFolderError) as err:
            load_model_folder(given)
        message = str(err.value)
        assert "a shipped model is also named 'era5-t2m-x4', but the local folder" in message
        assert f"flexdownscale.hub.shipped_models()['era5-t2m-x4'] ({shipped!r})" in message
    # a broken folder elsewhere of another name: no such hint
    Path("sub", "my-model").mkdir(parents=True)
    with pytest.raises(errors.ModelFolderError) as err:
        load_model_folder("sub/my-model")
    assert "shipped" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# findings 9 and 11: the local Hugging Face cache

COMMIT = "abcdef0123456789abcdef0123456789abcdef01"


def _hub_cache(monkeypatch, tmp_path, offline):
    """An empty Hugging Face cache under ``tmp_path`` (as HF_HOME would give), offline or not."""
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    cache = tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    return hub, cache


def _cached(cache, repo_id, source, names):
    """A snapshot of ``repo_id`` at COMMIT holding ``names`` of the folder ``source``, as
    huggingface_hub lays it out (refs/main names the commit)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in names:
        shutil.copy(source / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def test_an_incomplete_hub_download_names_the_id_and_the_download_command(tmp_path, monkeypatch):
    from flexdownscale.hub import _download_command

    _, cache = _hub_cache(monkeypatch, tmp_path, offline=True)
    source = _save(tmp_path / "m")
    _cached(cache, "acme/part", source, ["config.json", "README.md"])
    with pytest.raises(errors.ModelFolderError) as err:
        load_model_folder("acme/part")
    message = str(err.value)
    assert message.startswith(
        "the Hugging Face Hub model 'acme/part' lacks model.safetensors, normalization.json, "
        "grid.json in its copy in the local cache ("
    )
    assert f"({_download_command('acme/part', None)}) and pass DIR" in message
    assert "save_pretrained" not in message  # no advice to export what is someone else's


def test_a_pinned_commit_uses_its_cached_copy_without_asking_the_hub(tmp_path, monkeypatch):
    hub, cache = _hub_cache(monkeypatch, tmp_path, offline=False)
    from huggingface_hub.errors import LocalEntryNotFoundError

    source = _save(tmp_path / "m")
    snapshot = _cached(cache, "acme/t2m", source, os.listdir(source))
    real = hub.snapshot_download
    asked = []

    def download(*args, **kwargs):
        asked.append(kwargs.get("local_files_only", False))
        if not kwargs.get("local_files_only"):  # the network is down: huggingface_hub would
            raise LocalEntryNotFoundError("network down")  # retry for 26 s, then use the cache
        return real(*args, **kwargs)

    monkeypatch.setattr(hub, "snapshot_download", download)
    folder = load_model_folder(f"acme/t2m@{COMMIT}")
    assert folder.path == snapshot
    assert asked == [True]
    # a commit that is not cached is fetched from the Hub (which fails here)
    asked.clear()
    with pytest.raises(errors.ModelFolderError, match="could not be reached"):
        resolve_model_path(f"acme/t2m@{'0' * 40}")
    assert asked == [True, False]
    # a branch may have moved: it is always asked for
    asked.clear()
    with pytest.raises(errors.ModelFolderError):
        resolve_model_path("acme/t2m@main")
    assert asked == [False]


# ---------------------------------------------------------------------------------------------
# finding 10: saving refuses what loading would


def _nan_state():
    weight = torch.randn(3, 4)
    weight[0, 1] = float("nan")
    return {"a.weight": weight}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (
            {"variables": ["t2m", "u10"], "units": {"t2m": "K", "u10": "m s-1"}},
            "its normalization.json would have no statistics for ['u10'] (it has ['t2m']), "
            "which loading refuses; the model's variables need them: fit the normalization",
        ),
        (
            {"factor": 8},
            "its grid.json would have factor = 4, expected 8, the factor of config.json",
        ),
        (
            {"task": "forecast", "factor": 1, "grid": {}},
            'its config.json would have model.task = "superres", expected "forecast", the '
            "folder's task, which loading refuses; give task= the task of the model's",
        ),
        ({"variables": []}, "its config.json would have variables = [], expected a non-empty"),
        ({"variables": ["t2m", "t2m"]}, 'variables = ["t2m", "t2m"], expected a non-empty list'),
        ({"variables": "t2m"}, 'variables = "t2m", expected a non-empty list'),
        ({"units": {"t2m": 1}}, 'units = {"t2m": 1}, expected an object of units'),
        ({"factor": 0}, "factor = 0, expected a whole number >= 1"),
        ({"factor": 4.5}, "factor = 4.5, expected a whole number >= 1"),
        ({"condition": ["a"]}, 'condition = ["a"], expected null or an object'),
        ({"extra": [1]}, "extra = [1], expected an object"),
        ({"grid": [1]}, "its grid.json would hold a list, expected a JSON object"),
        ({"grid": {"upsample": "lanczos"}}, 'its grid.json would have upsample = "lanczos"'),
        ({"grid": {"grid": {**SPEC, "dx": "a"}}}, 'its grid.json would have grid.dx = "a"'),
        ({"normalization": {"t2m": {"mean": 1}}}, "normalization.json would hold no valid"),
        ({"state_dict": _nan_state()}, "the weights hold NaN or infinite values (1 of 1"),
        ({"dtype": torch.int32}, "dtype=torch.int32 is not a floating-point torch dtype"),
        ({"grid": {"w": torch.ones(1)}}, "grid holds a value JSON cannot hold"),
    ],
)
def test_saving_refuses_a_folder_that_would_not_load(tmp_path, overrides, named):
    target = tmp_path / "m"
    with pytest.raises(errors.ModelFolderError) as err:
        _save(target, **overrides)
    message = str(err.value)
    assert message.startswith(f"cannot save a model folder to {str(target)!r}: "), message
    assert named in message
    assert message.endswith("(nothing was written)")
    assert "edited or damaged" not in message
    assert not target.exists()
    assert not list(tmp_path.iterdir())


def test_save_pretrained_refuses_a_nan_weight(tmp_path):
    from flexdownscale import Downscaler

    model = Downscaler.from_pretrained("era5-t2m-x4")
    with torch.no_grad():
        next(model.backbone.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(errors.ModelFolderError, match="the weights hold NaN or infinite values"):
        model.save_pretrained(tmp_path / "nan")
    assert not (tmp_path / "nan").exists()


def test_weights_of_another_float_dtype_are_refused_when_loading(tmp_path):
    """A float8 folder crashed the NaN check with NotImplementedError."""
    from safetensors.torch import save_file

    path = _save(tmp_path / "m")
    save_file({"a.weight": torch.zeros(3, 4).to(torch.float8_e4m3fn)}, path / "model.safetensors")
    _resign(path, "model.safetensors")
    with pytest.raises(errors.ModelFolderError, match=r"are stored as torch\.float8_e4m3fn"):
        load_model_folder(path)


# ---------------------------------------------------------------------------------------------
# finding 13


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (True, "format_version = true, expected a whole number from 1 to 1"),
        (0, "format_version = 0, expected a whole number from 1 to 1"),
        ("1", 'format_version = "1", expected a whole number'),
        (None, "format_version = null, expected a whole number"),
    ],
)
def test_a_format_version_that_is_no_version_is_refused(tmp_path, value, named):
    path = _save(tmp_path / "m")
    _edit_json(path, "config.json", lambda c: c.update(format_version=value))
    for read in (load_model_folder, read_model_header):
        with pytest.raises(errors.ModelFolderError) as err:
            read(path)
        assert named in str(err.value)
        assert "upgrade" not in str(err.value)
    _edit_json(path, "config.json", lambda c: c.pop("format_version"))
    with pytest.raises(errors.ModelFolderError, match="has no 'format_version' entry"):
        load_model_folder(path)


def test_an_unreadable_weights_file_says_what_to_do(tmp_path):
    path = _save(tmp_path / "m")
    (path / "model.safetensors").write_bytes(b"\xff" * 64)
    _resign(path, "model.safetensors")
    with pytest.raises(errors.ModelFolderError) as err:
        load_model_folder(path)
    message = str(err.value)
    assert "cannot read weights from" in message
    assert message.endswith("re-download or re-export the model")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "grid.json"])
def test_a_model_folders_file_given_as_the_model_says_pass_its_folder(tmp_path, name):
    path = _save(tmp_path / "m")
    with pytest.raises(errors.ModelFolderError) as err:
        load_model_folder(path / name)
    assert str(err.value) == (
        f"{str(path / name)!r} is a file of a model folder ({name}), not the folder: pass its "
        f"folder, {str(path)!r}"
    )
