"""The shipped cards' prose says which fields each number is over and how firm it is
(reviewer-136): the Kolmogorov pooled LSD is over 8 of the 48 validation fields, not "the whole
validation split"; at Re = 1000 the card advises the measured 10 DDIM steps instead of "do not
use its small scales"; the stored SDE strengths were chosen on the fields they are reported
on; the seed and field spreads are given."""

from __future__ import annotations

import pytest

from flexdownscale.hub import load_model_folder


def _prose(case: str) -> str:
    """The card's text after its skill table, on one line."""
    card = load_model_folder(case).card
    return " ".join(card.split("<!-- end of skill table -->", 1)[1].split())


def test_kolmogorov_pooled_numbers_name_their_fields():
    prose = _prose("kolmogorov-x8")
    assert "Over the whole validation split" not in prose
    assert "Over the table's 8 fields (of the split's 48)" in prose


def test_kolmogorov_re1000_advice_is_the_measured_one():
    prose = _prose("kolmogorov-x8")
    assert "Do not use its small scales" not in prose
    assert "At Re=1000 sample with `steps=10`" in prose
    assert "log-spectral distance of 8.8 against conservative interpolation's 10.9" in prose
    # the spreads the verdicts are read against
    assert "by at most 0.02 dB" in prose
    assert "by up to 0.35 dB" in prose


@pytest.mark.parametrize("case", ["era5-t2m-x4", "kolmogorov-x8"])
def test_stored_strength_is_said_to_be_in_sample(case):
    assert "in-sample for it" in _prose(case)


def test_era5_strength_check_on_other_hours_is_called_weak():
    prose = _prose("era5-t2m-x4")
    assert "there is no test split" in prose
    assert "On 21 other hours of that week" in prose
    assert "a weak check" in prose
