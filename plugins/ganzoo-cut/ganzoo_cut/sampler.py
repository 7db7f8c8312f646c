"""The patch sampler with its projection heads (the official ``PatchSampleF``, network F of CUT).

For each tapped feature map it picks ``num_patches`` random locations (one draw per layer, the same
locations for every image of the batch, and the same again for the other image of a pair when the
locations are passed back in), projects each location's feature vector with that layer's head — a
2-layer MLP, ``Linear(C, 256) - ReLU - Linear(256, 256)`` — and L2-normalises it.

A head's input width is the channel count of its layer, known only once the generator has run:
the official code creates the heads at their first use. In ganzoo the model creates them in its
``materialize`` hook, which the Trainer (and ``ganzoo bench``) call before the optimizers exist.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

#: Added to a vector's norm before dividing by it (the official ``Normalize``).
NORM_EPS = 1e-7


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` divided by their Euclidean norm (+ 1e-7)."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)


def sample_locations(height: int, width: int, num_patches: int, device: torch.device) -> torch.Tensor:
    """``min(num_patches, H * W)`` distinct flat locations, drawn by torch's CPU generator (checkpointed)."""
    return torch.randperm(height * width)[:min(num_patches, height * width)].to(device)


class PatchSampleMLP(nn.Module):
    """Sample patches from each feature map and project them with one MLP head per layer.

    Args:
        channels: channel count of each tapped layer, in tap order.
        nc: width of both layers of every head (the official ``--netF_nc``).
        use_mlp: False samples and normalises only (the official ``--netF sample``; no parameters).
    """

    def __init__(self, channels: Sequence[int], nc: int = 256, use_mlp: bool = True) -> None:
        super().__init__()
        self.channels = [int(c) for c in channels]
        self.nc = nc
        self.use_mlp = use_mlp
        self.heads = nn.ModuleList(
            [nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)) for c in self.channels] if use_mlp else [])

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int,
                locations: Sequence[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Projected, normalised patches (N * P, nc) per layer, and the locations used (draw new ones when None)."""
        if len(feats) != len(self.channels):
            raise ValueError(f"{len(feats)} feature maps for {len(self.channels)} heads")
        out, used = [], []
        for i, feat in enumerate(feats):
            n, c, h, w = feat.shape
            where = sample_locations(h, w, num_patches, feat.device) if locations is None else locations[i]
            # (N, C, H, W) -> (N, H*W, C), rows of the chosen locations, image-major
            patches = feat.permute(0, 2, 3, 1).flatten(1, 2)[:, where, :].flatten(0, 1)
            if self.use_mlp:
                patches = self.heads[i](patches)
            out.append(l2_normalize(patches))
            used.append(where)
        return out, used
