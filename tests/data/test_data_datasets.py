"""Lazy torch datasets: item shapes, values, reproducibility, disjoint splits, HDF5 layouts."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from data_helpers import counting_dataset, latlon_da

from flexdownscale.config import DataConfig
from flexdownscale.data.datasets import ForecastDataset, SuperResolutionDataset, from_config
from flexdownscale.data.degrade import degrade_array, grid_row_weights, upsample_array
from flexdownscale.data.grid import grid_spec, normalize_grid
from flexdownscale.data.normalize import Normalizer, VariableStats
from flexdownscale.errors import (
    ConfigError,
    DataError,
    MissingVariableError,
    ShapeError,
    UnsupportedFactorError,
)

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"
KOLMO = "kolmogorov/kf_re1000.nc"


def file_config(path, variable: str, **values) -> DataConfig:
    """A x4 DataConfig of one variable of one file, split along time (``values`` override)."""
    return DataConfig(
        **{
            "paths": (str(path),),
            "variables": (variable,),
            "factor": 4,
            "split_dim": "time",
            **values,
        }
    )


def era5_config(shared_data, **changes) -> DataConfig:
    window = {"train": ("2019-03-01", "2019-03-17"), "validation": ("2019-03-18", "2019-03-24")}
    return file_config(shared_data / ERA5, "t2m", **{"crop_size": 16, **window, **changes})


def whole_field_reference(
    field, norm, factor, degradation, upsample, weights, periodic, sigma=None
):
    """Coarse and base of the whole (normalized) field, as the pipeline would compute them."""
    coarse = degrade_array(
        field,
        factor,
        method=degradation,
        row_weights=weights if degradation == "area_mean" else None,
        periodic=periodic,
        sigma=sigma,
    )
    coarse = norm.transform_array(coarse, channel_axis=0)
    base = upsample_array(coarse, factor, method=upsample, row_weights=weights, periodic=periodic)
    return norm.transform_array(field, channel_axis=0), coarse, base


def test_sr_items_match_the_whole_field_computation_on_era5(shared_data):
    train = from_config(era5_config(shared_data), "train")
    assert len(train) == 17 * 24
    item = train[7]
    assert set(item) == {"fine", "base", "cond", "coarse", "index"}
    for key, shape in (("fine", (1, 16, 16)), ("base", (1, 16, 16)), ("coarse", (1, 4, 4))):
        assert item[key].shape == shape
        assert item[key].dtype == torch.float32
    assert item["cond"] is item["base"]
    assert item["index"] == 7
    where = train.locate(7)
    assert where["time"] == np.datetime64("2019-03-01T07:00")
    with xr.open_dataset(shared_data / ERA5) as ds:
        norm_ds = normalize_grid(ds)
        field = norm_ds.t2m.sel(time=where["time"]).values[None, :32, :48].astype(np.float64)
        weights = grid_row_weights(grid_spec(ds), norm_ds.latitude.values[:32])
    fine, coarse, base = whole_field_reference(
        field, train.normalizer, 4, "area_mean", "bilinear", weights, (False, False)
    )
    y0, x0 = where["y0"], where["x0"]
    assert y0 % 4 == 0
    assert x0 % 4 == 0
    np.testing.assert_allclose(item["fine"].numpy(), fine[:, y0 : y0 + 16, x0 : x0 + 16], atol=1e-6)
    np.testing.assert_allclose(
        item["coarse"].numpy(), coarse[:, y0 // 4 : y0 // 4 + 4, x0 // 4 : x0 // 4 + 4], atol=1e-6
    )
    np.testing.assert_allclose(item["base"].numpy(), base[:, y0 : y0 + 16, x0 : x0 + 16], atol=1e-6)


def test_periodic_halo_makes_crops_equal_to_the_periodic_whole_field(shared_data):
    norm = Normalizer({"vorticity": VariableStats(mean=0.0, std=4.5)})
    ds = SuperResolutionDataset(
        shared_data / KOLMO,
        factor=4,
        crop_size=32,
        degradation="gaussian",
        upsample="bicubic",
        split_dim="trajectory",
        splits={"train": (0, 2), "validation": (3,)},
        normalizer=norm,
        seed=3,
    )
    # random crops start anywhere on the periodic axes: some wrap around the seam
    wrapping = [i for i in range(len(ds)) if ds.locate(i)["y0"] > 224 or ds.locate(i)["x0"] > 224]
    assert wrapping
    with xr.open_dataset(shared_data / KOLMO) as raw:
        for index in (0, 5, 71, wrapping[0]):
            where = ds.locate(index)
            field = raw.vorticity.sel(trajectory=where["trajectory"], time=where["time"])
            field = field.transpose("y", "x").values[None].astype(np.float64)
            fine, _, base = whole_field_reference(
                field, norm, 4, "gaussian", "bicubic", None, (True, True)
            )
            item = ds[index]
            rows = np.arange(where["y0"], where["y0"] + 32) % 256
            cols = np.arange(where["x0"], where["x0"] + 32) % 256
            np.testing.assert_allclose(item["fine"].numpy(), fine[:, rows][:, :, cols], atol=1e-6)
            np.testing.assert_allclose(item["base"].numpy(), base[:, rows][:, :, cols], atol=1e-5)


def test_items_are_reproducible_for_a_seed_and_vary_with_epoch_and_seed(shared_data):
    cfg = era5_config(shared_data)
    a = from_config(cfg, "train", seed=1)
    b = from_config(cfg, "train", seed=1)
    c = from_config(cfg, "train", seed=2)
    for i in (0, 3, 100):
        assert torch.equal(a[i]["fine"], b[i]["fine"])
        assert torch.equal(a[i]["base"], b[i]["base"])
    origins = {(a.locate(i)["y0"], a.locate(i)["x0"]) for i in range(40)}
    assert len(origins) > 1  # random crops
    first = [a.locate(i) for i in range(40)]
    a.set_epoch(1)
    assert [a.locate(i) for i in range(40)] != first
    assert [c.locate(i) for i in range(40)] != first
    # a copy sent to a worker process gives the same items
    a.set_epoch(0)
    clone = pickle.loads(pickle.dumps(a))
    assert torch.equal(clone[5]["fine"], a[5]["fine"])
    centre = from_config(cfg, "validation", normalizer=a.normalizer)
    assert centre.crop == "center"
    assert centre.locate(0)["y0"] == centre.locate(9)["y0"]


def test_time_splits_are_disjoint_and_the_normalizer_comes_from_train(shared_data):
    cfg = era5_config(
        shared_data, test=("2019-03-24", "2019-03-24"), validation=("2019-03-18", "2019-03-23")
    )
    train = from_config(cfg, "train")
    val = from_config(cfg, "validation")
    test = from_config(cfg, "test")
    times = {
        name: {ds.locate(i)["time"] for i in range(len(ds))}
        for name, ds in (("train", train), ("validation", val), ("test", test))
    }
    assert len(times["train"]) == 17 * 24
    assert len(times["validation"]) == 6 * 24
    assert len(times["test"]) == 24
    assert not times["train"] & times["validation"]
    assert not times["train"] & times["test"]
    assert not times["validation"] & times["test"]
    assert max(times["train"]) < min(times["validation"])
    assert val.normalizer == train.normalizer
    with xr.open_dataset(shared_data / ERA5) as ds:
        expected = ds.t2m.sel(time=slice("2019-03-01", "2019-03-17")).values.astype(np.float64)
    assert train.normalizer.stats["t2m"].mean == pytest.approx(expected.mean(), rel=1e-10)
    overlapping = era5_config(shared_data, validation=("2019-03-17", "2019-03-20"))
    with pytest.raises(DataError, match="overlap"):
        from_config(overlapping, "train")
    # an empty train selection means "everything else"
    rest = from_config(era5_config(shared_data, train=()), "train")
    assert len(rest) == 17 * 24


def test_time_splits_over_one_file_per_period(shared_data, tmp_path):
    """The usual layout of one file per period: a split may fall wholly in some of the files
    (it was refused as "selects nothing" in the others); a selection found in no file, or labels
    found in no file, is still an error naming every file's extent."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        ds.sel(time=slice("2019-03-01", "2019-03-17")).to_netcdf(tmp_path / "era5_a.nc")
        ds.sel(time=slice("2019-03-18", "2019-03-24")).to_netcdf(tmp_path / "era5_b.nc")
    split = era5_config(shared_data, paths=(str(tmp_path / "era5_*.nc"),))
    whole = era5_config(shared_data)
    for name in ("train", "validation"):
        a, b = from_config(split, name), from_config(whole, name)
        assert len(a) == len(b)
        assert {a.locate(i)["time"] for i in range(len(a))} == {
            b.locate(i)["time"] for i in range(len(b))
        }
        assert a.normalizer == b.normalizer
    outside = era5_config(shared_data, paths=split.paths, validation=("2019-04-01", "2019-04-02"))
    with pytest.raises(DataError, match=r"selects nothing along 'time' in any source.*era5_b"):
        from_config(outside, "validation")
    absent = era5_config(
        shared_data, paths=split.paths, validation=("2019-03-18", "2019-03-20", "2019-04-01")
    )
    with pytest.raises(
        DataError, match=r"lists \[2019-04-01\], which are not 'time' labels of any"
    ):
        from_config(absent, "validation")


