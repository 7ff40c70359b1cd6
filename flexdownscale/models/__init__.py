"""Backbones (torch only): FLEX and the U-Net, UViT and DiT baselines behind one interface.

>>> import torch
>>> from flexdownscale.config import ModelConfig
>>> from flexdownscale.models import build_model
>>> model = build_model(ModelConfig(backbone="flex", preset="tiny")).eval()
>>> cond = torch.randn(1, 1, 32, 32)
>>> model(torch.randn(1, 1, 32, 32), 0.5, cond).shape
torch.Size([1, 1, 32, 32])
"""

from __future__ import annotations

from .dit import DiT
from .flex import FLEX
from .layers import Backbone, TaskFeatures, repeat_task_features
from .registry import (
    BACKBONES,
    PRESETS,
    REFERENCE_PARAMETERS,
    build_model,
    count_parameters,
    export_state_dict,
    format_parameter_count,
    parameter_table,
)
from .unet import UNet
from .uvit import UViT

__all__ = [
    "BACKBONES",
    "FLEX",
    "PRESETS",
    "REFERENCE_PARAMETERS",
    "Backbone",
    "DiT",
    "TaskFeatures",
    "UNet",
    "UViT",
    "build_model",
    "count_parameters",
    "export_state_dict",
    "format_parameter_count",
    "parameter_table",
    "repeat_task_features",
]
