"""U-Net baseline in the guided-diffusion style (Dhariwal & Nichol 2021).

AdaGN ResBlocks, self-attention after every ResBlock of the two coarsest levels and in the
middle block, down/up ResBlocks between levels (three resolution changes: the coarsest level is H/8).

Strong conditioning only: the task encoder (the FLEX conv pyramid on ``cond``, with the same
skip layout as the U-Net encoder) gives one feature per encoder skip; each decoder block receives
``cat(x, skip + task_skip)`` and the task bottleneck is added to the middle block's output.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from .layers import (
    Attention,
    Backbone,
    ConditionEmbedding,
    FourierTimeEmbedding,
    ResBlock,
    TaskEncoder,
    TaskFeatures,
    encoder_channels,
    group_norm,
    init_linear_,
    zero_,
)

__all__ = ["AttentionBlock2d", "UNet"]


class AttentionBlock2d(nn.Module):
    """Residual self-attention over the pixels of a map: ``x + proj(MHA(GN(x)))``, proj zero-init.

    Parameters
    ----------
    channels
        Channels C of the map (divisible by ``heads``).
    heads
        Attention heads.
    """

    def __init__(self, channels: int, *, heads: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = Attention(channels, heads=heads, qkv_bias=True)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Map (B, C, H, W) to (B, C, H, W); ``emb`` is ignored."""
        height, width = x.shape[-2:]
        h = rearrange(self.norm(x), "b c h w -> b (h w) c")
        h = rearrange(self.attn(h), "b (h w) c -> b c h w", h=height, w=width)
        return x + h


class _Step(nn.Module):
    """A sequence of ResBlocks / attention blocks sharing one embedding."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, emb)
        return x


class UNet(Backbone):
    """Guided-diffusion style U-Net behind the backbone interface.

    Parameters
    ----------
    config
        Model configuration (``backbone="unet"``).
    channels
        Channels per level (four levels: the coarsest is H/8).
    blocks
        ResBlocks per level.
    head_channels
        Channels per attention head.
    emb_dim
        Width of the time / condition embedding.

    Examples
    --------
    >>> import torch
    >>> from flexdownscale.config import ModelConfig
    >>> from flexdownscale.models import build_model
    >>> model = build_model(ModelConfig(backbone="unet", preset="tiny")).eval()
    >>> cond = torch.randn(1, 1, 32, 32)
    >>> model(torch.randn(1, 1, 32, 32), 0.5, cond).shape
    torch.Size([1, 1, 32, 32])

    It takes the grids every built-in backbone takes, divisible by 16 (its three downsamplings
    alone would take multiples of 8):

    >>> model(torch.zeros(1, 1, 24, 24), 0.5, torch.zeros(1, 1, 24, 24))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ShapeError: x_t has a 24 x 24 grid; UNet needs H and W divisible by 16 ...
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        channels: tuple[int, ...],
        blocks: tuple[int, ...],
        head_channels: int = 64,
        emb_dim: int | None = None,
    ) -> None:
        super().__init__(config)
        if len(channels) != 4 or len(blocks) != 4:
            raise ConfigError(
                f"the U-Net has 4 levels, got channels {channels} and blocks {blocks}"
            )
        emb_dim = emb_dim or 4 * channels[0]
        dropout = config.dropout
        levels = len(channels)
        attention_levels = {levels - 2, levels - 1}

        def attention(ch: int) -> AttentionBlock2d:
            return AttentionBlock2d(ch, heads=max(1, ch // head_channels))

        self.time = FourierTimeEmbedding(emb_dim)
        self.phys = ConditionEmbedding(emb_dim) if config.physical_condition else None
        self.task_encoder = TaskEncoder(
            self.cond_channels, channels, blocks, emb_dim=emb_dim, dropout=dropout, down_last=False
        )
        self.task_shapes = list(self.task_encoder.shapes)

        self.stem = nn.Conv2d(self.out_channels, channels[0], 3, padding=1)
        encoder: list[nn.Module] = []
        ch = channels[0]
        for level, (level_ch, n) in enumerate(zip(channels, blocks)):
            for _ in range(n):
                layers: list[nn.Module] = [ResBlock(ch, level_ch, emb_dim=emb_dim, dropout=dropout)]
                ch = level_ch
                if level in attention_levels:
                    layers.append(attention(ch))
                encoder.append(_Step(layers))
            if level < levels - 1:
                encoder.append(
                    _Step([ResBlock(ch, ch, emb_dim=emb_dim, dropout=dropout, resample="down")])
                )
        self.encoder = nn.ModuleList(encoder)
        self.middle = _Step(
            [
                ResBlock(ch, ch, emb_dim=emb_dim, dropout=dropout),
                attention(ch),
                ResBlock(ch, ch, emb_dim=emb_dim, dropout=dropout),
            ]
        )
        skip_channels = [c for c, _ in encoder_channels(channels, blocks, down_last=False)]
        decoder: list[nn.Module] = []
        for level in reversed(range(levels)):
            for i in range(blocks[level] + 1):
                layers = [
                    ResBlock(
                        ch + skip_channels.pop(), channels[level], emb_dim=emb_dim, dropout=dropout
                    )
                ]
                ch = channels[level]
                if level in attention_levels:
                    layers.append(attention(ch))
                if i == blocks[level] and level > 0:
                    layers.append(ResBlock(ch, ch, emb_dim=emb_dim, dropout=dropout, resample="up"))
                decoder.append(_Step(layers))
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Sequential(
            group_norm(ch), nn.SiLU(), zero_(nn.Conv2d(ch, self.out_channels, 3, padding=1))
        )
        init_linear_(self)
        for module in self.modules():  # residual attention branches start at zero
            if isinstance(module, AttentionBlock2d):
                zero_(module.attn.proj)

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
        h = self.stem(x_t)
        skips = [h]
        for step in self.encoder:
            h = self.run_block(step, h, emb)
            skips.append(h)
        h = self.run_block(self.middle, h, emb) + features[-1]
        for k, step in enumerate(self.decoder):
            index = len(skips) - 1 - k
            h = self.run_block(step, torch.cat([h, skips[index] + features[index]], dim=1), emb)
        return self.head(h)
