"""Forecaster fixes: the training grid is checked, member ``i`` does not depend on the ensemble
size, padding per axis re-imposed at every lead, CF units on ``valid_time``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

from flexdownscale import _output
from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
from flexdownscale.data import Normalizer, VariableStats, grid_spec
from flexdownscale.errors import (
    ConfigError,
    DataError,
    FlexDownscaleWarning,
    GridError,
    SkillWarning,
)
from flexdownscale.models import build_model
from flexdownscale.pipeline import Forecaster

N = 32  # cells per side of the synthetic doubly periodic box
DX = 2 * np.pi / N


def box(n: int = N, times: int = 3, *, periodic: bool = True, seed: int = 0) -> xr.Dataset:
    """A smooth doubly periodic vorticity-like field on an ``n`` x ``n`` box of side 2 pi."""
    rng = np.random.default_rng(seed)
    x = np.arange(n) * 2 * np.pi / n
    k = rng.normal(size=(times, 3))
    values = np.stack(
        [
            np.sin(x[:, None] + a) * np.cos(2 * x[None, :] + b) + c * np.cos(x[None, :])
            for a, b, c in k
        ]
    ).astype(np.float32)
    axis = {"units": "1", **({"periodic": "true"} if periodic else {})}
    return xr.Dataset(
        {"vorticity": (("time", "y", "x"), values, {"units": "1"})},
        coords={
            "time": ("time", 10.0 + 0.5 * np.arange(times), {"units": "s", "long_name": "time"}),
            "y": ("y", x, {**axis, "axis": "Y"}),
            "x": ("x", x, {**axis, "axis": "X"}),
        },
    )


def tiny_forecaster(
    grid: dict[str, Any] | None = None,
    *,
    past_frames: int = 2,
    units: str = "1",
    condition: dict[str, Any] | None = None,
) -> Forecaster:
    """An untrained tiny forecast model of 'vorticity' in ``units`` (perturbed so that its
    output depends on its input), conditioned as ``condition`` says (``{"name": ..., "scale":
    ...}``) if given."""
    torch.manual_seed(0)
    net = build_model(
        ModelConfig(
            preset="tiny",
            task="forecast",
            past_frames=past_frames,
            dropout=0.0,
            physical_condition=condition is not None,
        )
    )
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Forecaster(
        net,
        DiffusionConfig(),
        normalizer=Normalizer({"vorticity": VariableStats(mean=0.0, std=1.0)}),
        variables=["vorticity"],
        units={"vorticity": units},
        sampler=SamplerConfig(steps=2),
        grid=grid,
        name="tiny-box",
        condition=condition,
    )


def box_grid() -> dict[str, Any]:
    """The grid metadata a forecast model trained on :func:`box` records."""
    return {"grid": grid_spec(box()).to_dict(), "past_frames": 2, "lead": 1, "time_dim": "time"}


# --------------------------------------------------------------------------------------------
# 1. the training grid is checked
# --------------------------------------------------------------------------------------------


def test_forecaster_refuses_another_spacing_and_another_kind_of_grid():
    model = tiny_forecaster(box_grid())
    assert model(box(), lead_steps=1, seed=0)["vorticity"].shape == (1, N, N)
    # the same box on a grid 2x coarser: the spacing is not the training grid's
    with pytest.raises(GridError, match=r"spacing along x is 0\.392699 1 but forecast model") as e:
        model(box(N // 2), lead_steps=1)
    assert "0.19635 1 training grid (32 x 32 cells)" in str(e.value)
    assert "regrid" in str(e.value)
    # a latitude/longitude field of the same shape and units: another kind of grid
    latlon = box().rename(x="longitude", y="latitude")
    latlon["longitude"] = ("longitude", np.linspace(-10, 2, N), {"units": "degrees_east"})
    latlon["latitude"] = ("latitude", np.linspace(50, 58, N), {"units": "degrees_north"})
    with pytest.raises(GridError, match=r"latitude/longitude grid .* trained on a projected grid"):
        model(latlon, lead_steps=1)
    # a model folder without a recorded grid takes any grid, as before
    free = tiny_forecaster(None)
    assert free(box(N // 2), lead_steps=1, seed=0)["vorticity"].shape == (1, N // 2, N // 2)
    assert free(latlon, lead_steps=1, seed=0)["vorticity"].dims == ("lead", "latitude", "longitude")


# --------------------------------------------------------------------------------------------
# 2. member i of a forecast does not depend on the ensemble size
# --------------------------------------------------------------------------------------------


def test_member_i_does_not_depend_on_the_ensemble_size():
    """Member 0 of a 3- and a 2-member forecast differed from lead 2 on (one generator drove
    every lead, so lead 2's streams started where lead 1's M draws ended)."""
    model = tiny_forecaster(box_grid())
    kw = dict(lead_steps=3, seed=5, batch_invariant=True, sampler_options={"eta": 1.0})
    three = model(box(), members=3, **kw)["vorticity"].values
    for m in (1, 2):
        fewer = model(box(), members=m, **kw)["vorticity"].values
        np.testing.assert_array_equal(fewer, three[:m])
    # a longer forecast extends a shorter one; members differ; another seed differs
    short = model(box(), members=3, **{**kw, "lead_steps": 2})["vorticity"].values
    np.testing.assert_array_equal(short, three[:, :2])
    assert np.abs(three[0] - three[1]).max() > 1e-3
    other = model(box(), members=1, **{**kw, "seed": 6})["vorticity"].values
    assert np.abs(other[0] - three[0]).max() > 1e-3


def test_rollout_fields_and_members_have_their_own_streams():
    from flexdownscale.diffusion import ResidualModel, VPDiffusion, rollout

    net = build_model(ModelConfig(preset="tiny", task="forecast", past_frames=2, dropout=0.0))
    model = ResidualModel(net, task="forecast", past_frames=2)
    frames = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    kw = dict(lead_steps=3, sampler="ddim", steps=2, generator=7, batch_size=1, eta=1.0)
    with torch.no_grad():
        both = rollout(model, VPDiffusion(), frames, members=3, **kw)
        second = rollout(model, VPDiffusion(), frames, members=2, **kw)
        torch.testing.assert_close(second, both[:, :2], rtol=0, atol=0)
        # all members per network call: the same random numbers (float32 rounding apart)
        together = rollout(model, VPDiffusion(), frames, members=3, **{**kw, "batch_size": None})
        torch.testing.assert_close(together, both, rtol=0, atol=1e-4)
        # field 0 alone is field 0 of the pair (its streams do not depend on field 1)
        alone = rollout(model, VPDiffusion(), frames[:1], members=1, **kw)
        torch.testing.assert_close(alone[0], both[0, :1], rtol=0, atol=0)
        # a torch.Generator gives a seed from its stream: reproducible from its state
        a = rollout(model, VPDiffusion(), frames, members=2, **{**kw, "generator": None})
        g = torch.Generator().manual_seed(11)
        b = rollout(model, VPDiffusion(), frames, members=2, **{**kw, "generator": g})
        c = rollout(
            model,
            VPDiffusion(),
            frames,
            members=2,
            **{**kw, "generator": torch.Generator().manual_seed(11)},
        )
    torch.testing.assert_close(b, c, rtol=0, atol=0)
    assert not torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# 3. padding per axis, re-imposed at every lead
# --------------------------------------------------------------------------------------------


def global_grid(times: int = 3) -> xr.Dataset:
    """A 24 x 40 global latitude/longitude field (periodic in longitude only; 40 and 24 are
    not multiples of 16, so both axes need padding)."""
    rng = np.random.default_rng(3)
    lat = -82.5 + 7.5 * np.arange(24)
    lon = 9.0 * np.arange(40)
    values = (
        np.sin(np.deg2rad(lon))[None, None, :]
        + np.cos(np.deg2rad(lat))[None, :, None]
        + 0.1 * rng.normal(size=(times, 24, 40))
    )
    return xr.Dataset(
        {
            "vorticity": (
                ("time", "latitude", "longitude"),
                values.astype(np.float32),
                {"units": "1"},
            )
        },
        coords={
            "time": ("time", np.arange(times, dtype=float), {"units": "days since 2000-01-01"}),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )


def test_padding_is_per_axis_and_reimposed_at_every_lead(monkeypatch):
    """A global grid (periodic in x only) was reflect-padded on both axes, and the padding
    cells evolved freely from lead 2 on; now x gets wrapped halos and y's reflected end rows
    are rebuilt from the field before every lead."""
    ds = global_grid()
    assert grid_spec(ds).periodic_x
    assert not grid_spec(ds).periodic_y
    model = tiny_forecaster(None)
    seen: list[torch.Tensor] = []
    encode = model.backbone.encode_task

    def record(cond: torch.Tensor) -> Any:
        seen.append(cond.detach().clone())
        return encode(cond)

    monkeypatch.setattr(model.backbone, "encode_task", record)
    out = model(ds, lead_steps=3, members=2, seed=0)
    assert out["vorticity"].shape == (2, 3, 24, 40)
    assert len(seen) == 3  # one task encoding per lead (two member states at leads 2 and 3)
    for lead, cond in enumerate(seen, start=1):
        # 24 rows reflect-padded to 32; 40 columns with 16 + 24 wrapped halo columns
        assert cond.shape[-2:] == (32, 80), lead
        field = cond[..., :24, 16:56]
        # x: the halos are the field's own columns across the seam
        torch.testing.assert_close(cond[..., :24, :16], field[..., -16:], rtol=0, atol=0)
        torch.testing.assert_close(cond[..., :24, 56:], field[..., :24], rtol=0, atol=0)
        # y: the end rows mirror the field's last rows (24..31 = 22, 21, ..., 15), at every lead
        mirror = cond[..., 16:56].index_select(-2, torch.arange(22, 14, -1))
        torch.testing.assert_close(cond[..., 24:, 16:56], mirror, rtol=0, atol=0)
    # the fed-back frames are the forecast itself (normalization is the identity here)
    last = torch.as_tensor(out["vorticity"].values[:, 0])  # lead 1, both members
    torch.testing.assert_close(seen[1][:, -1, :24, 16:56], last, rtol=0, atol=1e-6)


def test_a_field_that_needs_no_padding_runs_as_the_bare_network():
    """Non-periodic and a multiple of 16: the one-tile wrapper changes nothing."""
    from flexdownscale.diffusion import ResidualModel, rollout

    ds = box(periodic=False)
    model = tiny_forecaster(None)
    out = model(ds, lead_steps=2, members=2, seed=3)["vorticity"].values
    frames = torch.as_tensor(ds["vorticity"].values[-2:]).reshape(1, 2, N, N)
    bare = ResidualModel(model.backbone, task="forecast", past_frames=2)
    with torch.no_grad():
        expected = rollout(
            bare, model.objective, frames, lead_steps=2, members=2, generator=3, steps=2
        )
    np.testing.assert_array_equal(out, expected[0, :, :, 0].numpy())


# --------------------------------------------------------------------------------------------
# 4. valid_time and forecast_reference_time carry the input's time units
# --------------------------------------------------------------------------------------------


def test_float_time_axis_units_and_calendar_reach_valid_time(tmp_path):
    """A float time axis gave valid_time standard_name = "time" but no units (not CF)."""
    ds = global_grid(times=3)
    ds["time"].attrs["calendar"] = "noleap"
    out = tiny_forecaster(None)(ds, lead_steps=2, seed=0)
    for name in ("valid_time", "forecast_reference_time"):
        assert out[name].attrs["units"] == "days since 2000-01-01"
        assert out[name].attrs["calendar"] == "noleap"
    np.testing.assert_array_equal(out["valid_time"].values, [3.0, 4.0])
    assert out["valid_time"].attrs["standard_name"] == "time"
    # written and read back, the valid times decode to dates in the input's calendar
    out.to_netcdf(tmp_path / "f.nc")
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_dataset(tmp_path / "f.nc", decode_times=coder) as back:
        assert [t.isoformat() for t in back["valid_time"].values] == [
            "2000-01-04T00:00:00",
            "2000-01-05T00:00:00",
        ]
        assert back["forecast_reference_time"].values.item().isoformat() == "2000-01-03T00:00:00"
    assert ds["time"].attrs == {"units": "days since 2000-01-01", "calendar": "noleap"}
    # a step count (units "1", as the Kolmogorov file's time) is not a CF time: no standard names
    steps = ds.assign_coords(time=("time", ds["time"].values, {"units": "1"}))
    out = tiny_forecaster(None)(steps, lead_steps=2, seed=0)
    for name in ("valid_time", "forecast_reference_time"):
        assert out[name].attrs["units"] == "1"
        assert "standard_name" not in out[name].attrs


def test_datetime_time_axis_keeps_its_encoding(tmp_path):
    ds = global_grid(times=3)
    ds.to_netcdf(tmp_path / "in.nc")
    with xr.open_dataset(tmp_path / "in.nc") as read:
        assert read["time"].dtype.kind == "M"
        out = tiny_forecaster(None)(read.load(), lead_steps=2, seed=0)
    assert "units" not in out["valid_time"].attrs  # a datetime's units live in its encoding
    assert out["valid_time"].encoding["units"] == "days since 2000-01-01"
    np.testing.assert_array_equal(
        out["valid_time"].values, np.array(["2000-01-04", "2000-01-05"], dtype="datetime64[ns]")
    )
    out.to_netcdf(tmp_path / "out.nc")
    with xr.open_dataset(tmp_path / "out.nc", decode_times=False) as raw:
        assert raw["valid_time"].attrs["units"] == "days since 2000-01-01"
        np.testing.assert_array_equal(raw["valid_time"].values, [3, 4])
        assert raw["forecast_reference_time"].attrs["units"] == "days since 2000-01-01"


def test_a_torch_generator_seeds_a_forecast_and_is_recorded():
    model = tiny_forecaster(box_grid())
    gen = torch.Generator().manual_seed(7)
    first = model(box(), lead_steps=1, members=2, seed=gen)
    second = model(box(), lead_steps=1, members=2, seed=gen)
    assert first.attrs["flexdownscale_seed"] != second.attrs["flexdownscale_seed"]
    again = model(box(), lead_steps=1, members=2, seed=first.attrs["flexdownscale_seed"])
    np.testing.assert_array_equal(again["vorticity"].values, first["vorticity"].values)


def test_regional_forecast_model_warns_outside_its_domain():
    """The Forecaster had the grid check but not the Downscaler's domain warning: a model
    trained on a European window stepped a field over the Pacific silently."""
    ds = global_grid().isel(latitude=slice(16, 22), longitude=slice(0, 6))  # 37.5..75 N, 0..45 E
    trained = grid_spec(ds).to_dict()
    model = tiny_forecaster({"grid": trained, "past_frames": 2, "lead": 1, "time_dim": "time"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training window itself: no warning
        model(ds, lead_steps=1, seed=0)
    pacific = ds.assign_coords(longitude=ds["longitude"] + 180.0)
    with pytest.warns(SkillWarning, match=r"only 0% of its cells lie in the training domain") as w:
        model(pacific, lead_steps=1, seed=0)
    assert "forecast the training region only (select it: ds.sel(latitude=..., longitude=...))" in (
        str(w[0].message)
    )
    assert w[0].filename == __file__  # points at the user's line


def test_log1p_variables_are_forecast_non_negative(monkeypatch):
    """As in the Downscaler: a log1p-normalized variable's forecast is clipped at 0, and so is
    each member's next input (at the normalized value of 0)."""
    model = tiny_forecaster(box_grid())
    model.normalizer = Normalizer(
        {"vorticity": VariableStats(mean=0.3, std=0.5, transform="log1p")}
    )
    ds = box()
    ds["vorticity"] = (ds["vorticity"] - 0.5).clip(min=0)  # dry cells at 0
    forecast = model(ds, lead_steps=2, members=3, seed=0)["vorticity"]
    assert forecast.attrs["flexdownscale_transform"] == "log1p"  # evaluate reads it
    out = forecast.values
    assert np.isfinite(out).all()
    assert out.min() == 0.0
    assert (out == 0).mean() > 0.05
    # the members' next inputs: the feedback clips at (log1p(0) - 0.3) / 0.5 = -0.6
    import flexdownscale.diffusion as engine

    seen = {}
    real = engine.rollout

    def spy(*args, **kwargs):
        seen["feedback"] = kwargs["feedback"]
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "rollout", spy)
    model(ds, lead_steps=1, seed=0)
    sample = torch.linspace(-3, 3, 2 * N * N).reshape(2, 1, N, N)
    fed = seen["feedback"](sample)
    assert fed.shape == sample.shape  # the 32 x 32 box needs no padding
    torch.testing.assert_close(fed, sample.clamp(min=-0.6))


