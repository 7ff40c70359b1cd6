"""The data fingerprint a training state records walks the fields' labels
(``_FieldDataset.field_labels``) instead of ``locate`` per item: the same labels, in the same
order, so the recorded SHA-256 is the one an earlier state recorded for the same data."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data.datasets import ForecastDataset, SuperResolutionDataset
from flexdownscale.train import _split_fingerprint
from tests.data.data_helpers import latlon_da, projected_da

_CROP = ("y0", "x0", "height", "width")


def _by_locate(data: Any) -> dict[str, Any]:
    """The fingerprint as it was computed before: ``locate`` of each field's first item, its
    crop left out."""
    digest = hashlib.sha256()
    first = labels = None
    fields = 0
    for index in range(0, len(data), data.crops_per_field):
        labels = {k: str(v) for k, v in data.locate(index).items() if k not in _CROP}
        digest.update(json.dumps(labels, sort_keys=True).encode("utf-8") + b"\n")
        first = first or labels
        fields += 1
    return {"fields": fields, "first": first, "last": labels, "sha256": digest.hexdigest()}


def _members(ntime: int, seed: int) -> xr.Dataset:
    """t2m over (time, member, lat, lon), some fields all NaN (left out with ``drop``); the
    times of ``seed`` 1 follow those of ``seed`` 0."""
    da = latlon_da(16, 16, ntime=ntime)
    da = da.assign_coords(time=da.time + np.timedelta64(10 * seed, "D"))
    da = xr.concat([da + k for k in range(3)], dim="member").transpose("time", "member", ...)
    values = da.values.copy()
    rng = np.random.default_rng(seed)
    for t, m in zip(rng.integers(0, ntime, 4), rng.integers(0, 3, 4)):
        values[t, m] = np.nan
    return da.copy(data=values).assign_coords(member=["a", "b", "c"]).to_dataset()


def _super_resolution() -> SuperResolutionDataset:
    return SuperResolutionDataset(
        [_members(7, 0), _members(5, 1)],
        factor=4,
        crop_size=8,
        crops_per_field=3,
        nan_fields="drop",
    )


def _forecast() -> ForecastDataset:
    ds = projected_da(16, 16, ntime=9).to_dataset()
    return ForecastDataset(ds, past_frames=2, lead=1, crop_size=8, crops_per_field=2)


def _positions() -> SuperResolutionDataset:
    """A sample dim without a coordinate: its labels are positions."""
    ds = latlon_da(16, 16, ntime=6).to_dataset().drop_vars("time")
    return SuperResolutionDataset(ds, factor=4, crop_size=8)


@pytest.mark.parametrize("build", [_super_resolution, _forecast, _positions])
def test_fingerprint_is_the_one_locate_gave(build: Any) -> None:
    data = build()
    new = _split_fingerprint(data)
    assert new == _by_locate(data)
    assert new["fields"] == len(data) // data.crops_per_field > 0


def test_field_labels_follow_item_order_and_leave_dropped_fields_out() -> None:
    data = _super_resolution()
    labels = list(data.field_labels())
    assert len(labels) == len(data) // data.crops_per_field
    assert data.dropped_fields
    assert not any(f in labels for f in data.dropped_fields)
    for field, one in enumerate(labels):
        located = data.locate(field * data.crops_per_field)
        assert one == {k: v for k, v in located.items() if k not in _CROP}


@pytest.mark.parametrize(
    ("build", "sha256"),
    [
        (_forecast, "73e5dbf5ce629c0e32209c0d51d5f6426307492e86c8a75ce034307a2ad4e538"),
        (_positions, "a9e1761eaa92e8af46bb13365b7208c2b8db88be6ae326215f3292bc8511fb19"),
    ],
)
def test_fingerprint_is_the_one_earlier_states_recorded(build: Any, sha256: str) -> None:
    """The SHA-256 the package gave before ``field_labels`` (``locate`` per field)."""
    assert _split_fingerprint(build())["sha256"] == sha256
