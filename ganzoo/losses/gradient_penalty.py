"""The WGAN-GP gradient penalty, usable with any discriminator and any GAN loss."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from ganzoo.errors import ComponentError

PenaltyMode = Literal["mixed", "real", "fake"]
_MODES: tuple[str, ...] = ("mixed", "real", "fake")


def gradient_penalty(
    discriminator: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    mode: PenaltyMode = "mixed",
    constant: float = 1.0,
) -> torch.Tensor:
    """``weight * mean((||grad_x D(x)||_2 - constant)^2)``, the WGAN-GP penalty (Gulrajani et al. 2017).

    Args:
        discriminator: the network being regularised.
        real: a batch of real images.
        fake: a batch of generated images of the same shape (detached here: the penalty only
            trains the discriminator).
        weight: the penalty weight (lambda); 0 or less returns a zero tensor and skips the work.
        mode: where the gradient is taken: ``"mixed"`` (random interpolations of real and fake,
            one mixing factor per sample), ``"real"`` or ``"fake"``.
        constant: the target gradient norm.

    Returns:
        A scalar fp32 tensor with a graph back to the discriminator's parameters. For a
        multiscale discriminator (list output) the per-scale penalties are summed.
    """
    if mode not in _MODES:
        raise ComponentError(f"gradient penalty mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if real.shape != fake.shape:
        raise ComponentError(
            f"gradient penalty needs real and fake batches of the same shape, got {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    if weight <= 0:
        return real.new_zeros((), dtype=torch.float32)

    # Second-order gradients in half precision overflow/underflow easily, so the whole
    # penalty (forward pass included) runs in fp32 even inside an autocast region.
    with torch.autocast(device_type=real.device.type, enabled=False):
        real32 = real.detach().float()
        fake32 = fake.detach().float()
        if mode == "real":
            points = real32
        elif mode == "fake":
            points = fake32
        else:
            alpha = torch.rand((real32.shape[0],) + (1,) * (real32.dim() - 1), device=real32.device)
            points = alpha * real32 + (1.0 - alpha) * fake32
        points.requires_grad_(True)

        output = discriminator(points)
        scales = [output] if isinstance(output, torch.Tensor) else list(output)
        penalties = []
        for scale in scales:
            (grad,) = torch.autograd.grad(
                outputs=scale,
                inputs=points,
                grad_outputs=torch.ones_like(scale),
                create_graph=True,
                retain_graph=True,
            )
            # The tiny offset keeps the norm differentiable where the gradient is exactly zero.
            norms = (grad.flatten(1) + 1e-16).norm(2, dim=1)
            penalties.append(((norms - constant) ** 2).mean())
        return torch.stack(penalties).sum() * weight
