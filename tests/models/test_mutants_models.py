"""Wiring of the backbones' conditioning paths, checked where a mutation audit found it
unchecked (helper-181).

The other backbone tests check shapes, that the output depends on ``cond`` at all, and the
layers' closed forms; a dropped skip connection, positional embedding or task feature passed
them. Here forward hooks read what each stage is actually given and compare it with the layout
the module docstrings describe; the shipped weights' outputs are pinned to fixed numbers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flexdownscale.config import ModelConfig
from flexdownscale.hub import load_model_folder
from flexdownscale.models import build_model
from flexdownscale.models.dit import DiT
from flexdownscale.models.flex import FLEX
from flexdownscale.models.layers import Mlp, sincos_2d
from flexdownscale.models.unet import AttentionBlock2d
from flexdownscale.models.uvit import UViT

F64 = torch.float64


def _tokens(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, H W, C)``, row-major over the grid."""
    return x.flatten(2).transpose(1, 2)


def _nonzero(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded noise on every parameter (the zero-initialised layers too), in float64, eval."""
    gen = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


class _Taps:
    """Forward hooks recording a module's inputs (``ins``) or outputs (``outs``)."""

    def __init__(self) -> None:
        self.ins: dict[str, list[tuple]] = {}
        self.outs: dict[str, list] = {}
        self.handles: list = []

    def inputs(self, name: str, module: nn.Module) -> None:
        self.ins[name] = []
        self.handles.append(module.register_forward_pre_hook(lambda m, a: self.ins[name].append(a)))

    def outputs(self, name: str, module: nn.Module) -> None:
        self.outs[name] = []
        self.handles.append(module.register_forward_hook(lambda m, a, o: self.outs[name].append(o)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _inputs(batch: int = 2, size: int = 32, seed: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, 1, size, size, generator=g, dtype=F64)
    cond = torch.randn(batch, 1, size, size, generator=g, dtype=F64)
    t = torch.tensor([0.3, 0.8], dtype=F64)[:batch]
    return x_t, cond, t


def _close(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_unet_adds_the_task_features_to_the_middle_and_to_every_skip() -> None:
    """U-Net: decoder step k takes ``cat(h, skip_k + feature_k)``, and its first ``h`` is the
    middle block's output plus the task bottleneck."""
    torch.manual_seed(0)
    model = _nonzero(build_model(ModelConfig(backbone="unet", preset="tiny")))
    x_t, cond, t = _inputs()
    features = model.encode_task(cond)
    taps = _Taps()
    taps.outputs("stem", model.stem)
    for i, step in enumerate(model.encoder):
        taps.outputs(f"enc{i}", step)
    taps.outputs("middle", model.middle)
    for k, step in enumerate(model.decoder):
        taps.inputs(f"dec{k}", step)
    with torch.no_grad():
        model(x_t, t, task_features=features)
    taps.remove()
    skips = taps.outs["stem"] + [taps.outs[f"enc{i}"][0] for i in range(len(model.encoder))]
    assert len(skips) == len(features) == len(model.decoder)
    for k in range(len(model.decoder)):
        index = len(skips) - 1 - k
        given = taps.ins[f"dec{k}"][0][0]
        width = skips[index].shape[1]
        _close(given[:, -width:], skips[index] + features[index])
    first = taps.ins["dec0"][0][0]
    _close(first[:, : first.shape[1] - skips[-1].shape[1]], taps.outs["middle"][0] + features[-1])


def test_unet_attention_branches_start_at_zero() -> None:
    """Every attention block of a new U-Net is the identity (its output projection is zero)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="unet", preset="tiny")).eval()
    blocks = [m for m in model.modules() if isinstance(m, AttentionBlock2d)]
    assert blocks
    x = torch.randn(2, blocks[0].norm.num_channels, 4, 4)
    for block in blocks:
        assert torch.count_nonzero(block.attn.proj.weight) == 0
        assert torch.count_nonzero(block.attn.proj.bias) == 0
    with torch.no_grad():
        assert torch.equal(blocks[0](x), x)


def test_uvit_tokens_positions_skips_and_output_tokens() -> None:
    """U-ViT: the first block gets ``cat(time, patches + sincos + task)``; out block j fuses in
    block ``half - 1 - j``'s output plus the task tokens (none on the time token); the head
    reads every token but the time token."""
    torch.manual_seed(0)
    model = _nonzero(
        UViT(
            ModelConfig(backbone="uvit"),
            dim=32,
            depth=5,
            heads=2,
            patch=4,
            mlp_ratio=2.0,
            task_channels=(8, 8, 16, 16),
            task_blocks=(1, 1, 1, 1),
        )
    )
    x_t, cond, t = _inputs()
    features = model.encode_task(cond)
    taps = _Taps()
    taps.outputs("patches", model.patch_embed)
    taps.outputs("time", model.time)
    for i, block in enumerate(model.blocks_in):
        taps.inputs(f"in{i}", block)
        taps.outputs(f"in{i}", block)
    for j, block in enumerate(model.blocks_out):
        taps.inputs(f"out{j}", block)
    taps.outputs("norm", model.norm)
    taps.inputs("head", model.to_patches)
    with torch.no_grad():
        model(x_t, t, task_features=features)
    taps.remove()
    patches = taps.outs["patches"][0]
    pos = sincos_2d(*patches.shape[-2:], 32, dtype=F64)
    task = _tokens(features[0])
    first = taps.ins["in0"][0][0]
    _close(first[:, 0], taps.outs["time"][0])
    _close(first[:, 1:], _tokens(patches) + pos + task)
    half = len(model.blocks_in)
    assert half == 2
    padded = torch.cat([torch.zeros_like(task[:, :1]), task], dim=1)
    for j in range(half):
        skip = taps.ins[f"out{j}"][0][1]
        _close(skip, taps.outs[f"in{half - 1 - j}"][0] + padded)
    _close(taps.ins["head"][0][0], taps.outs["norm"][0][:, 1:])


def test_dit_block_is_the_adaln_zero_formula() -> None:
    """DiT block: ``x + g1 attn(mod(LN(x + task)))`` then ``+ g2 mlp(mod(LN(x' + task)))``, with
    the shifts, scales and gates from ``Linear(SiLU(c))``; the first block gets patches plus
    sin-cos positions."""
    torch.manual_seed(0)
    model = _nonzero(
        DiT(
            ModelConfig(backbone="dit"),
            dim=32,
            depth=2,
            heads=2,
            patch=4,
            mlp_ratio=2.0,
            task_channels=(8, 8, 16, 16),
            task_blocks=(1, 1, 1, 1),
        )
    )
    block = model.blocks[0]
    g = torch.Generator().manual_seed(2)
    x, task = (torch.randn(2, 16, 32, generator=g, dtype=F64) for _ in range(2))
    c = torch.randn(2, 32, generator=g, dtype=F64)

    def ln(v: Tensor) -> Tensor:
        return F.layer_norm(v, (32,), eps=1e-6)

    shift1, scale1, gate1, shift2, scale2, gate2 = (
        p[:, None, :] for p in block.modulation(F.silu(c)).chunk(6, dim=1)
    )
    with torch.no_grad():
        mid = x + gate1 * block.attn(ln(x + task) * (1 + scale1) + shift1)
        expected = mid + gate2 * block.mlp(ln(mid + task) * (1 + scale2) + shift2)
        _close(block(x, task, c), expected)

    x_t, cond, t = _inputs()
    taps = _Taps()
    taps.outputs("patches", model.patch_embed)
    taps.inputs("block0", model.blocks[0])
    with torch.no_grad():
        model(x_t, t, cond)
    taps.remove()
    patches = taps.outs["patches"][0]
    pos = sincos_2d(*patches.shape[-2:], 32, dtype=F64)
    _close(taps.ins["block0"][0][0], _tokens(patches) + pos)


@pytest.mark.parametrize("conditioning", ["weak+strong", "strong"])
def test_flex_bottleneck_and_decoder_wiring(conditioning: str) -> None:
    """FLEX (module docstring): ViT tokens ``cat(enc_emb, bottleneck + sincos)``; out block j
    fuses in block ``half - 1 - j``; the decoder's embedding is added to the extra token only;
    the decoder starts from the normed ViT tokens plus the task bottleneck and block k takes
    ``shared_skip + task_skip`` and the decoder's own embedding."""
    torch.manual_seed(0)
    config = ModelConfig(conditioning=conditioning, physical_condition=True)
    model = _nonzero(FLEX(config, channels=(16, 16, 32, 32), blocks=(1, 1, 1, 1), depth=5, heads=2))
    x_t, cond, t = _inputs()
    phys = torch.tensor([0.25, 0.5], dtype=F64)
    features = model.encode_task(cond)
    taps = _Taps()
    for name in ("encoder", "enc_time", "enc_phys", "dec_time", "dec_phys", "vit_mid", "vit_norm"):
        taps.outputs(name, getattr(model, name))
    for i, block in enumerate(model.vit_in):
        taps.inputs(f"in{i}", block)
        taps.outputs(f"in{i}", block)
    for j, block in enumerate(model.vit_out):
        taps.inputs(f"out{j}", block)
    for k, block in enumerate(model.decoder):
        taps.inputs(f"dec{k}", block)
    with torch.no_grad():
        model(x_t, t, phys=phys, task_features=features)
    taps.remove()
    emb_enc = taps.outs["enc_time"][0] + taps.outs["enc_phys"][0]
    emb_dec = taps.outs["dec_time"][0] + taps.outs["dec_phys"][0]
    assert not torch.allclose(emb_enc, emb_dec)
    skips = taps.outs["encoder"][0]
    bottleneck = skips[-1]
    pos = sincos_2d(*bottleneck.shape[-2:], 32, dtype=F64)
    first = taps.ins["in0"][0][0]
    _close(first[:, 0], emb_enc)
    _close(first[:, 1:], _tokens(bottleneck) + pos)
    half = len(model.vit_in)
    assert half == 2
    mid = taps.outs["vit_mid"][0]
    given = taps.ins["out0"][0][0]
    _close(given[:, 0], mid[:, 0] + emb_dec)
    _close(given[:, 1:], mid[:, 1:])
    for j in range(half):
        _close(taps.ins[f"out{j}"][0][1], taps.outs[f"in{half - 1 - j}"][0])
    normed = taps.outs["vit_norm"][0][:, 1:].transpose(1, 2).reshape(bottleneck.shape)
    _close(taps.ins["dec0"][0][0], normed + features[-1])
    for k in range(len(model.decoder)):
        index = len(skips) - 1 - k
        _, skip, emb = taps.ins[f"dec{k}"][0]
        _close(skip, skips[index] + features[index])
        _close(emb, emb_dec)


def test_transformer_mlp_uses_the_tanh_gelu() -> None:
    """``Mlp(x) = fc2(GELU_tanh(fc1(x)))`` (the reference's approximation, which the shipped
    weights were trained with)."""
    torch.manual_seed(0)
    mlp = Mlp(8, ratio=2.0).double().eval()
    x = 3 * torch.randn(4, 8, dtype=F64)
    with torch.no_grad():
        expected = mlp.fc2(F.gelu(mlp.fc1(x), approximate="tanh"))
        _close(mlp(x), expected)


# backbone output of the shipped weights (float64) on _inputs(2, 32) at t = (0.3, 0.8) and, for
# kolmogorov-x8, phys = (0.25, 0.5):
# mean, root mean square and four pixels, from the package as of this test (commit bb6272c)
_SHIPPED = {
    "era5-t2m-x4": [
        0.002341446859162275,
        0.6288032729954606,
        -0.3139381594221155,
        0.2684515599315348,
        -0.12686792035806452,
        0.584193101008332,
    ],
    "kolmogorov-x8": [
        0.00229608814761779,
        0.4055033518960733,
        0.28997904348777837,
        0.5590074035016611,
        -0.021824698584559144,
        0.2058978679177552,
    ],
}


@pytest.mark.parametrize("name", sorted(_SHIPPED))
def test_shipped_weights_keep_giving_the_same_outputs(name: str) -> None:
    """The shipped backbones compute the same function as when they were trained: a dropped
    connection or embedding moves these numbers far beyond the tolerance, which leaves room
    for the float32 time embedding's rounding on other platforms (a 2-ulp change of its
    frequencies moved them by about 1e-6)."""
    folder = load_model_folder(name)
    model = build_model(folder.model)
    model.load_state_dict(folder.state_dict)
    model = model.double().eval()
    x_t, cond, t = _inputs()
    phys = torch.tensor([0.25, 0.5], dtype=F64) if folder.model.physical_condition else None
    with torch.no_grad():
        out = model(x_t, t, cond, phys=phys)
    picked = [out[0, 0, 5, 7], out[1, 0, 20, 11], out[0, 0, 31, 0], out[1, 0, 0, 31]]
    got = torch.stack([out.mean(), out.square().mean().sqrt(), *picked])
    expected = torch.tensor(_SHIPPED[name], dtype=F64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
