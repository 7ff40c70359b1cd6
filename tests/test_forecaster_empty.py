"""A Dataset without data variables is refused by the Forecaster (and so by ``ds.flex.forecast``)
with the Downscaler's message (one check, ``_refuse_empty_dataset``), not with a missing
variable's hint to rename one."""

from __future__ import annotations

import pytest
from test_keyword_errors import box, tiny_forecaster

from flexdownscale.errors import MissingVariableError

MESSAGE = (
    r"the Dataset has no data variables \(coordinates only\): there is nothing to forecast\. "
    r"Select the variables that hold the fields, e\.g\. ds\[\['vorticity'\]\]"
)


def test_empty_dataset_is_refused_by_the_forecaster() -> None:
    forecaster, empty = tiny_forecaster(), box()[[]]
    with pytest.raises(MissingVariableError, match=MESSAGE):
        forecaster(empty, lead_steps=1)
    with pytest.raises(MissingVariableError, match=MESSAGE):
        empty.flex.forecast(forecaster, lead_steps=1)
