"""Which validation fields the sampled skill is computed on: spread over the split, not its head.

The validation split lists its fields file by file and in time order; the skill used to be
sampled on the first ``eval_fields`` of them, so a run conditioned over the two Kolmogorov
files (Re = 1000, then Re = 4000) never scored a Re = 4000 field (its first one is item 24 of 48).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from train_runs import kolmogorov_data, tiny_run_values

from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.diffusion import ResidualModel
from flexdownscale.train import Trainer, validation_indices


@pytest.mark.parametrize(
    ("length", "count", "expected"),
    [
        (10, 4, [1, 3, 6, 8]),  # the middles of the blocks 0-2, 2-5, 5-7, 7-10 (floored)
        (48, 2, [12, 36]),  # one per Reynolds number of the Kolmogorov validation split
        (48, 1, [24]),
        (5, 5, [0, 1, 2, 3, 4]),
        (3, 10, [0, 1, 2]),  # more asked than there are: all of them
        (1, 1, [0]),
    ],
)
def test_closed_forms(length, count, expected):
    assert validation_indices(length, count) == expected


@given(st.integers(1, 400), st.integers(1, 500))
def test_distinct_increasing_and_at_the_block_middles(length, count):
    indices = validation_indices(length, count)
    assert len(indices) == min(length, count)
    assert all(a < b for a, b in itertools.pairwise(indices))
    assert indices[0] >= 0
    assert indices[-1] < length
    if count < length:  # item i spans the middle (i + 1/2) length / count of the i-th block
        for i, index in enumerate(indices):
            assert index * 2 * count <= (2 * i + 1) * length < (index + 1) * 2 * count


def test_a_conditioned_run_scores_both_files(tmp_path, shared_data, monkeypatch):
    """Two Kolmogorov files, eval_fields = 2: the skill is sampled at Re 1000 and at Re 4000."""
    values = tiny_run_values(tmp_path, shared_data, eval_fields=2, eval_members=1)
    values["data"] = kolmogorov_data(shared_data)
    trainer = Trainer(from_dict(TrainConfig, values))
    seen = {}

    def sample(self, objective, cond, *, base, members, phys=None, **options):
        seen["phys"] = phys.tolist()
        return base[:, None].repeat(1, members, 1, 1, 1)

    monkeypatch.setattr(ResidualModel, "sample", sample)
    metrics = trainer.evaluate()
    # the condition is Re / 40000 (kolmogorov_data): one field of each file
    assert seen["phys"] == pytest.approx([1000 / 40000, 4000 / 40000])
    assert metrics["val/rmse"] == pytest.approx(metrics["val/rmse_base"])
