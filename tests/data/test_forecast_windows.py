"""Forecast windows follow the time labels, not only the positions along the time dim.

Each test builds a small field series whose value everywhere is the hour of its time label, so
an item's frames say exactly which times they were read from (``normalizer=None``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data.datasets import ForecastDataset, split_positions
from flexdownscale.errors import DataError, FlexDownscaleWarning

T0 = np.datetime64("2019-03-02T00:00", "ns")


def hourly(hours, *, cftime: bool = False, coordinate: bool = True) -> xr.Dataset:
    """A 16 x 16 series at ``T0 + hours`` whose every cell holds its hour."""
    hours = np.asarray(hours, dtype=float)
    values = np.broadcast_to(hours[:, None, None], (hours.size, 16, 16)).copy()
    coords: dict = {
        "lat": ("lat", 50.0 + np.arange(16.0), {"units": "degrees_north"}),
        "lon": ("lon", np.arange(16.0), {"units": "degrees_east"}),
    }
    if coordinate:
        times = T0 + (hours * 3600).astype("timedelta64[s]")
        if cftime:
            times = xr.date_range(
                "2019-03-02",
                periods=int(hours.max()) + 1,
                freq="h",
                calendar="noleap",
                use_cftime=True,
            ).values[hours.astype(int)]
        coords["time"] = ("time", times)
    return xr.Dataset({"t2m": (("time", "lat", "lon"), values)}, coords=coords)


def frames_read(fc: ForecastDataset) -> list[tuple[list[float], float]]:
    """(the hours of the past frames, the hour of the target) of every item."""
    out = []
    for i in range(len(fc)):
        item = fc[i]
        out.append(([float(c[0, 0]) for c in item["cond"]], float(item["fine"][0, 0, 0])))
    return out


def forecast(data, **kwargs) -> ForecastDataset:
    return ForecastDataset(data, crop_size=16, normalizer=None, **kwargs)


# ---------------------------------------------------------------------------------------------
# D1: time labels in order, each once; windows only where the frames are evenly spaced


@pytest.mark.parametrize(
    ("order", "pair"),
    [
        (np.arange(6)[::-1], "2019-03-02T05:00 is followed by 2019-03-02T04:00"),
        (np.array([0, 1, 3, 2, 4, 5]), "2019-03-02T03:00 is followed by 2019-03-02T02:00"),
        (np.array([0, 1, 2, 2, 3, 4]), "2019-03-02T02:00 is followed by 2019-03-02T02:00"),
    ],
    ids=["reversed", "shuffled", "repeated"],
)
def test_unsorted_or_repeated_times_are_refused_naming_the_pair_and_the_fix(order, pair):
    """Positions paired a frame with an earlier one (reversed: the model learnt to step back)
    or with itself (a repeated time); now a DataError names the source, the first offending
    pair of labels and the fix."""
    data = hourly(order)
    with pytest.raises(DataError) as err:
        forecast(data, past_frames=2)
    message = str(err.value)
    assert "'dataset0'" in message
    assert pair in message
    assert "ds.sortby('time').drop_duplicates('time')" in message
    assert "to_netcdf(sorted_path)" in message  # the fix for a file given by path (the CLI)
    # sorting and deduplicating as said gives hourly windows
    fixed = forecast(data.sortby("time").drop_duplicates("time"), past_frames=2)
    assert frames_read(fixed) == [([t - 1, t], t + 1) for t in range(1, int(order.max()))]


def test_a_range_on_decreasing_labels_says_to_sort():
    data = hourly(np.arange(6)[::-1])
    with pytest.raises(DataError, match="needs increasing labels") as err:
        forecast(data, splits={"train": ["2019-03-02T00", "2019-03-02T03"]})
    assert "2019-03-02T05:00 is followed by 2019-03-02T04:00" in str(err.value)
    assert "ds.sortby('time')" in str(err.value)


@pytest.mark.parametrize("cftime", [False, True], ids=["datetime64", "cftime"])
def test_windows_crossing_a_gap_are_left_out_with_a_warning(cftime):
    """Hours 0-3 and 6-9 (hours 4 and 5 missing): positions paired hour 3 with hour 6 as one
    step. The two windows reading across the gap are left out, the warning counts them and
    names the gap, and the time step is recorded (it was null for a gapped file)."""
    data = hourly([0, 1, 2, 3, 6, 7, 8, 9], cftime=cftime)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fc = forecast(data, past_frames=2, lead=1)
    assert frames_read(fc) == [([0, 1], 2), ([1, 2], 3), ([6, 7], 8), ([7, 8], 9)]
    assert fc.gapped_windows == 2
    (warning,) = [w for w in caught if issubclass(w.category, FlexDownscaleWarning)]
    assert warning.filename == __file__  # points at the user's line
    text = str(warning.message)
    assert text.startswith("2 of the 6 windows (2 past frames, lead 1) of the train split")
    assert "data's step of 1 h" in text
    assert "2019-03-02T03:00 then 2019-03-02T06:00, 3 hours apart, in dataset0" in text
    assert fc.grid_metadata()["time_step"] == {"value": 3600.0, "units": "s"}


def test_uneven_steps_keep_the_most_common_one():
    """Hourly for 6 hours, then 3-hourly: the data's step is 1 h (6 of 8 spacings); windows
    with a 3 h spacing are left out, and a lead of 2 records a 2 h model step."""
    data = hourly([0, 1, 2, 3, 4, 5, 6, 9, 12])
    with pytest.warns(FlexDownscaleWarning, match="3 hours apart") as caught:
        fc = forecast(data, past_frames=1, lead=2)
    assert "2019-03-02T06:00 then 2019-03-02T09:00, 3 hours apart" in str(caught[0].message)
    assert frames_read(fc) == [([t], t + 2) for t in range(5)]
    assert fc.grid_metadata()["time_step"] == {"value": 7200.0, "units": "s"}


def test_a_numeric_time_coordinate_steps_by_its_values():
    """A step count (no date units): the same rule on the numbers, the step in their units."""
    data = hourly([0, 1, 2, 4, 5, 6]).assign_coords(time=[0.0, 0.5, 1.0, 2.0, 2.5, 3.0])
    with pytest.warns(FlexDownscaleWarning, match=r"1\.0 then 2\.0, 1 apart"):
        fc = forecast(data, past_frames=1, lead=1)
    assert frames_read(fc) == [([0], 1), ([1], 2), ([4], 5), ([5], 6)]
    assert fc.grid_metadata()["time_step"] == {"value": 0.5, "units": "1"}


def test_files_of_different_steps_are_refused_naming_both():
    hourly_file = hourly(np.arange(6))
    three_hourly = hourly(np.arange(0, 18, 3.0)).assign_coords(
        time=T0 + np.timedelta64(1, "D") + np.arange(6) * np.timedelta64(3, "h")
    )
    with pytest.raises(DataError, match=r"'dataset0' every 1 hour, 'dataset1' every 3 hours"):
        forecast([hourly_file, three_hourly], past_frames=2)


def test_frames_without_time_labels_step_by_position():
    """No time coordinate: positions are the only order there is (documented); no time step."""
    data = hourly([0, 1, 2, 5, 6], coordinate=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        fc = forecast(data, past_frames=2, lead=1)
    assert frames_read(fc) == [([0, 1], 2), ([1, 2], 5), ([2, 5], 6)]
    assert fc.grid_metadata()["time_step"] is None


def test_split_positions_of_a_sorted_file_are_unchanged():
    """The label helpers still select a range on increasing labels."""
    fc = forecast(hourly(np.arange(8)), past_frames=1)
    chosen = split_positions(fc.sources, "time", {"train": ["2019-03-02T02", "2019-03-02T05"]})
    np.testing.assert_array_equal(chosen["train"][0]["time"], [2, 3, 4, 5])


# ---------------------------------------------------------------------------------------------
# D2: past frames lead steps apart, as the rollout feeds them back


def test_past_frames_are_lead_steps_apart():
    """past_frames = 3, lead = 2 on hourly frames: training read t-2, t-1, t -> t+2 while the
    rollout gives frames 2 h apart; now the items read t-4, t-2, t -> t+2."""
    fc = forecast(hourly(np.arange(12)), past_frames=3, lead=2)
    assert frames_read(fc) == [([t - 4, t - 2, t], t + 2) for t in range(4, 10)]
    assert [fc.locate(i)["time"] for i in (0, len(fc) - 1)] == [
        T0 + np.timedelta64(4, "h"),
        T0 + np.timedelta64(9, "h"),
    ]
    assert fc.grid_metadata()["time_step"] == {"value": 7200.0, "units": "s"}


def test_a_split_time_axis_holds_every_frame_of_a_strided_window():
    """Along a split time axis every frame lies in the split: with the stride, a window ending
    at hour 7 reads hours 3 and 5, both outside a train split starting at hour 4."""
    data = hourly(np.arange(12))
    fc = forecast(
        data,
        past_frames=2,
        lead=2,
        splits={"train": ["2019-03-02T04", "2019-03-02T11"], "validation": []},
    )
    assert frames_read(fc) == [([t - 2, t], t + 2) for t in range(6, 10)]


# ---------------------------------------------------------------------------------------------
# D7: too few times says what was found and what a window needs


def test_too_few_times_say_how_many_were_found_and_needed():
    with pytest.raises(DataError) as err:
        forecast(hourly([0]), past_frames=2, lead=1)
    message = str(err.value)
    assert "no window of 2 past frames and lead 1 fits in the train split" in message
    assert "needs 3 consecutive, evenly spaced times" in message
    assert "the split has 1 time step in dataset0" in message
    assert "lower past_frames or lead" in message
    # six hourly times hold no window of 3 past frames 2 h apart and a target 2 h on (7 needed)
    with pytest.raises(DataError, match=r"needs 7 consecutive.*6 time steps in dataset0"):
        forecast(hourly(np.arange(6)), past_frames=3, lead=2)
    # a gap can leave no window: said too
    with pytest.warns(FlexDownscaleWarning), pytest.raises(DataError, match=r"\(2 windows left"):
        forecast(hourly([0, 1, 4, 5]), past_frames=1, lead=2)


def test_the_gap_warning_of_a_validation_split_speaks_of_scoring():
    """The validation split's warning said "the model learns only from evenly spaced frames.
    Fill the missing times to train on those windows": validation trains on nothing."""
    data = hourly([0, 1, 2, 3, 6, 7, 8, 9])
    splits = {"validation": ["2019-03-02T00", "2019-03-02T09"]}
    with pytest.warns(FlexDownscaleWarning) as caught:
        forecast(data, past_frames=2, split="validation", splits=splits)
    (text,) = [str(w.message) for w in caught if "windows" in str(w.message)]
    assert text.startswith("2 of the 6 windows (2 past frames, lead 1) of the validation split")
    assert text.endswith(
        "; the validation split scores only evenly spaced windows, as the model was trained on. "
        "Fill the missing times to score those windows"
    )
    assert "train on those" not in text
    with pytest.warns(FlexDownscaleWarning, match="to train on those windows$"):
        forecast(data, past_frames=2)
