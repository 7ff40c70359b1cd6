"""Findings of reviewer-109 on saving and loading model folders (pipeline, CLI, training).

- ``save_pretrained(dtype=torch.int32)`` rounded the weights to whole numbers silently (outputs
  off by 5 K), ``dtype=torch.float8_e4m3fn`` saved a folder that crashed on load and
  ``dtype="bfloat16"`` raised a raw RuntimeError: the four float dtypes (or their names) are
  taken, anything else is a ``ConfigError`` before anything is written.
- A Hub model loaded by its page's address or as ``hf://org/name`` recorded that text plus the
  commit as provenance, which cannot be loaded again: every Hub form records ``org/name@<sha>``.
- A training state refused by ``torch.load(weights_only=True)`` passed on torch's advice to
  re-run it with ``weights_only=False`` when torch worded the refusal in a way the pattern does
  not name (``posix.system`` in torch 2.13).
- ``flexdownscale downscale IN OUT`` (and ``forecast``) replaced any existing ``OUT``, a user's
  truth file included: only an earlier output of flexdownscale is replaced without
  ``--overwrite``.
- ``flexdownscale info`` of a Forecaster built from its parts printed ``grid: {}`` and the card
  ``# unnamed model``.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale.cli import main
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import Normalizer, VariableStats
from flexdownscale.errors import CheckpointError, ConfigError
from flexdownscale.models import build_model, export_state_dict
from flexdownscale.pipeline import Downscaler, Forecaster

SHA = "abcdef0123456789abcdef0123456789abcdef01"


def _stats() -> Normalizer:
    return Normalizer({"t2m": VariableStats(mean=280.0, std=5.0, units="K")})


def _downscaler(**kwargs) -> Downscaler:
    """A tiny untrained x4 Downscaler of ``t2m`` built from its parts (no grid recorded)."""
    torch.manual_seed(0)
    return Downscaler(
        build_model(ModelConfig(preset="tiny")),
        DiffusionConfig(),
        normalizer=_stats(),
        grid={},
        variables=["t2m"],
        units={"t2m": "K"},
        factor=4,
        sampler=SamplerConfig(sampler="ddim", steps=1),
        **kwargs,
    )


def _forecaster() -> Forecaster:
    """A tiny untrained two-past-frame Forecaster of ``t2m`` built from its parts."""
    torch.manual_seed(0)
    return Forecaster(
        build_model(ModelConfig(preset="tiny", task="forecast", past_frames=2)),
        DiffusionConfig(),
        normalizer=_stats(),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(sampler="ddim", steps=1),
    )


def _coarse(times: int = 1) -> xr.Dataset:
    """An 8 x 8 coarse t2m field on a regional latitude-longitude grid."""
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "t2m": (
                ("time", "latitude", "longitude"),
                280 + rng.random((times, 8, 8)),
                {"units": "K"},
            )
        },
        coords={
            "time": np.arange(times).astype("datetime64[h]").astype("datetime64[ns]"),
            "latitude": ("latitude", np.arange(50.0, 42.0, -1.0), {"units": "degrees_north"}),
            "longitude": ("longitude", np.arange(8.0), {"units": "degrees_east"}),
        },
    )


def _one_error_line(args: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- Finding 1: the dtype of the stored weights ------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.int8, torch.bool, torch.float8_e4m3fn])
def test_save_pretrained_refuses_a_dtype_that_is_no_float_of_16_to_64_bits(tmp_path, dtype):
    target = tmp_path / "model"
    for model in (_downscaler(), _forecaster()):
        with pytest.raises(ConfigError, match=r"cannot store a model's weights") as info:
            model.save_pretrained(target, dtype=dtype)
        assert "torch.bfloat16" in str(info.value)  # the dtypes that are taken
        assert not target.exists()  # nothing written
        assert not any(tmp_path.iterdir())  # no hidden temporary folder either
    if not dtype.is_floating_point:
        with pytest.raises(ConfigError, match="round the weights to whole numbers"):
            export_state_dict(_downscaler().backbone, dtype)


@pytest.mark.parametrize("name", ["int32", "bf16", "float8_e4m3fn", ""])
def test_save_pretrained_refuses_other_dtype_names(tmp_path, name):
    with pytest.raises(ConfigError, match=f"dtype={name!r} cannot store"):
        _downscaler().save_pretrained(tmp_path / "model", dtype=name)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [
        ("bfloat16", torch.bfloat16),
        ("torch.float16", torch.float16),
        (torch.float64, torch.float64),
        (torch.float32, torch.float32),
    ],
)
def test_save_pretrained_takes_the_float_dtypes_and_their_names(tmp_path, dtype, stored):
    from safetensors import safe_open

    path = _downscaler().save_pretrained(tmp_path / "model", dtype=dtype)
    with safe_open(str(path / "model.safetensors"), "pt") as weights:
        assert weights.get_tensor("enc_time.mlp.0.weight").dtype == stored
        assert weights.get_tensor("enc_time.freqs").dtype == torch.float32
    config = json.loads((path / "config.json").read_text())
    assert config["weights_dtype"] == str(stored)
    again = Downscaler.from_pretrained(path)
    assert again.weights_dtype == stored


# -- Finding 3: provenance of a Hub model, however its reference was written -------------------


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding ``acme/t2m-x4`` at commit :data:`SHA` (``main`` points to
    it), read offline."""
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    home = tmp_path / "hfhome"
    repo = home / "hub" / "models--acme--t2m-x4"
    _downscaler().save_pretrained(repo / "snapshots" / SHA)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both when imported: set them where it looks
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


