"""Choosing the normalization transforms: ``transforms=`` keys refused unless fitted,
``data.transforms`` of a training run, the fix for values <= -1 said the way the user sets it,
and the warning when log1p meets values so small (m, kg m-2 s-1) that it is the identity.

The data are a synthetic precipitation (kg m-2) made from the real ERA5 t2m file: the square of
the positive anomalies, about 60 % zeros; the runs are in-process with the tiny preset, 32 x 32
crops and one optimiser step."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from train_runs import ERA5, refused_on_one_line, tiny_run_values

from flexdownscale.config import DataConfig, TrainConfig, apply_overrides, from_dict, from_toml
from flexdownscale.data import Normalizer, from_config
from flexdownscale.errors import ConfigError, DataError, FlexDownscaleWarning
from flexdownscale.train import Trainer, dump_toml, main

TRAIN = ["2019-03-01", "2019-03-03T23"]
VALIDATION = ["2019-03-04T00", "2019-03-04T03"]


def _precipitation(shared_data: Path, name: str = "tp") -> xr.Dataset:
    """Four days of a skewed, non-negative field in kg m-2 (``name`` chosen by the test)."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        t = ds.t2m.sel(time=slice("2019-03-01", "2019-03-04T23")).load()
    tp = (np.maximum(t - t.mean("time") - 0.5, 0.0) ** 2 * 0.5).astype("float32")
    tp.attrs = {"units": "kg m-2"}
    return xr.Dataset({name: tp})


@pytest.fixture
def prate(shared_data):
    """The field under a name that ``transforms="auto"`` does not take for precipitation."""
    return _precipitation(shared_data, "prate")


# ---------------------------------------------------------------------------------------------
# transforms= keys


@pytest.mark.parametrize(("key", "hint"), [("PRATE", "prate"), ("p_rate", "prate"), ("tp", None)])
def test_fit_refuses_a_transform_for_a_variable_it_does_not_fit(prate, key, hint):
    """``Normalizer.fit(ds, transforms={"PRATE": "log1p"})`` fitted ``prate: none`` without a
    word (mean 0.5689, std 1.878 on the reviewer's data, against log1p's 0.2376 / 0.5069)."""
    with pytest.raises(ConfigError) as err:
        Normalizer.fit(prate, transforms={key: "log1p"})
    text = str(err.value)
    assert f"transforms names {key!r}, but it is not among the variables normalized ('prate')" in (
        text
    )
    assert (f"(did you mean {hint!r}?)" in text) == (hint is not None)
    # the name as the data write it chooses log1p: the statistics are those of log1p(x)
    stats = Normalizer.fit(prate, transforms={"prate": "log1p"}).stats["prate"]
    logged = np.log1p(prate.prate.values.astype(np.float64))
    assert stats.transform == "log1p"
    assert stats.mean == pytest.approx(logged.mean(), rel=1e-9)
    assert stats.std == pytest.approx(logged.std(), rel=1e-9)


def test_from_config_refuses_a_transform_for_a_variable_it_does_not_fit(prate, tmp_path):
    path = tmp_path / "prate.nc"
    prate.to_netcdf(path)
    values = dict(paths=(str(path),), factor=4, crop_size=32, train=TRAIN, validation=VALIDATION)
    # the from_config argument (the reviewer's pr_rate typo) and DataConfig.transforms without
    # data.variables are checked against the variables the data give
    with pytest.raises(ConfigError, match=r"names 'pr_rate'.*\(did you mean 'prate'\?\)"):
        from_config(DataConfig(**values), "train", transforms={"pr_rate": "log1p"})
    with pytest.raises(ConfigError, match=r"^data\.transforms \(DataConfig\.transforms\) names"):
        from_config(DataConfig(**values, transforms={"pr_rate": "log1p"}), "train")
    # with data.variables the configuration itself refuses it, before any data is read
    with pytest.raises(ConfigError, match=r"not among data\.variables \('prate'\).*'prate'\?"):
        DataConfig(**values, variables=("prate",), transforms={"pr_rate": "log1p"})
    # DataConfig.transforms reaches the fit
    data = from_config(DataConfig(**values, transforms={"prate": "log1p"}), "train")
    assert data.normalizer.stats["prate"].transform == "log1p"
    assert from_config(DataConfig(**values), "train").normalizer.stats["prate"].transform == "none"


# ---------------------------------------------------------------------------------------------
# data.transforms in a run's configuration


