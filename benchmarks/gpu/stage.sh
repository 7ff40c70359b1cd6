#!/usr/bin/env bash
# Stage what a GPU session needs, here (not on the device), from the repository root:
#   device_data/  the real data the device runs read (../shared/data does not travel)
#   .whl/         wheels of the packages the device image lacks (it has no internet)
# Both folders are git-ignored; name them in the device tool's `carry` (benchmarks/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${FLEXDOWNSCALE_SHARED_DATA:-../shared/data}
# .whl/ starts empty: after a constraints.txt bump the old version of a wheel would sit beside
# the new one, and installing both on the device fails the whole call (ResolutionImpossible).
rm -rf .whl
mkdir -p device_data .whl
cp "$DATA/era5/era5_t2m_uk_2019-03-01_24.nc" "$DATA/kolmogorov/kf_re1000.nc" \
  "$DATA/kolmogorov/kf_re4000.nc" device_data/
# The device image (Python 3.12) already has torch, accelerate, safetensors, h5py, scipy, einops,
# matplotlib, pandas and tqdm. These are missing there (pint with flexcache, flexparser and
# platformdirs compares units); versions from constraints.txt. h5netcdf reads the HDF5-based
# netCDF files, so the 10 MB netCDF4 wheel stays behind.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -c constraints.txt -d .whl \
  xarray dask partd locket importlib_metadata zipp lazy-importer cf_xarray xarray-regrid flox \
  numpy_groupies h5netcdf pint flexcache flexparser platformdirs
du -sh device_data .whl
