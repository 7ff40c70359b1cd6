"""DiT baseline (Peebles & Xie 2023): a ViT on p x p patches with adaLN-zero conditioning.

Tokens: one per patch (``Conv2d(C_out, D, p, stride p)``) with fixed 2-D sin-cos positions for
the actual patch grid. The conditioning vector ``c = time(t) + condition(phys)`` gives, per block,
shift / scale / gate of both branches through a zero-initialised linear map (adaLN-zero), so every
block starts as the identity; the final layer (LayerNorm modulated by ``c``, then
``Linear(D, p * p * C_out)``) is zero-initialised too.

Strong conditioning only: the task encoder (conv pyramid down to the patch grid, see
:class:`~flexdownscale.models.layers.PatchTaskEncoder`) gives one token map that every block sees:
block k computes its branches from ``x + task`` while its residual stream carries ``x``, so the
task features reach every block without piling up in the stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..config import ModelConfig
from .layers import (
    Attention,
    Backbone,
    ConditionEmbedding,
    FourierTimeEmbedding,
    Mlp,
    PatchTaskEncoder,
    TaskFeatures,
    init_linear_,
    sincos_2d,
    zero_,
)
from .uvit import check_patch_size

__all__ = ["DiT", "DiTBlock"]


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    """Transformer block with adaLN-zero modulation.

    Parameters
    ----------
    dim
        Token width D.
    heads
        Attention heads.
    mlp_ratio
        MLP hidden width relative to D.
    """

    def __init__(self, dim: int, *, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads=heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, ratio=mlp_ratio)
        self.modulation = nn.Linear(dim, 6 * dim)

    def forward(self, x: torch.Tensor, task: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Map tokens x (B, N, D), task tokens (B, N, D) and c (B, D) to (B, N, D)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, dim=1)
        h = x + task
        x = x + gate1[:, None, :] * self.attn(_modulate(self.norm1(h), shift1, scale1))
        h = x + task
        return x + gate2[:, None, :] * self.mlp(_modulate(self.norm2(h), shift2, scale2))


class DiT(Backbone):
    """DiT baseline behind the backbone interface.

    Parameters
    ----------
    config
        Model configuration (``backbone="dit"``); ``config.patch_size`` overrides ``patch``.
    dim
        Token width D.
    depth
        Number of DiT blocks.
    heads
        Attention heads.
    patch
        Default patch size.
    mlp_ratio
        MLP hidden width relative to D.
    task_channels, task_blocks
        Channels and ResBlocks per level of the task encoder's pyramid.

    Examples
    --------
    >>> import torch
    >>> from flexdownscale.config import ModelConfig
    >>> from flexdownscale.models import build_model
    >>> model = build_model(ModelConfig(backbone="dit", preset="tiny")).eval()
    >>> model.patch, model.dim
    (4, 128)
    >>> cond = torch.randn(1, 1, 32, 32)
    >>> model(torch.randn(1, 1, 32, 32), 0.5, cond).shape
    torch.Size([1, 1, 32, 32])
    >>> build_model(ModelConfig(backbone="dit", patch_size=2), device="meta").patch
    2
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        dim: int,
        depth: int,
        heads: int,
        patch: int = 4,
        mlp_ratio: float = 4.0,
        task_channels: tuple[int, ...] = (64, 128, 256, 256),
        task_blocks: tuple[int, ...] = (1, 1, 1, 1),
    ) -> None:
        super().__init__(config)
        self.patch = check_patch_size(
            patch if config.patch_size is None else config.patch_size, "dit"
        )
        self.dim = dim
        p, c_out = self.patch, self.out_channels
        self.time = FourierTimeEmbedding(dim)
        self.phys = ConditionEmbedding(dim) if config.physical_condition else None
        self.task_encoder = PatchTaskEncoder(
            self.cond_channels,
            task_channels,
            task_blocks,
            patch=p,
            dim=dim,
            dropout=config.dropout,
        )
        self.task_shapes = list(self.task_encoder.shapes)
        self.patch_embed = nn.Conv2d(c_out, dim, p, stride=p)
        self.blocks = nn.ModuleList(
            DiTBlock(dim, heads=heads, mlp_ratio=mlp_ratio) for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(dim, 2 * dim)
        self.to_patches = nn.Linear(dim, p * p * c_out)
        init_linear_(self)
        for block in self.blocks:
            zero_(block.modulation)
        zero_(self.final_modulation)
        zero_(self.to_patches)

    def _encode_task(self, cond: torch.Tensor) -> list[torch.Tensor]:
        return self.task_encoder(cond, run=self.run_block)

    def _forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        phys: torch.Tensor | None,
        features: TaskFeatures,
    ) -> torch.Tensor:
        c = self.time(t)
        if self.phys is not None and phys is not None:
            c = c + self.phys(phys)
        patches = self.patch_embed(x_t)
        height, width = patches.shape[-2:]
        pos = sincos_2d(height, width, self.dim, device=x_t.device, dtype=patches.dtype)
        tokens = rearrange(patches, "b c h w -> b (h w) c") + pos
        task = rearrange(features[0], "b c h w -> b (h w) c")
        for block in self.blocks:
            tokens = self.run_block(block, tokens, task, c)
        shift, scale = self.final_modulation(F.silu(c)).chunk(2, dim=1)
        tokens = self.to_patches(_modulate(self.final_norm(tokens), shift, scale))
        return rearrange(
            tokens,
            "b (h w) (p1 p2 c) -> b c (h p1) (w p2)",
            h=height,
            w=width,
            p1=self.patch,
            p2=self.patch,
        )