def test_data_transforms_is_checked_written_and_overridden(tmp_path, shared_data):
    base = tiny_run_values(tmp_path, shared_data)
    base["data"]["variables"] = ["tp"]
    config = from_dict(TrainConfig, base)
    assert config.data.transforms == "auto"
    # the TOML table form, and back through the run folder's config.toml
    table = from_dict(TrainConfig, {**base, "data": {**base["data"], "transforms": {"tp": "none"}}})
    assert table.data.transforms == {"tp": "none"}
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(json.loads(json.dumps(_plain(table)))))
    assert '[data.transforms]\ntp = "none"' in path.read_text()
    assert from_toml(TrainConfig, path) == table
    # command-line overrides: one entry, a whole inline table, back to auto
    assert apply_overrides(config, ["data.transforms.tp=log1p"]).data.transforms == {"tp": "log1p"}
    assert apply_overrides(table, ['data.transforms={tp="log1p"}']).data.transforms == {
        "tp": "log1p"
    }
    assert apply_overrides(table, ["data.transforms=auto"]).data.transforms == "auto"
    # bad values and keys name the key as the TOML writes it
    with pytest.raises(ConfigError, match=r"^data\.transforms\.tp = 'LOG1P' is not a valid option"):
        apply_overrides(config, ["data.transforms.tp=LOG1P"])
    with pytest.raises(ConfigError, match=r"^data\.transforms = 'Auto' .*expected 'auto' or a"):
        apply_overrides(config, ["data.transforms=Auto"])
    with pytest.raises(ConfigError, match=r"names 'TP', not among data\.variables.*'tp'\?"):
        apply_overrides(config, ["data.transforms.TP=none"])
    with pytest.raises(ConfigError, match="empty table"):
        DataConfig(transforms={})


def _plain(config: TrainConfig) -> dict:
    from flexdownscale.config import to_dict

    return to_dict(config)


def _run_values(
    tmp_path: Path, shared_data: Path, data: xr.Dataset, file: str = "precip.nc", **top
) -> dict:
    path = tmp_path / file
    data.to_netcdf(path)
    values = tiny_run_values(
        tmp_path, shared_data, **{"eval_every": 0, "checkpoint_every": 0, **top}
    )
    values["data"] = {
        **values["data"],
        "paths": [str(path)],
        "variables": list(map(str, data.data_vars)),
        "train": TRAIN,
        "validation": VALIDATION,
    }
    return values


def test_a_run_normalizes_with_data_transforms(tmp_path, shared_data, prate):
    """A run always fitted with transforms="auto": ``prate`` (no precipitation word) could not
    get log1p, ``data.transforms`` was an unknown key. Now it chooses, and the run records it."""
    values = _run_values(tmp_path, shared_data, prate)
    run = tmp_path / "run"
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values))
    assert main(["--config", str(path), "data.transforms.prate=log1p"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"]["transforms"] == {"prate": "log1p"}
    assert from_toml(TrainConfig, run / "config.toml").data.transforms == {"prate": "log1p"}
    (model,) = {p.parent for p in run.rglob("normalization.json")}
    stats = Normalizer.from_json(model / "normalization.json").stats["prate"]
    assert stats.transform == "log1p"
    train = prate.prate.sel(time=slice(*TRAIN)).values.astype(np.float64)
    assert stats.mean == pytest.approx(np.log1p(train).mean(), rel=1e-9)
    # without it, auto: prate is not taken for precipitation
    trainer = Trainer(from_dict(TrainConfig, {**values, "run_dir": str(tmp_path / "other")}))
    assert trainer.train_set.normalizer.stats["prate"].transform == "none"


def test_values_below_minus_one_name_the_fix_where_it_is_set(tmp_path, shared_data, capsys):
    """The run's error for values <= -1 under log1p said "or in Python normalize without log1p
    (transforms={'tp': 'none'})", which a run cannot do; it now names data.transforms, which
    then trains. In Python the keyword stays."""
    data = _precipitation(shared_data)
    data.tp.loc["2019-03-04T01"] = -1.0  # a validation hour
    values = _run_values(tmp_path, shared_data, data)
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values))
    err = refused_on_one_line(path, [], capsys, tmp_path / "run")
    # the centred validation crop (32 x 32) and its halo: 40 x 32 cells of the hour read
    assert (
        "the validation split: variable 'tp' has 1280 values <= -1 (down to -1) at "
        "time=2019-03-04 01:00:00"
    ) in err
    assert 'normalize without log1p: data.transforms = {tp = "none"} in the run\'s TOML' in err
    assert "in Python normalize" not in err
    trainer = Trainer(apply_overrides(from_dict(TrainConfig, values), ["data.transforms.tp=none"]))
    assert trainer.train_set.normalizer.stats["tp"].transform == "none"
    # in the training split: the fit's own message, the same fix
    data.tp.loc["2019-03-01T01"] = -2.0
    bad = _run_values(tmp_path, shared_data, data, "bad_train.nc")
    with pytest.raises(DataError, match=r"down to -2.*data\.transforms = \{tp = \"none\"\}"):
        Trainer(from_dict(TrainConfig, bad))
    # Python
    with pytest.raises(DataError, match=r"without log1p: transforms=\{'tp': 'none'\}$"):
        Normalizer.fit(data)


