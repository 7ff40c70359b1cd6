"""The periodic-axis messages for HDF5 training files (h5py, no coordinates).

The warning for a periodic attribute on a field whose edges are not neighbours said to
``ds['y'].attrs.pop("periodic")`` and that "the model folder records them so", and the error for
a cyclic point said ``ds.isel(x=slice(None, -1))``: an h5py file has no ``ds`` and no coordinate
attributes, and its model folder records no grid, so an input declared periodic still runs as
periodic at inference (reviewer-80). The messages now give the h5py edit and say so.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.errors import DataError, FlexDownscaleWarning


def _smooth(times: int = 4) -> np.ndarray:
    """Fields smooth inside but not across their edges (a window of a larger field)."""
    y, x = np.meshgrid(np.linspace(0, 1, 32), np.linspace(0, 1, 48), indexing="ij")
    return np.stack([np.sin(3 * x + y + t) for t in range(times)]).astype("float32")


def _write(path, fields, *, on_dataset: bool = False) -> str:
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("fields", data=fields)
        (dset if on_dataset else f).attrs["periodic"] = "true"
    return str(path)


def _open(path: str) -> SuperResolutionDataset:
    return SuperResolutionDataset([path], factor=4, crop_size=16, normalizer=None)


@pytest.mark.parametrize(("on_dataset", "holder"), [(False, "f"), (True, "f['fields']")])
def test_the_window_warning_gives_the_h5py_edit(tmp_path, on_dataset, holder):
    path = _write(tmp_path / "w.h5", _smooth(), on_dataset=on_dataset)
    with pytest.warns(FlexDownscaleWarning, match="opposite edges are not neighbours") as caught:
        data = _open(path)
    text = str(caught[0].message)
    assert f'del {holder}.attrs["periodic"]' in text
    assert "ds[" not in text
    assert "records no grid, so at inference give inputs without" in text
    assert "the model folder records them so" not in text
    assert data.sources[0].periodic == (False, False)
    # the edit it names (on a copy: the dataset keeps its file open) gives a file that is not
    # periodic, without a warning
    edited = _write(tmp_path / "edited.h5", _smooth(), on_dataset=on_dataset)
    with h5py.File(edited, "r+") as f:
        del (f["fields"] if on_dataset else f).attrs["periodic"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        assert _open(edited).sources[0].periodic == (False, False)


def test_a_cyclic_point_in_an_hdf5_file_is_told_to_drop_the_column_with_h5py(tmp_path):
    fields = _smooth()
    cyclic = np.concatenate([fields[..., :47], fields[..., :1]], axis=-1)
    path = _write(tmp_path / "c.h5", cyclic)
    with pytest.raises(DataError, match="repeats its first") as err:
        _open(path)
    text = str(err.value)
    assert "ds.isel" not in text
    assert "h5py: the dataset's values[..., :-1]" in text
