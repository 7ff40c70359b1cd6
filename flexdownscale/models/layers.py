"""Building blocks shared by every backbone.

Time and physical-condition embeddings, the AdaGN residual block, attention and transformer
blocks, fixed 2-D sin-cos positional embeddings, the conv task encoder, and :class:`Backbone`,
the base class that implements the common calling convention (argument checks, task-feature
reuse, gradient checkpointing).

Everything here is torch only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig
from ..errors import ConfigError, DataError, ShapeError

__all__ = [
    "GRID_MULTIPLE",
    "Attention",
    "Backbone",
    "ConditionEmbedding",
    "ConvEncoder",
    "FourierTimeEmbedding",
    "Mlp",
    "PatchTaskEncoder",
    "ResBlock",
    "TaskEncoder",
    "TaskFeatures",
    "TransformerBlock",
    "encoder_channels",
    "group_norm",
    "init_linear_",
    "repeat_task_features",
    "sincos_2d",
    "zero_",
]

TaskFeatures = tuple[torch.Tensor, ...]
"""Features computed once per field by ``encode_task``: a tuple of tensors, batch first."""

GRID_MULTIPLE = 16
"""Grid sizes must be multiples of this (FLEX's four factor-2 downsamplings to its H/16 token
grid; the U-Net's three, to H/8, and the UViT's and DiT's patches keep the same multiple, so every
built-in backbone takes the same grids and tiles): the default of
:attr:`Backbone.grid_multiple`, and the multiple the built-in backbones use.
"""


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest divisor of 32 that divides ``channels``.

    Parameters
    ----------
    channels
        Number of channels C.

    Returns
    -------
    nn.GroupNorm
        ``nn.GroupNorm(gcd(32, C), C)`` (32 groups whenever C is a multiple of 32).
    """
    return nn.GroupNorm(math.gcd(32, channels), channels)


