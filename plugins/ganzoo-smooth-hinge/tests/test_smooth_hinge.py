"""The smooth hinge plugin: registration through its entry-point function, limits, gradients."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the plugin folder, when not pip-installed

import ganzoo_smooth_hinge  # noqa: E402
from ganzoo import build  # noqa: E402
from ganzoo.registry import registry  # noqa: E402


@pytest.fixture(autouse=True)
def registered() -> None:
    ganzoo_smooth_hinge.register_components()
    ganzoo_smooth_hinge.register_components()  # a second call is harmless


def test_tends_to_the_hinge_as_temperature_goes_to_zero() -> None:
    prediction = torch.tensor([[-2.0, -0.5, 0.3, 1.5, 3.0]])
    hinge = build("gan_loss", "hinge")
    sharp = build("gan_loss", "smooth_hinge", temperature=1e-3)
    for real in (True, False):
        assert sharp(prediction, real).item() == pytest.approx(hinge(prediction, real).item(), abs=1e-3)
    assert sharp(prediction, True, for_discriminator=False).item() == pytest.approx(
        hinge(prediction, True, for_discriminator=False).item())


def test_keeps_a_gradient_past_the_margin_unlike_the_hinge() -> None:
    confident = torch.tensor([[3.0]], requires_grad=True)  # far past the margin of 1
    build("gan_loss", "smooth_hinge", temperature=1.0)(confident, True).backward()
    assert confident.grad is not None and confident.grad.item() < 0
    hinge_pred = torch.tensor([[3.0]], requires_grad=True)
    build("gan_loss", "hinge")(hinge_pred, True).backward()
    assert hinge_pred.grad.item() == 0.0


def test_multiscale_predictions_are_summed() -> None:
    loss = build("gan_loss", "smooth_hinge")
    a, b = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 2, 2)
    assert loss([a, b], False).item() == pytest.approx(loss(a, False).item() + loss(b, False).item(), rel=1e-6)


def test_another_owner_of_the_name_is_still_a_collision() -> None:
    from ganzoo.errors import ComponentError

    losses = registry("gan_loss")
    original = losses.get("smooth_hinge")
    losses.remove("smooth_hinge")
    try:
        losses.add("smooth_hinge", lambda: None, description="someone else's")
        with pytest.raises(ComponentError, match="already registered"):
            ganzoo_smooth_hinge.register_components()
    finally:
        losses.remove("smooth_hinge")
        losses.add("smooth_hinge", original.factory)
