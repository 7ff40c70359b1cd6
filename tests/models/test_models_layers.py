"""Building blocks against closed forms and direct computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flexdownscale.errors import ConfigError, ShapeError
from flexdownscale.models.layers import (
    Attention,
    ConditionEmbedding,
    ConvEncoder,
    FourierTimeEmbedding,
    PatchTaskEncoder,
    ResBlock,
    TransformerBlock,
    group_norm,
    sincos_2d,
)


def test_sincos_closed_form():
    dim, quarter = 8, 2
    pe = sincos_2d(3, 5, dim)
    assert pe.shape == (15, 8)
    omega = [1.0, 1.0 / 10000 ** (1 / quarter)]
    i, j = 2, 4
    row = pe[i * 5 + j]
    expected = [math.sin(i * w) for w in omega] + [math.cos(i * w) for w in omega]
    expected += [math.sin(j * w) for w in omega] + [math.cos(j * w) for w in omega]
    torch.testing.assert_close(row, torch.tensor(expected))
    assert pe.abs().max() <= 1.0


def test_sincos_depends_only_on_position_not_grid_size():
    small, large = sincos_2d(4, 4, 64), sincos_2d(6, 10, 64)
    for i, j in [(0, 0), (1, 3), (3, 2)]:
        torch.testing.assert_close(small[i * 4 + j], large[i * 10 + j])
    assert torch.unique(large, dim=0).shape[0] == 60  # every token distinct
    with pytest.raises(ConfigError, match="divisible by 4"):
        sincos_2d(2, 2, 6)


@pytest.mark.parametrize(("channels", "groups"), [(32, 32), (64, 32), (1152, 32), (48, 16), (3, 1)])
def test_group_norm_groups(channels, groups):
    assert group_norm(channels).num_groups == groups


def test_resblock_at_init_is_skip_of_resampled_input():
    x = torch.randn(2, 32, 8, 12)
    emb = torch.randn(2, 16)
    down = ResBlock(32, 32, emb_dim=16, resample="down")
    up = ResBlock(32, 32, emb_dim=16, resample="up")
    same = ResBlock(32, 32, emb_dim=16)
    # the second conv starts at zero: the block is its skip path (identity) of the resampled input
    torch.testing.assert_close(down(x, emb), F.avg_pool2d(x, 2), rtol=0, atol=0)
    torch.testing.assert_close(up(x, emb), x.repeat_interleave(2, -1).repeat_interleave(2, -2))
    torch.testing.assert_close(same(x, emb), x, rtol=0, atol=0)
    change = ResBlock(32, 64, emb_dim=None)
    assert change(x).shape == (2, 64, 8, 12)
    assert change.skip.kernel_size == (3, 3)
    with pytest.raises(ShapeError, match="embedding"):
        same(x)
    with pytest.raises(ConfigError):
        ResBlock(32, 32, emb_dim=None, resample="sideways")


def test_resblock_adagn_formula():
    torch.manual_seed(0)
    block = ResBlock(32, 32, emb_dim=4, dropout=0.0).eval()
    with torch.no_grad():
        block.conv2.weight.normal_(0, 0.05)
        block.emb.weight.zero_()
        block.emb.bias.copy_(torch.cat([torch.full((32,), 0.5), torch.full((32,), -0.25)]))
    x = torch.randn(2, 32, 6, 6)
    emb = torch.randn(2, 4)
    h = block.conv1(F.silu(block.norm1(x)))
    h = block.norm2(h) * 1.5 - 0.25
    expected = x + block.conv2(F.silu(h))
    torch.testing.assert_close(block(x, emb), expected)


def test_attention_matches_direct_softmax():
    torch.manual_seed(0)
    attn = Attention(16, heads=4)
    x = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(x), expected)
    with pytest.raises(ConfigError, match="divisible"):
        Attention(10, heads=4)


def test_transformer_block_long_skip():
    torch.manual_seed(0)
    block = TransformerBlock(16, heads=2, skip=True)
    x, skip = torch.randn(1, 3, 16), torch.randn(1, 3, 16)
    fused = block.skip_linear(torch.cat([x, skip], -1))
    fused = fused + block.attn(block.norm1(fused))
    expected = fused + block.mlp(block.norm2(fused))
    torch.testing.assert_close(block(x, skip), expected)
    with pytest.raises(ShapeError, match="skip"):
        block(x)


def test_fourier_time_features():
    emb = FourierTimeEmbedding(8, seed=3)
    t = torch.tensor([0.0, 0.3])
    angle = 2 * math.pi * t[:, None] * emb.freqs[None, :]
    expected = emb.mlp(torch.cat([angle.sin(), angle.cos()], 1))
    torch.testing.assert_close(emb(t), expected)
    assert torch.equal(emb.freqs, FourierTimeEmbedding(8, seed=3).freqs)
    assert not torch.equal(emb.freqs, FourierTimeEmbedding(8, seed=4).freqs)
    assert ConditionEmbedding(8)(torch.tensor([0.1, 0.2, 0.3])).shape == (3, 8)


def test_conv_encoder_shapes_and_weak_addition():
    enc = ConvEncoder(2, (32, 64), (1, 2), emb_dim=None)
    x = torch.randn(1, 2, 16, 16)
    outs = enc(x)
    assert [tuple(o.shape[1:]) for o in outs] == [
        (32, 16, 16),
        (32, 16, 16),
        (32, 8, 8),
        (64, 8, 8),
        (64, 8, 8),
        (64, 4, 4),
    ]
    assert enc.shapes == [(32, 1), (32, 1), (32, 2), (64, 2), (64, 2), (64, 4)]
    # adding zeros after every block changes nothing; adding to the last output shifts it
    zeros = [torch.zeros_like(o) for o in outs]
    torch.testing.assert_close(enc(x, add=zeros)[-1], outs[-1])
    shifted = [*zeros[:-1], torch.ones_like(outs[-1])]
    torch.testing.assert_close(enc(x, add=shifted)[-1], outs[-1] + 1)


@pytest.mark.parametrize("patch", [1, 2, 4, 8, 16])
def test_patch_task_encoder_reaches_the_patch_grid(patch):
    enc = PatchTaskEncoder(3, (8, 8, 16, 16), (1, 1, 1, 1), patch=patch, dim=24)
    (tokens,) = enc(torch.randn(2, 3, 32, 48))
    assert tokens.shape == (2, 24, 32 // patch, 48 // patch)
    assert enc.shapes == [(24, patch)]


def test_patch_task_encoder_rejects_bad_patch():
    with pytest.raises(ConfigError, match="power of two"):
        PatchTaskEncoder(1, (8, 8), (1, 1), patch=3, dim=8)
    with pytest.raises(ConfigError, match="power of two"):
        PatchTaskEncoder(1, (8, 8), (1, 1), patch=8, dim=8)