# --------------------------------------------------------------------------------------------
# the time step a forecast model was trained on (grid.json's time_step)
# --------------------------------------------------------------------------------------------


def stepped_grid(value: float = 0.5, units: str = "s") -> dict[str, Any]:
    """:func:`box_grid` with the time step a model trained on :func:`box` (0.5 s apart) records."""
    return {**box_grid(), "time_step": {"value": value, "units": units}}


def test_frames_spaced_otherwise_than_in_training_are_refused():
    """A model trained on frames 0.5 apart ran silently on frames 1.0 apart (reviewer-48: the
    network saw other tendencies than in training, and valid_time stepped by 1.0, twice the
    model's step): refused, naming both spacings and the fix."""
    model = tiny_forecaster(stepped_grid())
    every_other = box(times=5).isel(time=[0, 2, 4])  # 10, 11, 12
    with pytest.raises(DataError) as err:
        model(every_other, lead_steps=2, seed=0)
    assert str(err.value) == (
        "model 'tiny-box' was trained to step 0.5 s at a time (its grid.json), from 2 past "
        "frames that far apart, but the input's last 2 'time' values are 1 s apart; the input "
        "steps by 1 s, farther apart than the model's 0.5 s: no selection of its frames gives "
        "0.5 s apart (filling frames in by interpolation in time would invent them); give frames "
        "0.5 s apart, or use a model trained on your time step"
    )
    # finer frames: every k-th one (k named), ending at the last frame, is the fix, and runs
    five = box(times=5)
    fine = five.assign_coords(time=("time", 10.0 + 0.25 * np.arange(5), five["time"].attrs))
    with pytest.raises(DataError) as err:
        model(fine, lead_steps=1, seed=0)
    assert str(err.value).endswith(
        "values are 0.25 s apart; the input steps by 0.25 s, so take one frame in 2, "
        "ending at the last: ds.isel(time=slice(-3, None, 2)) (or ds.isel(time=slice("
        "(ds.sizes['time'] - 1) % 2, None, 2)) to keep all the frames 0.5 s apart); or use a "
        "model trained on your time step"
    )
    for picked in (fine.isel(time=slice(-3, None, 2)), fine.isel(time=slice(4 % 2, None, 2))):
        np.testing.assert_array_equal(picked["time"].values[-2:], [10.5, 11.0])
        model(picked, lead_steps=1, seed=0)
    # only the past frames the model sees count: an older frame further back is fine
    older = box(times=5).isel(time=[0, 3, 4])  # 10, 11.5, 12
    out = model(older, lead_steps=2, seed=0)
    np.testing.assert_array_equal(out["valid_time"].values, [12.5, 13.0])
    # and the forecast is the one of the same two past frames alone
    same = model(box(times=5).isel(time=[3, 4]), lead_steps=2, seed=0)
    np.testing.assert_array_equal(out["vorticity"].values, same["vorticity"].values)


