"""Training data a user really has, checked when a split opens (reviewer-154).

Undeclared fill values (-9999, 9.96921e36, 1e30 without ``_FillValue``) and infinite values
are refused by name, value, count and place, with the code that marks them missing; real
heavy-tailed fields pass quietly. Lists of dates select whole days; repeated time labels are
refused in a list and warned about in a range; layouts the package cannot train on (a level
variable beside 2-D ones, a static mask, two grids in one Dataset) say what to do instead.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import SuperResolutionDataset
from flexdownscale.data.normalize import Normalizer
from flexdownscale.errors import DataError, FlexDownscaleWarning, GridError

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"
SPLITS = {"train": ["2019-03-01", "2019-03-01T23"], "validation": ["2019-03-02", "2019-03-02T23"]}


@pytest.fixture(scope="module")
def era5(shared_data) -> xr.Dataset:
    """Two days of ERA5 t2m (48 hourly fields), in memory."""
    with xr.open_dataset(shared_data / ERA5) as raw:
        return raw.isel(time=slice(0, 48)).load()


def opened(ds: xr.Dataset, split: str = "train", **kw):
    kw = {"splits": SPLITS, **kw}
    train = SuperResolutionDataset(ds, factor=4, crop_size=16, normalizer="fit", **kw)
    if split == "train":
        return train
    return SuperResolutionDataset(
        ds, factor=4, crop_size=16, split=split, normalizer=train.normalizer, **kw
    )


# -- undeclared fill values (finding 1) ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dtype", "fix"),
    [
        (-9999.0, "float64", "ds['t2m'] != -9999)"),
        (9.96921e36, "float32", "ds['t2m'] != 9.96921e+36)"),
        (1e30, "float32", "ds['t2m'] != 1e+30)"),
    ],
)
def test_a_fill_value_in_fixed_cells_is_refused_by_name(era5, value, dtype, fix):
    ds = era5.astype(dtype)
    ds["t2m"][:, :10, :12] = value  # a "land" box, no _FillValue attribute
    with pytest.raises(DataError) as err:
        opened(ds)
    text = str(err.value)
    assert f"holds {value:g} in {24 * 120} values in the train split" in text
    assert "120 of 1617 cells, each at every one of 24 fields" in text
    assert "latitude 55.75 to 58, longitude -10 to -7.25" in text
    assert fix in text
    assert "_FillValue" in text


def test_the_fix_the_message_gives_leads_to_the_nan_mask_advice(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][:, :10, :12] = -9999.0
    with pytest.raises(DataError, match=re.escape("ds['t2m'] = ds['t2m'].where(")):
        opened(ds)
    ds["t2m"] = ds["t2m"].where(ds["t2m"] != -9999)
    # now a fixed NaN mask, refused as such (the documented path from here)
    with pytest.raises(DataError, match="fixed mask"):
        opened(ds)


def test_one_huge_cell_is_refused_through_normalizer_fit(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][5, 3, 4] = 1e30
    with pytest.raises(DataError, match=r"holds 1e\+30 in 1 value; in 1 of 1617 cells"):
        Normalizer.fit(ds)


def test_a_value_its_units_rule_out_held_in_fixed_cells_is_refused(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][:, -4:, -6:] = 0.0  # "0 K over the sea": no known fill number, but a mask
    with pytest.raises(
        DataError, match="holds 0 in 1152 values; in 24 of 1617 cells, each at every one of 48"
    ) as err:
        Normalizer.fit(ds)
    assert "0 K is absolute zero" in str(err.value)
    ds["t2m"] = ds["t2m"] - 273.15
    ds["t2m"].attrs["units"] = "degC"
    ds["t2m"][:, -4:, -6:] = -273.15
    with pytest.raises(DataError, match=r"-273\.15 degC is absolute zero"):
        Normalizer.fit(ds)


def sea_ice(era5: xr.Dataset) -> xr.Dataset:
    """A sea-ice concentration of two regimes (reviewer-163): open water exactly 0 in fixed
    cells, pack ice 0.95 +- 0.025 driven by the real t2m anomalies, no marginal ice."""
    t = era5["t2m"]
    anomaly = ((t - t.mean("time")) / t.std("time")).values
    ice = np.zeros(t.shape)
    ice[:, :20, :] = np.clip(0.95 + 0.025 * anomaly[:, :20, :], 0, 1)
    da = xr.DataArray(ice, dims=t.dims, coords=t.coords, name="siconc", attrs={"units": "1"})
    return da.to_dataset()


def test_a_real_value_held_in_fixed_cells_warns_with_a_way_through(era5):
    ds = sea_ice(era5)
    with pytest.warns(FlexDownscaleWarning, match="'siconc' holds 0 in fixed cells") as record:
        train = opened(ds)  # the path a TOML run takes
    day = ds["siconc"].sel(time="2019-03-01")  # the train split, 0s included
    assert train.normalizer.stats["siconc"].mean == pytest.approx(float(day.mean()))
    text = str(record[0].message)
    assert "ds['siconc'] = ds['siconc'].where(ds['siconc'] != 0)" in text
    silence = re.search(r"(warnings\.filterwarnings\(.*?\)) in Python", text)
    assert silence is not None
    shell = re.search(r'PYTHONWARNINGS="ignore:(.*?)"', text)
    assert shell is not None
    assert text.lower().startswith(shell.group(1).lower())
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        exec(silence.group(1), {"warnings": warnings})  # the line as the warning gives it
        opened(ds)
        Normalizer.fit(ds)
    # a fill number held there stays refused
    ds["siconc"] = ds["siconc"].where(ds["siconc"] > 0, -999.0)
    with pytest.raises(DataError, match="holds -999 in"):
        Normalizer.fit(ds)


def test_one_value_carrying_the_variance_is_warned_about(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][7, 10, 10] = -8888.0
    with pytest.warns(
        FlexDownscaleWarning, match=r"one value, -8888, carries 100% of its variance"
    ):
        Normalizer.fit(ds)


@pytest.mark.parametrize("time", [0, 8, 116])
def test_a_few_wet_pixels_in_a_dry_window_do_not_warn(shared_data, time):
    # one radar field, 64 x 64: 27, 6 and 1 wet pixels (0.05 to 0.3 mm) among zeros
    with xr.open_dataset(shared_data / "radar/bom_mtstapylton_prcp10min_2020-10-31.nc") as raw:
        window = raw.isel(time=[time], y=slice(200, 264), x=slice(200, 264)).load()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        Normalizer.fit(window, transforms={"precipitation": "none"})
        Normalizer.fit(window)


class _CountingArray:
    """An array that counts its reads (dask reads each chunk through ``__getitem__``)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.shape, self.dtype = values, values.shape, values.dtype
        self.ndim = values.ndim
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return self.values[key]


