"""The training loop's bookkeeping (reviewer-129): each trainer's own gradient accumulation and
random stream when several are built in one process, one precision per process, the logged
training loss over every micro-batch of a step, fp16 on a CPU, a validation loss that does not
depend on the batch grouping, and no weight decay on 1-D parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_runs import tiny_run_config

from flexdownscale.errors import ConfigError
from flexdownscale.train import Trainer


def _config(tmp_path: Path, shared_data: Path, name: str, **top):
    """A tiny run without validation in ``tmp_path/name``; ``top`` replaces entries."""
    values = {
        "steps": 2,
        "batch_size": 4,
        "eval_every": 0,
        "checkpoint_every": 0,
        "model": {"preset": "tiny", "dropout": 0.0},
        "optim": {"warmup_steps": 1, "lr": 1e-3},
        "data": {"validation": []},
        **top,
    }
    return tiny_run_config(tmp_path / name, shared_data, **values)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# 1. several trainers in one process


def test_each_trainer_accumulates_its_own_micro_batches(tmp_path, shared_data):
    # accelerate's gradient state is one per process: B (no accumulation) replaced A's two
    # micro-batches per step, and A stepped after every micro-batch while counting 4 samples
    first = Trainer(_config(tmp_path, shared_data, "a", micro_batch_size=2))
    Trainer(_config(tmp_path, shared_data, "b", micro_batch_size=4))
    first.fit()
    assert first.progress.step == 2
    assert first.progress.micro_batches == 4
    lines = (tmp_path / "a" / "run" / "samples.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 0, 1, 1]


def test_a_trainer_trains_the_same_after_another_was_built(tmp_path, shared_data):
    # the same run alone, and with a trainer of another seed built between its construction
    # and its fit (which reseeded the process, and drew its weights): the same weights, bit
    # for bit (the training noise is the run's own stream)
    alone = Trainer(_config(tmp_path, shared_data, "alone", micro_batch_size=2))
    alone.fit()
    later = Trainer(_config(tmp_path, shared_data, "later", micro_batch_size=2))
    Trainer(_config(tmp_path, shared_data, "other", micro_batch_size=2, seed=5))
    torch.randn(3)  # and numbers drawn by the user in between
    later.fit()
    expected, got = _weights(alone), _weights(later)
    assert all(torch.equal(expected[name], got[name]) for name in expected)


def _other_precision() -> tuple[str, str]:
    """A precision this process can still train in, and one it cannot (accelerate keeps the
    first trainer's: fp32 on a CPU, bf16 under ``auto`` on a GPU)."""
    from accelerate.state import AcceleratorState

    held = (getattr(AcceleratorState, "_shared_state", None) or {}).get("_mixed_precision")
    return ("bf16", "fp32") if held == "bf16" else ("fp32", "bf16")


def test_a_second_precision_in_one_process_is_refused_clearly(tmp_path, shared_data):
    first, second = _other_precision()
    Trainer(_config(tmp_path, shared_data, "first", precision=first))
    with pytest.raises(ConfigError, match="one precision per process") as info:
        Trainer(_config(tmp_path, shared_data, "second", precision=second))
    message = str(info.value)
    assert f"precision = '{second}'" in message
    assert "process of its own" in message
    assert f"precision = '{first}'" in message
    assert not (tmp_path / "second" / "run").exists()  # refused before the run folder


# ---------------------------------------------------------------------------------------------
# 2. the logged training loss


def test_logged_loss_is_the_mean_over_the_steps_micro_batches(tmp_path, shared_data):
    trainer = Trainer(_config(tmp_path, shared_data, "loss", micro_batch_size=1))
    losses, logged = [], []
    compute, log = trainer._loss, trainer.accelerator.log

    def recorded_loss(batch):
        loss = compute(batch)
        losses.append(float(loss.detach()))
        return loss

    def recorded_log(values, step=None, **kwargs):
        logged.append(values)
        return log(values, step=step, **kwargs)

    trainer._loss = recorded_loss
    trainer.accelerator.log = recorded_log
    trainer.fit()
    assert len(losses) == 8  # 2 steps of 4 micro-batches
    means = [sum(losses[:4]) / 4, sum(losses[4:]) / 4]
    assert [values["train/loss"] for values in logged] == pytest.approx(means, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# 3. fp16 on a CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on a GPU")
def test_fp16_on_a_cpu_warns_and_records_fp32(tmp_path, shared_data):
    from flexdownscale.errors import FlexDownscaleWarning
    from flexdownscale.hub import load_model_folder

    config = _config(tmp_path, shared_data, "fp16", steps=1, precision="fp16")
    with pytest.warns(FlexDownscaleWarning, match="'fp16' has no effect on a CPU.*'bf16'"):
        trainer = Trainer(config)
    assert trainer.precision == "no"
    trainer.fit()
    run = tmp_path / "fp16" / "run"
    launch = json.loads((run / "launches.jsonl").read_text().splitlines()[-1])
    assert launch["precision"] == "no"
    folder = load_model_folder(run / "model")
    assert folder.extra["training_setup"]["mixed_precision"] == "no"
    assert "precision: fp32 (precision = 'fp16' has no effect on a CPU)\n" in folder.card
    assert folder.extra["training_config"]["precision"] == "fp16"  # the setting as given


# ---------------------------------------------------------------------------------------------
# 4. the validation loss does not depend on the batches


class _Toy(torch.nn.Module):
    """A network of the objectives' interface: one convolution, scaled by the time and by the
    mean of the task input (so that every argument reaches the output)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, t, cond=None, *, phys=None, task_features=None):
        scale = t.reshape(-1, 1, 1, 1) + cond.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1)
        if phys is not None:
            scale = scale + phys.reshape(-1, 1, 1, 1)
        return self.conv(x) * scale


@pytest.mark.parametrize("objective", ["vp", "flow", "idff"])
def test_item_seeded_loss_is_each_items_own_loss_in_one_network_call(objective):
    from flexdownscale.config import DiffusionConfig
    from flexdownscale.diffusion import build_objective
    from flexdownscale.train import _item_seeded_loss

    built = build_objective(DiffusionConfig(objective=objective))
    torch.manual_seed(0)
    network = _Toy(2 * built.channel_factor)
    calls = []
    network.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    target, cond, phys = torch.randn(5, 2, 8, 8), torch.randn(5, 3, 8, 8), torch.rand(5)
    seeds = [11, 2**63 + 5, 0, 7, 123456789]
    with torch.no_grad():
        batched = _item_seeded_loss(built, network, target, cond, phys, seeds)
        assert calls == [5]  # the network ran once, on the batch
        alone = torch.cat(
            [
                built.loss(
                    network,
                    target[i : i + 1],
                    cond[i : i + 1],
                    phys=phys[i : i + 1],
                    generator=torch.Generator().manual_seed(seed),
                )
                for i, seed in enumerate(seeds)
            ]
        )
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


def test_validation_loss_is_the_same_for_any_micro_batch(tmp_path, shared_data):
    config = _config(
        tmp_path,
        shared_data,
        "validation",
        steps=1,
        batch_size=8,
        eval_fields=1,
        eval_members=1,
        data={"validation": ["2019-03-24T00", "2019-03-24T07"]},  # 8 items
    )
    trainer = Trainer(config)
    losses = {}
    with torch.no_grad():  # as evaluate() runs it
        for micro in (1, 2, 3, 8):
            trainer.micro_batch_size = micro  # the batches validation reads
            losses[micro] = trainer._evaluate_main()["val/loss"]
        again = trainer._evaluate_main()["val/loss"]
    assert losses[1] == pytest.approx(losses[8], rel=1e-6)
    assert losses[2] == pytest.approx(losses[8], rel=1e-6)
    assert losses[3] == pytest.approx(losses[8], rel=1e-6)
    assert again == losses[8]  # the same at every evaluation


# ---------------------------------------------------------------------------------------------
# 5. the card's EMA line


def test_the_card_gives_the_ema_decay_reached_at_the_end(tmp_path, shared_data):
    from flexdownscale.hub import load_model_folder

    trainer = Trainer(_config(tmp_path, shared_data, "ema", micro_batch_size=4))
    trainer.fit()
    card = load_model_folder(tmp_path / "ema" / "run" / "model").card
    # two updates: the warm-up's (1 + 2) / (10 + 2) = 0.25, not the configured 0.999
    assert (
        "- EMA of the weights (exported): decay 0.25 at its last update (2; warm-up "
        "min(0.999, (1 + n) / (10 + n)) at update n, which reaches 0.999 at update 8990), an "
        "average over about the last 1 step\n"
        "- optimiser: adamw, lr 0.001, EMA 0.999\n"
    ) in card
    trainer.ema.updates = 1000  # the default run's end
    assert "decay 0.9911 at its last update (1000;" in trainer._ema_line()
    assert "about the last 112 steps" in trainer._ema_line()
    trainer.ema.updates = 9000
    assert "decay 0.999 over its last updates, reached at update 8990" in trainer._ema_line()


# ---------------------------------------------------------------------------------------------
# 6. no weight decay on 1-D parameters


def _groups_by_name(trainer: Trainer) -> list[tuple[float, set[str]]]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return [
        (group["weight_decay"], {names[id(p)] for p in group["params"]})
        for group in trainer.optimizer.param_groups
    ]


def test_weight_decay_spares_one_dimensional_parameters(tmp_path, shared_data):
    config = _config(tmp_path, shared_data, "decay", optim={"warmup_steps": 1, "weight_decay": 0.1})
    trainer = Trainer(config)
    model = trainer.accelerator.unwrap_model(trainer.model)
    matrices = {name for name, p in model.named_parameters() if p.ndim >= 2}
    vectors = {name for name, p in model.named_parameters() if p.ndim < 2}
    assert len(vectors) > 100  # biases and normalization gains of the tiny preset
    assert _groups_by_name(trainer) == [(0.1, matrices), (0.0, vectors)]


def test_a_state_with_one_parameter_group_resumes_with_each_parameters_moments(
    tmp_path, shared_data, monkeypatch, capsys
):
    import flexdownscale.train as train

    def one_group(model, weight_decay):  # as earlier versions built the optimiser
        parameters = list(model.parameters())
        return [{"params": parameters, "weight_decay": weight_decay}], [
            list(range(len(parameters)))
        ]

    optim = {"warmup_steps": 1, "weight_decay": 0.1}
    with monkeypatch.context() as patch:
        patch.setattr(train, "_parameter_groups", one_group)
        old = Trainer(_config(tmp_path, shared_data, "old", steps=1, optim=optim))
        old.fit()
    assert len(old.optimizer.param_groups) == 1
    model = old.accelerator.unwrap_model(old.model)
    saved = {
        name: old.optimizer.state[p]["exp_avg_sq"].clone() for name, p in model.named_parameters()
    }

    capsys.readouterr()
    resumed = Trainer(_config(tmp_path, shared_data, "old", steps=2, optim=optim), resume=True)
    resumed.load_latest_state()
    assert "1-D parameters, biases and normalization gains, are no longer decayed" in (
        capsys.readouterr().out
    )
    model = resumed.accelerator.unwrap_model(resumed.model)
    matrices = {name for name, p in model.named_parameters() if p.ndim >= 2}
    vectors = {name for name, p in model.named_parameters() if p.ndim < 2}
    assert _groups_by_name(resumed) == [(0.1, matrices), (0.0, vectors)]
    for name, parameter in model.named_parameters():  # each its own, not a neighbour's
        assert torch.equal(resumed.optimizer.state[parameter]["exp_avg_sq"], saved[name]), name
    resumed.fit()
    assert resumed.progress.step == 2
