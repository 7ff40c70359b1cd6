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


def test_a_value_of_its_own_held_in_fixed_cells_is_refused(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][:, -4:, -6:] = 0.0  # "0 K over the sea": no known fill number, but a mask
    with pytest.raises(
        DataError, match="holds 0 in 1152 values; in 24 of 1617 cells, each at every one of 48"
    ):
        Normalizer.fit(ds)


def test_one_value_carrying_the_variance_is_warned_about(era5):
    ds = era5.copy(deep=True)
    ds["t2m"][7, 10, 10] = -8888.0
    with pytest.warns(
        FlexDownscaleWarning, match=r"one value, -8888, carries 100% of its variance"
    ):
        Normalizer.fit(ds)


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


def test_a_list_on_repeated_labels_is_a_data_error(era5):
    dup = xr.concat([era5.isel(time=slice(0, 10)), era5.isel(time=slice(0, 20))], "time")
    splits = {"train": ["2019-03-01T00", "2019-03-01T01", "2019-03-01T03"]}
    with pytest.raises(DataError, match=r"labels repeat \(10 of them.*drop_duplicates\('time'\)"):
        SuperResolutionDataset(dup, factor=4, crop_size=16, splits=splits)


def test_sorted_repeats_warn_that_they_train_twice(era5):
    dup = xr.concat([era5.isel(time=slice(0, 10)), era5.isel(time=slice(0, 20))], "time")
    dup = dup.sortby("time")
    with pytest.warns(FlexDownscaleWarning, match=r"repeats 10 'time' labels.*trained on"):
        data = SuperResolutionDataset(
            dup, factor=4, crop_size=16, splits={"train": ["2019-03-01", "2019-03-01T23"]}
        )
    assert len(data) == 30
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
