"""GAN losses and the gradient penalty: values, multiscale sums, devices and precision."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ganzoo
from ganzoo.errors import ComponentError
from ganzoo.losses import gradient_penalty

LOSSES = ganzoo.list_components("gan_loss")["gan_loss"]


def test_builtin_losses_are_registered() -> None:
    assert {"lsgan", "vanilla", "wgangp", "hinge"} <= set(LOSSES)


def test_lsgan_is_mse_to_one_and_zero() -> None:
    loss = ganzoo.build("gan_loss", "lsgan")
    pred = torch.tensor([[0.5, 2.0], [-1.0, 1.0]])
    assert loss(pred, True).item() == pytest.approx(((pred - 1) ** 2).mean().item())
    assert loss(pred, False).item() == pytest.approx((pred**2).mean().item())


def test_lsgan_custom_labels() -> None:
    loss = ganzoo.build("gan_loss", "lsgan", target_real_label=0.9, target_fake_label=0.1)
    pred = torch.full((3, 1, 4, 4), 0.9)
    assert loss(pred, True).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(pred, False).item() == pytest.approx(0.64, rel=1e-5)


def test_vanilla_matches_bce_of_sigmoid() -> None:
    loss = ganzoo.build("gan_loss", "vanilla")
    logits = torch.randn(2, 1, 6, 6)
    expected_real = F.binary_cross_entropy(torch.sigmoid(logits), torch.ones_like(logits))
    expected_fake = F.binary_cross_entropy(torch.sigmoid(logits), torch.zeros_like(logits))
    assert loss(logits, True).item() == pytest.approx(expected_real.item(), rel=1e-5)
    assert loss(logits, False).item() == pytest.approx(expected_fake.item(), rel=1e-5)


def test_vanilla_is_stable_for_confident_logits() -> None:
    loss = ganzoo.build("gan_loss", "vanilla")
    logits = torch.tensor([100.0, -100.0], requires_grad=True)
    value = loss(logits, True)
    value.backward()
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(50.0, rel=1e-4)  # (0 + 100) / 2
    assert torch.isfinite(logits.grad).all()


def test_wgangp_signs() -> None:
    loss = ganzoo.build("gan_loss", "wgangp")
    pred = torch.tensor([1.0, 3.0])
    assert loss(pred, True).item() == pytest.approx(-2.0)
    assert loss(pred, False).item() == pytest.approx(2.0)
    assert loss(pred, True, for_discriminator=False).item() == pytest.approx(-2.0)


def test_hinge_discriminator_and_generator() -> None:
    loss = ganzoo.build("gan_loss", "hinge")
    pred = torch.tensor([-2.0, 0.5, 3.0])
    # D real: relu(1 - p) = [3, 0.5, 0]; D fake: relu(1 + p) = [0, 1.5, 4]
    assert loss(pred, True).item() == pytest.approx(3.5 / 3)
    assert loss(pred, False).item() == pytest.approx(5.5 / 3)
    assert loss(pred, True, for_discriminator=False).item() == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="target_is_real=True"):
        loss(pred, False, for_discriminator=False)


@pytest.mark.parametrize("name", LOSSES)
def test_list_prediction_sums_scales(name: str) -> None:
    loss = ganzoo.build("gan_loss", name)
    scales = [torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4)]
    for real in (True, False):
        total = loss(scales, real)
        assert total.dim() == 0
        expected = loss(scales[0], real) + loss(scales[1], real)
        assert total.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_is_fp32_scalar_and_differentiable(name: str) -> None:
    loss = ganzoo.build("gan_loss", name)
    pred = torch.randn(2, 1, 5, 5, dtype=torch.bfloat16, requires_grad=True)
    value = loss(pred, True, for_discriminator=False)
    assert value.shape == () and value.dtype == torch.float32
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad.float()).all()


@pytest.mark.parametrize("name", LOSSES)
def test_loss_holds_no_device_bound_state(name: str) -> None:
    # Targets are built from the prediction, so the loss works on any device without .to().
    loss = ganzoo.build("gan_loss", name)
    assert list(loss.buffers()) == [] and list(loss.parameters()) == []
    with torch.device("meta"):
        pred = torch.empty(2, 1, 4, 4)
    assert loss(pred, True).device.type == "meta"


def test_empty_prediction_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        ganzoo.build("gan_loss", "lsgan")([], True)


class _LinearCritic(nn.Module):
    """D(x) = sum(w * x) per sample, so grad_x D = w exactly."""

    def __init__(self, shape: tuple[int, ...], scale: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full(shape, scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("mode", ["mixed", "real", "fake"])
def test_gradient_penalty_exact_value_for_linear_critic(mode: str) -> None:
    shape = (3, 2, 2)  # 12 elements: ||w|| = 0.5 * sqrt(12)
    critic = _LinearCritic(shape, 0.5)
    real, fake = torch.randn(4, *shape), torch.randn(4, *shape)
    gp = gradient_penalty(critic, real, fake, weight=10.0, mode=mode, constant=1.0)
    expected = 10.0 * (0.5 * 12**0.5 - 1.0) ** 2
    assert gp.item() == pytest.approx(expected, rel=1e-5)
    gp.backward()
    assert critic.w.grad is not None and torch.isfinite(critic.w.grad).all()


def test_gradient_penalty_is_zero_at_target_norm() -> None:
    critic = _LinearCritic((1, 2, 2), 0.5)  # ||w|| = 1
    gp = gradient_penalty(critic, torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2))
    assert gp.item() == pytest.approx(0.0, abs=1e-8)


def test_gradient_penalty_does_not_reach_the_generator() -> None:
    critic = _LinearCritic((1, 2, 2), 2.0)
    fake_source = torch.randn(2, 1, 2, 2, requires_grad=True)
    gradient_penalty(critic, torch.randn(2, 1, 2, 2), fake_source * 3, mode="fake").backward()
    assert fake_source.grad is None


def test_gradient_penalty_sums_scales() -> None:
    a, b = _LinearCritic((1, 2, 2), 1.0), _LinearCritic((1, 2, 2), 0.25)  # norms 2 and 0.5
    real, fake = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    gp = gradient_penalty(lambda x: [a(x), b(x)], real, fake, weight=1.0)
    assert gp.item() == pytest.approx((2 - 1) ** 2 + (0.5 - 1) ** 2, rel=1e-5)


def test_gradient_penalty_runs_in_fp32_under_autocast() -> None:
    seen: list[torch.dtype] = []
    conv = nn.Conv2d(1, 1, 3, padding=1)

    def critic(x: torch.Tensor) -> torch.Tensor:
        out = conv(x)
        seen.append(out.dtype)
        return out

    real, fake = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(real).dtype == torch.bfloat16  # autocast is really on
        gp = gradient_penalty(critic, real.bfloat16(), fake.bfloat16())
    assert seen == [torch.float32]
    assert gp.dtype == torch.float32 and torch.isfinite(gp)


def test_gradient_penalty_weight_zero_skips_the_discriminator() -> None:
    def critic(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("should not be called")

    gp = gradient_penalty(critic, torch.randn(2, 3), torch.randn(2, 3), weight=0.0)
    assert gp.item() == 0.0


def test_gradient_penalty_rejects_bad_arguments() -> None:
    critic = _LinearCritic((4,), 1.0)
    with pytest.raises(ComponentError, match="mode"):
        gradient_penalty(critic, torch.randn(2, 4), torch.randn(2, 4), mode="between")  # type: ignore[arg-type]
    with pytest.raises(ComponentError, match="same shape"):
        gradient_penalty(critic, torch.randn(2, 4), torch.randn(3, 4))
