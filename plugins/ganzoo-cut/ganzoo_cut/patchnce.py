"""PatchNCE (Park et al., 2020): each output patch must pick out the input patch at its own location.

For one layer, ``q`` holds the projected features of ``P`` sampled patches of the *output* image and
``k`` those of the same locations in the *input* image (rows L2-normalised, ``N * P`` rows for a batch
of ``N``). Row ``i`` of ``q`` is a query: its positive is row ``i`` of ``k``, its negatives the other
patches of the same image (or of the whole batch, ``all_negatives_from_minibatch``, which the
official code uses for single-image translation only). The loss per query is the cross-entropy of
picking the positive among ``1 + P`` candidates, the logits being dot products divided by the
temperature ``tau``; a query's own location among the negatives is masked with a logit of -10 / tau.
Keys carry no gradient.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: The logit (before the temperature) given to a query's own location among its negatives.
MASKED_LOGIT = -10.0


def patchnce_loss(q: torch.Tensor, k: torch.Tensor, *, tau: float = 0.07, images: int = 1,
                  all_negatives_from_minibatch: bool = False) -> torch.Tensor:
    """The PatchNCE loss of every query: a tensor of ``q.shape[0]`` values (not reduced).

    Args:
        q: queries (N * P, C), image-major (the P patches of image 0 first).
        k: keys at the same locations (N * P, C); detached here.
        tau: temperature.
        images: N, the number of images the rows come from.
        all_negatives_from_minibatch: negatives from every image of the batch instead of the query's own.
    """
    rows, dim = q.shape
    k = k.detach()
    with torch.autocast(q.device.type, enabled=False):
        q, k = q.float(), k.float()
        positive = (q * k).sum(dim=1, keepdim=True)                     # (rows, 1)
        groups = 1 if all_negatives_from_minibatch else images
        qg, kg = q.reshape(groups, -1, dim), k.reshape(groups, -1, dim)
        per_group = qg.shape[1]
        negative = torch.bmm(qg, kg.transpose(1, 2))                   # (groups, per_group, per_group)
        own = torch.eye(per_group, dtype=torch.bool, device=q.device).unsqueeze(0)
        negative = negative.masked_fill(own, MASKED_LOGIT).reshape(-1, per_group)
        logits = torch.cat([positive, negative], dim=1) / tau
        target = torch.zeros(rows, dtype=torch.long, device=q.device)  # the positive is candidate 0
        return F.cross_entropy(logits, target, reduction="none")


class PatchNCELoss(nn.Module):
    """:func:`patchnce_loss` with its settings fixed (the official ``PatchNCELoss``, one per layer)."""

    def __init__(self, tau: float = 0.07, all_negatives_from_minibatch: bool = False) -> None:
        super().__init__()
        self.tau = float(tau)
        self.all_negatives_from_minibatch = bool(all_negatives_from_minibatch)

    def forward(self, q: torch.Tensor, k: torch.Tensor, images: int = 1) -> torch.Tensor:
        return patchnce_loss(q, k, tau=self.tau, images=images,
                             all_negatives_from_minibatch=self.all_negatives_from_minibatch)