def test_trajectory_and_file_splits_with_a_physical_condition(shared_data):
    cfg = DataConfig(
        paths=(str(shared_data / "kolmogorov/kf_re*.nc"),),
        factor=4,
        crop_size=32,
        split_dim="trajectory",
        train=(0, 2),
        validation=(3,),
        condition="reynolds_number",
        condition_scale=40000.0,
    )
    train = from_config(cfg, "train", normalizer=None)
    val = from_config(cfg, "validation", normalizer=None)
    assert len(train) == 2 * 3 * 24
    assert len(val) == 2 * 1 * 24
    assert {train.locate(i)["trajectory"] for i in range(len(train))} == {0, 1, 2}
    assert {val.locate(i)["trajectory"] for i in range(len(val))} == {3}
    phys = {train.locate(i)["source"]: float(train[i]["phys"]) for i in (0, len(train) - 1)}
    assert phys == {"kf_re1000": pytest.approx(0.025), "kf_re4000": pytest.approx(0.1)}
    assert train[0]["phys"].shape == ()
    by_file = DataConfig(
        paths=cfg.paths,
        factor=4,
        crop_size=32,
        split_dim="file",
        train=("kf_re1000",),
        validation=("kf_re4000",),
        condition="reynolds_number",
        condition_scale=40000.0,
    )
    held_out = from_config(by_file, "validation", normalizer=None)
    assert {held_out.locate(i)["source"] for i in range(len(held_out))} == {"kf_re4000"}
    assert float(held_out[0]["phys"]) == pytest.approx(0.1)
    # the training range of the condition (in its own units), recorded with exported models
    assert train.condition_range() == (1000.0, 4000.0)
    assert from_config(by_file, "train", normalizer=None).condition_range() == (1000.0, 1000.0)
    assert held_out.condition_range() == (4000.0, 4000.0)
    with pytest.raises(DataError, match="both contain"):
        from_config(
            DataConfig(paths=cfg.paths, split_dim="file", train=(0, 1), validation=(1,)),
            "train",
        )