@pytest.mark.parametrize(
    "ref",
    [
        "https://huggingface.co/acme/t2m-x4/tree/main",
        "https://huggingface.co/acme/t2m-x4",
        "huggingface.co/acme/t2m-x4/",
        "hf://acme/t2m-x4",
        "hf://acme/t2m-x4@main",
        "acme/t2m-x4",
        f"acme/t2m-x4@{SHA}",
    ],
)
def test_provenance_of_a_hub_model_is_org_name_at_commit_and_loads_again(hub_cache, ref):
    down = Downscaler.from_pretrained(ref)
    assert down.name == f"acme/t2m-x4@{SHA}"
    again = Downscaler.from_pretrained(down.name)  # what provenance records loads again
    assert again.name == down.name
    assert Path(again.path) == (hub_cache / "snapshots" / SHA).resolve()


def test_output_of_a_hub_page_address_records_the_id_and_commit(hub_cache, tmp_path, capsys):
    ref = "https://huggingface.co/acme/t2m-x4/tree/main"
    out = _coarse().flex.downscale(model=ref, seed=0, progress=False)
    assert out.attrs["flexdownscale_model"] == f"acme/t2m-x4@{SHA}"
    _coarse().to_netcdf(tmp_path / "coarse.nc")
    args = ["downscale", str(tmp_path / "coarse.nc"), str(tmp_path / "fine.nc")]
    assert main([*args, "--model", ref, "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "fine.nc") as written:
        assert written.attrs["flexdownscale_model"] == f"acme/t2m-x4@{SHA}"


# -- Finding 6: torch's advice to load unsafely is not passed on --------------------------------


class _RunsACommand:
    def __reduce__(self):
        return (os.system, ("true",))


def test_a_refused_training_state_names_the_global_without_torchs_unsafe_advice(tmp_path):
    from flexdownscale.train import _load_pickle_safely

    path = tmp_path / "rng.pt"
    torch.save({"state": _RunsACommand()}, path)
    with pytest.raises(CheckpointError) as info:
        _load_pickle_safely(path, "the random state")
    message = str(info.value)
    assert "system" in message  # the refused global (posix.system or nt.system)
    assert "weights_only` set to `False" not in message
    assert "Re-running" not in message
    assert "trusted source" not in message
    assert "\n" not in message


def test_one_line_drops_torchs_advice_from_a_refusal_worded_otherwise():
    from flexdownscale.train import _one_line

    err = pickle.UnpicklingError(
        "Weights only load failed. In PyTorch 2.6, we changed the default value of the "
        "`weights_only` argument in `torch.load` from `False` to `True`. Re-running "
        "`torch.load` with `weights_only` set to `False` will likely succeed, but it can result "
        "in arbitrary code execution. Do it only if you got the file from a trusted source.\n\n\n"
        "Some future wording refusing GLOBAL mymod.Thing here.\n\nCheck the documentation of "
        "torch.load to learn more about types accepted by default with weights_only "
        "https://pytorch.org/docs/stable/generated/torch.load.html."
    )
    assert _one_line(err) == (
        "UnpicklingError: Weights only load failed. Some future wording refusing GLOBAL "
        "mymod.Thing here."
    )
    # other errors keep every line
    assert _one_line(ValueError("first\nsecond")) == "ValueError: first second"


# -- Finding 12: an existing output that flexdownscale did not write ---------------------------


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    _coarse().to_netcdf(root / "coarse.nc")
    model = _downscaler(name="tiny").save_pretrained(root / "model")
    return root, model


def test_downscale_refuses_to_replace_a_file_it_did_not_write(cli_files, tmp_path, capsys):
    root, model = cli_files
    truth = tmp_path / "truth.nc"
    _coarse().assign_attrs(title="my truth").to_netcdf(truth)
    before = truth.read_bytes()
    args = ["downscale", str(root / "coarse.nc")]
    line = _one_error_line([*args, str(truth), "--model", str(model), "--quiet"], capsys)
    assert str(truth) in line
    assert "is not an earlier output of flexdownscale" in line
    assert "--overwrite" in line
    assert "another output path" in line
    assert truth.read_bytes() == before  # untouched
    # a file that is no netCDF at all is refused too, saying so
    notes = tmp_path / "notes.nc"
    notes.write_text("my notes\n")
    line = _one_error_line([*args, str(notes), "--model", str(model), "--quiet"], capsys)
    assert "cannot be read as netCDF" in line
    assert "--overwrite" in line
    assert notes.read_text() == "my notes\n"
    # --overwrite replaces it
    assert main([*args, str(truth), "--model", str(model), "--quiet", "--overwrite"]) == 0
    with xr.open_dataset(truth) as written:
        assert "flexdownscale_version" in written.attrs


def test_downscale_replaces_its_own_earlier_output_and_an_empty_file(cli_files, tmp_path):
    root, model = cli_files
    args = ["downscale", str(root / "coarse.nc")]
    out = tmp_path / "fine.nc"
    assert main([*args, str(out), "--model", str(model), "--quiet", "--seed", "1"]) == 0
    # a re-run with other settings replaces the earlier output
    assert main([*args, str(out), "--model", str(model), "--quiet", "--seed", "2"]) == 0
    with xr.open_dataset(out) as written:
        assert written.attrs["flexdownscale_seed"] == 2
    empty = tmp_path / "empty.nc"
    empty.touch()
    assert main([*args, str(empty), "--model", str(model), "--quiet"]) == 0


def test_downscale_refuses_a_zarr_store_it_did_not_write(cli_files, tmp_path, capsys):
    pytest.importorskip("zarr")
    root, model = cli_files
    store = tmp_path / "mine.zarr"
    _coarse().to_zarr(store, mode="w", consolidated=False)
    args = ["downscale", str(root / "coarse.nc"), str(store), "--model", str(model), "--quiet"]
    line = _one_error_line(args, capsys)
    assert str(store) in line
    assert "--overwrite" in line
    with xr.open_zarr(store, consolidated=False) as kept:
        assert kept.sizes["latitude"] == 8  # still the user's store
    assert main([*args, "--overwrite"]) == 0
    assert main(args) == 0  # now an earlier output: replaced on a re-run


def test_forecast_refuses_to_replace_a_file_it_did_not_write(tmp_path, capsys):
    folder = _forecaster().save_pretrained(tmp_path / "fc")
    _coarse(times=2).to_netcdf(tmp_path / "in.nc")
    truth = tmp_path / "truth.nc"
    _coarse(times=2).to_netcdf(truth)
    before = truth.read_bytes()
    args = ["forecast", str(tmp_path / "in.nc"), str(truth), "--model", str(folder)]
    line = _one_error_line([*args, "--lead-steps", "1", "--quiet"], capsys)
    assert str(truth) in line
    assert "--overwrite" in line
    assert truth.read_bytes() == before
    assert main([*args, "--lead-steps", "1", "--quiet", "--overwrite"]) == 0
    assert main([*args, "--lead-steps", "1", "--quiet"]) == 0  # its own output now


# -- Finding 13: info of a model built from its parts -------------------------------------------


def test_info_of_a_forecaster_built_from_parts_reads_well(tmp_path, capsys):
    folder = _forecaster().save_pretrained(tmp_path / "fc")
    capsys.readouterr()
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "grid: {}" not in out
    assert "# unnamed model" not in out
    (grid,) = [line for line in out.splitlines() if line.strip().startswith("grid:")]
    assert grid.startswith("  grid: not recorded (the model was built in Python without grid=")
    assert "; forecast: past frames 2, time step not recorded" in grid
    assert "# Unnamed forecast model of t2m [K]\n" in out
    assert "built in Python from its parts" in out
    # a super-resolution model built from its parts says its factor; a named one keeps its name
    card = (_downscaler().save_pretrained(tmp_path / "sr") / "README.md").read_text()
    assert card.startswith("# Unnamed super-resolution x4 model of t2m [K]\n")
    named = (_downscaler(name="my-t2m").save_pretrained(tmp_path / "n") / "README.md").read_text()
    assert named == "# my-t2m\n"