# ---------------------------------------------------------------------------------------------
# log1p on values in m or kg m-2 s-1


@pytest.mark.parametrize(("units", "scale"), [("m", 1e-3), ("kg m-2 s-1", 1 / 3600)])
def test_log1p_on_values_too_small_for_it_warns(shared_data, units, scale):
    """The same precipitation fitted log1p mean 0.2376 / std 0.5069 in kg m-2 (normalized skew
    2.71), 0.000567 / 0.001865 in m (skew 6.62) and 0.000158 in kg m-2 s-1 (6.66): log1p did
    nothing, and normalization.json said log1p. The fit now says so, with the conversion."""
    mm = _precipitation(shared_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        in_mm = Normalizer.fit(mm).stats["tp"]  # in kg m-2: no warning
    small = mm.assign(tp=(mm.tp * scale).assign_attrs(units=units))
    with pytest.warns(FlexDownscaleWarning) as record:
        stats = Normalizer.fit(small).stats["tp"]
    (warning,) = record
    assert warning.filename == __file__  # points at the user's call
    text = str(warning.message)
    largest = float(small.tp.max())
    assert f"variable 'tp' (in {units!r}) is normalized with log1p" in text
    assert f"largest {largest:.3g}" in text
    assert "convert first (m: ds['tp'] * 1000" in text
    # what the warning says: log1p is the identity there to within the largest value / 2
    assert stats.transform == "log1p"
    raw = small.tp.values.astype(np.float64)
    assert stats.mean == pytest.approx(raw.mean(), rel=largest / 2)
    assert stats.std == pytest.approx(raw.std(), rel=largest / 2)
    assert stats.mean + 3 * stats.std < 0.05 < in_mm.mean + 3 * in_mm.std


def test_the_item_time_log1p_guard_gives_the_same_fixes_as_the_split_check():
    """The last guard (values <= -1 met when an item is read, the split's check skipped with
    ``nan_fields=None``) said only "clip at 0"; it now gives the clip line and the way to
    normalize without log1p, as the split's check does."""
    from flexdownscale.data import SuperResolutionDataset

    rng = np.random.default_rng(0)
    km = {"units": "km"}
    ds = xr.Dataset(
        {"tp": (("time", "y", "x"), rng.gamma(0.5, 2.0, (4, 32, 32)), {"units": "mm"})},
        coords={
            "time": np.arange(4.0),
            "y": ("y", np.arange(32.0), km),
            "x": ("x", np.arange(32.0), km),
        },
    )
    normalizer = Normalizer.fit(ds, transforms={"tp": "log1p"})
    bad = ds.copy(deep=True)
    bad["tp"][1, 3, 3] = -2.0
    data = SuperResolutionDataset(
        bad, factor=4, crop_size=None, normalizer=normalizer, nan_fields=None
    )
    data[0]  # the clean field reads
    with pytest.raises(DataError, match=r"1 value\(s\) <= -1 \(down to -2\) at time=1.0") as caught:
        data[1]
    text = str(caught.value)
    assert "ds['tp'].clip(min=0)" in text
    assert "normalize without log1p: transforms={'tp': 'none'}" in text


def test_values_at_minus_one_are_flagged_without_a_numpy_warning():
    """The check for fill values that a log1p variable cannot take met log1p(-1) = -inf and let
    numpy's "divide by zero encountered in log1p" RuntimeWarning reach the user ahead of the
    package's own DataError."""
    import warnings

    from flexdownscale.data.normalize import VariableStats, far_fills

    stats = VariableStats(mean=0.5, std=1.0, transform="log1p")
    values = np.array([-1.0, 0.0, 1e20, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flagged = far_fills(values, stats)
    assert flagged.tolist() == [False, False, True, False]