def test_multi_variable_channels_on_the_global_grid(shared_data):
    ds = SuperResolutionDataset(
        shared_data / "era_interim/eraint_uv_monthly.nc",
        variables=["v", "u"],
        factor=4,
        crop_size=64,
        split_dim="month",
        splits={"train": [1], "validation": [7]},
        normalizer="fit",
    )
    assert ds.variables == ("v", "u")
    assert ds.normalizer.variables == ("v", "u")
    assert len(ds) == 3  # one month x three levels
    item = ds[1]
    assert item["fine"].shape == (2, 64, 64)
    assert item["coarse"].shape == (2, 16, 16)
    where = ds.locate(1)
    assert where["month"] == 1
    assert where["level"] == 500
    with xr.open_dataset(shared_data / "era_interim/eraint_uv_monthly.nc") as raw:
        u = normalize_grid(raw).u.sel(month=1, level=500).values
    y0, x0 = where["y0"], where["x0"]
    expected = ds.normalizer.transform_array(
        np.stack([np.zeros((64, 64)), u[y0 : y0 + 64, x0 : x0 + 64]]), channel_axis=0
    )[1]
    np.testing.assert_allclose(item["fine"][1].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert ds.grid_metadata()["grid"]["periodic_x"] is True


def test_reading_is_lazy_and_windowed(shared_data):
    with xr.open_dataset(shared_data / ERA5) as raw:
        probe, counters = counting_dataset(raw.isel(time=slice(0, 48)).load())
    counter = counters["t2m"]
    # the NaN check when the split opens reads the cells items read, once
    SuperResolutionDataset(probe, factor=4, crop_size=16, normalizer=None)
    assert counter.reads == [48 * 32 * 48]
    counter.reads.clear()
    ds = SuperResolutionDataset(probe, factor=4, crop_size=16, normalizer=None, nan_fields=None)
    assert counter.reads == []  # without it, building the dataset reads no data
    for i in range(6):
        ds[i]
    # each item reads one time step of the crop plus a halo of one coarse cell on each side
    assert len(counter.reads) == 6
    assert max(counter.reads) <= (16 + 2 * 4) ** 2
    assert sum(counter.reads) < 48 * 33 * 49 / 20
    fc = ForecastDataset(
        probe, past_frames=3, lead=2, crop_size=16, normalizer=None, nan_fields=None
    )
    counter.reads.clear()
    fc[0]
    assert counter.reads == [16 * 16] * 4
    # integer data are converted on read, not by loading the variable
    ints, int_counters = counting_dataset((probe.load() * 10).astype(np.int16))
    ds = SuperResolutionDataset(ints, factor=4, crop_size=16, normalizer=None, nan_fields=None)
    item = ds[0]
    assert item["fine"].dtype == torch.float32
    assert len(int_counters["t2m"].reads) == 1  # one window, not the 48-step variable
    assert int_counters["t2m"].reads[0] <= (16 + 2 * 4) ** 2


def test_forecast_items_and_windows_inside_the_split(shared_data):
    cfg = era5_config(shared_data, past_frames=3, lead=2)
    train = from_config(cfg, "train", task="forecast")
    val = from_config(cfg, "validation", task="forecast", normalizer=train.normalizer)
    # a window spans (3 - 1) * 2 + 2 + 1 = 7 hours: past frames 2 h apart, the target 2 h on
    assert len(train) == 17 * 24 - 6
    assert len(val) == 7 * 24 - 6
    item = val[0]
    assert item["cond"].shape == (3, 16, 16)
    assert item["fine"].shape == (1, 16, 16)
    assert torch.equal(item["cond"][-1:], item["base"])
    where = val.locate(0)
    assert where["time"] == np.datetime64("2019-03-18T04:00")  # two past frames 2 h apart
    with xr.open_dataset(shared_data / ERA5) as raw:
        norm = normalize_grid(raw).t2m
        y0, x0 = where["y0"], where["x0"]
        target = norm.sel(time=np.datetime64("2019-03-18T06:00")).values[y0 : y0 + 16, x0 : x0 + 16]
        past = [
            norm.sel(time=np.datetime64(f"2019-03-18T0{h}:00")).values[y0 : y0 + 16, x0 : x0 + 16]
            for h in (0, 2, 4)
        ]
    s = train.normalizer.stats["t2m"]
    np.testing.assert_allclose(item["fine"][0].numpy(), (target - s.mean) / s.std, atol=1e-5)
    for j in range(3):
        np.testing.assert_allclose(item["cond"][j].numpy(), (past[j] - s.mean) / s.std, atol=1e-5)
    last_train = train.locate(len(train) - 1)["time"]
    assert last_train + np.timedelta64(2, "h") <= np.datetime64("2019-03-17T23:00")


def write_h5(path, name, array, **attrs):
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=array, chunks=(1, *array.shape[1:]))
        f.attrs.update(attrs)