def test_valid_time_steps_by_the_model_step_not_the_inputs():
    """With one past frame the input's own spacing is not seen by the model: valid_time now
    steps by the model's recorded step (it took the input's last step, 1.0 here, or had no
    valid_time for a single time)."""
    model = tiny_forecaster(stepped_grid(), past_frames=1)
    spaced = box(times=5).isel(time=[0, 2, 4])  # 10, 11, 12
    np.testing.assert_array_equal(
        model(spaced, lead_steps=3, seed=0)["valid_time"], [12.5, 13, 13.5]
    )
    single = model(box(times=1), lead_steps=2, seed=0)
    np.testing.assert_array_equal(single["valid_time"].values, [10.5, 11.0])
    # dates: a model trained on 6-hourly fields gives 6-hourly valid times from one date
    day = np.datetime64("2020-01-01T00", "ns")
    dated = box(times=1).assign_coords(time=("time", [day]))
    six_hours = tiny_forecaster(stepped_grid(6 * 3600.0), past_frames=1)
    np.testing.assert_array_equal(
        six_hours(dated, lead_steps=2, seed=0)["valid_time"].values,
        [day + np.timedelta64(6, "h"), day + np.timedelta64(12, "h")],
    )
    # numbers in CF units since a date are compared in seconds: 2 past frames 6 hours apart
    hours = box(times=2).assign_coords(
        time=("time", [0.0, 6.0], {"units": "hours since 2020-01-01"})
    )
    out = tiny_forecaster(stepped_grid(6 * 3600.0))(hours, lead_steps=2, seed=0)
    np.testing.assert_array_equal(out["valid_time"].values, [12.0, 18.0])
    with pytest.raises(DataError, match=r"step 6 hours at a time .* values are 3 hours apart"):
        tiny_forecaster(stepped_grid(12 * 3600.0 / 2))(
            hours.assign_coords(time=("time", [0.0, 3.0], hours["time"].attrs)), lead_steps=1
        )


