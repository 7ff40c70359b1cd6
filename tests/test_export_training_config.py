"""An exported model says how it was trained (reviewer-117: the model folder's ``config.json``
``extra`` and its card lacked the seed, the schedule, the warm-up, the micro-batch, the configured
steps and more; only the run folder's ``config.toml`` had them, so a shared model alone could
not be trained again the same way)."""

from __future__ import annotations

import json

from train_runs import tiny_run_config

from flexdownscale.config import TrainConfig, from_dict
from flexdownscale.hub import load_model_folder
from flexdownscale.pipeline import Downscaler
from flexdownscale.train import Trainer


def test_the_export_records_the_whole_training_config_and_the_card_names_it(tmp_path, shared_data):
    config = tiny_run_config(
        tmp_path,
        shared_data,
        seed=3,
        micro_batch_size=1,  # batch_size 2: two accumulated micro-batches
        optim={"warmup_steps": 1, "schedule": "constant", "weight_decay": 0.01},
    )
    Trainer(config).fit()
    run = tmp_path / "run"
    folder = load_model_folder(run / "model")
    recorded = folder.extra["training_config"]
    # the run's own record of its configuration, the model section as built
    assert recorded == json.loads((run / "config.json").read_text())
    again = from_dict(TrainConfig, recorded)
    assert (again.seed, again.steps, again.batch_size, again.micro_batch_size) == (3, 1, 2, 1)
    assert again.optim == config.optim
    assert again.data == config.data  # paths, ranges, crops, transforms
    assert folder.extra["training_setup"] == {
        "processes": 1,
        "micro_batch_size": 1,
        "accumulation_steps": 2,
        "mixed_precision": "no",
    }
    card = folder.card
    assert (
        "- optimiser steps: 1, samples seen: 2, global batch: 2\n"
        "- seed: 3; micro-batches: 1 per process x 1 process x 2 accumulated micro-batches; "
        "precision: fp32\n"
        "- constant learning-rate schedule over steps = 1 after 1 warm-up step; betas "
        "[0.9, 0.999], weight decay 0.01, gradient clip 1.0\n"
        "- every setting of the run (its `config.toml`: seed, schedule, batches, data paths "
        "and ranges, ...) is in `config.json` as `extra.training_config`"
    ) in card
    # the split's ranges were in the card already
    assert "train ['2019-03-01', '2019-03-17T23'], validation ['2019-03-24T00'" in card


def test_a_folder_exported_before_the_record_still_loads(tmp_path, shared_data):
    """Folders written before (no ``training_config`` / ``training_setup`` in ``extra``; the
    entry is not checksummed) load and downscale as before."""
    Trainer(tiny_run_config(tmp_path, shared_data)).fit()
    model = tmp_path / "run" / "model"
    values = json.loads((model / "config.json").read_text())
    for key in ("training_config", "training_setup"):
        values["extra"].pop(key, None)  # (absent from an export of the previous package)
    (model / "config.json").write_text(json.dumps(values, indent=2))
    folder = load_model_folder(model)
    assert "training_config" not in folder.extra
    assert folder.extra["train_steps"] == 1
    Downscaler.from_pretrained(model)
