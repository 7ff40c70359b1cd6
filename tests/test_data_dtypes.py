"""Dtypes, packing and resolution metadata (reviewer-148).

- A packed HDF5 ``fields`` dataset (int16 with ``scale_factor`` / ``add_offset``) trains on the
  unpacked values: the fitted statistics are those of the same data as a packed netCDF, a cell
  holding ``_FillValue`` is a NaN (refused as any NaN), and attributes that are not numbers are
  refused. Before, the normalizer was fitted on the raw counts.
- ``Normalizer.inverse_transform_array`` of half-precision input returns float32: a float16
  pressure of 1e5 Pa came back inf, and bfloat16 in steps of 512 Pa.
- Training refuses complex and boolean variables as inference does, naming the variable and its
  dtype (complex128 was trained on its real part; a boolean gave "no variable on the grid").
- A downscaled output leaves out the input grid's cfgrib ``GRIB_*`` attributes, ``grid`` and
  ``nominal_resolution``, divides ``geospatial_lat/lon_resolution`` by the factor, and drops
  ``cell_measures`` / ``ancillary_variables`` entries naming variables it lacks.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr
from test_pipeline import FACTOR, era5_pair, make_downscaler

from flexdownscale.data import Normalizer, SuperResolutionDataset
from flexdownscale.errors import DataError

SCALE, OFFSET, FILL = 0.0005, 280.0, -32767


def _fields(seed: int = 0) -> np.ndarray:
    """(6, 16, 16) temperatures near 281 K."""
    return 281.0 + np.random.default_rng(seed).normal(size=(6, 16, 16))


def _packed(values: np.ndarray) -> np.ndarray:
    return np.round((values - OFFSET) / SCALE).astype(np.int16)


def _write_h5(path: Path, raw: np.ndarray, **attrs: object) -> Path:
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("fields", data=raw)
        for key, value in attrs.items():
            dset.attrs[key] = value
    return path


def _dataset(path: Path | xr.Dataset, **kw: object) -> SuperResolutionDataset:
    return SuperResolutionDataset(path, factor=4, crop_size=16, normalizer="fit", **kw)


def test_packed_hdf5_is_unpacked(tmp_path: Path) -> None:
    values = _fields()
    raw = _packed(values)
    unpacked = raw * SCALE + OFFSET
    h5 = _write_h5(tmp_path / "p.h5", raw, scale_factor=SCALE, add_offset=OFFSET, _FillValue=FILL)
    stats = _dataset(h5).normalizer.stats["fields"]
    assert stats.mean == pytest.approx(unpacked.mean(), rel=1e-12)
    assert stats.std == pytest.approx(unpacked.std(), rel=1e-6)
    # the same data as a packed netCDF (decoded by xarray) fits the same statistics
    da = xr.DataArray(values, dims=("time", "latitude", "longitude"), name="t2m")
    ds = da.assign_coords(
        latitude=50.0 + 0.25 * np.arange(16), longitude=0.25 * np.arange(16)
    ).to_dataset()
    ds["t2m"].attrs["units"] = "K"
    nc = tmp_path / "p.nc"
    ds.to_netcdf(
        nc,
        encoding={
            "t2m": {
                "dtype": "int16",
                "scale_factor": SCALE,
                "add_offset": OFFSET,
                "_FillValue": FILL,
            }
        },
    )
    from_nc = _dataset(nc).normalizer.stats["t2m"]
    assert stats.mean == pytest.approx(from_nc.mean, rel=1e-12)
    assert stats.std == pytest.approx(from_nc.std, rel=1e-6)


def test_packed_hdf5_fill_value_is_nan(tmp_path: Path) -> None:
    raw = _packed(_fields())
    raw[2, 3, 4] = FILL
    h5 = _write_h5(tmp_path / "f.h5", raw, scale_factor=SCALE, add_offset=OFFSET, _FillValue=FILL)
    with pytest.raises(DataError, match="NaN"):
        _dataset(h5)
    # missing_value too; dropping the field leaves the five others
    h5 = _write_h5(
        tmp_path / "m.h5", raw, scale_factor=SCALE, add_offset=OFFSET, missing_value=FILL
    )
    assert len(_dataset(h5, nan_fields="drop")) == 5


def test_packed_hdf5_attribute_not_a_number(tmp_path: Path) -> None:
    h5 = _write_h5(tmp_path / "s.h5", _packed(_fields()), scale_factor="0.0005")
    with pytest.raises(DataError, match=r"scale_factor.*expected one real number"):
        _dataset(h5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_inverse_of_half_precision_is_float32(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(0)
    sp = xr.Dataset({"sp": (("y", "x"), 1e5 + 500 * rng.normal(size=(16, 16)))})
    norm = Normalizer.fit(sp)
    z = norm.transform_array(torch.from_numpy(sp["sp"].values[None]))
    back = norm.inverse_transform_array(z.to(dtype))
    assert back.dtype == torch.float32
    exact = norm.inverse_transform_array(z.to(dtype).double())
    torch.testing.assert_close(back.double(), exact, rtol=1e-6, atol=0.0)
    z16 = z.numpy().astype(np.float16)
    back16 = norm.inverse_transform_array(z16)
    assert back16.dtype == np.float32
    assert np.isfinite(back16).all()
    assert norm.transform_array(z16).dtype == np.float16  # the forward keeps the dtype


def _grid_ds(values: np.ndarray) -> xr.Dataset:
    ds = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), values, {"units": "K"})},
        coords={
            "time": np.arange(6) * np.timedelta64(1, "h") + np.datetime64("2019-03-01"),
            "latitude": 50.0 + 0.25 * np.arange(16),
            "longitude": 0.25 * np.arange(16),
        },
    )
    return ds


def test_training_refuses_complex_and_bool() -> None:
    values = _fields()
    ds = _grid_ds(values)
    complex_ds = ds.assign(t2m=ds["t2m"] + 1j * ds["t2m"])
    with pytest.raises(DataError, match=r"'t2m' of 'dataset0' holds complex.*complex128.*\.real"):
        _dataset(complex_ds)
    with pytest.raises(DataError, match=r"'t2m' of 'dataset0' holds complex.*complex128"):
        _dataset(complex_ds, variables=["t2m"])
    bool_ds = ds.assign(t2m=ds["t2m"] > 281)
    with pytest.raises(DataError, match=r"'t2m' of 'dataset0' holds booleans \(dtype bool\)"):
        _dataset(bool_ds)
    with pytest.raises(DataError, match=r"holds booleans \(dtype bool\)"):
        _dataset(bool_ds, variables=["t2m"])
    # a boolean mask beside a real variable is left out, as before
    masked = ds.assign(land=ds["t2m"] > 281)
    assert list(_dataset(masked).variables) == ["t2m"]


def test_downscaled_output_drops_coarse_grid_metadata(shared_data: Path) -> None:
    fine, coarse = era5_pair(shared_data, times=1)
    down = make_downscaler(fine)
    grib = {
        "GRIB_Nx": 12,
        "GRIB_Ny": 8,
        "GRIB_iDirectionIncrementInDegrees": 1.0,
        "GRIB_jDirectionIncrementInDegrees": 1.0,
        "GRIB_gridType": "regular_ll",
        "GRIB_latitudeOfFirstGridPointInDegrees": 57.375,
        "GRIB_longitudeOfLastGridPointInDegrees": 2.0,
        "GRIB_numberOfPoints": 96,
        "GRIB_jScansPositively": 0,
    }
    coarse["t2m"].attrs.update(
        grib,
        GRIB_paramId=167,
        GRIB_units="K",
        cell_measures="area: cell_area",
        ancillary_variables="t2m_qc",
    )
    coarse.attrs.update(
        geospatial_lat_resolution="1 degree",
        geospatial_lon_resolution=1.0,
        nominal_resolution="100 km",
        grid="1x1 degree regular lat-lon",
        GRIB_centre="ecmf",
    )
    out = down(coarse, seed=0)
    attrs = out["t2m"].attrs
    assert not set(grib) & set(attrs)
    assert attrs["GRIB_paramId"] == 167
    assert attrs["GRIB_units"] == "K"
    assert "cell_measures" not in attrs
    assert "ancillary_variables" not in attrs
    assert out.attrs["geospatial_lat_resolution"] == f"{1 / FACTOR:g} degree"
    assert out.attrs["geospatial_lon_resolution"] == 1.0 / FACTOR
    assert "nominal_resolution" not in out.attrs
    assert "grid" not in out.attrs
    assert out.attrs["GRIB_centre"] == "ecmf"


def test_references_kept_when_present() -> None:
    from flexdownscale.pipeline import _drop_dangling_references, _refined_global_attrs

    ds = xr.Dataset(
        {
            "t2m": (
                "x",
                [1.0, 2.0],
                {"cell_measures": "area: a volume: v", "ancillary_variables": "q r"},
            ),
            "a": ("x", [1.0, 1.0]),
            "q": ("x", [0, 0]),
        }
    )
    out = _drop_dangling_references(ds)
    assert out["t2m"].attrs == {"cell_measures": "area: a", "ancillary_variables": "q"}
    assert ds["t2m"].attrs["ancillary_variables"] == "q r"  # the input is not changed
    assert _refined_global_attrs({"geospatial_lat_resolution": "about a degree"}, 4) == {}