def test_hdf5_layouts_of_the_reference(tmp_path, shared_data):
    with xr.open_dataset(shared_data / KOLMO) as raw:
        w = raw.vorticity.isel(trajectory=0, time=slice(0, 6)).transpose("time", "y", "x").values
    write_h5(tmp_path / "fields.h5", "fields", w)
    write_h5(tmp_path / "turb.h5", "w", np.stack([w, -w], axis=1), Re=1000.0)
    single = SuperResolutionDataset(
        tmp_path / "fields.h5", factor=4, crop_size=64, normalizer="fit", seed=0
    )
    assert single.variables == ("fields",)
    assert len(single) == 6
    item = single[2]
    where = single.locate(2)
    assert where["time"] == 2
    s = single.normalizer.stats["fields"]
    y0, x0 = where["y0"], where["x0"]
    np.testing.assert_allclose(
        item["fine"][0].numpy(), (w[2, y0 : y0 + 64, x0 : x0 + 64] - s.mean) / s.std, atol=1e-5
    )
    multi = SuperResolutionDataset(
        tmp_path / "turb.h5",
        variables=["w_1"],
        factor=4,
        crop_size=64,
        condition="Re",
        condition_scale=40000.0,
        split_dim="time",
        splits={"train": (0, 3), "validation": (4, 5)},
    )
    assert len(multi) == 4
    assert float(multi[0]["phys"]) == pytest.approx(0.025)
    where = multi.locate(1)
    np.testing.assert_allclose(
        multi[1]["fine"][0].numpy(),
        -w[1, where["y0"] : where["y0"] + 64, where["x0"] : where["x0"] + 64],
        atol=1e-6,
    )
    fc = ForecastDataset(tmp_path / "turb.h5", past_frames=2, lead=1, crop_size=32)
    assert fc[0]["cond"].shape == (4, 32, 32)
    write_h5(tmp_path / "other.h5", "u", w)
    with pytest.raises(DataError, match="'fields' or 'w'"):
        SuperResolutionDataset(tmp_path / "other.h5", crop_size=64)
    with pytest.raises(MissingVariableError):
        SuperResolutionDataset(tmp_path / "turb.h5", variables=["w_7"], crop_size=64)


def test_hdf5_reads_are_windowed(tmp_path):
    data = np.random.default_rng(0).normal(size=(5, 64, 64)).astype(np.float32)
    write_h5(tmp_path / "f.h5", "fields", data)
    ds = SuperResolutionDataset(tmp_path / "f.h5", factor=4, crop_size=16)
    source = ds.sources[0]
    real = source._handle()
    shapes = []

    class Probe:
        shape = real.shape

        def __getitem__(self, key):
            out = real[key]
            shapes.append(out.shape)
            return out

    source._handle = lambda: Probe()
    ds[3]
    assert len(shapes) == 1
    assert shapes[0][0] <= 24
    assert shapes[0][1] <= 24


def test_bad_inputs_of_the_datasets(shared_data, tmp_path):
    path = shared_data / ERA5
    with pytest.raises(UnsupportedFactorError, match="not divisible by factor"):
        SuperResolutionDataset(path, factor=3, crop_size=16)
    with pytest.raises(MissingVariableError, match="tp"):
        SuperResolutionDataset(path, variables=["tp"], crop_size=16)
    with pytest.raises(ShapeError, match="does not fit"):
        SuperResolutionDataset(path, crop_size=64)
    with pytest.raises(ShapeError, match="divisible by 16"):
        from_config(era5_config(shared_data, crop_size=24), "train")
    with pytest.raises(ConfigError, match="paths is empty"):
        from_config(DataConfig(), "train")
    with pytest.raises(DataError, match="no file matches"):
        SuperResolutionDataset(tmp_path / "missing_*.nc", crop_size=16)
    with pytest.raises(MissingVariableError, match="reynolds_number"):
        SuperResolutionDataset(path, crop_size=16, condition="reynolds_number")
    with pytest.raises(DataError, match="validation split is empty"):
        from_config(era5_config(shared_data, validation=()), "validation")
    with pytest.raises(DataError, match="split_dim 'member'"):
        from_config(era5_config(shared_data, split_dim="member"), "train")
    with pytest.raises(DataError, match=r"which are not .time. labels of any source"):
        from_config(
            era5_config(shared_data, validation=("2019-03-18", "2019-03-20", "2019-04-01")), "train"
        )
    with pytest.raises(ConfigError):
        SuperResolutionDataset(path, crop_size=16, degradation="bilinear")
    with pytest.raises(IndexError):
        SuperResolutionDataset(path, crop_size=16)[10**6]
    nan_field = latlon_da(16, 16, ntime=2).to_dataset()
    nan_field["t2m"][0, 3, 3] = np.nan  # a NaN never reaches a training tensor silently
    with pytest.raises(DataError, match=r"variable 't2m' in 1 field \(1 NaN value\)"):
        SuperResolutionDataset(nan_field, factor=4, crop_size=16)  # when the split opens
    unchecked = SuperResolutionDataset(nan_field, factor=4, crop_size=16, nan_fields=None)
    with pytest.raises(DataError, match="'t2m' has 1 NaN value"):
        unchecked[0]  # the last guard, when the check at opening is off
    assert torch.isfinite(unchecked[1]["fine"]).all()


