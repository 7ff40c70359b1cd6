"""The model card written by training names each variable's units.

A reviewer's two-variable model card listed ``variables: u, v`` while ``flexdownscale info``
shows ``u [m s**-1]``: the card's Data section now gives the units as ``info`` does (and says
when a variable has no ``units`` attribute)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from train_runs import tiny_run_values

from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.hub import load_model_folder
from flexdownscale.train import Trainer

ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"


def test_the_card_lists_each_variable_with_its_units(tmp_path, shared_data):
    with xr.open_dataset(shared_data / ERA5) as raw:
        base = raw.t2m.isel(time=slice(0, 36)).load()
    wind = xr.Dataset(
        {
            "u": (base - float(base.mean())).assign_attrs(units="m s**-1"),
            "v": (np.float32(0.5) * (base - float(base.mean()))).assign_attrs(units="m s**-1"),
            "q": (base / float(base.max())).assign_attrs(long_name="a variable without units"),
        }
    )
    wind["q"].attrs.pop("units", None)
    path = tmp_path / "wind.nc"
    wind.to_netcdf(path)
    values = tiny_run_values(
        tmp_path,
        shared_data,
        eval_every=0,
        checkpoint_every=0,
        data={
            "paths": [str(path)],
            "variables": ["u", "v", "q"],
            "train": ["2019-03-01T00", "2019-03-01T23"],
            "validation": ["2019-03-02T00", "2019-03-02T11"],
        },
    )
    Trainer(from_dict(TrainConfig, values)).fit()
    folder = tmp_path / "run" / "model"
    card = (folder / "README.md").read_text()
    data = card.split("## Data", 1)[1].split("##", 1)[0]
    assert "- variables: u [m s**-1], v [m s**-1], q (no units attribute)\n" in data
    # the same units as the folder stores (what flexdownscale info shows)
    stored = load_model_folder(folder).units
    assert stored == {"u": "m s**-1", "v": "m s**-1", "q": ""}
