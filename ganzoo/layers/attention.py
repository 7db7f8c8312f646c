"""Self-attention (SAGAN, Zhang et al. 2019) for the generators and discriminators.

A feature map ``x`` (N, C, H, W) attends to itself: 1x1 convolutions give a query and a key of
``C // 8`` channels and a value of ``C`` channels at every position; each position's output is the
softmax-weighted sum of the values over all positions, added back to the input scaled by a learned
``gamma``. ``gamma`` starts at 0, so a network with attention computes exactly what the same network
without it does until training moves ``gamma``: the block learns local features first and long-range
ones later, as in the paper.

The networks take ``attention`` as a list of positions (U-Net levels, ResNet blocks, PatchGAN layers);
``[]``, the default, adds nothing (same parameters and state-dict keys as before).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn

from ganzoo.errors import ComponentError

#: The query/key width is the channel count divided by this (the paper's C/8).
QK_REDUCTION = 8


class SelfAttention(nn.Module):
    """SAGAN self-attention block: ``x + gamma * attention(x)``, with ``gamma`` learned from 0.

    Args:
        channels: channels of the feature map it is applied to.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ComponentError(f"self-attention: channels must be a positive integer, got {channels!r}")
        inner = max(1, channels // QK_REDUCTION)
        self.channels = channels
        self.query = nn.Conv2d(channels, inner, kernel_size=1)
        self.key = nn.Conv2d(channels, inner, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, C/8)
        key = self.key(x).flatten(2)  # (N, C/8, HW)
        # attention[j, i]: how much position j reads from position i (each row sums to 1)
        attention = torch.softmax(torch.bmm(query, key), dim=-1)  # (N, HW, HW)
        value = self.value(x).flatten(2)  # (N, C, HW)
        out = torch.bmm(value, attention.transpose(1, 2)).view(n, c, h, w)
        return x + self.gamma * out


def check_positions(network: str, attention: Iterable[int] | None, allowed: Sequence[int], what: str,
                    fix: str) -> list[int]:
    """The sorted positions of an ``attention`` argument; a ComponentError naming the allowed range otherwise."""
    if attention is None:
        return []
    if isinstance(attention, (str, bytes)) or not isinstance(attention, Iterable):
        raise ComponentError(f"{network}: attention must be a list of {what}s, got {attention!r}",
                             hint=f"e.g. attention: [{allowed[len(allowed) // 2] if allowed else 0}]")
    positions = list(attention)
    for position in positions:
        if isinstance(position, bool) or not isinstance(position, int) or position not in allowed:
            shown = f"{allowed[0]}..{allowed[-1]}" if allowed else "(none)"
            raise ComponentError(f"{network}: attention {what} {position!r} does not exist; {what}s are {shown}",
                                 hint=fix)
    if len(set(positions)) != len(positions):
        raise ComponentError(f"{network}: attention lists a {what} twice: {positions}")
    return sorted(positions)


__all__ = ["QK_REDUCTION", "SelfAttention", "check_positions"]