def test_dataloader_batches(shared_data):
    train = from_config(era5_config(shared_data), "train")
    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=True, num_workers=0)
    batch = next(iter(loader))
    assert batch["fine"].shape == (8, 1, 16, 16)
    assert batch["coarse"].shape == (8, 1, 4, 4)
    assert batch["index"].shape == (8,)


def test_dataloader_with_worker_processes(shared_data):
    cfg = DataConfig(
        paths=(str(shared_data / KOLMO),),
        factor=8,
        crop_size=64,
        split_dim="trajectory",
        train=(0, 2),
        validation=(3,),
        condition="reynolds_number",
        condition_scale=40000.0,
    )
    train = from_config(cfg, "train")
    loader = torch.utils.data.DataLoader(train, batch_size=16, num_workers=2)
    batches = list(loader)
    assert sum(b["fine"].shape[0] for b in batches) == len(train)
    first = batches[0]
    assert torch.equal(first["fine"][3], train[3]["fine"])
    assert first["phys"].shape == (16,)


def test_nan_in_an_item_window_is_a_data_error_naming_variable_time_and_count():
    """The last guard (the check when the split opens is off here): an item whose window holds
    NaN is refused when it is read."""
    da = latlon_da(16, 16, lat0=40.0, lon0=0.0, ntime=5)
    values = da.values.copy()
    values[2, 0, :3] = np.nan  # three NaNs in the first row at the third time (1970-01-03)
    data = da.copy(data=values).to_dataset()
    full = SuperResolutionDataset(data, factor=2, crop_size=None, normalizer=None, nan_fields=None)
    assert torch.isfinite(full[1]["fine"]).all()
    message = r"'t2m' has 3 NaN value\(s\) at time=1970-01-03 00:00:00 .*fillna"
    with pytest.raises(DataError, match=message):
        full[2]
    # only the window an item reads is checked: a centre crop away from the NaNs is fine (also
    # for the check when the split opens, which looks where the items read)
    centre = SuperResolutionDataset(data, factor=2, crop_size=4, crop="center", normalizer=None)
    item = centre[2]
    assert torch.isfinite(item["fine"]).all()
    assert torch.isfinite(item["base"]).all()
    forecast = ForecastDataset(
        data, past_frames=1, lead=1, crop_size=None, normalizer=None, nan_fields=None
    )
    assert len(forecast) == 4
    for index in (1, 2):  # time 2 is the target of item 1 and the input frame of item 2
        with pytest.raises(DataError, match=message):
            forecast[index]
    assert torch.isfinite(forecast[3]["cond"]).all()
    assert np.isnan(data.t2m.values).sum() == 3  # the data are not modified


def test_condition_range_of_a_per_field_condition_variable():
    """A condition stored as a variable over the sample dim: the range covers exactly the
    selected fields (one read of the variable, not one per field)."""
    ds = latlon_da(16, 16, ntime=6).to_dataset()
    ds["re"] = ("time", np.array([500.0, 1000.0, 2000.0, 3000.0, 8000.0, 9000.0]))
    data = SuperResolutionDataset(
        ds,
        factor=4,
        crop_size=16,
        condition="re",
        split_dim="time",
        splits={"train": ("1970-01-02", "1970-01-04"), "validation": ("1970-01-05", "1970-01-06")},
    )
    assert data.condition_range() == (1000.0, 3000.0)
    assert float(data[0]["phys"]) == 1000.0


def test_forecast_condition_range_covers_the_window_times_only(shared_data, tmp_path):
    """A forecast item takes its condition at the current frame of a valid window: the range a
    model folder records is over those times, not the whole split (the first
    (past_frames - 1) * lead and the last lead times are never a condition)."""
    with xr.open_dataset(shared_data / ERA5) as ds:
        ds = ds.isel(time=slice(0, 48)).load()
    ds["forcing"] = ("time", np.arange(48.0))
    ds.to_netcdf(tmp_path / "forcing.nc")
    cfg = DataConfig(
        paths=(str(tmp_path / "forcing.nc"),),
        variables=("t2m",),
        crop_size=32,
        condition="forcing",
        past_frames=3,
        lead=2,
        train=("2019-03-01T00", "2019-03-01T23"),
        validation=("2019-03-02T00", "2019-03-02T23"),
    )
    train = from_config(cfg, "train", task="forecast")
    used = [float(train[i]["phys"]) for i in range(len(train))]
    # current frames 4..21: past frames at t - 4, t - 2, t; the target at t + 2
    assert train.condition_range() == (min(used), max(used)) == (4.0, 21.0)


