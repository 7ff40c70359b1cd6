"""Tests of the ``.flex`` accessor (thin delegation to the Downscaler)."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import torch
import xarray as xr
from test_pipeline import ERA5, era5_pair, make_downscaler

import flexdownscale  # noqa: F401  (registers the accessor)
from flexdownscale.errors import (
    ConfigError,
    DataError,
    FlexDownscaleWarning,
    MissingVariableError,
    ModelFolderError,
    UnitsError,
    UnsupportedFactorError,
)


@pytest.fixture(scope="module")
def setup(shared_data):
    fine, coarse = era5_pair(shared_data, times=2)
    return coarse, make_downscaler(fine)


def test_accessor_stores_only_the_object(setup):
    coarse, _ = setup
    assert list(vars(coarse.flex)) == ["_obj"]
    assert coarse.flex._obj is coarse
    da = coarse["t2m"]
    assert list(vars(da.flex)) == ["_obj"]
    assert da.flex._obj is da


@pytest.mark.parametrize("chunked", [False, True])
def test_dataset_and_dataarray_delegate(setup, chunked):
    coarse, model = setup
    data = coarse.chunk(time=1) if chunked else coarse
    expected = model(coarse, members=2, seed=4)
    with dask.config.set(scheduler="sync"):
        got_ds = data.flex.downscale(model, members=2, seed=4)
        got_da = data["t2m"].flex.downscale(model, members=2, seed=4)
    assert isinstance(got_ds["t2m"].data, dask.array.Array) is chunked
    xr.testing.assert_identical(got_ds.drop_attrs(), expected.drop_attrs())
    np.testing.assert_array_equal(got_da["t2m"].values, expected["t2m"].values)


def test_model_by_path_is_cached(setup, tmp_path):
    coarse, model = setup
    path = model.save_pretrained(tmp_path / "m")
    a = coarse.flex.downscale(str(path), seed=1)
    b = coarse.flex.downscale(path, seed=1)
    np.testing.assert_array_equal(a["t2m"].values, b["t2m"].values)
    from flexdownscale.pipeline import _CACHE

    assert any(key[0] == str(path.resolve()) for key in _CACHE)


def test_no_shipped_model_matches(setup):
    coarse, _ = setup
    # the variables match a shipped model, the factor does not
    with pytest.raises(UnsupportedFactorError, match=r"downscale by \[4\] only .* factor=4"):
        coarse.flex.downscale(factor=2)
    # the names do not match: the message lists what is shipped and the rename that would fit
    with pytest.raises(ModelFolderError, match="no shipped model") as err:
        coarse.rename(t2m="tas").flex.downscale(factor=4)
    assert "era5-t2m-x4 (t2m, x4)" in str(err.value)
    assert "rename={'tas': 't2m'}" in str(err.value)
    # an unnamed DataArray: nothing to choose a model by
    with pytest.raises(MissingVariableError, match=r"no named variable.*da\.rename"):
        coarse["t2m"].rename(None).flex.downscale(factor=4)


def test_variables_without_model(shared_data):
    from flexdownscale.data import degrade, normalize_grid

    fine = normalize_grid(xr.open_dataset(shared_data / ERA5).isel(time=[0]))
    coarse = degrade(fine, 4, boundary="trim")  # on the shipped model's training lattice
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    extra = coarse.assign(other=coarse["t2m"] * 0)
    picked = extra.flex.downscale(variables=["t2m"], factor=4, seed=0)
    assert picked.attrs["flexdownscale_model"] == "era5-t2m-x4"  # the name, not the install path
    with pytest.raises(ModelFolderError, match="needs the model: model=<name or folder>"):
        extra.rename(t2m="tas").flex.downscale(variables=["tas"], factor=4)


def test_forecast_model_with_weights_of_another_architecture_is_a_typed_error(tmp_path):
    """Forecaster.from_pretrained raised a bare RuntimeError where Downscaler raises
    WeightsMismatchError; both now go through one loader."""
    from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
    from flexdownscale.data import Normalizer, VariableStats
    from flexdownscale.errors import WeightsMismatchError
    from flexdownscale.hub import save_model_folder
    from flexdownscale.models import build_model
    from flexdownscale.pipeline import Forecaster

    config = ModelConfig(preset="tiny", task="forecast", past_frames=2)
    wrong = build_model(ModelConfig(preset="tiny", task="forecast", past_frames=3)).state_dict()
    path = save_model_folder(
        tmp_path / "forecast",
        state_dict=wrong,
        model=config,
        diffusion=DiffusionConfig(),
        sampler=SamplerConfig(),
        variables=["t2m"],
        units={"t2m": "K"},
        factor=1,
        normalization=Normalizer({"t2m": VariableStats(mean=280.0, std=5.0)}).to_dict(),
        grid={},
        card="# forecast\n",
        task="forecast",
    )
    with pytest.raises(WeightsMismatchError, match="do not fit the flex tiny architecture"):
        Forecaster.from_pretrained(path)


def test_forecast(setup):
    from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
    from flexdownscale.data import Normalizer, add_bounds
    from flexdownscale.models import build_model
    from flexdownscale.pipeline import Forecaster

    coarse, _ = setup
    torch.manual_seed(0)
    net = build_model(ModelConfig(preset="tiny", task="forecast", past_frames=2, dropout=0.0))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model = Forecaster(
        net,
        DiffusionConfig(),
        normalizer=Normalizer.fit(coarse[["t2m"]]),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(steps=2),
    )
    out = coarse.flex.forecast(model, 3, members=2, seed=1)
    assert out["t2m"].dims == ("member", "lead", "latitude", "longitude")
    assert out.sizes["lead"] == 3
    step = coarse["time"].values[1] - coarse["time"].values[0]
    np.testing.assert_array_equal(
        out["valid_time"].values, coarse["time"].values[-1] + step * np.arange(1, 4)
    )
    again = coarse["t2m"].flex.forecast(model, 3, members=2, seed=1)
    np.testing.assert_array_equal(out["t2m"].values, again["t2m"].values)
    assert not np.array_equal(out["t2m"][0].values, out["t2m"][1].values)
    with pytest.raises(ModelFolderError, match="needs model="):
        coarse.flex.forecast(None, 2)
    assert out.attrs["flexdownscale_sampler"] == "ddim"
    assert out.attrs["flexdownscale_steps"] == 2
    assert out.attrs["flexdownscale_members"] == 2
    assert "forecast 3 steps ahead with model" in out.attrs["history"].splitlines()[0]
    assert "(ddim eta=0, 2 steps, 2 members, seed 1)" in out.attrs["history"]
    np.testing.assert_array_equal(out["latitude_bnds"].values, add_bounds(coarse)["latitude_bnds"])
    assert out["latitude"].attrs["bounds"] == "latitude_bnds"
    # sampler options reach the rollout: DDIM with eta = 1 draws fresh noise at every step
    stochastic = coarse.flex.forecast(model, 3, members=2, seed=1, sampler_options={"eta": 1.0})
    assert stochastic.attrs["flexdownscale_sampler_options"] == "eta=1"
    assert not np.array_equal(stochastic["t2m"].values, out["t2m"].values)
    with pytest.raises(ConfigError, match=r"\['delta'\] do not apply to sampler 'ddim'"):
        coarse.flex.forecast(model, 3, sampler_options={"delta": 1.0})
    # the input checks are the Downscaler's: names by position, renames, units
    other = coarse.rename({"t2m": "tas"})
    by_position = other.flex.forecast(model, 3, members=2, seed=1, variables=["tas"])
    np.testing.assert_array_equal(by_position["t2m"].values, out["t2m"].values)
    with pytest.raises(MissingVariableError, match=r"pass rename=\{'tas': 't2m'\}"):
        other.flex.forecast(model, 3)
    celsius = coarse.assign(t2m=(coarse["t2m"] - 273.15).assign_attrs(units="degC"))
    with pytest.raises(UnitsError, match=r"273\.15 offset"):
        celsius.flex.forecast(model, 3)
    # time order does not matter: the latest frames are the past, the leads go forward
    backwards = coarse.isel(time=slice(None, None, -1)).flex.forecast(model, 3, members=2, seed=1)
    np.testing.assert_array_equal(backwards["t2m"].values, out["t2m"].values)
    np.testing.assert_array_equal(backwards["valid_time"].values, out["valid_time"].values)
    assert out["forecast_reference_time"].values == coarse["time"].values[-1]
    np.testing.assert_array_equal(out["member"].values, [0, 1])
    assert out["member"].attrs["long_name"] == "ensemble member"
    assert out["lead"].attrs["units"] == "1"
    t0, hour = coarse["time"].values[0], np.timedelta64(1, "h")
    irregular = coarse.isel(time=[0, 1, 1]).assign_coords(time=[t0, t0 + hour, t0 + 3 * hour])
    with pytest.warns(FlexDownscaleWarning, match="last time steps are unequal") as caught:
        irregular.flex.forecast(model, 1)
    assert caught[0].filename == __file__
    with pytest.raises(DataError, match="repeated"):
        coarse.isel(time=[0, 1, 1]).flex.forecast(model, 1)
    with pytest.raises(ConfigError, match="lead_steps"):
        coarse.flex.forecast(model, 0)
    # batch_invariant: one member per network call, the same bits for any batch_size
    one = coarse.flex.forecast(model, 2, members=3, seed=1, batch_size=1, batch_invariant=True)
    for b in (2, 3):
        other = coarse.flex.forecast(
            model, 2, members=3, seed=1, batch_size=b, batch_invariant=True
        )
        np.testing.assert_array_equal(one["t2m"].values, other["t2m"].values)
    assert one.attrs["flexdownscale_batch_invariant"] == 1
    # infinite past frames and extra dims are typed errors, as for the Downscaler
    bad = coarse.copy(deep=True)
    bad["t2m"][-1, 2, 3] = np.inf
    with pytest.raises(DataError, match=r"infinite values \(1 in all; the first in 't2m' at time"):
        bad.flex.forecast(model, 1)
    with pytest.raises(DataError, match=r"one trajectory: select one value of \['level'\]"):
        coarse.expand_dims(level=2).flex.forecast(model, 1)
    # a time dim without a coordinate: positions are no times, so no reference / valid time
    bare = coarse.drop_vars("time").flex.forecast(model, 2, members=2, seed=1)
    assert "forecast_reference_time" not in bare.coords
    assert "valid_time" not in bare.coords
    np.testing.assert_array_equal(bare["t2m"].values, out["t2m"].values[:, :2])
    with pytest.raises(ConfigError, match="batch_invariant"):
        coarse.flex.forecast(model, 2, batch_invariant=1)
    # one input time: no step, so no valid times, but the reference time anchors the forecast
    single = Forecaster(
        build_model(ModelConfig(preset="tiny", task="forecast", past_frames=1, dropout=0.0)),
        DiffusionConfig(),
        normalizer=Normalizer.fit(coarse[["t2m"]]),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(steps=2),
    )
    crs = xr.DataArray(0, attrs={"grid_mapping_name": "latitude_longitude"})
    mapped = coarse.isel(time=[0]).assign(crs=crs)
    mapped["t2m"].attrs["grid_mapping"] = "crs"
    one = mapped.flex.forecast(single, 2)
    assert "valid_time" not in one.coords
    assert one["forecast_reference_time"].values == coarse["time"].values[0]
    assert one["t2m"].attrs["grid_mapping"] == "crs"
    assert one["crs"].attrs["grid_mapping_name"] == "latitude_longitude"


def test_conditioned_forecast(setup, tmp_path):
    """A forecast model with a physical condition (e.g. Re) reads it like the Downscaler."""
    from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
    from flexdownscale.data import Normalizer
    from flexdownscale.models import build_model
    from flexdownscale.pipeline import Forecaster

    coarse, _ = setup
    torch.manual_seed(2)
    net = build_model(
        ModelConfig(
            preset="tiny", task="forecast", past_frames=1, physical_condition=True, dropout=0.0
        )
    )
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    kwargs = dict(
        normalizer=Normalizer.fit(coarse[["t2m"]]),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(steps=2),
    )
    with pytest.raises(ConfigError, match="condition metadata"):
        Forecaster(net, DiffusionConfig(), **kwargs)
    model = Forecaster(
        net, DiffusionConfig(), condition={"name": "reynolds_number", "scale": 40000}, **kwargs
    )
    with pytest.raises(MissingVariableError, match="reynolds_number"):
        coarse.flex.forecast(model, 1)
    low = coarse.flex.forecast(model, 2, members=2, condition=1000.0)
    from_attr = coarse.assign_attrs(reynolds_number=1000.0).flex.forecast(model, 2, members=2)
    np.testing.assert_array_equal(low["t2m"].values, from_attr["t2m"].values)
    with pytest.warns(FlexDownscaleWarning, match="condition = 4000.0 given"):
        high = coarse.assign_attrs(reynolds_number=1000.0).flex.forecast(
            model, 2, members=2, condition=4000.0
        )
    assert np.abs(high["t2m"].values - low["t2m"].values).max() > 1e-5
    assert high.attrs["flexdownscale_condition_reynolds_number"] == 4000.0
    assert high.attrs["reynolds_number"] == 4000.0  # the value used, not the input's
    # a Forecaster built from parts saves a model folder that loads back to the same forecasts
    path = model.save_pretrained(tmp_path / "forecast-model", card="# my forecaster\n")
    loaded = Forecaster.from_pretrained(path)
    assert loaded.path == path
    assert (loaded.past_frames, loaded.condition, loaded.card) == (
        1,
        {"name": "reynolds_number", "scale": 40000},
        "# my forecaster\n",
    )
    assert repr(loaded) == (
        f"Forecaster({str(path)!r}, variables=['t2m'], past_frames=1, "
        f"objective={loaded.objective!r})"
    )
    again = coarse.flex.forecast(str(path), 2, members=2, condition=1000.0)
    np.testing.assert_array_equal(again["t2m"].values, low["t2m"].values)
    with pytest.raises(ModelFolderError, match="exists"):
        loaded.save_pretrained(path)
    # stored in the loaded folder's dtype unless told otherwise; overwrite replaces it
    loaded.save_pretrained(path, overwrite=True, dtype=torch.bfloat16)
    assert Forecaster.from_pretrained(path).weights_dtype == torch.bfloat16
    from flexdownscale.diffusion import build_objective

    with pytest.raises(ConfigError, match="built from an Objective"):
        Forecaster(
            net, build_objective(DiffusionConfig()), condition=model.condition, **kwargs
        ).save_pretrained(tmp_path / "objective")
    with pytest.raises(ConfigError, match=r"no statistics for \['u10'\]"):
        Forecaster(
            net, DiffusionConfig(), condition=model.condition, **{**kwargs, "variables": ["u10"]}
        )
