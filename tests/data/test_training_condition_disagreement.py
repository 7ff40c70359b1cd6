"""Training reads a condition from a file's variable (or coordinate) before its global attribute;
when both exist and disagree (``xr.concat`` of the Re = 1000 and Re = 4000 files keeps the first
file's ``reynolds_number = 1000`` attribute) it now says so, once per file and process, as
inference does (reviewer-70 / helper-72, session 24)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data import SuperResolutionDataset
from flexdownscale.errors import FlexDownscaleWarning


def _joined(attribute: float | None, label: str) -> xr.Dataset:
    """Four 32 x 32 fields, the first two at Re = 1000 and the last two at Re = 4000 (a
    coordinate along time), with ``attribute`` as the global ``reynolds_number``."""
    rng = np.random.default_rng(0)
    x = np.arange(32) * 2 * np.pi / 32
    ds = xr.Dataset(
        {"vorticity": (("time", "y", "x"), rng.standard_normal((4, 32, 32)).astype("float32"))},
        coords={
            "time": np.arange(4.0),
            "y": ("y", x, {"units": "1"}),
            "x": ("x", x, {"units": "1"}),
            "reynolds_number": ("time", [1000.0, 1000.0, 4000.0, 4000.0]),
        },
        attrs={"title": label},
    )
    if attribute is not None:
        ds.attrs["reynolds_number"] = attribute
    return ds


def _open(ds: xr.Dataset) -> SuperResolutionDataset:
    return SuperResolutionDataset(
        ds, factor=4, crop_size=16, condition="reynolds_number", normalizer=None
    )


def test_a_stale_attribute_is_named_once_and_the_coordinate_is_read():
    ds = _joined(1000.0, "stale")
    with pytest.warns(FlexDownscaleWarning, match="disagrees on the condition") as caught:
        train = _open(ds)
    texts = [str(w.message) for w in caught if "disagrees" in str(w.message)]
    assert len(texts) == 1
    assert caught[0].filename == __file__
    assert "its variable 'reynolds_number' holds 1000, 4000" in texts[0]
    assert "global attribute reynolds_number = 1000" in texts[0]
    assert "ds.attrs.pop('reynolds_number')" in texts[0]
    assert ds.attrs["reynolds_number"] == 1000.0  # the input is not changed
    phys = sorted({float(train[i]["phys"]) for i in range(len(train))})
    assert phys == [1000.0, 4000.0]  # the coordinate, not the attribute
    with warnings.catch_warnings():  # the validation split opens the same data: no repeat
        warnings.simplefilter("error", FlexDownscaleWarning)
        _open(ds)


@pytest.mark.parametrize("attribute", [None, 2500.0])
def test_no_warning_without_a_disagreement(attribute):
    ds = _joined(attribute, f"agrees-{attribute}")
    if attribute is not None:  # one value everywhere: the attribute agrees
        ds = ds.assign_coords(reynolds_number=("time", [attribute] * 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        _open(ds)
