"""Fine-tuning (``init_from``): a run that starts from a shipped model or a model folder.

Tiny runs on the real ERA5 file: the shipped ``era5-t2m-x4`` (trained on the whole 33 x 49 UK
grid, 1-17 March) fine-tuned on a 32 x 32 corner of it over the held-back days 18-23 March, a
grid of the same spacing and another extent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from train_runs import era5_corner, fine_tuning_config, refused_on_one_line

from flexdownscale import errors
from flexdownscale.config import to_dict
from flexdownscale.hub import load_model_folder
from flexdownscale.train import INIT_FROM_FILE, Trainer, dump_toml

SOURCE = "era5-t2m-x4"


@pytest.fixture(scope="module")
def corner(tmp_path_factory, shared_data) -> Path:
    return era5_corner(tmp_path_factory.mktemp("corner"), shared_data)


_config = fine_tuning_config


def test_zero_steps_export_the_source_weights_bit_for_bit(tmp_path, shared_data, corner):
    """Closed form: a fine-tuning run before its first optimiser step exports the source's
    weights exactly (the shipped bfloat16 values, as float32), and the EMA holds them too."""
    trainer = Trainer(_config(tmp_path, shared_data, corner))
    source = load_model_folder(SOURCE)
    assert trainer.config.data.variables == ("t2m",)  # taken from the folder
    assert trainer.train_set.normalizer.to_dict() == source.normalization  # the folder's
    exported = load_model_folder(trainer.export(tmp_path / "exported"))
    assert set(exported.state_dict) == set(source.state_dict)
    for name, tensor in source.state_dict.items():
        assert torch.equal(exported.state_dict[name], tensor.float()), name
    assert exported.normalization == source.normalization


def _first_losses(trainer: Trainer, batches: int = 16) -> float:
    """The mean training loss of the first ``batches`` micro-batches, the diffusion noise and
    times drawn from one seed (the same for every trainer)."""
    torch.manual_seed(1234)
    losses = []
    with torch.no_grad():
        for _, batch in zip(range(batches), trainer.loader, strict=False):
            losses.append(float(trainer._loss(batch)))
    return float(np.mean(losses))


def test_pretrained_weights_start_with_a_lower_loss_than_random_ones(tmp_path, shared_data, corner):
    """On new ERA5 t2m data (another extent, held-back days), the first training loss of the
    fine-tuning run is well below that of the same run from random weights (measured over 16
    micro-batches of 2, noise seeds 0-4: 0.18-0.30 against 0.50-0.59)."""
    tuned = _first_losses(Trainer(_config(tmp_path / "a", shared_data, corner)))
    scratch = _first_losses(
        Trainer(
            _config(
                tmp_path / "b", shared_data, corner, init_from=None, data={"variables": ["t2m"]}
            )
        )
    )
    assert tuned < 0.7 * scratch, (tuned, scratch)


def test_settings_that_disagree_with_the_folder_are_refused(tmp_path, shared_data, corner, capsys):
    """``[model]``, ``[diffusion]`` and super-resolution keys set against the folder's: one
    ConfigError naming each key, both values and the fix; nothing is written."""
    with pytest.raises(errors.ConfigError) as caught:
        Trainer(
            _config(
                tmp_path,
                shared_data,
                corner,
                model={"preset": "small"},
                diffusion={"objective": "flow"},
                data={"factor": 8, "variables": ["t2m"]},
            )
        )
    message = str(caught.value)
    for part in (
        "init_from = 'era5-t2m-x4'",
        "model.preset = 'small' (the folder's: 'tiny')",
        "diffusion.objective = 'flow' (the folder's: 'vp')",
        "data.factor = 8 (the folder's: 4)",
        'model.preset="tiny" diffusion.objective="vp" data.factor=4',
        "leave init_from out",
    ):
        assert part in message, message
    assert not (tmp_path / "run").exists()
    # the same on the command line, where init_from is a key=value override like any other
    config = _config(tmp_path, shared_data, corner, init_from=None)
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(to_dict(config)))
    line = refused_on_one_line(
        path, [f"init_from={SOURCE}", "data.variables=[u10]"], capsys, tmp_path / "run"
    )
    assert "data.variables = ['u10'] (the folder's: ['t2m'])" in line, line


def test_units_must_agree_unless_the_statistics_are_refitted(tmp_path, shared_data, corner):
    """t2m in degC against a folder trained in K: refused with the folder's statistics (they
    are in K; the message gives the conversion), trained with init_normalization = "refit"."""
    ds = xr.open_dataset(corner)
    celsius = ds.assign(t2m=(ds["t2m"] - 273.15).assign_attrs(units="degC"))
    path = tmp_path / "celsius.nc"
    celsius.to_netcdf(path)
    ds.close()
    with pytest.raises(errors.ConfigError, match=r"'t2m' is in degC in the data .* in K.*refit"):
        Trainer(_config(tmp_path / "a", shared_data, path))
    trainer = Trainer(_config(tmp_path / "b", shared_data, path, init_normalization="refit"))
    stats = trainer.train_set.normalizer.stats["t2m"]
    assert stats.units == "degC"
    assert -5 < stats.mean < 20  # fitted on these data, in degC
    with pytest.raises(errors.ConfigError, match="init_normalization = 'refit' but init_from"):
        _config(tmp_path, shared_data, corner, init_from=None, init_normalization="refit")


def test_weights_that_do_not_fit_the_folder_config_are_a_weights_mismatch(
    tmp_path, shared_data, corner
):
    """A folder whose config.json names another preset than its weights fit: the typed
    WeightsMismatchError, before any training."""
    folder = tmp_path / "edited"
    shutil.copytree(load_model_folder(SOURCE).path, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["preset"] = "small"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(errors.WeightsMismatchError, match=r"init_from = .*edited.*do not fit"):
        Trainer(
            _config(tmp_path, shared_data, corner, init_from=str(folder), model={"preset": "small"})
        )


def test_resume_continues_its_own_state_and_never_reads_the_source(
    tmp_path, shared_data, corner, monkeypatch
):
    """A fine-tuning run stopped after step 1 and resumed to step 2 ends with the weights of an
    uninterrupted 2-step run, without the source folder being read on resume (the loader fails
    if called); another init_from on resume is refused."""
    import flexdownscale.train as train

    two = dict(steps=2, checkpoint_every=1, total_limit=3)
    straight = Trainer(_config(tmp_path / "straight", shared_data, corner, **two))
    straight.fit()
    Trainer(_config(tmp_path / "stopped", shared_data, corner, **{**two, "steps": 1})).fit()

    def no_source(reference):
        raise AssertionError(f"the source {reference!r} was read on resume")

    monkeypatch.setattr(train, "_load_source_folder", no_source)
    resumed = Trainer(_config(tmp_path / "stopped", shared_data, corner, **two), resume=True)
    resumed.fit()
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    source = load_model_folder(SOURCE).state_dict
    name = next(k for k in source if source[k].ndim > 1)
    assert not torch.equal(resumed.model.state_dict()[name], source[name].float())
    launches = [
        json.loads(line)
        for line in (tmp_path / "stopped" / "run" / "launches.jsonl").read_text().splitlines()
    ]
    assert [r["init_from"]["weights_loaded"] for r in launches] == [True, False]
    with pytest.raises(errors.CheckpointError, match="fine-tuned from 'era5-t2m-x4'"):
        Trainer(
            _config(tmp_path / "stopped", shared_data, corner, init_from="kolmogorov-x8", **two),
            resume=True,
        )


def test_the_exported_folder_records_its_origin_and_its_own_grid(tmp_path, shared_data, corner):
    """The fine-tuned model's folder: config.json and card say where it started, grid.json
    describes the corner it was fine-tuned on (not the source's UK grid), and it downscales."""
    from flexdownscale import Downscaler
    from flexdownscale.data.degrade import degrade

    trainer = Trainer(_config(tmp_path, shared_data, corner, steps=1))
    trainer.fit()
    folder = load_model_folder(tmp_path / "run" / "model")
    origin = folder.extra["fine_tuned_from"]
    assert origin["init_from"] == SOURCE
    assert origin["shipped"] is True
    assert origin["package_version"]
    assert origin["train_steps"] == 2200
    assert origin["normalization"] == "source"
    assert (
        "fine-tuned from `era5-t2m-x4` (a shipped model exported with flexdownscale" in folder.card
    )
    grid = folder.grid["grid"]
    source_grid = load_model_folder(SOURCE).grid["grid"]
    assert (grid["ny"], grid["nx"]) == (32, 32) != (source_grid["ny"], source_grid["nx"])
    assert grid["x0"] == pytest.approx(-5.75)
    assert grid["dx"] == source_grid["dx"]
    record = json.loads((tmp_path / "run" / INIT_FROM_FILE).read_text())
    assert record["init_from"] == SOURCE
    assert record["normalization"] == folder.normalization
    fine = xr.open_dataset(corner)[["t2m"]].isel(time=[140, 141]).load()
    out = fine.pipe(degrade, 4).flex.downscale(folder.path, members=2, seed=0, progress=False)
    assert out["t2m"].shape[-2:] == (32, 32)
    assert bool(np.isfinite(out["t2m"]).all())
    model = Downscaler.from_pretrained(folder.path)
    assert model.variables == ("t2m",)
    assert model.factor == 4


def test_the_source_weights_load_without_a_random_initialization(tmp_path, shared_data, corner):
    """A fine-tuning run builds its model on the meta device and takes the source's weights:
    torch's global random state is untouched by the build (it used to draw a full random
    initialization, thrown away: 9 s for the big preset on a CPU), the parameters are float32
    leaves that require grad, and one optimiser step moves them away from the source's."""
    from test_load_rng import _assert_leaves_rng

    trainer = Trainer(_config(tmp_path, shared_data, corner, steps=1))
    model = _assert_leaves_rng(trainer._model_with_source_weights)
    source = load_model_folder(SOURCE)
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == torch.float32, name
        assert tensor.device.type == "cpu", name
        assert torch.equal(tensor, source.state_dict[name].float()), name
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.fit()
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) > 0.9 * len(before)
