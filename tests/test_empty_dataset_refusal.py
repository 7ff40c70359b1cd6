"""A Dataset without data variables is refused with one message on both ways of downscaling
it: ``Downscaler.__call__`` itself (the check lives there) and the accessor (which asks it
before it chooses a model for the input's names)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_pipeline import era5_pair, make_downscaler

from flexdownscale.errors import MissingVariableError

MESSAGE = r"the Dataset has no data variables \(coordinates only\).*ds\[\['t2m'\]\]"


def test_empty_dataset_is_refused_by_the_downscaler(shared_data: Path) -> None:
    fine, coarse = era5_pair(shared_data, times=1)
    down = make_downscaler(fine)
    with pytest.raises(MissingVariableError, match=MESSAGE):
        down(coarse[[]])
    with pytest.raises(MissingVariableError, match=MESSAGE):
        coarse[[]].flex.downscale()