# ---------------------------------------------------------------------------------------------
# NaN fields found when a split opens (data.nan_fields), log1p's domain, periodic crops, levels

RADAR = "radar/bom_mtstapylton_prcp10min_2020-10-31.nc"


def radar_config(shared_data, **changes) -> DataConfig:
    window = {
        "train": ("2020-10-31T00:00", "2020-10-31T17:50"),
        "validation": ("2020-10-31T18:00", "2020-10-31T23:50"),
    }
    return file_config(
        shared_data / RADAR, "precipitation", **{"crop_size": 32, **window, **changes}
    )


def test_nan_fields_of_the_radar_are_found_when_the_split_opens(shared_data):
    """The radar file has NaNs near the edges of 16 of its 144 times: a training run stopped at
    the first random crop that met one (step 56 of 200). The split is now checked when it opens:
    refused naming the variable, the split, how many fields and the first ones, and the TOML
    fix; with nan_fields = "drop" those times are left out and reported, and every item of an
    epoch is finite."""
    with xr.open_dataset(shared_data / RADAR) as raw:
        train_raw = raw.precipitation.sel(time=slice("2020-10-31T00:00", "2020-10-31T17:50"))
        holds_nan = train_raw.isnull().any(("y", "x")).values
        nan_times = train_raw.time.values[holds_nan]
        nan_values = int(train_raw.isnull().sum())
        logged = np.log1p(train_raw.values.astype(np.float64))
    assert 0 < holds_nan.sum() < holds_nan.size == 108
    first = str(pd.Timestamp(nan_times[0]))
    message = (
        rf"the train split holds NaN in {holds_nan.sum()} of its 108 fields .*variable "
        rf"'precipitation' in {holds_nan.sum()} fields \({nan_values} NaN values\) at "
        rf"time={first}.* and {holds_nan.sum() - 5} more.*data\.nan_fields = \"drop\""
    )
    with pytest.raises(DataError, match=message):
        from_config(radar_config(shared_data), "train")

    config = radar_config(shared_data, nan_fields="drop")
    train = from_config(config, "train")
    assert len(train) == 108 - holds_nan.sum()
    assert [f["time"] for f in train.dropped_fields] == list(nan_times)
    summary = train.dropped_summary()
    assert summary.startswith(f'nan_fields = "drop": left out {holds_nan.sum()} of the 108')
    assert first in summary
    times = [train.locate(i)["time"] for i in range(len(train))]
    assert not set(times) & set(nan_times)
    assert times == sorted(times)  # the order of the split, less the dropped times
    for epoch in (0, 1):
        train.set_epoch(epoch)
        for i in range(len(train)):
            item = train[i]
            assert torch.isfinite(item["fine"]).all()
            assert torch.isfinite(item["base"]).all()
    # the statistics are those of the train split, NaNs skipped (as before)
    stats = train.normalizer.stats["precipitation"]
    assert stats.mean == pytest.approx(np.nanmean(logged), rel=1e-10)
    assert stats.std == pytest.approx(np.nanstd(logged), rel=1e-10)
    # the same configuration gives the same items in the same order (resume-safe)
    again = from_config(config, "train")
    train.set_epoch(0)
    assert [again.locate(i) for i in range(len(again))] == [
        train.locate(i) for i in range(len(train))
    ]
    # validation crops are centred: only the centre window (plus halo) counts
    val = from_config(config, "validation", normalizer=train.normalizer)
    where = val.locate(0)
    with xr.open_dataset(shared_data / RADAR) as raw:
        window = normalize_grid(raw).precipitation.sel(
            time=slice("2020-10-31T18:00", "2020-10-31T23:50")
        )[:, where["y0"] - 4 : where["y0"] + 36, where["x0"] - 4 : where["x0"] + 36]
        centre_nan = int(window.isnull().any(("y", "x")).sum())
    assert len(val) == 36 - centre_nan
    assert len(val.dropped_fields) == centre_nan


def test_forecast_windows_with_a_nan_frame_are_dropped():
    """Closed form: a NaN at (member 1, time 4) spoils the windows of member 1 that read time 4
    (as a past frame, the current frame or the target), and no other."""
    da = latlon_da(16, 16, ntime=10)
    values = np.stack([da.values, 2 * da.values])  # (member, time, lat, lon)
    values[1, 4, 5, 5] = np.nan
    ds = xr.Dataset({"t2m": (("member", *da.dims), values)}, coords={"member": [0, 1], **da.coords})
    with pytest.raises(DataError, match=r"in 1 field \(1 NaN value\) at member=1, time=1970-01-05"):
        ForecastDataset(ds, past_frames=2, lead=1, crop_size=16)
    fc = ForecastDataset(ds, past_frames=2, lead=1, crop_size=16, nan_fields="drop")
    # windows: current frame t = 1..8 per member; time 4 is read by t = 3 (target), 4, 5 (past)
    kept = [
        (fc.locate(i)["member"], int(fc.locate(i)["time"].astype("datetime64[D]").astype(int)))
        for i in range(len(fc))
    ]
    assert kept == [(0, t) for t in range(1, 9)] + [(1, t) for t in (1, 2, 6, 7, 8)]
    assert fc.dropped_fields == [
        {"source": "dataset0", "member": 1, "time": np.datetime64("1970-01-05", "ns")}
    ]
    # the summary counts the windows left out (3 of 16), not only the field holding NaN
    assert (fc.split_windows, fc.dropped_windows) == (16, 3)
    assert fc.dropped_summary() == (
        'nan_fields = "drop": left out 3 of the 16 windows (2 past frames, lead 1) of the '
        "train split, which read a field holding NaN (1 field: member=1, time=1970-01-05 "
        "00:00:00)"
    )
    for i in range(len(fc)):
        assert torch.isfinite(fc[i]["cond"]).all()
        assert torch.isfinite(fc[i]["fine"]).all()
    # a NaN in every window leaves nothing: said so
    values[:, 1:9:2, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"no window of 2 past frames .* is free of NaN"):
        ForecastDataset(
            ds.copy(data={"t2m": values}), past_frames=2, lead=1, crop_size=16, nan_fields="drop"
        )


