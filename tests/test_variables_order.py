"""``variables=`` maps input names onto the model's by position: a model variable's own name
given for another would swap the fields silently (reviewer-103: ``variables=["v", "u"]`` on a
(u, v) model gave u the v field, with v's standard_name, and ``evaluate`` scored it without a
word); it is refused."""

from __future__ import annotations

import numpy as np
import pytest
from test_pipeline import era5_pair, make_downscaler

from flexdownscale.cli import main
from flexdownscale.errors import ConfigError


@pytest.fixture(scope="module")
def two(shared_data):
    """(two-variable tiny model (t2m, tp), coarse input holding both under the model's names)."""
    fine, coarse = era5_pair(shared_data)
    fine = fine.isel(time=[0])
    coarse = coarse.isel(time=[0])
    fine = fine.assign(tp=(fine["t2m"] - 270.0).assign_attrs(units="K"))
    coarse = coarse.assign(tp=(coarse["t2m"] - 270.0).assign_attrs(units="K"))
    model = make_downscaler(
        fine, variables=["t2m", "tp"], units={"t2m": "K", "tp": "K"}, name="tiny-two"
    )
    return model, coarse


def test_crossed_model_names_are_refused(two):
    model, coarse = two
    with pytest.raises(ConfigError) as info:
        model(coarse, variables=["tp", "t2m"], members=2, seed=0)
    text = str(info.value)
    assert "would feed the input's 'tp' to the model as its 't2m'" in text
    assert "its order: ['t2m', 'tp']" in text
    assert "leave it out" in text
    with pytest.raises(ConfigError, match="names 't2m' more than once"):  # one name for both
        model(coarse, variables=["t2m", "t2m"], members=2, seed=0)


def test_mappings_that_do_not_cross_still_work(two):
    """The model's own order, and other names mapped by position, are taken as before."""
    model, coarse = two
    plain = model(coarse, members=2, seed=0, steps=2)
    same = model(coarse, variables=["t2m", "tp"], members=2, seed=0, steps=2)
    np.testing.assert_array_equal(same["tp"].values, plain["tp"].values)
    other = coarse.rename(t2m="tas", tp="tpx")
    mapped = model(other, variables=["tas", "tpx"], members=2, seed=0, steps=2)
    np.testing.assert_array_equal(mapped["t2m"].values, plain["t2m"].values)
    partly = model(coarse.rename(t2m="tas"), variables=["tas", "tp"], members=2, seed=0, steps=2)
    np.testing.assert_array_equal(partly["tp"].values, plain["tp"].values)


def test_command_line_refuses_the_crossed_order(two, tmp_path, capsys):
    model, coarse = two
    model.save_pretrained(tmp_path / "model")
    coarse.to_netcdf(tmp_path / "in.nc")
    argv = ["downscale", str(tmp_path / "in.nc"), str(tmp_path / "out.nc")]
    argv += ["--model", str(tmp_path / "model"), "--variables", "tp,t2m", "--members", "2"]
    assert main(argv) == 2
    assert "would feed the input's 'tp' to the model as its 't2m'" in capsys.readouterr().err
    assert not (tmp_path / "out.nc").exists()