def test_a_step_in_other_units_is_not_compared_and_says_so():
    """A step count (units "1") cannot be compared with a model's step in seconds: a warning,
    and valid_time from the input's last step as without a record."""
    model = tiny_forecaster(stepped_grid(3600.0))
    counts = box().assign_coords(time=("time", [1.0, 2.0, 3.0], {"units": "1"}))
    with pytest.warns(FlexDownscaleWarning, match=r"steps by 1 hour .* in '1', which cannot be"):
        out = model(counts, lead_steps=2, seed=0)
    np.testing.assert_array_equal(out["valid_time"].values, [4.0, 5.0])
    # a folder without the record (written before it was) keeps the old behaviour silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = tiny_forecaster(box_grid())(counts, lead_steps=2, seed=0)
    np.testing.assert_array_equal(out["valid_time"].values, [4.0, 5.0])


def test_training_records_the_time_step_of_the_frames(shared_data):
    """grid.json had no time step: the Forecaster could check neither the input's spacing nor
    its valid times. The Kolmogorov frames are 0.5 apart (a step count), ERA5's one hour."""
    from flexdownscale.data import ForecastDataset

    kolmogorov = ForecastDataset(
        [str(shared_data / "kolmogorov" / "kf_re1000.nc")],
        variables=["vorticity"],
        past_frames=2,
        lead=3,
        split_dim="trajectory",
        splits={"train": [0]},
        crop_size=32,
    )
    assert kolmogorov.grid_metadata()["time_step"] == {"value": 1.5, "units": "1"}
    era5 = ForecastDataset(
        [str(shared_data / "era5" / "era5_t2m_uk_2019-03-01_24.nc")],
        variables=["t2m"],
        splits={"train": ["2019-03-01", "2019-03-02"]},
        crop_size=32,
    )
    assert era5.grid_metadata()["time_step"] == {"value": 3600.0, "units": "s"}


