"""FLEX: a hybrid conv U-Net / ViT backbone with task encoders (Erichson et al. 2025).

Layout (``L`` levels with channels ``C_l`` and ``n_l`` ResBlocks, ``D = C_{L-1}``):

- **task encoder** (one, for ``config.task``): conv pyramid on ``cond``, no time input; its
  ``1 + sum(n_l) + L`` block outputs are the task features.
- **shared encoder**: the same conv pyramid on ``x_t``, AdaGN-conditioned on
  ``time(t) + condition(phys)``; with weak conditioning block k adds task feature k.
- **ViT bottleneck** at H/16 x W/16: one token per pixel plus an extra token carrying the
  encoder's embedding, fixed 2-D sin-cos positions, ``depth // 2`` pre-LN blocks kept as skips,
  a middle block, the decoder's embedding added to the extra token, ``depth // 2`` blocks fusing
  their skip with ``Linear(cat(x, skip))``, final LayerNorm. With strong conditioning the task
  bottleneck is added to the ViT output.
- **decoder**: its own embedding; as many blocks as the encoder, each taking
  ``cat(x, shared_skip + task_skip)`` (``task_skip`` only with strong conditioning); head
  ``GN -> SiLU -> zero-init 3x3 conv``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from .layers import (
    Backbone,
    ConditionEmbedding,
    ConvEncoder,
    FourierTimeEmbedding,
    ResBlock,
    TaskEncoder,
    TaskFeatures,
    TransformerBlock,
    group_norm,
    init_linear_,
    sincos_2d,
    zero_,
)

__all__ = ["FLEX", "FlexDecoderBlock"]


class FlexDecoderBlock(nn.Module):
    """One conv decoder block: a ResBlock on ``cat(x, skip)``, optionally followed by an up-block."""

    def __init__(self, layers: list[ResBlock]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Map x (B, C, h, w), skip (B, C_skip, h, w) and emb (B, D) to the block output."""
        h = torch.cat([x, skip], dim=1)
        for layer in self.layers:
            h = layer(h, emb)
        return h


