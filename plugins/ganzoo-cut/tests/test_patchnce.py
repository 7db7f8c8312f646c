"""PatchNCE against a hand computation, and the patch sampler's heads and locations."""
from __future__ import annotations

import math

import pytest
import torch

from ganzoo_cut import PatchNCELoss, PatchSampleMLP, patchnce_loss


def by_hand(logits: list[float]) -> float:
    """Cross-entropy of candidate 0 among ``logits``."""
    return -logits[0] + math.log(sum(math.exp(v) for v in logits))


def test_one_image_two_patches_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    tau = 0.5
    # query 0: positive q0.k0 = 1, negatives: its own location masked (-10), q0.k1 = 0.6
    # query 1: positive q1.k1 = 0.8, negatives: q1.k0 = 0, its own location masked
    expected = [by_hand([1 / tau, -10 / tau, 0.6 / tau]), by_hand([0.8 / tau, 0.0 / tau, -10 / tau])]
    loss = patchnce_loss(q, k, tau=tau, images=1)
    assert loss.shape == (2,)
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)


def test_negatives_come_from_the_query_image_unless_asked() -> None:
    # two images, one patch each: alone in its image, a query has only its masked self as negative
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    tau = 0.07
    per_image = patchnce_loss(q, k, tau=tau, images=2)
    assert per_image.tolist() == pytest.approx([by_hand([0.8 / tau, -10 / tau]), by_hand([0.8 / tau, -10 / tau])],
                                               rel=1e-6)
    # across the minibatch the other image's patch is a negative too
    pooled = patchnce_loss(q, k, tau=tau, images=2, all_negatives_from_minibatch=True)
    assert pooled.tolist() == pytest.approx([by_hand([0.8 / tau, -10 / tau, 0.6 / tau]),
                                             by_hand([0.8 / tau, 0.6 / tau, -10 / tau])], rel=1e-6)
    assert PatchNCELoss(tau)(q, k, images=2).tolist() == per_image.tolist()


def test_keys_carry_no_gradient_and_a_perfect_match_is_cheap() -> None:
    q = torch.nn.functional.normalize(torch.randn(16, 8), dim=1).requires_grad_()
    k = q.detach().clone().requires_grad_()
    loss = patchnce_loss(q, k, tau=0.07, images=2).mean()
    loss.backward()
    assert k.grad is None and q.grad is not None
    shuffled = patchnce_loss(q.detach(), k.detach().roll(1, 0), tau=0.07, images=2).mean()
    assert loss < shuffled


def test_sampler_shares_locations_and_normalises() -> None:
    torch.manual_seed(0)
    F = PatchSampleMLP([3, 5], nc=16)
    assert [tuple(h[0].weight.shape) for h in F.heads] == [(16, 3), (16, 5)]
    feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    out, where = F(feats, num_patches=6)
    assert [tuple(o.shape) for o in out] == [(12, 16), (8, 16)]  # min(6, H*W) locations x 2 images
    assert [len(w) for w in where] == [6, 4] and len(set(where[0].tolist())) == 6
    torch.testing.assert_close(out[0].norm(dim=1), torch.ones(12))
    again, same = F(feats, num_patches=6, locations=where)
    assert all(torch.equal(a, b) for a, b in zip(out, again)) and same == where
    # without heads: the sampled feature vectors themselves, normalised
    plain = PatchSampleMLP([3], use_mlp=False)
    assert list(plain.parameters()) == []
    rows, (loc,) = plain(feats[:1], num_patches=3)
    picked = feats[0].permute(0, 2, 3, 1).flatten(1, 2)[:, loc, :].flatten(0, 1)
    torch.testing.assert_close(rows[0], picked / picked.norm(dim=1, keepdim=True))