@pytest.mark.parametrize("shift", [0.0, -1.0e6])
def test_the_fit_reads_the_data_once_without_fill_values(era5, shift):
    # ERA5's accumulated fluxes in J m-2 (slhf, sshf) go down to about -1e6
    dask_array = pytest.importorskip("dask.array")
    counting = _CountingArray(era5["t2m"].values + shift)
    lazy = dask_array.from_array(counting, chunks=(12, 33, 49))
    ds = xr.Dataset({"t2m": (era5["t2m"].dims, lazy)}, coords=era5.coords)
    counting.reads = 0  # dask's look at the type on from_array
    Normalizer.fit(ds)
    assert counting.reads == lazy.npartitions


def test_values_near_the_field_are_not_fills(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][:, :10, :12] = 273.15  # a constant box within the field's range: real or not
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        Normalizer.fit(ds)


@pytest.mark.parametrize(
    ("path", "select"),
    [
        (ERA5, {}),
        ("era_interim/eraint_uv_monthly.nc", {}),
        ("kolmogorov/kf_re1000.nc", {"trajectory": 0}),
        ("kolmogorov/kf_re4000.nc", {"trajectory": 3}),
        ("radar/bom_mtstapylton_prcp10min_2020-10-31.nc", {"time": slice(96, 132)}),
        ("grids/tas_rotated_grid_EUR11.nc", {}),
    ],
)
@pytest.mark.parametrize("transform", ["auto", "none"])
def test_real_heavy_tailed_fields_pass_the_screen_quietly(shared_data, path, select, transform):
    with xr.open_dataset(shared_data / path) as raw:
        ds = raw.isel(select)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FlexDownscaleWarning)
            if transform == "auto":
                Normalizer.fit(ds)
            else:
                names = [str(n) for n in Normalizer.fit(ds).variables]
                Normalizer.fit(ds, transforms=dict.fromkeys(names, "none"))


