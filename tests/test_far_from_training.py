"""Inputs far from what the model was trained on (reviewer-126: a Kolmogorov field scaled by 5,
16 standard deviations out, and a constant 1000 came back as plausible-looking vorticity
without a word). Values more than ``FAR_FROM_TRAINING`` standard deviations from the model's
training mean now give one SkillWarning per call that says where, how far and what to check;
a field within the training range gives none."""

from __future__ import annotations

import warnings

import pytest
from test_forecast_fixes import box, box_grid, tiny_forecaster
from test_pipeline import FACTOR, era5_pair, make_downscaler

from flexdownscale.data import degrade
from flexdownscale.errors import SkillWarning
from flexdownscale.pipeline import FAR_FROM_TRAINING


def _far_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in record
        if issubclass(w.category, SkillWarning) and "standard deviations" in str(w.message)
    ]


def _call(fn, *args, **kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    return _far_warnings(record)


@pytest.fixture(scope="module")
def setup(shared_data):
    fine, _ = era5_pair(shared_data, times=4, ny=16, nx=16)
    model = make_downscaler(fine)
    return model, degrade(fine, FACTOR)


def test_an_input_like_the_training_data_gives_no_warning(setup):
    model, coarse = setup
    assert _call(model, coarse, seed=0) == []
    assert _call(model, coarse.chunk(time=1), seed=0) == []  # lazy: nothing computed yet...
    assert _call(lambda: model(coarse.chunk(time=1), seed=0).compute()) == []


def test_an_undecoded_fill_value_is_pointed_at_once(setup):
    model, coarse = setup
    stats = model.normalizer.stats["t2m"]
    filled = coarse.copy(deep=True)
    filled["t2m"][1, 2, 3] = -9999.0  # a fill value not decoded
    (text,) = _call(model, filled, seed=0)
    z = (-9999.0 - stats.mean) / stats.std
    assert f"'t2m': 1 of {coarse['t2m'].size} values (the farthest -9999 K, {z:+.0f} sigma" in text
    assert "at time index 1, first at y = " in text
    assert "undecoded fill value" in text
    # just inside the limit: no warning; just beyond it: one
    inside = coarse.copy(deep=True)
    inside["t2m"][0, 0, 0] = stats.mean + 0.99 * FAR_FROM_TRAINING * stats.std
    assert _call(model, inside, seed=0) == []
    inside["t2m"][0, 0, 0] = stats.mean + 1.01 * FAR_FROM_TRAINING * stats.std
    assert len(_call(model, inside, seed=0)) == 1


def test_a_lazy_call_warns_once_for_all_its_blocks(setup):
    model, coarse = setup
    scaled = coarse.copy(deep=True)
    scaled["t2m"] = scaled["t2m"] * 5.0  # every time step far out
    texts = _call(lambda: model(scaled.chunk(time=1), seed=0).compute())
    assert len(texts) == 1
    assert "counted in the first block of this lazy call" in texts[0]


def test_heavy_tailed_variables_are_not_checked(setup):
    """A downpour lies many standard deviations above the mean of rain."""
    import dataclasses

    model, coarse = setup
    stats = model.normalizer.stats["t2m"]
    rain = coarse.copy(deep=True)
    rain["t2m"] = (rain["t2m"] - float(rain["t2m"].min())) / 100.0
    rain["t2m"][0, 0, 0] = 50.0
    model.normalizer.stats["t2m"] = dataclasses.replace(
        stats, mean=0.05, std=0.05, transform="log1p"
    )
    try:
        assert _call(model, rain, seed=0) == []
        # nor a non-negative field of a variable whose training mean lies within 2 standard
        # deviations of 0 (rain normalized without a transform); its fill value is checked
        model.normalizer.stats["t2m"] = dataclasses.replace(stats, mean=0.05, std=0.05)
        assert _call(model, rain, seed=0) == []
        rain["t2m"][1, 0, 0] = -9999.0
        (text,) = _call(model, rain, seed=0)
        assert "the farthest -9999" in text
    finally:
        model.normalizer.stats["t2m"] = stats


def test_the_forecaster_warns_too():
    model = tiny_forecaster(box_grid())
    ds = box()
    stats = model.normalizer.stats["vorticity"]
    assert _call(model, ds, lead_steps=1, seed=0) == []
    far = ds.copy(deep=True)
    far["vorticity"][-1, 5, 7] = stats.mean + 20 * stats.std
    (text,) = _call(model, far, lead_steps=1, seed=0)
    assert "'vorticity': 1 of" in text
    assert "+20 sigma" in text
