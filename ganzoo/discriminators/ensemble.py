"""Ensemble discriminator: several registered discriminators judging the same image.

Each member returns one score map or a list of them (multiscale); the ensemble returns all of
them as one list, so the GAN loss adds one term per map, exactly as for a multiscale
discriminator. A typical pairing is a PatchGAN, which judges structure, with a PixelGAN, which
judges every pixel's colour on its own::

    D: {type: ensemble, input_nc: 3, members: [{type: basic_128_multi, ndf: 32, num_D: 2}, {type: pixel, norm: none}]}
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from ganzoo.discriminators.nlayer import check_discriminator_input, check_positive
from ganzoo.errors import ComponentError
from ganzoo.layers.spectral import apply_spectral_norm
from ganzoo.registry import build, register


@register("discriminator", "ensemble")
class EnsembleDiscriminator(nn.Module):
    """Several discriminators judging the same image; their score maps are summed by the GAN loss.

    Args:
        input_nc: channels of the judged image, given to every member.
        members: one dict per member: ``type`` (a registered discriminator name) and its arguments
            (``input_nc`` comes from the ensemble). Default: the 70x70 PatchGAN and the PixelGAN.
        spectral_norm: spectral normalisation on every conv of every member (a member may also ask
            for it alone with its own ``spectral_norm: true``).
    """

    def __init__(self, input_nc: int = 3, members: list[dict[str, Any]] | None = None,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        check_positive("discriminator 'ensemble'", input_nc=input_nc)
        if members is None:
            members = [{"type": "basic"}, {"type": "pixel"}]
        if not members or not isinstance(members, list):
            raise ComponentError("discriminator 'ensemble': members must be a non-empty list of discriminators",
                                 hint="e.g. members: [{type: basic, ndf: 64}, {type: pixel}]")
        nets = []
        for index, member in enumerate(members):
            if not isinstance(member, dict) or "type" not in member:
                raise ComponentError(f"discriminator 'ensemble': members[{index}] is {member!r}; expected a "
                                     "mapping with a 'type' (a registered discriminator) and its arguments")
            arguments = {k: v for k, v in member.items() if k != "type"}
            if arguments.setdefault("input_nc", input_nc) != input_nc:
                raise ComponentError(f"discriminator 'ensemble': members[{index}].input_nc is "
                                     f"{arguments['input_nc']}, but the ensemble judges {input_nc}-channel images",
                                     hint="leave input_nc out of the members; the ensemble passes its own")
            if member["type"] == "ensemble":
                raise ComponentError(f"discriminator 'ensemble': members[{index}] is itself an ensemble",
                                     hint="list its members directly")
            try:
                nets.append(build("discriminator", member["type"], **arguments))
            except ComponentError as exc:
                raise ComponentError(f"discriminator 'ensemble': members[{index}]: {exc.message}",
                                     hint=exc.hint) from None
        self.input_nc = input_nc
        self.members = nn.ModuleList(nets)
        self.min_size = max(int(getattr(net, "min_size", 1)) for net in nets)
        self.size_multiple = math.lcm(*(int(getattr(net, "size_multiple", 1)) for net in nets))
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Score maps for ``x`` [N, input_nc, H, W]: every member's maps, in member order."""
        check_discriminator_input(self, x, self.min_size, fix="members that need smaller images")
        outputs: list[torch.Tensor] = []
        for net in self.members:
            scores = net(x)
            outputs.extend([scores] if isinstance(scores, torch.Tensor) else scores)
        return outputs
