"""Write the small real-data sample that ships with the package for ``flexdownscale demo``.

Reads ``../shared/data`` (see its README) and writes ``flexdownscale/_data/samples/``:

- ``era5_t2m_uk_sample.nc``: ERA5 2 m temperature over the British Isles at 0.25 degree, four
  hours of 20 March 2019 (00, 06, 12, 18 UTC), from the validation week (18-24 March) that the
  shipped ``era5-t2m-x4`` model never trained on.
- ``kolmogorov_sample.nc``: one vorticity snapshot (t = 21.5) of the validation trajectory (3)
  of 2-D Kolmogorov flow at Re = 1000 and at Re = 4000, 256 x 256 on [0, 2 pi)^2, stacked
  along a ``reynolds_number`` dimension.

The fields are stored at full resolution; the demo coarsens them on the fly. Run from the
repository root::

    python benchmarks/make_demo_sample.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

from flexdownscale.demo import SAMPLES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parents[1] / "flexdownscale" / "_data" / "samples"
ENCODING = {"zlib": True, "complevel": 9, "dtype": "float32"}


def era5_sample() -> xr.Dataset:
    with xr.open_dataset(DATA / "era5" / "era5_t2m_uk_2019-03-01_24.nc") as ds:
        times = np.array(["2019-03-20T00", "2019-03-20T06", "2019-03-20T12", "2019-03-20T18"])
        sample = ds.sel(time=times.astype("datetime64[ns]")).load()
    # the source file's title speaks of the hourly month; this sample is four 6-hourly fields
    sample.attrs["title"] = "ERA5 2 m temperature over the British Isles, 20 March 2019, 6-hourly"
    sample.attrs["comment"] = (
        "Four fields 6 hours apart (00, 06, 12 and 18 UTC, 20 March 2019) of the validation week "
        "(18-24 March 2019) of the flexdownscale ERA5 case, taken from the hourly source file; "
        "written by benchmarks/make_demo_sample.py."
    )
    return sample


def kolmogorov_sample() -> xr.Dataset:
    fields = []
    for re in (1000, 4000):
        with xr.open_dataset(DATA / "kolmogorov" / f"kf_re{re}.nc") as ds:
            snap = ds["vorticity"].sel(trajectory=3, time=21.5).load()
            attrs = dict(ds.attrs)
        fields.append(snap.drop_vars(["trajectory"]).expand_dims(reynolds_number=[float(re)]))
    out = xr.concat(fields, "reynolds_number").to_dataset()
    for key in ("reynolds_number", "viscosity", "dns_points_per_side", "dt", "title"):
        attrs.pop(key, None)
    attrs["title"] = "2-D Kolmogorov flow, one validation snapshot at Re = 1000 and Re = 4000"
    attrs["comment"] = (
        "Trajectory 3 (the validation trajectory of the flexdownscale Kolmogorov case), t = 21.5; "
        "written by benchmarks/make_demo_sample.py."
    )
    out.attrs = attrs
    out["reynolds_number"].attrs = {"long_name": "Reynolds number", "units": "1"}
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    era5 = era5_sample()
    era5.to_netcdf(OUT / SAMPLES["era5_t2m_uk"], encoding={"t2m": ENCODING})
    kolmo = kolmogorov_sample()
    kolmo.to_netcdf(OUT / SAMPLES["kolmogorov"], encoding={"vorticity": ENCODING})
    for path in sorted(OUT.glob("*.nc")):
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Takes no options; rewrites flexdownscale/_data/samples/*.nc.",
    ).parse_args()
    main()
