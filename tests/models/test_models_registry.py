"""Registry: presets, build_model, parameter counting and the cheap parameter table."""

from __future__ import annotations

import dataclasses
from typing import get_args

import pytest
import torch

from flexdownscale.config import Backbone, ModelConfig, Preset
from flexdownscale.errors import ConfigError
from flexdownscale.models import (
    BACKBONES,
    PRESETS,
    build_model,
    count_parameters,
    format_parameter_count,
    parameter_table,
)


def test_registry_covers_the_config_options():
    assert set(BACKBONES) == set(get_args(Backbone))
    for backbone in BACKBONES:
        assert set(PRESETS[backbone]) == set(get_args(Preset))


def test_parameter_table_lists_every_backbone_and_preset():
    rows = parameter_table()
    assert len(rows) == 16
    counts = {(b, p): n for b, p, n in rows}
    # same count as a model built for real
    for backbone in BACKBONES:
        model = build_model(ModelConfig(backbone=backbone, preset="tiny"))
        assert count_parameters(model) == counts[backbone, "tiny"]
        assert counts[backbone, "tiny"] < 5_000_000
    # the baselines are roughly parameter-matched to FLEX per preset
    for backbone in ("unet", "uvit", "dit"):
        for preset in ("tiny", "small", "medium", "big"):
            ratio = counts[backbone, preset] / counts["flex", preset]
            assert 0.85 < ratio < 1.15, (backbone, preset, ratio)
    line = "{:<5} {:<6} {}".format("flex", "small", format_parameter_count(counts["flex", "small"]))
    assert line == "flex  small  49.26 M"
    assert parameter_table(backbones=["dit"], presets=["tiny"]) == [
        ("dit", "tiny", counts["dit", "tiny"])
    ]


def test_build_on_meta_allocates_nothing():
    model = build_model(ModelConfig(backbone="flex", preset="big"), device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert count_parameters(model, trainable_only=True) == count_parameters(model)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"backbone": "resnet"}, "backbone = .resnet. is not a valid option"),
        ({"preset": "huge"}, "preset = .huge. is not a valid option"),
        ({"task": "inpaint"}, "task"),
        ({"conditioning": "weak"}, "conditioning"),
        ({"in_channels": 0}, "in_channels"),
        ({"past_frames": 0}, "past_frames"),
        ({"out_channels": -1}, "out_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"image_size": (100, 128)}, "multiples of 16"),
    ],
)
def test_invalid_configs_raise(changes, match):
    # an option that is not one of the field's choices is refused when the config is built,
    # a value out of range by build_model
    with pytest.raises(ConfigError, match=match):
        build_model(dataclasses.replace(ModelConfig(), **changes), device="meta")
    with pytest.raises(ConfigError, match="ModelConfig"):
        build_model({"backbone": "flex"})


@pytest.mark.parametrize("backbone", ["uvit", "dit"])
def test_patch_size_option(backbone):
    for patch in (1, 16):
        model = build_model(ModelConfig(backbone=backbone, patch_size=patch)).eval()
        assert model.patch == patch
        with torch.no_grad():
            x = torch.randn(1, 1, 32, 48)
            assert model(x, 0.5, x).shape == x.shape
    for bad in (3, 32, 0):
        with pytest.raises(ConfigError, match="patch_size"):
            build_model(ModelConfig(backbone=backbone, patch_size=bad), device="meta")


def test_default_patch_sizes():
    assert build_model(ModelConfig(backbone="uvit", preset="small"), device="meta").patch == 8
    assert build_model(ModelConfig(backbone="dit", preset="small"), device="meta").patch == 4
    # FLEX and the U-Net ignore patch_size
    model = build_model(ModelConfig(backbone="flex", patch_size=3), device="meta")
    assert model.config.patch_size == 3