def zero_(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero in place and return it.

    Parameters
    ----------
    module
        Any module (e.g. the last conv of a residual branch, so the branch starts as zero).

    Returns
    -------
    nn.Module
        ``module`` itself, its parameters zeroed.
    """
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def init_linear_(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every ``nn.Linear`` inside ``module``.

    Parameters
    ----------
    module
        The module whose ``nn.Linear`` submodules (itself included) are initialised in place.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def repeat_task_features(features: Sequence[torch.Tensor], repeats: int) -> TaskFeatures:
    """Repeat every task feature along the batch so that B fields serve B * ``repeats`` members.

    Parameters
    ----------
    features
        Output of ``model.encode_task(cond)``: tensors of shape (B, ...).
    repeats
        Number of ensemble members M per field (>= 1).

    Returns
    -------
    TaskFeatures
        Tensors of shape (B * M, ...); member m of field b sits at row ``b * M + m``
        (``torch.repeat_interleave`` order, the order of ``x.repeat_interleave(M, dim=0)``).

    Examples
    --------
    >>> import torch
    >>> feats = (torch.arange(2.0).reshape(2, 1),)
    >>> repeat_task_features(feats, 3)[0].flatten().tolist()
    [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer, got {repeats!r}")
    return tuple(f.repeat_interleave(repeats, dim=0) for f in features)


def sincos_2d(
    height: int,
    width: int,
    dim: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Fixed 2-D sin-cos positional embedding of a ``height`` x ``width`` token grid.

    Half the channels encode the row index, half the column index, each with ``dim / 4``
    frequencies ``1 / 10000**(k / (dim / 4))`` in sin and cos. Positions are integer grid indices,
    so the embedding of a token depends only on where it sits in the grid, for any grid size.

    Parameters
    ----------
    height, width
        Token grid size.
    dim
        Embedding width (divisible by 4).
    device
        Device of the result (default: the current default device).
    dtype
        Dtype of the result; the embedding is computed in float64 and cast to it.

    Returns
    -------
    Tensor
        Shape (height * width, dim), rows in row-major (h, w) order.
    """
    if dim % 4:
        raise ConfigError(f"sin-cos positional embeddings need a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
    rows = torch.arange(height, dtype=torch.float64, device=device)[:, None] * omega
    cols = torch.arange(width, dtype=torch.float64, device=device)[:, None] * omega
    rows = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    cols = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([rows, cols], dim=2).reshape(height * width, dim).to(dtype)


class FourierTimeEmbedding(nn.Module):
    """Random Fourier features of a continuous time t in [0, 1] followed by an MLP.

    ``[sin(2 pi f t), cos(2 pi f t)]`` with ``dim / 2`` frequencies ``f ~ N(0, scale^2)`` drawn once
    from a generator seeded with ``seed`` (the same for every model), then
    ``Linear(dim, 2 dim) -> SiLU -> Linear(2 dim, dim)``.

    The frequencies are a saved buffer that stays float32 when the module is cast
    (``model.to(torch.bfloat16)``): rounded to bfloat16 they are off by up to 0.1, a phase error
    of up to 0.6 rad at ``t = 1`` that changes the samples. Loading a state dict puts in the
    values it holds (a folder exported in bfloat16 before 0.1.0 holds rounded ones).

    Parameters
    ----------
    dim
        Embedding width D (even).
    scale
        Standard deviation of the frequencies.
    seed
        Seed of the frequencies.
    """

    def __init__(self, dim: int, *, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        if dim % 2:
            raise ConfigError(f"time embedding width must be even, got {dim}")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        freqs = torch.randn(dim // 2, generator=gen, device="cpu") * scale
        self.register_buffer("freqs", freqs.to(torch.get_default_device()))
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> FourierTimeEmbedding:
        # casts and moves reach the buffer through here: cast it back up to float32 on the new
        # device from the float32 values it had (a bfloat16 copy would have lost them)
        if self.freqs.is_meta:  # no values to keep (a model built on "meta", then to_empty)
            super()._apply(fn, recurse)
            self.freqs = torch.empty_like(self.freqs, dtype=torch.float32)
            return self
        exact = self.freqs.float()
        super()._apply(fn, recurse)
        self.freqs = exact.to(self.freqs.device)
        return self

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed times ``t`` of shape (B,) into (B, D).

        Parameters
        ----------
        t
            Times in [0, 1], shape (B,).

        Returns
        -------
        Tensor
            The embeddings (B, D), in the dtype of the MLP's weights.
        """
        angle = 2 * math.pi * t.float()[:, None] * self.freqs.float()[None, :]
        features = torch.cat([angle.sin(), angle.cos()], dim=1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class ConditionEmbedding(nn.Module):
    """MLP ``1 -> 2 D -> D`` (SiLU) of a scalar physical parameter (e.g. Re / 40000).

    Parameters
    ----------
    dim
        Embedding width D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))

    def forward(self, phys: torch.Tensor) -> torch.Tensor:
        """Embed ``phys`` of shape (B,) into (B, D).

        Parameters
        ----------
        phys
            The physical parameter, shape (B,) (scaled to order one, e.g. Re / 40000).

        Returns
        -------
        Tensor
            The embeddings (B, D), in the dtype of the MLP's weights.
        """
        return self.mlp(phys[:, None].to(self.mlp[0].weight.dtype))


class ResBlock(nn.Module):
    """Residual block with adaptive group normalisation (guided-diffusion style).

    ``h = conv3x3(SiLU(GN(x)))``; ``h = GN(h) * (1 + scale) + shift`` with ``(scale, shift)`` a
    linear map of ``SiLU(emb)`` (plain GN when the block has no embedding);
    ``h = conv3x3_zero(Dropout(SiLU(h)))``; output ``skip(x) + h`` where ``skip`` is the identity, or
    a 3x3 conv when the channel count changes. ``resample="down"`` average-pools by 2 and ``"up"``
    repeats by 2 (nearest) on both paths, after the first activation.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and output maps.
    emb_dim
        Width of the conditioning vector, or ``None`` for an unconditioned block (task encoders).
    dropout
        Dropout rate before the second conv.
    resample
        ``"none"``, ``"down"`` (H, W -> H/2, W/2) or ``"up"`` (H, W -> 2H, 2W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        emb_dim: int | None,
        dropout: float = 0.0,
        resample: Literal["none", "down", "up"] = "none",
    ) -> None:
        super().__init__()
        if resample not in ("none", "down", "up"):
            raise ConfigError(f"resample must be 'none', 'down' or 'up', got {resample!r}")
        self.resample = resample
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = None if emb_dim is None else nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        if in_channels == out_channels:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Map (B, C_in, H, W) and emb (B, D) to (B, C_out, H', W').

        Parameters
        ----------
        x
            Input map (B, C_in, H, W).
        emb
            Conditioning vector (B, D); required by a block built with ``emb_dim``, ignored by
            one built without.

        Returns
        -------
        Tensor
            (B, C_out, H', W'): H', W' are H, W halved by ``resample="down"``, doubled by
            ``"up"``.
        """
        h = self.conv1(self._resample(F.silu(self.norm1(x))))
        h = self.norm2(h)
        if self.emb is not None:
            if emb is None:
                raise ShapeError("this ResBlock is conditioned: pass the embedding (B, D)")
            scale, shift = rearrange(self.emb(F.silu(emb)), "b c -> b c 1 1").chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(self._resample(x)) + h


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, D) with scaled dot-product attention.

    Parameters
    ----------
    dim
        Token width D (divisible by ``heads``).
    heads
        Number of heads.
    qkv_bias
        Whether the fused qkv projection has a bias.
    """

    def __init__(self, dim: int, *, heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the N tokens of ``x``.

        Parameters
        ----------
        x
            Tokens (B, N, D).

        Returns
        -------
        Tensor
            The attended tokens after the output projection, (B, N, D).
        """
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """``Linear(D, ratio D) -> GELU(tanh) -> Dropout -> Linear(ratio D, D) -> Dropout``.

    Parameters
    ----------
    dim
        Input and output width D.
    ratio
        Hidden width relative to D (``int(dim * ratio)``).
    dropout
        Dropout rate after each of the two layers.
    """

    def __init__(self, dim: int, *, ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (..., D) to (..., D).

        Parameters
        ----------
        x
            Input (..., D).

        Returns
        -------
        Tensor
            Output (..., D).
        """
        h = self.dropout(F.gelu(self.fc1(x), approximate="tanh"))
        return self.dropout(self.fc2(h))


class TransformerBlock(nn.Module):
    """Pre-LN transformer block, optionally fusing a U-ViT long skip first.

    ``x = Linear(cat(x, skip))`` when built with ``skip=True``; then
    ``x = x + Attn(LN(x))``, ``x = x + MLP(LN(x))``.

    Parameters
    ----------
    dim
        Token width D.
    heads
        Attention heads.
    mlp_ratio
        Hidden width of the MLP relative to D.
    qkv_bias
        Bias of the qkv projection.
    eps
        LayerNorm epsilon.
    skip
        Whether the block takes a long skip (U-ViT decoder half).
    dropout
        Dropout inside the MLP.
    """

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = False,
        eps: float = 1e-6,
        skip: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads=heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, ratio=mlp_ratio, dropout=dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Map tokens (B, N, D) (and a skip (B, N, D)) to (B, N, D).

        Parameters
        ----------
        x
            Tokens (B, N, D).
        skip
            The long-skip tokens (B, N, D); required by a block built with ``skip=True``,
            ignored by one built without.

        Returns
        -------
        Tensor
            Tokens (B, N, D).
        """
        if self.skip_linear is not None:
            if skip is None:
                raise ShapeError("this transformer block fuses a long skip: pass skip (B, N, D)")
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def encoder_channels(
    channels: Sequence[int], blocks: Sequence[int], *, down_last: bool = True
) -> list[tuple[int, int]]:
    """(channels, stride) of every block output of a conv pyramid, stem first.

    The pyramid is a 3x3 stem (stride 1, ``channels[0]``), then per level ``blocks[l]`` ResBlocks
    at ``channels[l]`` and one down-ResBlock (omitted at the last level when ``down_last`` is
    false).

    Parameters
    ----------
    channels
        Channels per level.
    blocks
        ResBlocks per level (as many entries as ``channels``).
    down_last
        Whether the last level ends in a down-ResBlock too.

    Returns
    -------
    list of (int, int)
        ``(channels, stride)`` of the stem and of every block, in order (the ``shapes`` of
        :class:`ConvEncoder`).
    """
    out = [(channels[0], 1)]
    stride = 1
    for level, (ch, n) in enumerate(zip(channels, blocks)):
        out.extend((ch, stride) for _ in range(n))
        if down_last or level < len(channels) - 1:
            stride *= 2
            out.append((ch, stride))
    return out


class ConvEncoder(nn.Module):
    """Conv pyramid: 3x3 stem, then per level ResBlocks and a down-ResBlock; every output kept.

    Used as FLEX's shared encoder (``emb_dim`` set: AdaGN-conditioned), as the task encoder of
    every backbone (``emb_dim=None``: no time input), and as the U-Net's task encoder.

    Parameters
    ----------
    in_channels
        Channels of the input map.
    channels
        Channels per level, e.g. ``(64, 128, 128, 256)``.
    blocks
        ResBlocks per level, e.g. ``(2, 3, 3, 3)``.
    emb_dim
        Width of the conditioning vector, or ``None``.
    dropout
        Dropout of the ResBlocks.
    down_last
        Whether the last level ends in a down-ResBlock too (FLEX: yes, bottleneck at H/16).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        blocks: Sequence[int],
        *,
        emb_dim: int | None,
        dropout: float = 0.0,
        down_last: bool = True,
    ) -> None:
        super().__init__()
        if len(channels) != len(blocks):
            raise ConfigError(
                f"channels {tuple(channels)} and blocks {tuple(blocks)} differ in length"
            )
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        ch = channels[0]
        for level, (level_ch, n) in enumerate(zip(channels, blocks)):
            for _ in range(n):
                self.blocks.append(ResBlock(ch, level_ch, emb_dim=emb_dim, dropout=dropout))
                ch = level_ch
            if down_last or level < len(channels) - 1:
                self.blocks.append(
                    ResBlock(ch, ch, emb_dim=emb_dim, dropout=dropout, resample="down")
                )
        self.shapes = encoder_channels(channels, blocks, down_last=down_last)

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor | None = None,
        *,
        add: Sequence[torch.Tensor] | None = None,
        run: Callable[..., torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Outputs of the stem and of every block.

        Parameters
        ----------
        x
            Input map (B, C_in, H, W).
        emb
            Conditioning vector (B, D) for conditioned pyramids.
        add
            Features added after each block (weak conditioning), one per output.
        run
            ``run(block, *args)`` calls a block (used for gradient checkpointing).

        Returns
        -------
        list of Tensor
            ``1 + sum(blocks) + levels`` maps, shapes given by ``self.shapes``.
        """
        run = run or _call
        h = self.stem(x)
        if add is not None:
            h = h + add[0]
        outs = [h]
        for k, block in enumerate(self.blocks, start=1):
            h = run(block, h, emb)
            if add is not None:
                h = h + add[k]
            outs.append(h)
        return outs


class TaskEncoder(nn.Module):
    """Task encoder: the conv pyramid of :class:`ConvEncoder` on the task input, no time input.

    Its ResBlocks are AdaGN-modulated by a learned task embedding (a vector of width
    ``emb_dim``, zero at initialisation) instead of a time embedding. In the reference the task
    encoder's AdaGN is driven by its physical-condition embedding; here the task features must
    depend on the task input only (they are computed once per field and reused across sampler
    steps and ensemble members), so the conditioning vector is a learned constant.

    Parameters
    ----------
    in_channels
        Channels of the task input C_cond.
    channels, blocks
        As in :class:`ConvEncoder`.
    emb_dim
        Width of the task embedding (the backbone's embedding width).
    dropout, down_last
        As in :class:`ConvEncoder`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        blocks: Sequence[int],
        *,
        emb_dim: int,
        dropout: float = 0.0,
        down_last: bool = True,
    ) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(emb_dim))
        self.pyramid = ConvEncoder(
            in_channels, channels, blocks, emb_dim=emb_dim, dropout=dropout, down_last=down_last
        )
        self.shapes = self.pyramid.shapes

    def forward(
        self, cond: torch.Tensor, *, run: Callable[..., torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """Features of every pyramid block for cond (B, C_cond, H, W), see ``self.shapes``.

        Parameters
        ----------
        cond
            Task input (B, C_cond, H, W).
        run
            ``run(block, *args)`` calls a block (used for gradient checkpointing); ``None``
            calls it directly.

        Returns
        -------
        list of Tensor
            One map per pyramid output, shapes given by ``self.shapes``.
        """
        emb = self.embedding.repeat(cond.shape[0], 1)  # a copy, not a view (no_grad-safe)
        return self.pyramid(cond, emb, run=run)


class PatchTaskEncoder(nn.Module):
    """Task encoder of the token backbones (UViT, DiT): conv pyramid down to the patch grid.

    ``log2(patch)`` levels of the :class:`TaskEncoder` pyramid bring ``cond`` to stride ``patch``
    (with ``patch = 1``: the stem and the first level's ResBlocks at full resolution), then a
    1x1 conv maps the last feature to the token width.

    Parameters
    ----------
    in_channels
        Channels of the task input C_cond.
    channels, blocks
        Pyramid channels and ResBlocks per level (only the first ``log2(patch)`` are used).
    patch
        Patch size p (a power of two, at most ``2 ** len(channels)``).
    dim
        Token width D (also the width of the task embedding).
    dropout
        Dropout of the ResBlocks.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        blocks: Sequence[int],
        *,
        patch: int,
        dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        levels = int(math.log2(patch))
        if 2**levels != patch or levels > len(channels):
            raise ConfigError(
                f"patch size {patch} must be a power of two at most {2 ** len(channels)}"
            )
        used = max(levels, 1)
        self.encoder = TaskEncoder(
            in_channels,
            channels[:used],
            blocks[:used],
            emb_dim=dim,
            dropout=dropout,
            down_last=levels > 0,
        )
        self.proj = nn.Conv2d(channels[used - 1], dim, 1)
        self.shapes = [(dim, patch)]

    def forward(
        self, cond: torch.Tensor, *, run: Callable[..., torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """Token features (B, D, H / p, W / p) of cond (B, C_cond, H, W), as a one-element list.

        Parameters
        ----------
        cond
            Task input (B, C_cond, H, W).
        run
            ``run(block, *args)`` calls a block (used for gradient checkpointing); ``None``
            calls it directly.

        Returns
        -------
        list of Tensor
            ``[features]``, the features of shape (B, D, H / p, W / p).
        """
        return [self.proj(self.encoder(cond, run=run)[-1])]


def _call(module: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
    return module(*args)


class Backbone(nn.Module):
    """Base class of every backbone: checks arguments and reuses task features.

    Subclasses set ``self.task_shapes`` (one ``(channels, stride)`` per task feature, where the
    feature of a field of size H x W has shape (B, channels, H / stride, W / stride)) and
    implement ``_encode_task(cond)`` and ``_forward(x_t, t, phys, features)``. A subclass whose
    grids need another multiple than 16 sets the class attribute ``grid_multiple`` (e.g. 4 for
    two factor-2 downsamplings, 1 for none).

    Parameters
    ----------
    config
        The :class:`~flexdownscale.config.ModelConfig` the model is built from (kept as
        ``model.config``).

    Examples
    --------
    A minimal backbone: its one task feature is ``cond`` itself at full resolution (stride 1)
    and any grid size is accepted (``grid_multiple = 1``):

    >>> import torch
    >>> from flexdownscale.config import ModelConfig
    >>> class AddCond(Backbone):
    ...     grid_multiple = 1
    ...     def __init__(self, config):
    ...         super().__init__(config)
    ...         self.scale = torch.nn.Parameter(torch.ones(()))
    ...         self.task_shapes = [(1, 1)]
    ...     def _encode_task(self, cond):
    ...         return (cond,)
    ...     def _forward(self, x_t, t, phys, features):
    ...         return self.scale * (x_t + features[0])
    >>> model = AddCond(ModelConfig())
    >>> model(torch.ones(2, 1, 5, 5), 0.5, torch.ones(2, 1, 5, 5)).shape
    torch.Size([2, 1, 5, 5])

    The task features of one field, repeated for two members, replace ``cond``; unrepeated,
    they are refused with a :class:`~flexdownscale.errors.ShapeError` that gives the fix:

    >>> from flexdownscale.errors import ShapeError
    >>> from flexdownscale.models import repeat_task_features
    >>> features = model.encode_task(torch.ones(1, 1, 5, 5))
    >>> out = model(torch.ones(2, 1, 5, 5), 0.5, task_features=repeat_task_features(features, 2))
    >>> torch.equal(out, torch.full((2, 1, 5, 5), 2.0))
    True
    >>> try:
    ...     model(torch.ones(2, 1, 5, 5), 0.5, task_features=features)
    ... except ShapeError as err:
    ...     print(str(err).split("; ")[-1])
    use repeat_task_features(features, 2) for ensembles
    """

    task_shapes: list[tuple[int, int]]

    grid_multiple: int = GRID_MULTIPLE
    """H and W of ``x_t`` and ``cond`` must be positive multiples of this (the built-in
    backbones: 16, :data:`GRID_MULTIPLE`); a subclass overrides it as a class attribute."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        m = cls.grid_multiple
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError(
                f"{cls.__name__}.grid_multiple = {m!r} must be a positive integer: the number "
                "H and W of the model's grids must be multiples of (16 for four factor-2 "
                "downsamplings, 1 for none)"
            )

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.out_channels = config.out_channels or config.in_channels
        if config.task == "superres":
            self.cond_channels = config.in_channels
        else:
            self.cond_channels = config.past_frames * config.in_channels
        self.register_state_dict_post_hook(_describe_weights)

    # -- what a state dict does not show ------------------------------------------------------
    def weights_description(self) -> dict[str, str | int]:
        """The settings that change what the weights compute without changing their names or
        shapes: ``task``, ``in_channels`` and, when forecasting, ``past_frames`` (FLEX adds
        ``conditioning``).

        ``state_dict()`` records them in the state dict's metadata
        (``state_dict._metadata[prefix]["flexdownscale"]``, kept by ``torch.save``; the tensors'
        names are unchanged), and ``load_state_dict`` refuses a state dict that records other
        values with a :class:`~flexdownscale.errors.ConfigError` (``strict=False`` too: torch
        does not tell a module's loader). A plain ``dict`` of the tensors (``dict(state)``, a
        safetensors file, a model folder's weights) records nothing and is not checked.

        Returns
        -------
        dict
            Setting name -> value.
        """
        c = self.config
        description: dict[str, str | int] = {"task": c.task, "in_channels": c.in_channels}
        if c.task == "forecast":
            description["past_frames"] = c.past_frames
        return description

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        saved = local_metadata.get(_WEIGHTS_METADATA)
        if isinstance(saved, dict):
            mine = self.weights_description()
            differ = [
                f"{_setting(name, saved)} (this model: {_setting(name, mine)})"
                for name in sorted(mine.keys() | saved.keys())
                if saved.get(name) != mine.get(name)
            ]
            if differ:
                # raised before any tensor is copied (the backbone's own tensors load first,
                # and it has none: they all live in submodules), so the model is unchanged
                raise ConfigError(
                    f"these weights were saved from a {type(self).__name__} built with "
                    f"{', '.join(differ)}: the tensors' names and shapes match, but this "
                    "model would compute another function with them. Build the model with the "
                    "config the weights were saved with, or, to load them anyway (e.g. to "
                    "fine-tune), pass a plain dict: load_state_dict(dict(state_dict))"
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # -- helpers for subclasses ------------------------------------------------------------
    def run_block(self, block: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        """Call ``block(*args)``, through activation checkpointing when it is enabled.

        Checkpointing (``torch.utils.checkpoint``, ``use_reentrant=False``) is used when the
        config asks for it, the module is in training mode and gradients are being recorded.

        Parameters
        ----------
        block : callable
            The block to run, e.g. a submodule.
        *args
            Its inputs (tensors).

        Returns
        -------
        Tensor
            ``block(*args)``.
        """
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    # -- argument checks ----------------------------------------------------------------------
    def _check_map(self, x: torch.Tensor, channels: int, name: str, what: str) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"{name} must be a 4-D tensor (B, C, H, W), got {shape}")
        if not x.is_floating_point():
            # as torch's layers: no silent cast of integer data (a uint8 image, raw counts)
            raise DataError(
                f"{name} has dtype {str(x.dtype).removeprefix('torch.')}; the model takes "
                "floating-point fields (normalized values): convert it with "
                f"{name}.float() (after normalizing it, if it holds raw values)"
            )
        if x.shape[1] != channels:
            raise ShapeError(
                f"{name} has {x.shape[1]} channels, expected {channels} ({what}); "
                f"got shape {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        m = self.grid_multiple
        if height % m or width % m or not height or not width:
            fix_h = max(1, math.ceil(height / m)) * m
            fix_w = max(1, math.ceil(width / m)) * m
            crop_h = height // m * m
            crop_w = width // m * m
            crop = f" or crop to {crop_h} x {crop_w}" if crop_h and crop_w else ""
            # the class that runs, not config.backbone (a custom subclass keeps "flex" there)
            raise ShapeError(
                f"{name} has a {height} x {width} grid; {type(self).__name__} needs H and W "
                f"divisible by {m} (at least {m}). Pad to {fix_h} x {fix_w}{crop}."
            )

    def _in_model_dtype(self, x: torch.Tensor) -> torch.Tensor:
        """Floating inputs in the dtype of the parameters (float64 data, bfloat16 models)."""
        dtype = next(self.parameters()).dtype
        return x.to(dtype) if x.is_floating_point() and x.dtype != dtype else x

    def _cond_what(self) -> str:
        c = self.config
        if c.task == "superres":
            return f"task='superres': the upsampled coarse field with in_channels={c.in_channels}"
        return (
            f"task='forecast': past_frames={c.past_frames} x in_channels={c.in_channels} "
            "stacked on channels"
        )

    def _batch_vector(
        self, value: Any, batch: int, device: torch.device, name: str
    ) -> torch.Tensor:
        v = torch.as_tensor(value, device=device).float()
        if v.ndim == 0:
            v = v.expand(batch)
        if v.shape != (batch,):
            raise ShapeError(
                f"{name} must be a scalar or have shape ({batch},), got {tuple(v.shape)}"
            )
        return v

    # -- public interface -------------------------------------------------------------------
    def encode_task(self, cond: torch.Tensor) -> TaskFeatures:
        """Run the task encoder once; reuse the result across sampler steps and members.

        Parameters
        ----------
        cond
            Task input (B, C_cond, H, W): the upsampled coarse field (super-resolution,
            C_cond = in_channels) or the stacked past frames (forecast,
            C_cond = past_frames * in_channels). H and W divisible by ``grid_multiple`` (16).

        Returns
        -------
        TaskFeatures
            Tensors, batch first; pass them as ``task_features=`` to ``forward`` and expand them
            for ensembles with :func:`repeat_task_features`.
        """
        self._check_map(cond, self.cond_channels, "cond", self._cond_what())
        return tuple(self._encode_task(self._in_model_dtype(cond)))

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor | float,
        cond: torch.Tensor | None = None,
        *,
        phys: torch.Tensor | float | None = None,
        task_features: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Evaluate the network.

        Parameters
        ----------
        x_t
            Noisy state (B, C_out, H, W), H and W divisible by ``grid_multiple`` (16 for the
            built-in backbones).
        t
            Time in [0, 1], shape (B,) or a scalar.
        cond
            Task input (B, C_cond, H, W); not needed when ``task_features`` is given.
        phys
            Physical condition, shape (B,) or a scalar; required exactly when the model was built
            with ``physical_condition=True``.
        task_features
            Output of :meth:`encode_task` (for B fields, repeated to the batch of ``x_t`` when
            needed); the task encoder is then not run.

        Returns
        -------
        Tensor
            The network output, shape (B, C_out, H, W).
        """
        self._check_map(x_t, self.out_channels, "x_t", "out_channels of the model")
        batch, _, height, width = x_t.shape
        t = self._batch_vector(t, batch, x_t.device, "t")
        if self.config.physical_condition:
            if phys is None:
                raise ConfigError(
                    "the model was built with physical_condition=True: pass phys, a (B,) tensor "
                    "(e.g. Re / 40000)"
                )
            phys = self._batch_vector(phys, batch, x_t.device, "phys")
        elif phys is not None:
            raise ConfigError(
                "phys was given but the model was built with physical_condition=False; "
                "drop phys or build the model with physical_condition=True"
            )
        if task_features is None:
            if cond is None:
                raise ShapeError(
                    "pass cond (B, C_cond, H, W) or task_features=model.encode_task(cond)"
                )
            self._check_map(cond, self.cond_channels, "cond", self._cond_what())
            if cond.shape[0] != batch or cond.shape[-2:] != x_t.shape[-2:]:
                raise ShapeError(
                    f"cond has shape {tuple(cond.shape)} but x_t has shape {tuple(x_t.shape)}; "
                    "batch and grid must match (repeat cond, or use repeat_task_features on "
                    "encode_task(cond), for ensembles)"
                )
            features = self.encode_task(cond)
        else:
            # features encoded elsewhere (float64 data, another model's dtype): the network's
            features = tuple(self._in_model_dtype(f) for f in task_features)
            self._check_features(features, batch, height, width)
        return self._forward(self._in_model_dtype(x_t), t, phys, features)

    def _check_features(self, features: TaskFeatures, batch: int, height: int, width: int) -> None:
        if len(features) != len(self.task_shapes):
            raise ShapeError(
                f"task_features has {len(features)} tensors, expected {len(self.task_shapes)} "
                f"(the output of {type(self).__name__}.encode_task)"
            )
        for k, (feat, (ch, stride)) in enumerate(zip(features, self.task_shapes)):
            expected = (batch, ch, height // stride, width // stride)
            if tuple(feat.shape) != expected:
                hint = ""
                if feat.shape[0] != batch and feat.shape[0] and batch % feat.shape[0] == 0:
                    hint = (
                        f"; use repeat_task_features(features, {batch // feat.shape[0]}) "
                        "for ensembles"
                    )
                raise ShapeError(
                    f"task_features[{k}] has shape {tuple(feat.shape)}, expected {expected} for "
                    f"x_t of batch {batch} and grid {height} x {width}{hint}"
                )

    def _encode_task(self, cond: torch.Tensor) -> Sequence[torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        phys: torch.Tensor | None,
        features: TaskFeatures,
    ) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


#: The key of a backbone's entry in its state dict's metadata (see
#: :meth:`Backbone.weights_description`).
_WEIGHTS_METADATA = "flexdownscale"


def _describe_weights(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any]
) -> None:
    """``state_dict`` post-hook of :class:`Backbone`: its :meth:`~Backbone.weights_description`
    into the state dict's metadata for ``prefix`` (the tensors are left as they are)."""
    local_metadata[_WEIGHTS_METADATA] = module.weights_description()


def _setting(name: str, description: dict[str, Any]) -> str:
    """``name=value`` of a weights description, or ``no name`` where it has none."""
    return f"{name}={description[name]!r}" if name in description else f"no {name}"