def test_too_short_a_history_says_what_was_found_and_the_fix():
    """Both one frame and a single field said only "forecasting needs a time dimension with at
    least past_frames = 2 steps" (reviewer-48): now what was found and what to give."""
    model = tiny_forecaster(box_grid())
    with pytest.raises(DataError) as err:
        model(box(times=1), lead_steps=1)
    assert str(err.value) == (
        "model 'tiny-box' forecasts from its last 2 past frames but the input's 'time' has 1 "
        "time step; give at least the 2 time steps up to the forecast start"
    )
    with pytest.raises(DataError) as err:
        model(box(times=1).isel(time=0, drop=True), lead_steps=1)
    assert str(err.value).endswith(
        "but the input has no time dimension (a single field); give at least the 2 time steps "
        "up to the forecast start along a time dim (not named 'time': dims={'time': NAME})"
    )


def test_progress_bar_counts_the_leads_and_does_not_change_the_forecast(monkeypatch):
    """``Forecaster(..., progress=...)`` was a TypeError while the Downscaler took it
    (reviewer-48): a bar over the leads, on by default beyond 8 leads, checked like the
    Downscaler's flag, and the forecast is the same with or without it."""
    import tqdm.auto

    bars: list[dict[str, Any]] = []

    class Bar:
        def __init__(self, *, total: int, **kwargs: Any) -> None:
            self.record = {"total": total, "updates": 0, "closed": False, **kwargs}
            bars.append(self.record)

        def update(self, n: int = 1) -> None:
            self.record["updates"] += n

        def close(self) -> None:
            self.record["closed"] = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    # a terminal: the bar (a log file gets plain lines: tests/test_progress_lines.py)
    monkeypatch.setattr(_output, "stderr_is_terminal", lambda: True)
    model = tiny_forecaster(box_grid())
    quiet = model(box(), lead_steps=3, members=2)
    assert bars == []  # None: no bar for 3 leads
    shown = model(box(), lead_steps=3, members=2, progress=True)
    assert [(b["total"], b["updates"], b["closed"], b["desc"]) for b in bars] == [
        (3, 3, True, "forecasting")
    ]
    # the history lines carry the second each ran: the same text apart from the time stamp
    stamp = len("2026-11-24T12:10:28Z")
    assert shown.attrs["history"][stamp:] == quiet.attrs["history"][stamp:]
    assert {k: v for k, v in shown.attrs.items() if k != "history"} == {
        k: v for k, v in quiet.attrs.items() if k != "history"
    }
    xr.testing.assert_identical(shown.drop_attrs(deep=False), quiet.drop_attrs(deep=False))
    model(box(), lead_steps=9, steps=1)
    assert (bars[-1]["total"], bars[-1]["updates"]) == (9, 9)  # None: a bar beyond 8 leads
    model(box(), lead_steps=9, steps=1, progress=False)
    assert len(bars) == 2
    with pytest.raises(ConfigError, match=r"^progress = 'yes' must be True or False$"):
        model(box(), lead_steps=1, progress="yes")