class FLEX(Backbone):
    """FLEX backbone (see the module docstring for the layout).

    Parameters
    ----------
    config
        Model configuration (``backbone="flex"``).
    channels
        Channels per level, e.g. ``(64, 128, 128, 256)``; the ViT width is the last entry.
    blocks
        ResBlocks per level, e.g. ``(2, 3, 3, 3)``.
    depth
        Number of transformer blocks (odd: ``depth // 2`` in, one middle, ``depth // 2`` out).
    heads
        Attention heads.
    mlp_ratio
        Hidden width of the transformer MLP relative to the token width.

    Examples
    --------
    >>> import torch
    >>> from flexdownscale.config import ModelConfig
    >>> from flexdownscale.models import build_model
    >>> model = build_model(ModelConfig(backbone="flex", preset="tiny")).eval()
    >>> cond = torch.randn(2, 1, 32, 48)
    >>> feats = model.encode_task(cond)
    >>> model(torch.randn(2, 1, 32, 48), 0.5, task_features=feats).shape
    torch.Size([2, 1, 32, 48])
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        channels: tuple[int, ...],
        blocks: tuple[int, ...],
        depth: int,
        heads: int,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__(config)
        if depth < 1 or depth % 2 == 0:
            raise ConfigError(f"FLEX ViT depth must be odd (in, middle, out blocks), got {depth}")
        dim = channels[-1]
        self.dim = dim
        self.weak = config.conditioning == "weak+strong"
        dropout = config.dropout

        self.task_encoder = TaskEncoder(
            self.cond_channels, channels, blocks, emb_dim=dim, dropout=dropout
        )
        self.task_shapes = list(self.task_encoder.shapes)

        # shared encoder
        self.enc_time = FourierTimeEmbedding(dim)
        self.enc_phys = ConditionEmbedding(dim) if config.physical_condition else None
        self.encoder = ConvEncoder(
            self.out_channels, channels, blocks, emb_dim=dim, dropout=dropout
        )

        # ViT bottleneck
        half = depth // 2
        vit = dict(heads=heads, mlp_ratio=mlp_ratio, dropout=dropout)
        self.vit_in = nn.ModuleList(TransformerBlock(dim, **vit) for _ in range(half))
        self.vit_mid = TransformerBlock(dim, **vit)

        # decoder
        self.dec_time = FourierTimeEmbedding(dim)
        self.dec_phys = ConditionEmbedding(dim) if config.physical_condition else None
        self.vit_out = nn.ModuleList(TransformerBlock(dim, skip=True, **vit) for _ in range(half))
        self.vit_norm = nn.LayerNorm(dim, eps=1e-5)

        skip_channels = [ch for ch, _ in self.task_shapes]
        decoder = [
            FlexDecoderBlock(
                [
                    ResBlock(
                        dim + skip_channels.pop(), dim, emb_dim=dim, dropout=dropout, resample="up"
                    )
                ]
            )
        ]
        ch = dim
        for level in reversed(range(len(channels))):
            for i in range(blocks[level] + 1):
                layers = [
                    ResBlock(
                        ch + skip_channels.pop(), channels[level], emb_dim=dim, dropout=dropout
                    )
                ]
                ch = channels[level]
                if i == blocks[level] and level > 0:
                    layers.append(ResBlock(ch, ch, emb_dim=dim, dropout=dropout, resample="up"))
                decoder.append(FlexDecoderBlock(layers))
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Sequential(
            group_norm(ch), nn.SiLU(), zero_(nn.Conv2d(ch, self.out_channels, 3, padding=1))
        )
        init_linear_(self)

    def weights_description(self) -> dict[str, str | int]:
        """:meth:`Backbone.weights_description` plus ``conditioning``: weak+strong and strong
        FLEX models have the same tensors (weak conditioning adds the task features without
        weights of its own), so a state dict alone does not tell them apart.

        Returns
        -------
        dict
            Setting name -> value.
        """
        return {**super().weights_description(), "conditioning": self.config.conditioning}

    def _encode_task(self, cond: torch.Tensor) -> list[torch.Tensor]:
        return self.task_encoder(cond, run=self.run_block)

    def _embed(
        self,
        time: FourierTimeEmbedding,
        cond: ConditionEmbedding | None,
        t: torch.Tensor,
        phys: torch.Tensor | None,
    ) -> torch.Tensor:
        emb = time(t)
        if cond is not None and phys is not None:
            emb = emb + cond(phys)
        return emb

    def _forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        phys: torch.Tensor | None,
        features: TaskFeatures,
    ) -> torch.Tensor:
        emb_enc = self._embed(self.enc_time, self.enc_phys, t, phys)
        emb_dec = self._embed(self.dec_time, self.dec_phys, t, phys)

        skips = self.encoder(x_t, emb_enc, add=features if self.weak else None, run=self.run_block)

        # ViT bottleneck on patch-size-1 tokens plus one extra (embedding) token
        bottleneck = skips[-1]
        height, width = bottleneck.shape[-2:]
        pos = sincos_2d(height, width, self.dim, device=bottleneck.device, dtype=bottleneck.dtype)
        tokens = rearrange(bottleneck, "b c h w -> b (h w) c") + pos
        tokens = torch.cat([emb_enc[:, None, :].to(tokens.dtype), tokens], dim=1)
        vit_skips = []
        for block in self.vit_in:
            tokens = self.run_block(block, tokens)
            vit_skips.append(tokens)
        tokens = self.run_block(self.vit_mid, tokens)
        extra = tokens[:, :1] + emb_dec[:, None, :]
        tokens = torch.cat([extra.to(tokens.dtype), tokens[:, 1:]], dim=1)
        for block in self.vit_out:
            tokens = self.run_block(block, tokens, vit_skips.pop())
        tokens = self.vit_norm(tokens)
        h = rearrange(tokens[:, 1:], "b (h w) c -> b c h w", h=height, w=width)
        h = h + features[-1]  # strong conditioning: the task bottleneck

        for k, block in enumerate(self.decoder):
            index = len(skips) - 1 - k
            h = self.run_block(block, h, skips[index] + features[index], emb_dec)
        return self.head(h)
