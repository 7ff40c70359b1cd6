"""The backbone contract, checked for every backbone (tiny presets, small grids)."""

from __future__ import annotations

import pytest
import torch

from flexdownscale.errors import ConfigError, ShapeError
from flexdownscale.models import repeat_task_features

BACKBONES = ("flex", "unet", "uvit", "dit")


def _inputs(batch: int, channels: int, height: int, width: int, *, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, channels, height, width, generator=gen)
    cond = torch.randn(batch, channels, height, width, generator=gen)
    t = torch.rand(batch, generator=gen)
    return x_t, t, cond


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("size", [(128, 128), (96, 160), (64, 256)])
def test_output_shape_equals_input_shape(make, perturb, backbone, size):
    model = perturb(make(backbone, in_channels=3)).eval()
    x_t, t, cond = _inputs(1, 3, *size)
    with torch.no_grad():
        out = model(x_t, t, cond)
    assert out.shape == x_t.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_any_number_of_input_and_output_channels(make, backbone):
    model = make(backbone, in_channels=3, out_channels=2).eval()
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 2, 32, 48, generator=gen)
    cond = torch.randn(2, 3, 32, 48, generator=gen)
    with torch.no_grad():
        assert model(x_t, 0.3, cond).shape == (2, 2, 32, 48)
    with pytest.raises(ShapeError, match="3 channels, expected 2"):
        model(torch.randn(2, 3, 32, 48), 0.3, cond)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("size", [(100, 128), (128, 72), (8, 8)])
def test_grid_not_divisible_by_16_raises_shape_error(make, backbone, size):
    model = make(backbone).eval()
    x_t, t, cond = _inputs(1, 1, *size)
    with pytest.raises(ShapeError) as info:
        model(x_t, t, cond)
    message = str(info.value)
    assert f"{size[0]} x {size[1]}" in message
    assert "divisible by 16" in message
    assert "Pad to" in message
    with pytest.raises(ShapeError):
        model.encode_task(cond)