def test_log1p_values_at_or_below_minus_one_are_refused_in_any_split():
    """The fit checks log1p's domain on the train split only: a validation value of -1.5 became
    NaN in the tensors with only numpy's RuntimeWarning. Refused when the split opens (naming
    the variable, the value and the time) and, as a last guard, when an item is read."""
    rng = np.random.default_rng(0)
    pr = np.abs(rng.normal(0, 1, (8, 32, 32)))
    pr[7, 10, 10] = -1.5
    ds = xr.Dataset(
        {"pr": (("time", "y", "x"), pr)},
        coords={"time": np.arange(8), "y": np.arange(32.0), "x": np.arange(32.0)},
    )
    ds.y.attrs["units"] = ds.x.attrs["units"] = "km"
    splits = {"train": [0, 5], "validation": [6, 7]}
    common = dict(factor=4, crop_size=32, split_dim="time", splits=splits)
    train = SuperResolutionDataset(ds, normalizer="fit", **common)
    assert train.normalizer.stats["pr"].transform == "log1p"
    message = r"variable 'pr' has 1 value <= -1 \(down to -1\.5\) at time=7.*log1p"
    with pytest.raises(DataError, match=message):
        SuperResolutionDataset(ds, normalizer=train.normalizer, split="validation", **common)
    with pytest.raises(DataError, match=message):  # fitted here on the train split
        SuperResolutionDataset(ds, normalizer="fit", split="validation", **common)
    unchecked = SuperResolutionDataset(
        ds, normalizer=train.normalizer, split="validation", nan_fields=None, **common
    )
    assert torch.isfinite(unchecked[0]["fine"]).all()
    with pytest.raises(DataError, match=r"'pr' has 1 value\(s\) <= -1 \(down to -1\.5\) at time=7"):
        unchecked[1]
    # without log1p nothing is refused
    plain = Normalizer({"pr": VariableStats(mean=0.0, std=1.0)})
    item = SuperResolutionDataset(ds, normalizer=plain, split="validation", **common)[1]
    assert torch.isfinite(item["fine"]).all()


