"""An unknown keyword of a public function is Python's TypeError naming the likely keyword."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import xarray as xr

import flexdownscale.pipeline
from flexdownscale import data, metrics, plot
from flexdownscale._keywords import check_keywords, keyword_hints
from flexdownscale.pipeline import Downscaler, Forecaster
from flexdownscale.train import Trainer

PUBLIC = [
    (module.__name__, name, getattr(module, name))
    for module in (metrics, plot, data)
    for name in module.__all__
    if inspect.isfunction(getattr(module, name))
] + [
    ("Downscaler", "__call__", Downscaler.__call__),
    ("Downscaler", "save_pretrained", Downscaler.save_pretrained),
    ("Forecaster", "__call__", Forecaster.__call__),
    ("Trainer", "__init__", Trainer.__init__),
    ("Trainer", "export", Trainer.export),
]


@pytest.fixture
def ensemble() -> xr.DataArray:
    rng = np.random.default_rng(0)
    return xr.DataArray(rng.normal(size=(3, 4, 5)), dims=("member", "y", "x"), name="t2m")


@pytest.mark.parametrize(("where", "name", "func"), PUBLIC, ids=[f"{w}.{n}" for w, n, _ in PUBLIC])
def test_every_public_function_names_its_keywords(where, name, func):
    """Checked before the arguments are bound: a call with only a bogus keyword lists them."""
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'bogus'; its keywords") as e:
        func(bogus=1)
    taken = set(inspect.signature(func).parameters) - {"self"}
    listed = str(e.value).split("its keywords are ")[1].split(", ")
    assert set(listed) == taken  # the whole signature, nothing private
    assert func.__name__ == name  # the name and signature stay the function's (API docs)
    assert inspect.signature(func) == inspect.signature(inspect.unwrap(func))


def test_near_names_are_suggested(ensemble):
    obs = ensemble.mean("member")
    with pytest.raises(
        TypeError, match=r"^rmse\(\) .* 'reduce_dim'; did you mean 'reduce_dims'\?$"
    ):
        metrics.rmse(obs, obs, reduce_dim="x")
    with pytest.raises(
        TypeError, match=r"^crps_ensemble\(\) .* 'member_dims'; did you mean 'member_dim'"
    ):
        metrics.crps_ensemble(ensemble, obs, member_dims="member")
    with pytest.raises(TypeError, match=r"^degrade\(\) .* 'methd'; did you mean 'method'\?"):
        data.degrade(obs.to_dataset(), 2, methd="area_mean")
    with pytest.raises(TypeError, match=r"^plot_rank_histogram\(\) .* 'member'; did you mean"):
        plot.plot_rank_histogram(ensemble, obs, member="member")
    # the call goes through when the keywords are right
    assert float(metrics.rmse(obs, obs, reduce_dims="x").max()) == 0.0


def test_the_accessor_checks_keywords_before_a_model_is_picked(ensemble, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a model was picked before the keywords were checked")

    monkeypatch.setattr(flexdownscale.pipeline, "downscaler_for", never)
    ds = ensemble.isel(member=0).to_dataset()
    with pytest.raises(
        TypeError, match=r"^ds\.flex\.downscale\(\) .* 'member'; did you mean 'members'\?$"
    ):
        ds.flex.downscale(factor=4, member=4)
    with pytest.raises(
        TypeError, match=r"^da\.flex\.downscale\(\) .* 'factr'; did you mean 'factor'\?$"
    ):
        ds["t2m"].flex.downscale(factr=4)
    with pytest.raises(
        TypeError, match=r"^ds\.flex\.forecast\(\) .* 'seeds'; did you mean 'seed'\?$"
    ):
        ds.flex.forecast("no-such-folder", 2, seeds=3)


def test_a_shipped_downscaler_call_with_a_misspelt_keyword():
    model = Downscaler.from_pretrained("era5-t2m-x4")
    ds = xr.Dataset({"t2m": (("latitude", "longitude"), np.zeros((8, 8)))})
    with pytest.raises(
        TypeError, match=r"^Downscaler\.__call__\(\) .* 'sampler_option'; did you mean"
    ):
        model(ds, sampler_option={})


def test_a_class_is_named_as_the_user_calls_it():
    with pytest.raises(TypeError, match=r"^Trainer\(\) got .* 'resum'; did you mean 'resume'\?$"):
        Trainer(None, resum=True)


def test_check_keywords_closed_cases():
    takes = frozenset({"self", "members", "seed", "tile"})
    check_keywords(["members", "tile"], takes, "f")  # all known: nothing raised
    with pytest.raises(TypeError, match="'member'; did you mean 'members'"):
        check_keywords(["member"], takes, "f")
    with pytest.raises(TypeError, match=r"'x'; its keywords are members, seed, tile$"):
        check_keywords(["seed", "x"], takes, "f")  # self is never offered


def test_functions_with_var_keywords_are_left_alone():
    def takes_anything(a, **kwargs):
        return kwargs

    assert keyword_hints(takes_anything) is takes_anything