def test_shape_error_message_gives_the_fix(make):
    model = make("flex")
    with pytest.raises(ShapeError, match=r"Pad to 112 x 128 or crop to 96 x 128"):
        model(torch.zeros(1, 1, 100, 128), 0.5, torch.zeros(1, 1, 100, 128))
    # below 16 there is nothing to crop to ("crop to 0 x 0" was suggested)
    with pytest.raises(ShapeError, match=r"Pad to 16 x 16\.$"):
        model(torch.zeros(1, 1, 8, 8), 0.5, torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("model_dtype", [torch.float32, torch.bfloat16])
def test_inputs_of_another_float_dtype_are_cast_to_the_model(make, perturb, backbone, model_dtype):
    """float64 data into a float32 model (or float32 into a bfloat16 one) raised RuntimeError
    ("Input type (double) and bias type (float) should be the same")."""
    model = perturb(make(backbone)).eval().to(model_dtype)
    x_t, t, cond = _inputs(2, 1, 32, 32)
    with torch.no_grad():
        same = model(x_t.to(model_dtype), t, cond.to(model_dtype))
        wide = model(x_t.double(), t.double(), cond.double())
        features = model.encode_task(cond.double())
    assert wide.dtype == model_dtype
    assert torch.equal(wide, same)
    assert all(f.dtype == model_dtype for f in features if f.is_floating_point())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_zero_initialised_head_gives_exactly_zero(make, backbone):
    model = make(backbone, in_channels=2, physical_condition=True)
    x_t, t, cond = _inputs(3, 2, 32, 32)
    out = model(x_t, t, cond, phys=torch.tensor([0.1, 0.2, 0.3]))
    assert torch.count_nonzero(out) == 0
    out.sum().backward()  # gradients still reach the head
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert any(torch.count_nonzero(g) > 0 for g in grads)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_task_features_passed_in_give_the_same_output(make, perturb, backbone, monkeypatch):
    model = perturb(make(backbone, physical_condition=True)).eval()
    x_t, t, cond = _inputs(2, 1, 32, 48)
    phys = torch.tensor([0.05, 0.5])
    with torch.no_grad():
        out = model(x_t, t, cond, phys=phys)
        feats = model.encode_task(cond)
        assert isinstance(feats, tuple)
        assert all(f.shape[0] == 2 for f in feats)

        def fail(*args, **kwargs):
            raise AssertionError("the task encoder ran although task_features were given")

        monkeypatch.setattr(model.task_encoder, "forward", fail)
        out2 = model(x_t, t, task_features=feats, phys=phys)
    assert torch.count_nonzero(out) > 0
    torch.testing.assert_close(out2, out, rtol=0, atol=0)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_output_depends_on_cond(make, perturb, backbone):
    model = perturb(make(backbone)).eval()
    x_t, t, cond = _inputs(2, 1, 32, 32)
    with torch.no_grad():
        a = model(x_t, t, cond)
        b = model(x_t, t, cond + 1.0)
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("backbone", BACKBONES)
def test_repeat_task_features_serves_ensemble_members(make, perturb, backbone):
    model = perturb(make(backbone)).eval()
    members = 3
    _, t, cond = _inputs(2, 1, 32, 32)
    x_members = torch.randn(2 * members, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    t_members = t.repeat_interleave(members)
    with torch.no_grad():
        feats = repeat_task_features(model.encode_task(cond), members)
        assert all(f.shape[0] == 2 * members for f in feats)
        out = model(x_members, t_members, task_features=feats)
        ref = model(x_members, t_members, cond.repeat_interleave(members, dim=0))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_repeat_task_features_order_and_validation():
    feats = (torch.arange(2.0).reshape(2, 1), torch.arange(4.0).reshape(2, 2, 1))
    out = repeat_task_features(feats, 2)
    assert out[0].flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert out[1][:, :, 0].tolist() == [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert repeat_task_features(feats, 1)[1].shape == (2, 2, 1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError):
            repeat_task_features(feats, bad)


def test_wrong_task_features_batch_raises_with_hint(make):
    model = make("flex").eval()
    x_t, t, cond = _inputs(2, 1, 32, 32)
    feats = model.encode_task(cond)
    with pytest.raises(ShapeError, match=r"repeat_task_features\(features, 2\)"):
        model(torch.zeros(4, 1, 32, 32), 0.5, task_features=feats)
    with pytest.raises(ShapeError, match="expected"):
        model(torch.zeros(2, 1, 32, 48), 0.5, task_features=feats)
    with pytest.raises(ShapeError, match="tensors"):
        model(x_t, t, task_features=feats[:-1])
    with pytest.raises(ShapeError, match="cond"):
        model(x_t, t)
    with pytest.raises(ShapeError, match="batch and grid must match"):
        model(x_t, t, cond[:1])
    with pytest.raises(ShapeError, match="cond has 2 channels, expected 1"):
        model(x_t, t, torch.zeros(2, 2, 32, 32))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_time_argument_scalar_or_vector(make, perturb, backbone):
    model = perturb(make(backbone)).eval()
    x_t, _, cond = _inputs(2, 1, 32, 32)
    with torch.no_grad():
        a = model(x_t, 0.25, cond)
        b = model(x_t, torch.tensor([0.25, 0.25], dtype=torch.float64), cond)
        c = model(x_t, torch.tensor([0.25, 0.75]), cond)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[0], c[0])
    assert (a[1] - c[1]).abs().max() > 1e-5  # time changes the output
    with pytest.raises(ShapeError, match="t must be"):
        model(x_t, torch.zeros(3), cond)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_physical_condition_changes_output_once_head_is_nonzero(make, perturb, backbone):
    model = make(backbone, physical_condition=True).eval()
    x_t, t, cond = _inputs(2, 1, 32, 32)
    with torch.no_grad():
        a0 = model(x_t, t, cond, phys=torch.tensor([0.1, 0.1]))
        b0 = model(x_t, t, cond, phys=torch.tensor([0.5, 0.5]))
        assert torch.count_nonzero(a0) == 0
        assert torch.count_nonzero(b0) == 0
        perturb(model)
        a = model(x_t, t, cond, phys=torch.tensor([0.1, 0.1]))
        b = model(x_t, t, cond, phys=torch.tensor([0.5, 0.5]))
        c = model(x_t, t, cond, phys=0.1)
    assert (a - b).abs().max() > 1e-4
    torch.testing.assert_close(a, c)
    with pytest.raises(ConfigError, match="physical_condition=True"):
        model(x_t, t, cond)


def test_phys_on_model_without_physical_condition_raises(make):
    model = make("flex")
    x_t, t, cond = _inputs(1, 1, 32, 32)
    with pytest.raises(ConfigError, match="physical_condition=False"):
        model(x_t, t, cond, phys=torch.tensor([0.2]))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forecast_task_shapes(make, perturb, backbone):
    model = perturb(make(backbone, task="forecast", past_frames=3, in_channels=2)).eval()
    gen = torch.Generator().manual_seed(0)
    past = torch.randn(2, 6, 32, 48, generator=gen)
    x_t = torch.randn(2, 2, 32, 48, generator=gen)
    with torch.no_grad():
        out = model(x_t, 0.5, past)
    assert out.shape == (2, 2, 32, 48)
    assert model.config.task == "forecast"
    with pytest.raises(ShapeError, match="past_frames=3"):
        model.encode_task(torch.randn(2, 2, 32, 48))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_autocast_bf16_forward_and_backward(make, perturb, backbone):
    model = perturb(make(backbone, physical_condition=True)).train()
    x_t, t, cond = _inputs(2, 1, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x_t, t, cond, phys=torch.tensor([0.1, 0.4]))
        loss = (out.float() - x_t).pow(2).mean()
    assert out.shape == x_t.shape
    assert torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_determinism_for_a_fixed_seed(make, backbone):
    a, b = make(backbone), make(backbone)
    sa = {k: v.clone() for k, v in a.state_dict().items()}
    sb = b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for model in (a, b):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)  # non-zero head
    x_t, t, cond = _inputs(2, 1, 32, 32)
    outs = []
    for model in (a, b):
        torch.manual_seed(3)  # same dropout masks in training mode
        outs.append(model.train()(x_t, t, cond))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.manual_seed(123)
    c = make(backbone)  # make() reseeds: the global RNG state before does not matter
    assert all(torch.equal(sa[k], c.state_dict()[k]) for k in sa)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_gradient_checkpointing_gives_the_same_gradients(make, perturb, backbone):
    plain = perturb(make(backbone)).train()
    ckpt = make(backbone, gradient_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x_t, t, cond = _inputs(2, 1, 32, 32)

    calls = {"n": 0}

    def count(*args):
        calls["n"] += 1

    first_block = next(m for m in ckpt.modules() if type(m).__name__ == "ResBlock")
    first_block.register_forward_pre_hook(count)  # recomputation may stop early

    grads = []
    for model in (plain, ckpt):
        torch.manual_seed(7)  # dropout is active: checkpointing must replay the same masks
        loss = (model(x_t, t, cond) - x_t).pow(2).mean()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert calls["n"] == 2  # forward, then recomputed during backward
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7)

    calls["n"] = 0
    with torch.no_grad():
        ckpt(x_t, t, cond)
    assert calls["n"] == 1  # no checkpointing without gradients
    ckpt.eval()
    ckpt(x_t, t, cond)
    assert calls["n"] == 2  # nor in eval mode


@pytest.mark.parametrize("backbone", BACKBONES)
def test_model_keeps_its_config(make, backbone):
    model = make(backbone, in_channels=2)
    assert model.config.backbone == backbone
    assert model.config.in_channels == 2


@pytest.mark.parametrize("backbone", BACKBONES)
def test_models_cast_to_other_dtypes(make, perturb, backbone):
    model = perturb(make(backbone, physical_condition=True)).eval()
    x_t, t, cond = _inputs(2, 1, 32, 32)
    phys = torch.tensor([0.1, 0.3])
    with torch.no_grad():
        ref = model(x_t, t, cond, phys=phys)
        model.double()  # float64 agrees with float32
        out64 = model(x_t.double(), t.double(), cond.double(), phys=phys.double())
        assert out64.dtype == torch.float64
        torch.testing.assert_close(out64.float(), ref, rtol=1e-4, atol=1e-5)
        model.to(torch.bfloat16)  # a bf16 model takes bf16 inputs and stays close
        out16 = model(x_t.bfloat16(), t, cond.bfloat16(), phys=phys)
    assert out16.dtype == torch.bfloat16
    assert (out16.float() - ref).abs().max() < 0.1 * ref.abs().max()