def test_a_constant_variable_next_to_a_varying_one_is_refused():
    """A constant 280.1 K sst (std 5.7e-14 from round-off) was accepted; a validation value
    0.1 K off then normalized to 1.76e12."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), rng.normal(280, 3, (8, 32, 32))),
            "sst": (("time", "y", "x"), np.full((8, 32, 32), 280.1)),
        },
        coords={"time": np.arange(8), "y": np.arange(32.0), "x": np.arange(32.0)},
    )
    ds.y.attrs["units"] = ds.x.attrs["units"] = "km"
    with pytest.raises(DataError, match=r"'sst' is constant .* Drop it from the variables"):
        SuperResolutionDataset(
            ds,
            variables=["t2m", "sst"],
            factor=4,
            crop_size=16,
            normalizer="fit",
            split_dim="time",
            splits={"train": [0, 5], "validation": [6, 7]},
        )


def test_random_crops_on_a_periodic_axis_cover_it_evenly(shared_data):
    """The Kolmogorov box is doubly periodic: random crop origins used to stop at n - size, so
    the edge rows were in a tenth as many crops as the centre. Origins now take every multiple
    of the factor and the window wraps: every row and column is covered equally often in
    expectation; a non-periodic grid keeps its crops inside."""
    ds = SuperResolutionDataset(
        shared_data / KOLMO,
        factor=4,
        crop_size=64,
        split_dim="trajectory",
        splits={"train": (0, 2), "validation": (3,)},
        normalizer=Normalizer({"vorticity": VariableStats(mean=0.0, std=4.5)}),
        nan_fields=None,
    )
    origins = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        origins += [(ds.locate(i)["y0"], ds.locate(i)["x0"]) for i in range(len(ds))]
    ys, xs = np.array(origins).T
    assert set(ys) == set(xs) == set(range(0, 256, 4))  # 64 origins, 256 - 64 included
    cover = np.zeros(256)
    for y0 in ys:
        cover[np.arange(y0, y0 + 64) % 256] += 1
    expected = len(ys) * 64 / 256
    assert 0.8 * expected < cover.min() <= cover.max() < 1.2 * expected  # was 10x apart
    # forecast crops wrap too (frames on the same periodic box)
    fc = ForecastDataset(
        shared_data / KOLMO,
        crop_size=32,
        split_dim="trajectory",
        splits={"train": (0, 2), "validation": (3,)},
        nan_fields=None,
    )
    index = next(i for i in range(len(fc)) if fc.locate(i)["y0"] > 224 or fc.locate(i)["x0"] > 224)
    where = fc.locate(index)
    rows = np.arange(where["y0"], where["y0"] + 32) % 256
    cols = np.arange(where["x0"], where["x0"] + 32) % 256
    with xr.open_dataset(shared_data / KOLMO) as raw:
        field = raw.vorticity.sel(trajectory=where["trajectory"]).transpose("time", "y", "x")
        t = int(np.flatnonzero(field.time.values == where["time"])[0])
        target = field.values[t + 1][rows][:, cols]
    np.testing.assert_allclose(fc[index]["fine"].numpy()[0], target, rtol=1e-6)
    era5 = from_config(era5_config(shared_data, crop_size=16), "train")
    for i in range(200):
        where = era5.locate(i)
        assert 0 <= where["y0"] <= 32 - 16
        assert 0 <= where["x0"] <= 48 - 16


def test_levels_are_samples_and_per_level_variables_are_channels(shared_data, tmp_path):
    """A non-grid dim such as ``level`` is a sample dim: the levels of ``u`` are separate
    samples of one channel with one set of statistics pooled over the levels. For a channel per
    level, the variable is split into one variable per level first (docs/data.md)."""
    path = shared_data / "era_interim/eraint_uv_monthly.nc"
    splits = {"train": [1], "validation": [7]}
    common = dict(factor=4, crop_size=64, split_dim="month", splits=splits, normalizer="fit")
    pooled = SuperResolutionDataset(path, variables=["u"], **common)
    with xr.open_dataset(path) as raw:
        u = normalize_grid(raw).u.sel(month=1).load()  # (level, latitude, longitude)
    assert pooled.variables == ("u",)
    assert len(pooled) == 3  # one month x three levels: three samples
    assert [pooled.locate(i)["level"] for i in range(3)] == list(u.level.values)
    assert pooled[0]["fine"].shape == (1, 64, 64)
    stats = pooled.normalizer.stats["u"]
    assert stats.mean == pytest.approx(float(u.values.astype(np.float64).mean()), rel=1e-10)
    assert stats.std == pytest.approx(float(u.values.astype(np.float64).std()), rel=1e-10)

    # one variable per level: u200, u500 are two channels with their own statistics
    with xr.open_dataset(path) as raw:
        split = xr.Dataset(
            {f"u{int(level)}": raw.u.sel(level=level, drop=True) for level in (200, 500)}
        )
        split.to_netcdf(tmp_path / "u_levels.nc")
    per_level = SuperResolutionDataset(
        tmp_path / "u_levels.nc", variables=["u200", "u500"], **common
    )
    assert per_level.variables == ("u200", "u500")
    assert len(per_level) == 1  # one month: one sample of two channels
    item, where = per_level[0], per_level.locate(0)
    assert item["fine"].shape == (2, 64, 64)
    rows = slice(where["y0"], where["y0"] + 64)
    cols = slice(where["x0"], where["x0"] + 64)
    for c, level in enumerate((200, 500)):
        values = u.sel(level=level).values.astype(np.float64)
        s = per_level.normalizer.stats[f"u{level}"]
        assert s.mean == pytest.approx(values.mean(), rel=1e-10)
        assert s.std == pytest.approx(values.std(), rel=1e-10)
        np.testing.assert_allclose(
            item["fine"][c].numpy(), (values[rows, cols] - s.mean) / s.std, rtol=1e-5, atol=1e-5
        )
    assert per_level.normalizer.stats["u200"].mean != per_level.normalizer.stats["u500"].mean


def test_grid_metadata_records_the_training_crop():
    # inference compares its tile size with the training crops (a tile smaller than them loses
    # skill and warns); grid.json records them
    da = latlon_da(32, 32, ntime=4)
    sr = SuperResolutionDataset(da.to_dataset(), factor=4, crop_size=16)
    assert sr.grid_metadata()["crop_size"] == 16
    assert (
        SuperResolutionDataset(da.to_dataset(), factor=4, crop_size=None).grid_metadata()[
            "crop_size"
        ]
        is None
    )
    fc = ForecastDataset(da.to_dataset(), past_frames=1, lead=1, crop_size=16)
    assert fc.grid_metadata()["crop_size"] == 16


def test_a_leading_tilde_in_data_paths_is_the_home_folder(tmp_path, monkeypatch):
    """``from_config`` (the data layer without the trainer) read ``~/t.nc`` literally: "no
    file matches '~/t.nc'"; no shell expands ``~`` in a config, so the data layer does, for
    files and globs alike."""
    monkeypatch.setenv("HOME", str(tmp_path))
    latlon_da(32, 32, ntime=8).to_dataset().to_netcdf(tmp_path / "t.nc")
    for given in ("~/t.nc", "~/t*.nc"):
        dataset = from_config(file_config(given, "t2m", crop_size=16), "train")
        assert len(dataset) == 8
