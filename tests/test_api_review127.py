"""Reviews 126 and 127 of the Python API and the command line: a ``data.dims`` training key (the
message that named ``dims=`` had none to offer), typed errors for a model of the wrong kind or
type given to ``forecast`` / ``from_pretrained``, the accessor's keyword and argument messages,
a forecast's ``lead`` described as model steps, mapping arguments, ``blend=None``, and the
condition: checked before it is compared with the input's, one-element values taken, and a near
name of the input's pointed at."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_forecast_fixes import box, tiny_forecaster

import flexdownscale as fd
from flexdownscale.config import DataConfig, TrainConfig, apply_overrides, from_toml
from flexdownscale.data import degrade
from flexdownscale.data.datasets import from_config
from flexdownscale.errors import (
    ConfigError,
    FlexDownscaleWarning,
    GridError,
    MissingVariableError,
    ModelFolderError,
)
from flexdownscale.pipeline import DEFAULT_TILE, Downscaler, Forecaster

RE = "reynolds_number"


@pytest.fixture(scope="module")
def era5() -> Downscaler:
    return Downscaler.from_pretrained("era5-t2m-x4")


@pytest.fixture(scope="module")
def coarse() -> xr.Dataset:
    """One time of the packaged ERA5 sample, coarsened x4 (8 x 12 cells)."""
    fine = fd.demo.open_sample("era5_t2m_uk").isel(time=[0]).load()
    return degrade(fine, 4, boundary="trim")


@pytest.fixture(scope="module")
def conditioned() -> Forecaster:
    return tiny_forecaster(condition={"name": RE, "scale": 4000.0})


# --------------------------------------------------------------------------------------------
# 1. data.dims
# --------------------------------------------------------------------------------------------


def _ij_file(tmp_path) -> str:
    """A file whose grid dims are ``j`` and ``i`` in km: neither names nor CF attributes tell
    which is x."""
    rng = np.random.default_rng(0)
    km = {"units": "km"}
    ds = xr.Dataset(
        {"u": (("time", "j", "i"), rng.normal(size=(4, 32, 32)).astype("f4"), {"units": "m s-1"})},
        coords={
            "time": pd.date_range("2000-01-01", periods=4, freq="D"),
            "j": ("j", np.arange(32.0), km),
            "i": ("i", np.arange(32.0), km),
        },
    )
    path = str(tmp_path / "ij.nc")
    ds.to_netcdf(path)
    return path


def test_data_dims_names_the_grid_dims_of_training_files(tmp_path):
    """`data.dims={x="i",y="j"}` was an unknown key, though the message of such a file said
    "name them explicitly, e.g. dims={'x': 'lon', 'y': 'lat'}", which training had no way to."""
    path = _ij_file(tmp_path)
    kwargs = {
        "paths": (path,),
        "variables": ("u",),
        "factor": 2,
        "crop_size": 16,
        "train": ("2000-01-01", "2000-01-03"),
        "validation": ("2000-01-04",),
    }
    with pytest.raises(GridError, match=r'in a training configuration: data\.dims = \{x = "lon"'):
        from_config(DataConfig(**kwargs), "train")
    train = from_config(DataConfig(**kwargs, dims={"x": "i", "y": "j"}), "train")
    assert len(train) == 3
    assert tuple(train[0]["fine"].shape) == (1, 16, 16)
    assert train.sources[0].spec.x == "i"
    # the ways a run writes it: a TOML inline table, and the training command's overrides
    toml = tmp_path / "run.toml"
    toml.write_text('[data]\ndims = {x = "i", y = "j"}\n')
    assert from_toml(TrainConfig, toml).data.dims == {"x": "i", "y": "j"}
    config = apply_overrides(TrainConfig(), ["data.dims.x=i", "data.dims.y=j"])
    assert config.data.dims == {"x": "i", "y": "j"}


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ({"lon": "i"}, r"data\.dims has the key 'lon'; expected keys among 'x', 'y', 'time' "),
        ({"X": "i"}, r"key 'X'.*did you mean 'x'\?"),
        ({"x": "i", "y": "i"}, r"gives x and y the same dimension 'i'"),
        ({"x": ""}, r"data\.dims\.x is empty"),
        (["x"], r"data\.dims must be a table"),
    ],
)
def test_data_dims_refuses_what_is_no_axis_table(dims, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(dims=dims)


# --------------------------------------------------------------------------------------------
# 2. a model of the wrong kind or type
# --------------------------------------------------------------------------------------------


def test_forecast_and_from_pretrained_refuse_what_is_no_forecast_model(era5):
    """`ds.flex.forecast(downscaler, 1)`, `ds.flex.forecast(123, 1)` and
    `Forecaster.from_pretrained(123 / None)` were raw TypeErrors from pathlib."""
    ds = box()
    with pytest.raises(ModelFolderError, match=r"^model is a Downscaler \('era5-t2m-x4'\)") as e:
        ds.flex.forecast(era5, 1)
    assert "a Forecaster, a forecast model folder path" in str(e.value)
    assert "ds.flex.downscale(model)" in str(e.value)
    with pytest.raises(ModelFolderError, match=r"^model=123 \(int\); expected a Forecaster, "):
        ds.flex.forecast(123, 1)
    for bad in (123, None):
        with pytest.raises(ModelFolderError, match=rf"^name_or_path={bad!r} .*forecast model"):
            Forecaster.from_pretrained(bad)
    with pytest.raises(ModelFolderError, match=r"^name_or_path=None .*shipped model name"):
        Downscaler.from_pretrained(None)
    with pytest.raises(ModelFolderError, match=r"is a Downscaler .*downscale with it"):
        Forecaster.from_pretrained(era5)


def test_downscale_names_forecast_for_a_forecaster(coarse):
    model = tiny_forecaster()
    with pytest.raises(ModelFolderError, match=r"^model is a Forecaster \('tiny-box'\)") as e:
        coarse.flex.downscale(model)
    assert "ds.flex.forecast(model, lead_steps)" in str(e.value)
    with pytest.raises(ModelFolderError, match=r"^name_or_path is a Forecaster .*forecast with"):
        Downscaler.from_pretrained(model)


# --------------------------------------------------------------------------------------------
# 3, 9. the command line's help
# --------------------------------------------------------------------------------------------


def _help(command: str, flag: str) -> str:
    from flexdownscale.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return next(a.help for a in sub._actions if flag in a.option_strings)


def test_cli_help_gives_the_defaults():
    """--members said "(default: 1, no member dim)", but the default is no member dim and 1
    gives one of size 1; --tile and --overlap gave no default; --condition said it is read from
    the attributes, but a coordinate or variable is read first."""
    for command in ("downscale", "forecast"):
        members = _help(command, "--members")
        assert "default: 1" not in members
        assert "without a member dim" in members
        assert "size 1" in members
        condition = _help(command, "--condition")
        assert "coordinate or variable" in condition
        assert condition.index("coordinate") < condition.index("global attribute")
    assert f"default: {DEFAULT_TILE}, rounded up" in _help("downscale", "--tile")
    assert "default: about tile/4" in _help("downscale", "--overlap")


def test_demo_case_takes_the_shipped_models_name():
    """`demo --case era5-t2m-x4` (the model's name) was refused; the case is era5_t2m_x4."""
    from flexdownscale.cli import build_parser

    args = build_parser().parse_args(["demo", "--case", "era5-t2m-x4", "--case", "kolmogorov_x8"])
    assert args.case == ["era5_t2m_x4", "kolmogorov_x8"]


# --------------------------------------------------------------------------------------------
# 4. the accessor's keywords and arguments
# --------------------------------------------------------------------------------------------


def test_forecast_accessor_names_its_own_arguments():
    ds = box()
    model = tiny_forecaster()
    with pytest.raises(TypeError, match=r"'member'; did you mean 'members'\?"):
        ds.flex.forecast(model, 1, member=2)
    with pytest.raises(TypeError, match=r"^ds\.flex\.forecast\(\) .*'lead_step'; did you mean"):
        ds.flex.forecast(model, lead_step=1)
    with pytest.raises(TypeError, match=r"^ds\.flex\.forecast\(\) missing .*'lead_steps'"):
        ds.flex.forecast(model)
    with pytest.raises(ModelFolderError, match=r"^da\.flex\.forecast needs model="):
        ds["vorticity"].flex.forecast(None, 1)


# --------------------------------------------------------------------------------------------
# 5. lead in model steps
# --------------------------------------------------------------------------------------------


def test_lead_is_described_in_the_models_time_steps():
    """The lead's long_name said "time steps of the input", wrong when the input is thinned
    to the model's step (the command line takes every k-th frame)."""
    ds = box(times=3)
    ds["time"] = pd.date_range("2020-01-01", periods=3, freq="6h")
    out = tiny_forecaster()(ds, lead_steps=2, seed=0)
    assert out["lead"].attrs["long_name"] == "lead in time steps of the model (one step: 6 hours)"
    hourly = box(times=7)
    hourly["time"] = pd.date_range("2020-01-01", periods=7, freq="h")
    grid = {"time_step": {"value": 21600.0, "units": "s"}}  # the folder records 6 h
    out = tiny_forecaster(grid)(hourly.isel(time=slice(None, None, 6)), lead_steps=1, seed=0)
    assert out["lead"].attrs["long_name"] == "lead in time steps of the model (one step: 6 hours)"
    counted = tiny_forecaster()(box(times=3), lead_steps=1, seed=0)  # time in "s", no date
    assert counted["lead"].attrs["long_name"].startswith("lead in time steps of the model")


# --------------------------------------------------------------------------------------------
# 6. argument types
# --------------------------------------------------------------------------------------------


def test_rename_and_dims_must_be_mappings(era5, coarse):
    """`rename=[("t2m", "t2m")]` gave a misleading MissingVariableError (the accessor an
    AttributeError), `dims=["x"]` a raw ValueError."""
    pairs = [("t2m", "t2m")]
    for call in (lambda: era5(coarse, rename=pairs), lambda: coarse.flex.downscale(rename=pairs)):
        with pytest.raises(ConfigError, match=r"^rename = \[\('t2m', 't2m'\)\] is a list; ") as e:
            call()
        assert "rename={'tas': 't2m'}" in str(e.value)
        assert "dict(rename)" in str(e.value)
    with pytest.raises(ConfigError, match=r"^dims = \['x'\] is a list; expected a mapping"):
        era5(coarse, dims=["x"])
    with pytest.raises(ConfigError, match=r"^rename = 'foo' is a str; expected a mapping"):
        tiny_forecaster()(box(), lead_steps=1, rename="foo")


def test_blend_none_is_the_default(era5, coarse):
    kw = {"steps": 1, "seed": 0}
    out = era5(coarse, blend=None, **kw)
    assert out.attrs["flexdownscale_blend"] == "cosine"
    np.testing.assert_array_equal(out["t2m"].values, era5(coarse, **kw)["t2m"].values)


def test_forecast_batch_size_zero_says_or_none():
    with pytest.raises(ConfigError, match=r"^batch_size = 0 must be a positive integer or None$"):
        tiny_forecaster()(box(), lead_steps=1, batch_size=0)


def test_repeated_variables_are_named(era5, coarse):
    """Without a model, `variables=["t2m", "t2m"]` said they "are no shipped model's
    variables"."""
    with pytest.raises(ConfigError, match=r"names 't2m' more than once; list each input"):
        coarse.flex.downscale(variables=["t2m", "t2m"])
    with pytest.raises(ConfigError, match=r"names 't2m' more than once"):
        era5(coarse, variables=["t2m", "t2m"])


# --------------------------------------------------------------------------------------------
# 7. the condition
# --------------------------------------------------------------------------------------------


def test_a_non_finite_condition_is_refused_before_it_is_compared(conditioned):
    """`condition=nan` first warned "runs at reynolds_number = nan as asked", then raised."""
    ds = box().assign_attrs({RE: 2000.0})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError, match=r"condition= argument = nan; expected a finite"):
            conditioned(ds, lead_steps=1, condition=float("nan"))
    assert not [w for w in caught if issubclass(w.category, FlexDownscaleWarning)]