def test_numpy_integers_count_as_integers_in_a_forecast():
    """``lead_steps=np.int64(2)`` was refused as not a positive integer and ``members=np.int64(2)``
    as a ``batch_size`` the user never passed (reviewer-52); the Downscaler took both."""
    model = tiny_forecaster(box_grid())
    plain = model(box(), lead_steps=2, members=2, steps=2, seed=0)
    numpy = model(box(), lead_steps=np.int64(2), members=np.int64(2), steps=np.int32(2), seed=0)
    xr.testing.assert_identical(numpy.drop_attrs(), plain.drop_attrs())
    assert numpy.attrs["flexdownscale_members"] == plain.attrs["flexdownscale_members"]


def test_a_cftime_forecast_gets_the_cf_standard_names(tmp_path):
    """A noleap input's valid_time lost ``standard_name: time`` and forecast_reference_time its
    standard name: the check read numpy's kind 'O' of an object array as 'o' (reviewer-52)."""
    ds = global_grid(times=3)
    ds.to_netcdf(tmp_path / "in.nc")
    ds["time"].attrs["calendar"] = "noleap"
    ds.to_netcdf(tmp_path / "noleap.nc")
    for name, kind in (("in.nc", "M"), ("noleap.nc", "O")):
        coder = xr.coders.CFDatetimeCoder(use_cftime=kind == "O")
        with xr.open_dataset(tmp_path / name, decode_times=coder) as read:
            assert read["time"].dtype.kind == kind
            out = tiny_forecaster(None)(read.load(), lead_steps=1, seed=0)
        assert out["valid_time"].attrs["standard_name"] == "time", name
        assert out["forecast_reference_time"].attrs["standard_name"] == "forecast_reference_time"


@pytest.mark.parametrize("members", [None, 2])
def test_member_dim_run_as_time_is_refused(members):
    """An input 'member' dim passed as the time dim ran the members as past frames of one
    trajectory, in position order, without a word; it is refused with the per-member fix, and
    the fix, followed as written, runs (with members=N too: the scalar 'member' coordinate
    ds.isel(member=0) would leave collided with the output's dim)."""
    members_in = box(times=3).rename(time="member").drop_vars("member")
    model = tiny_forecaster()
    with pytest.raises(DataError, match="ensemble members are no time sequence") as err:
        model(members_in, dims={"time": "member"}, lead_steps=1, members=members)
    assert "ds.isel(member=0, drop=True)" in str(err.value)
    ensemble_input = xr.concat([box(times=3), box(times=3, seed=1)], "member")
    out = model(ensemble_input.isel(member=0, drop=True), lead_steps=1, members=members)
    assert out["vorticity"].dims[-2:] == ("y", "x")
