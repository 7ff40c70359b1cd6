"""Training reads a condition stored only on the variables (``da.attrs["reynolds_number"]``,
which ``da.to_dataset()`` and ``da.to_netcdf()`` keep), as inference does.

Inference read the condition from the input's variable or coordinate, then the global
attribute, then the variables' own attribute; training stopped after the global attribute, so a
file that inference downscaled at Re = 4000 could not be trained on ("neither a variable nor an
attribute").
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flexdownscale.data.datasets import SuperResolutionDataset
from flexdownscale.errors import DataError, MissingVariableError

RE = "reynolds_number"


def _field(value: float | None = None, name: str = "vorticity") -> xr.DataArray:
    rng = np.random.default_rng(0)
    attrs = {} if value is None else {RE: value}
    return xr.DataArray(
        rng.normal(size=(2, 32, 32)),
        dims=("time", "y", "x"),
        coords={
            "time": [0.0, 1.0],
            "y": ("y", np.arange(32.0), {"units": "1"}),
            "x": ("x", np.arange(32.0), {"units": "1"}),
        },
        name=name,
        attrs=attrs,
    )


def _conditions(data, **kw) -> list[float]:
    ds = SuperResolutionDataset(
        data, factor=4, crop_size=16, normalizer=None, condition=RE, condition_scale=1000.0, **kw
    )
    return [float(ds[i]["phys"]) for i in range(len(ds))]


def test_a_condition_on_the_variable_is_read(tmp_path):
    path = tmp_path / "kf.nc"
    _field(4000.0).to_netcdf(path)  # a DataArray written with its own attribute
    with xr.open_dataset(path) as ds:
        assert RE not in ds.attrs
        assert ds.vorticity.attrs[RE] == 4000.0
    assert _conditions([str(path)]) == [4.0, 4.0]
    # the same as a global attribute gives (the variable's attribute is read last)
    path2 = tmp_path / "global.nc"
    _field().to_dataset().assign_attrs({RE: 4000.0}).to_netcdf(path2)
    assert _conditions([str(path2)]) == [4.0, 4.0]
    both = _field(1000.0).to_dataset().assign_attrs({RE: 4000.0})
    assert _conditions([both]) == [4.0, 4.0]  # the global attribute wins over the variable's


def test_variables_that_disagree_are_refused(tmp_path):
    ds = _field(1000.0, "u").to_dataset()
    ds["v"] = _field(4000.0, "v")
    assert (ds.u.attrs[RE], ds.v.attrs[RE]) == (1000.0, 4000.0)
    path = tmp_path / "uv.nc"
    ds.to_netcdf(path)
    with pytest.raises(DataError, match=r"disagree on the condition 'reynolds_number'") as err:
        _conditions([str(path)], variables=["u", "v"])
    assert f"ncatted -a reynolds_number,global,o,d,<value> {path}" in str(err.value)


def test_no_condition_anywhere_names_every_place_looked_at():
    with pytest.raises(
        MissingVariableError, match=r"neither a variable nor an attribute \(global, "
    ):
        _conditions([_field().to_dataset()])
