"""U-ViT baseline (Bao et al. 2023): a ViT on p x p patches with U-Net style long skips.

Tokens: one per patch (``Conv2d(C_out, D, p, stride p)``) plus one extra token carrying
``time(t) + condition(phys)``; fixed 2-D sin-cos positions for the actual patch grid;
``depth // 2`` pre-LN blocks kept as skips, one middle block, ``depth // 2`` blocks fusing their
skip with ``Linear(cat(x, skip))``; LayerNorm, ``Linear(D, p * p * C_out)``, unpatchify and a
zero-initialised 3x3 conv.

Strong conditioning only: the task encoder (conv pyramid down to the patch grid, see
:class:`~flexdownscale.models.layers.PatchTaskEncoder`) gives one token map; it is added to the
input tokens and to every long skip (the token analogue of FLEX's decoder receiving the task skip
in every block).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from .layers import (
    GRID_MULTIPLE,
    Backbone,
    ConditionEmbedding,
    FourierTimeEmbedding,
    PatchTaskEncoder,
    TaskFeatures,
    TransformerBlock,
    init_linear_,
    sincos_2d,
    zero_,
)

__all__ = ["UViT", "check_patch_size"]


def check_patch_size(patch: int, backbone: str) -> int:
    """Return ``patch`` if it is a power of two dividing 16, else raise ``ConfigError``."""
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1 or GRID_MULTIPLE % patch:
        raise ConfigError(
            f"{backbone} patch_size must be 1, 2, 4, 8 or 16 (a divisor of {GRID_MULTIPLE}, so "
            f"that every grid divisible by {GRID_MULTIPLE} can be patched), got {patch!r}"
        )
    return patch


class UViT(Backbone):
    """U-ViT baseline behind the backbone interface.

    Parameters
    ----------
    config
        Model configuration (``backbone="uvit"``); ``config.patch_size`` overrides ``patch``.
    dim
        Token width D.
    depth
        Transformer blocks (odd).
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
    >>> model = build_model(ModelConfig(backbone="uvit", preset="tiny")).eval()
    >>> model.patch, model.dim
    (8, 128)
    >>> cond = torch.randn(1, 1, 32, 32)
    >>> model(torch.randn(1, 1, 32, 32), 0.5, cond).shape
    torch.Size([1, 1, 32, 32])
    >>> build_model(ModelConfig(backbone="uvit", patch_size=2), device="meta").patch
    2
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        dim: int,
        depth: int,
        heads: int,
        patch: int = 8,
        mlp_ratio: float = 4.0,
        task_channels: tuple[int, ...] = (64, 128, 256, 256),
        task_blocks: tuple[int, ...] = (1, 1, 1, 1),
    ) -> None:
        super().__init__(config)
        if depth < 1 or depth % 2 == 0:
            raise ConfigError(f"UViT depth must be odd (in, middle, out blocks), got {depth}")
        self.patch = check_patch_size(
            patch if config.patch_size is None else config.patch_size, "uvit"
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
        block = dict(heads=heads, mlp_ratio=mlp_ratio)
        half = depth // 2
        self.blocks_in = nn.ModuleList(TransformerBlock(dim, **block) for _ in range(half))
        self.block_mid = TransformerBlock(dim, **block)
        self.blocks_out = nn.ModuleList(
            TransformerBlock(dim, skip=True, **block) for _ in range(half)
        )
        self.norm = nn.LayerNorm(dim)
        self.to_patches = nn.Linear(dim, p * p * c_out)
        self.final_conv = nn.Conv2d(c_out, c_out, 3, padding=1)
        init_linear_(self)
        zero_(self.final_conv)

    def _encode_task(self, cond: torch.Tensor) -> list[torch.Tensor]:
        return self.task_encoder(cond, run=self.run_block)

    def _forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        phys: torch.Tensor | None,
        features: TaskFeatures,
    ) -> torch.Tensor:
        emb = self.time(t)
        if self.phys is not None and phys is not None:
            emb = emb + self.phys(phys)
        patches = self.patch_embed(x_t)
        height, width = patches.shape[-2:]
        pos = sincos_2d(height, width, self.dim, device=x_t.device, dtype=patches.dtype)
        task = rearrange(features[0], "b c h w -> b (h w) c")
        tokens = rearrange(patches, "b c h w -> b (h w) c") + pos + task
        tokens = torch.cat([emb[:, None, :].to(tokens.dtype), tokens], dim=1)
        task = torch.cat([torch.zeros_like(task[:, :1]), task], dim=1)  # nothing on the extra token
        skips = []
        for block in self.blocks_in:
            tokens = self.run_block(block, tokens)
            skips.append(tokens)
        tokens = self.run_block(self.block_mid, tokens)
        for block in self.blocks_out:
            tokens = self.run_block(block, tokens, skips.pop() + task)
        tokens = self.to_patches(self.norm(tokens)[:, 1:])
        out = rearrange(
            tokens,
            "b (h w) (p1 p2 c) -> b c (h p1) (w p2)",
            h=height,
            w=width,
            p1=self.patch,
            p2=self.patch,
        )
        return self.final_conv(out)