def test_a_condition_of_one_element_is_its_value(conditioned):
    """A one-value DataArray along time, `[2000.0]` and `np.array([2000.0])` were "not a
    number"; the input's own variable holding one value along time is taken, so they are too."""
    ds = box()
    kw = {"lead_steps": 1, "seed": 0}
    plain = conditioned(ds, condition=2000.0, **kw)
    along_time = xr.DataArray([2000.0, 2000.0, 2000.0], dims="time")
    for value in ([2000.0], np.array([2000.0]), along_time, xr.DataArray(2000.0)):
        out = conditioned(ds, condition=value, **kw)
        assert out.attrs[f"flexdownscale_condition_{RE}"] == 2000.0
        np.testing.assert_array_equal(out["vorticity"].values, plain["vorticity"].values)
    several = xr.DataArray([1000.0, 2000.0, 2000.0], dims="time")
    with pytest.raises(ConfigError, match=r"is a DataArray that holds 2 different values") as e:
        conditioned(ds, condition=several, **kw)
    assert "(1000, 2000) along 'time'; one call runs at one condition: pass a number" in str(
        e.value
    )
    with pytest.raises(ConfigError, match=r"is a list that is empty"):
        conditioned(ds, condition=[], **kw)
    # an attribute of the input holding a one-element array (as netCDF attributes can)
    read = conditioned(box().assign_attrs({RE: np.array([2000.0])}), **kw)
    np.testing.assert_array_equal(read["vorticity"].values, plain["vorticity"].values)


@pytest.mark.parametrize(
    ("change", "found", "fix"),
    [
        (lambda ds: ds.assign_attrs(Re=2000.0), "the global attribute 'Re'", "ds.attrs.pop('Re')"),
        (
            lambda ds: ds.assign_attrs(Reynolds_number=2000.0),
            "the global attribute 'Reynolds_number'",
            "ds.attrs.pop('Reynolds_number')",
        ),
        (
            lambda ds: ds.assign_coords(Re=2000.0),
            "the coordinate 'Re'",
            "ds = ds.rename({'Re': 'reynolds_number'})",
        ),
    ],
)
def test_a_condition_under_a_near_name_is_pointed_at(conditioned, change, found, fix):
    with pytest.raises(MissingVariableError, match="no attribute or scalar variable") as e:
        conditioned(change(box()), lead_steps=1)
    text = str(e.value)
    assert f"it has {found} = 2000.0: if that is the model's 'reynolds_number'" in text
    assert fix in text
    assert "condition=2000.0" in text


def test_no_near_name_keeps_the_plain_advice(conditioned):
    with pytest.raises(MissingVariableError, match=r"pass condition=<value> or set ds\.attrs"):
        conditioned(box().assign_attrs(title="a box"), lead_steps=1)