# -- infinite values (findings 2 and 3) ------------------------------------------------------


# numpy's "invalid value encountered in subtract" (the variance of inf) came ahead of the error
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_inf_in_the_train_split_is_named_not_called_constant(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][[7, 20], 10, 10] = np.inf
    with pytest.raises(DataError) as err:
        opened(ds)
    text = str(err.value)
    assert "constant" not in text
    assert "the train split holds infinite values: variable 't2m' has +inf in 2 fields" in text
    assert "2019-03-01 07:00" in text
    assert "ds['t2m'].where(np.isfinite(ds['t2m']))" in text
    with pytest.raises(DataError, match=r"holds 2 infinite values \(\+inf or -inf\)"):
        Normalizer.fit(ds)


def test_inf_in_the_validation_split_is_refused(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][30:33, 16, 24] = -np.inf  # the validation split's centre cell
    with pytest.raises(DataError, match=r"validation split holds infinite values.* -inf in 3"):
        opened(ds, "validation", crop="center")


def test_huge_values_in_the_validation_split_are_refused(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][30:, 16, 24] = 1e30
    with pytest.raises(DataError) as err:
        opened(ds, "validation", crop="center")
    text = str(err.value)
    assert "the validation split: variable 't2m' holds 1e+30 in 18 fields" in text
    assert "ds['t2m'] != 1e+30" in text


def test_the_file_fix_of_a_fill_value_works_as_written(era5, tmp_path):
    glitch = era5.copy(deep=True)
    glitch["t2m"][3, 5, 5] = -9999.0
    glitch.to_netcdf(tmp_path / "glitch.nc")  # a file xarray wrote (its _FillValue encoded)
    with xr.open_dataset(tmp_path / "glitch.nc") as ds, pytest.raises(DataError) as err:
        opened(ds)
    found = re.search(
        r"declare it in a copy of the file: (ds\.to_netcdf\(.*?\)), and", str(err.value)
    )
    assert found is not None
    with xr.open_dataset(tmp_path / "glitch.nc") as ds:
        exec(found.group(1), {"ds": ds, "new_path": tmp_path / "declared.nc"})
    with xr.open_dataset(tmp_path / "declared.nc") as ds:
        assert int(ds["t2m"].isnull().sum()) == 1  # the fill is missing now
        with pytest.raises(DataError, match="holds NaN in 1 of its 24 fields"):
            opened(ds)
        assert len(opened(ds, nan_fields="drop")) == 23


def test_an_item_with_inf_is_refused_without_the_split_check(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][0, :, :] = np.inf
    data = SuperResolutionDataset(ds, factor=4, crop_size=16, nan_fields=None)
    with pytest.raises(DataError, match="infinite value"):
        data[0]


# -- lists of dates, repeated labels (findings 4, 5, 6) --------------------------------------


def test_a_list_of_dates_selects_whole_days(era5):
    days = SuperResolutionDataset(
        era5,
        factor=4,
        crop_size=16,
        splits={"train": ["2019-03-01"], "validation": []},
    )
    assert len(days) == 24
    three = {"train": ["2019-03-01T00", "2019-03-01T05", "2019-03-02"], "validation": []}
    mixed = SuperResolutionDataset(era5, factor=4, crop_size=16, splits=three)
    assert len(mixed) == 2 + 24  # times exactly, a date as its whole day
    month = SuperResolutionDataset(
        era5, factor=4, crop_size=16, splits={"train": ["2019-03"], "validation": []}
    )
    assert len(month) == 48


def test_a_list_time_on_a_repeated_label_is_a_data_error(era5):
    dup = xr.concat([era5.isel(time=slice(0, 10)), era5.isel(time=slice(0, 20))], "time")
    splits = {"train": ["2019-03-01T12", "2019-03-01T01", "2019-03-01T03"]}
    with pytest.raises(
        DataError, match=r"label 2019-03-01T01:00 is there 2 times.*drop_duplicates\('time'\)"
    ):
        SuperResolutionDataset(dup, factor=4, crop_size=16, splits=splits)


