"""``data.crops_per_field``: several crops of each field per epoch, in training and validation.

A few large fields (a global grid, levels or months as the samples) made a split of as many
samples as fields, and validation scored one centre window of each. The key multiplies the
training samples (new random windows every epoch) and gives validation that many windows of
each field, drawn once from the seed and kept at every evaluation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flexdownscale.config import DataConfig, TrainConfig, from_dict
from flexdownscale.data.datasets import from_config
from flexdownscale.errors import ConfigError
from flexdownscale.train import Trainer, dump_toml
from tests.train_runs import ERA5, refused_on_one_line, tiny_run_values


def _data(shared_data, **extra):
    return DataConfig(
        paths=(str(shared_data / ERA5),),
        variables=("t2m",),
        factor=4,
        crop_size=16,
        train=("2019-03-01T00", "2019-03-01T02"),  # three fields
        validation=("2019-03-24T00", "2019-03-24T01"),  # two fields
        **extra,
    )


def test_the_key_is_checked_when_the_configuration_is_built(tmp_path, shared_data):
    values = tiny_run_values(tmp_path, shared_data, data={"crops_per_field": 0})
    with pytest.raises(ConfigError, match=r"data.crops_per_field = 0 is out of range"):
        from_dict(TrainConfig, values)
    assert from_dict(TrainConfig, tiny_run_values(tmp_path, shared_data)).data.crops_per_field == 1


def test_training_draws_that_many_random_windows_of_every_field(shared_data):
    train = from_config(_data(shared_data, crops_per_field=4), "train")
    assert len(train) == 3 * 4
    assert train.crop == "random"
    fine = np.stack([train[i]["fine"].numpy() for i in range(len(train))])
    # four different windows of each field: no two items of a field are the same crop
    for field in range(3):
        crops = fine[4 * field : 4 * field + 4].reshape(4, -1)
        assert len({c.tobytes() for c in crops}) == 4
    # and a new epoch draws new windows
    train.set_epoch(1)
    again = np.stack([train[i]["fine"].numpy() for i in range(len(train))])
    assert not np.array_equal(fine, again)


def test_validation_keeps_the_same_several_windows_at_every_evaluation(shared_data):
    val = from_config(_data(shared_data, crops_per_field=3), "validation")
    assert len(val) == 2 * 3
    assert val.crop == "fixed"
    first = np.stack([val[i]["fine"].numpy() for i in range(len(val))])
    for field in range(2):
        crops = first[3 * field : 3 * field + 3].reshape(3, -1)
        assert len({c.tobytes() for c in crops}) == 3  # three windows, not one repeated
    val.set_epoch(5)  # nothing calls it on validation, but fixed windows do not move anyway
    assert np.array_equal(first, np.stack([val[i]["fine"].numpy() for i in range(len(val))]))


def test_the_card_of_a_default_run_says_one_centre_window(tmp_path, shared_data):
    values = tiny_run_values(tmp_path, shared_data, eval_every=0, data={"validation": []})
    trainer = Trainer(from_dict(TrainConfig, values))
    trainer.fit()
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert (
        "- samples: 408 training fields, 1 random window of 32 x 32 cells of each per epoch\n"
        in card
    )


def test_one_crop_per_field_keeps_the_centre_window(shared_data):
    """The default is what every run before the key did: one centre crop per field."""
    one = from_config(_data(shared_data), "validation")
    assert (len(one), one.crop) == (2, "center")
    explicit = from_config(_data(shared_data), "validation", crop="center", crops_per_field=1)
    for i in range(2):
        assert np.array_equal(one[i]["fine"].numpy(), explicit[i]["fine"].numpy())


def test_a_small_split_trains_with_more_crops_per_field(tmp_path, shared_data, capsys):
    """Three training fields and a batch of four: refused with one crop per field (the message
    names the key), trained with two, validating on two fixed windows of each field."""
    values = tiny_run_values(
        tmp_path,
        shared_data,
        batch_size=4,
        data={"train": ["2019-03-01T00", "2019-03-01T02"]},
    )
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values))
    err = refused_on_one_line(path, [], capsys, tmp_path / "run")
    assert "raise data.crops_per_field (now 1" in err

    values["data"]["crops_per_field"] = 2
    trainer = Trainer(from_dict(TrainConfig, values))
    trainer.fit()
    assert len(trainer.train_set) == 6
    assert (len(trainer.val_set), trainer.val_set.crop) == (8, "fixed")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["crops_per_field"] == 2
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert (
        "- samples: 3 training fields, 2 random windows of 32 x 32 cells of each per epoch; "
        "validation scored 2 windows, drawn once from the seed, of each field\n"
    ) in card
    records = (tmp_path / "run" / "validation.jsonl").read_text().splitlines()
    assert np.isfinite(json.loads(records[-1])["val/rmse"])


def test_the_card_names_the_dims_pooled_as_samples(tmp_path, shared_data):
    """Levels given as a dim are samples of one channel: the card says the fields are every
    time x level combination, not only the split dim."""
    import xarray as xr

    with xr.open_dataset(shared_data / ERA5) as ds:
        cut = ds.isel(time=slice(0, 4)).load()
    levels = xr.concat([cut, cut + 1.0], dim="level").assign_coords(level=[850, 500])
    levels["t2m"].attrs = cut["t2m"].attrs
    path = tmp_path / "levels.nc"
    levels.transpose("time", "level", ...).to_netcdf(path)
    values = tiny_run_values(
        tmp_path,
        shared_data,
        eval_every=0,
        data={"paths": [str(path)], "train": [], "validation": []},
    )
    Trainer(from_dict(TrainConfig, values)).fit()
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "- samples: 8 training fields (every time x level combination), 1 random" in card
