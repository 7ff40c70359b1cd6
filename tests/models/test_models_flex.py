"""FLEX as FLEX.md specifies it: counts, block bookkeeping, ViT bottleneck, conditioning."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from flexdownscale.config import ModelConfig
from flexdownscale.models import (
    FLEX,
    PRESETS,
    REFERENCE_PARAMETERS,
    build_model,
    count_parameters,
)
from flexdownscale.models.layers import ResBlock, TransformerBlock

# --- parameter counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["small", "medium", "big"])
@pytest.mark.parametrize("physical_condition", [False, True])
def test_parameter_counts_match_reference_within_2_percent(preset, physical_condition):
    config = ModelConfig(backbone="flex", preset=preset, physical_condition=physical_condition)
    model = build_model(config, device="meta")
    count = count_parameters(model)
    reference = REFERENCE_PARAMETERS[preset]
    assert abs(count / reference - 1) < 0.02, (preset, count, reference)


def _resblock(cin: int, cout: int, emb: int) -> int:
    n = 2 * cin + 9 * cin * cout + cout  # GN, conv1
    n += emb * 2 * cout + 2 * cout  # AdaGN projection
    n += 2 * cout + 9 * cout * cout + cout  # GN, conv2
    if cin != cout:
        n += 9 * cin * cout + cout  # 3x3 conv on the skip path
    return n


def _pyramid(cin: int, channels, blocks, emb: int) -> tuple[int, list[int]]:
    n = 9 * cin * channels[0] + channels[0]
    skips = [channels[0]]
    ch = channels[0]
    for level_ch, k in zip(channels, blocks):
        for _ in range(k):
            n += _resblock(ch, level_ch, emb)
            ch = level_ch
            skips.append(ch)
        n += _resblock(ch, ch, emb)  # down-block at every level
        skips.append(ch)
    return n, skips


def _flex_count_closed_form(channels, blocks, depth, cin=1, cout=1, phys=False) -> int:
    """Parameter count written out from FLEX.md's description, independently of the code."""
    d = channels[-1]
    time_mlp = d * 2 * d + 2 * d + 2 * d * d + d
    phys_mlp = 1 * 2 * d + 2 * d + 2 * d * d + d
    task, _ = _pyramid(cin, channels, blocks, d)
    task += d  # learned task embedding driving the task encoder's AdaGN
    shared, skips = _pyramid(cout, channels, blocks, d)
    block = 8 * d * d + 8 * d  # LN, qkv (no bias), proj, LN, MLP ratio 2
    vit = (depth // 2) * block + block + (depth // 2) * (block + 2 * d * d + d) + 2 * d
    decoder = _resblock(d + skips.pop(), d, d)  # block 0: up-ResBlock 2D -> D
    ch = d
    for level in reversed(range(len(channels))):
        for i in range(blocks[level] + 1):
            decoder += _resblock(ch + skips.pop(), channels[level], d)
            ch = channels[level]
            if i == blocks[level] and level > 0:
                decoder += _resblock(ch, ch, d)
    assert not skips
    head = 2 * ch + 9 * ch * cout + cout
    embeddings = 2 * time_mlp + (2 * phys_mlp if phys else 0)
    return task + shared + vit + decoder + head + embeddings


@pytest.mark.parametrize("preset", ["tiny", "small", "medium"])
@pytest.mark.parametrize(("cin", "cout", "phys"), [(1, 1, False), (3, 2, True)])
def test_parameter_count_equals_closed_form(preset, cin, cout, phys):
    kw = PRESETS["flex"][preset]
    config = ModelConfig(preset=preset, in_channels=cin, out_channels=cout, physical_condition=phys)
    model = build_model(config, device="meta")
    expected = _flex_count_closed_form(kw["channels"], kw["blocks"], kw["depth"], cin, cout, phys)
    assert count_parameters(model) == expected


def test_tiny_is_cpu_sized():
    assert count_parameters(build_model(ModelConfig(preset="tiny"), device="meta")) < 5_000_000


def test_forward_flops_of_small_match_reference():
    # Reference small at 128x128: about 17 GFLOP task encoder + 90 GFLOP shared encoder/decoder.
    model = build_model(ModelConfig(preset="small"), device="meta").eval()
    x = torch.zeros(1, 1, 128, 128, device="meta")
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            features = model.encode_task(x)
        task = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            model(x, torch.zeros(1, device="meta"), task_features=features)
        shared = counter.get_total_flops()
    assert task / 1e9 == pytest.approx(17, rel=0.05)
    assert shared / 1e9 == pytest.approx(90, rel=0.05)


# --- block bookkeeping --------------------------------------------------------------------------


def test_small_block_bookkeeping():
    model = build_model(ModelConfig(preset="small"), device="meta")
    kw = PRESETS["flex"]["small"]
    levels, n_blocks = len(kw["channels"]), sum(kw["blocks"])
    assert 1 + len(model.encoder.blocks) == 1 + n_blocks + levels == 16
    assert len(model.decoder) == 16
    assert len(model.task_shapes) == 16
    # decoder block 0: up-ResBlock 2D -> D
    first = model.decoder[0].layers
    assert len(first) == 1
    assert first[0].resample == "up"
    assert first[0].conv1.in_channels == 2 * 256
    assert first[0].conv1.out_channels == 256
    # an up-ResBlock closes the last block of every level except level 0
    ups = [i for i, b in enumerate(model.decoder) if b.layers[-1].resample == "up"]
    assert ups == [0, 4, 8, 12]
    # channel changes use a 3x3 conv on the skip path
    skip = model.decoder[1].layers[0].skip
    assert isinstance(skip, nn.Conv2d)
    assert skip.kernel_size == (3, 3)
    # the encoder down-samples at every level: the bottleneck is H/16 with width D
    assert model.task_shapes[-1] == (256, 16)
    assert sum(isinstance(b, ResBlock) and b.resample == "down" for b in model.encoder.blocks) == 4


def test_task_features_are_the_pyramid_outputs(make):
    model = make("flex").eval()
    cond = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        feats = model.encode_task(cond)
    shapes = [tuple(f.shape) for f in feats]
    expected = [(2, ch, 32 // s, 48 // s) for ch, s in model.task_shapes]
    assert shapes == expected
    assert shapes[-1] == (2, 64, 2, 3)  # bottleneck at H/16 x W/16, width D


def test_vit_bottleneck_structure():
    model = build_model(ModelConfig(preset="small"), device="meta")
    assert len(model.vit_in) == len(model.vit_out) == 13 // 2
    blocks: list[TransformerBlock] = [*model.vit_in, model.vit_mid, *model.vit_out]
    for block in blocks:
        assert block.attn.qkv.bias is None
        assert block.norm1.eps == block.norm2.eps == 1e-6
        assert block.mlp.fc1.out_features == 2 * 256
        assert block.attn.heads == 4
    assert all(b.skip_linear is None for b in [*model.vit_in, model.vit_mid])
    assert all(b.skip_linear.in_features == 512 for b in model.vit_out)
    assert model.vit_norm.eps == 1e-5
    # encoder and decoder each own a time MLP (and condition MLP) of shape D -> 2D -> D
    assert model.enc_time is not model.dec_time
    assert model.enc_time.mlp[0].in_features == 256
    assert model.enc_time.mlp[0].out_features == 512


def test_vit_token_count_includes_extra_token(make):
    model = make("flex").eval()
    seen = []
    model.vit_mid.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    with torch.no_grad():
        model(torch.zeros(1, 1, 48, 64), 0.5, torch.zeros(1, 1, 48, 64))
    assert seen == [torch.Size([1, 3 * 4 + 1, 64])]


def test_initialisation(make):
    model = make("flex")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            bound = math.sqrt(6 / (module.in_features + module.out_features))
            assert module.bias is None or torch.count_nonzero(module.bias) == 0
            assert module.weight.abs().max() <= bound
            assert module.weight.abs().max() > 0.9 * bound  # Xavier uniform fills its range
        if isinstance(module, ResBlock):
            assert torch.count_nonzero(module.conv2.weight) == 0
            assert torch.count_nonzero(module.conv2.bias) == 0
            assert module.dropout.p == 0.1
    assert torch.count_nonzero(model.head[-1].weight) == 0
    assert isinstance(model.head[0], nn.GroupNorm)


def test_group_norm_uses_32_groups_for_reference_presets():
    model = build_model(ModelConfig(preset="big"), device="meta")
    groups = {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {32}


def test_fourier_time_features_are_fixed_buffers():
    torch.manual_seed(0)
    a = FLEX(ModelConfig(), **PRESETS["flex"]["tiny"])
    torch.manual_seed(1)
    b = FLEX(ModelConfig(), **PRESETS["flex"]["tiny"])
    assert torch.equal(a.enc_time.freqs, b.enc_time.freqs)
    assert "enc_time.freqs" in a.state_dict()
    assert not any(p is a.enc_time.freqs for p in a.parameters())
    assert not torch.equal(a.enc_time.mlp[0].weight, b.enc_time.mlp[0].weight)


def test_fourier_frequencies_stay_float32_when_the_model_is_cast():
    """Rounded to bfloat16 the frequencies were off by up to 0.09 (a phase error of 0.6 rad at
    t = 1): a model cast to bf16 sampled with other time features than it was trained with.
    Casts now leave them float32 and exact; the rest of the embedding follows the cast."""
    model = FLEX(ModelConfig(), **PRESETS["flex"]["tiny"])
    exact = model.enc_time.freqs.clone()
    assert exact.dtype == torch.float32
    assert "enc_time.freqs" in model.state_dict()
    half = model.to(torch.bfloat16)
    assert half.enc_time.mlp[0].weight.dtype == torch.bfloat16
    assert half.enc_time.freqs.dtype == torch.float32
    assert torch.equal(half.enc_time.freqs, exact)
    # the features of a bf16 model are its float32 model's, rounded once at the MLP input
    t = torch.tensor([0.3, 1.0])
    angle = 2 * torch.pi * t[:, None] * exact[None, :]
    features = torch.cat([angle.sin(), angle.cos()], dim=1)
    seen = []
    half.enc_time.mlp.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    half.enc_time(t)
    assert torch.equal(seen[0], features.to(torch.bfloat16))
    assert torch.equal(half.float().dec_time.freqs, exact)  # (casts modules in place)


# --- conditioning -------------------------------------------------------------------------------


def _encoder_outputs(model: FLEX, cond: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = model.encoder.register_forward_hook(lambda m, a, out: captured.append(out[-1]))
    with torch.no_grad():
        model(torch.ones(1, 1, 32, 32), 0.5, cond)
    handle.remove()
    return captured[0]


def test_weak_conditioning_enters_the_shared_encoder(make, perturb):
    weak = perturb(make("flex", conditioning="weak+strong")).eval()
    strong = make("flex", conditioning="strong").eval()
    # same parameters, only the wiring differs (a plain dict: the state dict's record of the
    # conditioning would refuse the load, test_models_state_dict_config.py)
    strong.load_state_dict(dict(weak.state_dict()))
    assert count_parameters(weak) == count_parameters(strong)
    cond = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    # strong only: the shared encoder never sees the task input
    torch.testing.assert_close(
        _encoder_outputs(strong, cond), _encoder_outputs(strong, cond + 1), rtol=0, atol=0
    )
    # weak: the encoder adds the task features after every block
    assert (_encoder_outputs(weak, cond) - _encoder_outputs(weak, cond + 1)).abs().max() > 1e-3
    with torch.no_grad():
        x_t = torch.randn(1, 1, 32, 32)
        assert (weak(x_t, 0.5, cond) - strong(x_t, 0.5, cond)).abs().max() > 1e-5


def test_runs_on_grids_other_than_image_size(make, perturb):
    model = perturb(make("flex", image_size=(128, 128))).eval()
    with torch.no_grad():
        for size in [(16, 16), (256, 256)]:  # 96 x 160 is in test_models_backbones
            x = torch.randn(1, 1, *size)
            assert model(x, 0.5, x).shape == x.shape