def test_a_list_away_from_repeated_labels_selects_as_usual(era5):
    # the last record written twice (a resumed download)
    dup = xr.concat([era5, era5.isel(time=[-1])], "time")
    listed = ["2019-03-01", "2019-03-02T05", "2019-03-02T06"]  # three entries: a list
    splits = {"train": listed, "validation": ["2019-03-02T00"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        assert len(SuperResolutionDataset(dup, factor=4, crop_size=16, splits=splits)) == 26
    # a whole day takes both copies, as a range does, and says so
    whole = {"train": ["2019-03-02"], "validation": ["2019-03-01"]}
    with pytest.warns(FlexDownscaleWarning, match=r"repeats 1 'time' label.*trained on"):
        assert len(SuperResolutionDataset(dup, factor=4, crop_size=16, splits=whole)) == 25


def test_sorted_repeats_warn_that_they_train_twice(era5):
    dup = xr.concat([era5.isel(time=slice(0, 10)), era5.isel(time=slice(0, 20))], "time")
    dup = dup.sortby("time")
    with pytest.warns(FlexDownscaleWarning, match=r"repeats 10 'time' labels.*trained on"):
        data = SuperResolutionDataset(
            dup, factor=4, crop_size=16, splits={"train": ["2019-03-01", "2019-03-01T23"]}
        )
    assert len(data) == 30
    # in a validation split the repeats are not trained on: they count twice in its measures
    both = {"train": ["2019-03-01T10", "2019-03-01T23"], "validation": ["2019-03-01", "T09"]}
    both["validation"][1] = "2019-03-01T09"
    with pytest.warns(FlexDownscaleWarning) as record:
        SuperResolutionDataset(dup, factor=4, crop_size=16, splits=both, split="validation")
    (text,) = [str(w.message) for w in record if "repeats" in str(w.message)]
    assert "selected for the validation split" in text
    assert "counts twice in what the validation split measures" in text
    assert "trained on" not in text
    # other fields under one label (another run) are what they should be
    other = dup.copy(deep=True)
    other["t2m"][1::2] += 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        SuperResolutionDataset(other, factor=4, crop_size=16, splits={"train": []})


# -- layouts that cannot train (finding 8) ---------------------------------------------------


def test_a_level_variable_beside_2d_ones_names_the_per_level_fix(era5):
    t = era5["t2m"]
    u = xr.concat([t, t * 2], xr.DataArray([850, 500], dims="level", name="level"))
    ds = xr.Dataset({"t2m": t, "u": u.transpose("time", "level", ...)})
    with pytest.raises(DataError, match=re.escape("ds['u_850'] = ds['u'].sel(level=850, drop")):
        SuperResolutionDataset(ds, variables=["t2m", "u"], factor=4, crop_size=16)


def test_a_static_mask_says_static_fields_are_no_conditions(era5):
    mask = (era5["t2m"].isel(time=0, drop=True) > 281).astype("int8")
    ds = era5.assign(lsm=mask)
    with pytest.raises(DataError, match=r"'lsm' has no 'time' dim: a static field.*cannot be"):
        SuperResolutionDataset(ds, variables=["t2m", "lsm"], factor=4, crop_size=16)


def test_two_grids_in_one_dataset_say_to_regrid_not_to_name_dims(era5):
    u = era5["t2m"].isel(latitude=slice(0, 32), longitude=slice(0, 48))
    u = u.rename(latitude="lat2", longitude="lon2")
    ds = xr.Dataset({"t2m": era5["t2m"], "u": u + 1.0})
    fix = "ds['u'] = ds['u'].interp(lat2=ds['latitude'], lon2=ds['longitude'])"
    with pytest.raises(GridError) as err:
        SuperResolutionDataset(ds, variables=["t2m", "u"], factor=4, crop_size=16)
    assert fix in str(err.value)
    assert "dims={'x'" not in str(err.value)
    with pytest.raises(DataError, match=re.escape(fix)):  # the dims= way: the same advice
        SuperResolutionDataset(
            ds, variables=["t2m", "u"], factor=4, crop_size=16, dims={"x": "lon2", "y": "lat2"}
        )


def test_a_variable_all_nan_in_the_train_split_says_so(era5):
    ds = era5.assign(sst=era5["t2m"].where(era5["time"] >= np.datetime64("2019-03-02")))
    with pytest.raises(DataError, match="'sst' is all NaN in the train split"):
        opened(ds, variables=["t2m", "sst"], nan_fields="drop")
