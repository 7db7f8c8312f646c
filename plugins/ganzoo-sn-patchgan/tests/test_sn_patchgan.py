"""The spectral-norm PatchGAN plugin: registration, shapes, the spectral-norm bound, meta builds."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the plugin folder, when not pip-installed

import ganzoo_sn_patchgan  # noqa: E402
from ganzoo import build, get_component  # noqa: E402


def test_registered_under_its_name() -> None:
    entry = get_component("discriminator", "sn_patchgan")
    assert entry.factory is ganzoo_sn_patchgan.SpectralNormPatchGAN
    assert "spectral" in entry.description.lower()


@pytest.mark.parametrize("n_layers, side, out_side", [(3, 64, 6), (2, 32, 6)])
def test_score_map_shape_matches_the_plain_patchgan(n_layers: int, side: int, out_side: int) -> None:
    sn = build("discriminator", "sn_patchgan", input_nc=6, ndf=8, n_layers=n_layers)
    plain = build("discriminator", "nlayer", input_nc=6, ndf=8, n_layers=n_layers, norm="none")
    x = torch.randn(2, 6, side, side)
    assert sn(x).shape == plain(x).shape == (2, 1, out_side, out_side)


def test_every_conv_has_spectral_norm_at_most_one_after_power_iterations() -> None:
    net = build("discriminator", "sn_patchgan", input_nc=3, ndf=8, n_layers=2)
    net.train()
    x = torch.randn(2, 3, 32, 32)
    for _ in range(30):  # each training-mode forward refines the power-iteration estimate
        net(x)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4
    for conv in convs:
        weight = conv.weight.detach().flatten(1)
        sigma = torch.linalg.matrix_norm(weight, ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_builds_on_the_meta_device_without_memory() -> None:
    with torch.device("meta"):
        net = build("discriminator", "sn_patchgan", input_nc=6, ndf=64, n_layers=3)
    assert all(p.is_meta for p in net.parameters())


def test_wrong_channel_count_names_the_fix() -> None:
    net = build("discriminator", "sn_patchgan", input_nc=6, ndf=8, n_layers=2)
    from ganzoo.errors import ComponentError

    with pytest.raises(ComponentError, match="input_nc=6"):
        net(torch.randn(1, 3, 32, 32))


def test_the_core_switch_builds_the_same_network() -> None:
    """ganzoo's ``nlayer`` with ``norm: none, spectral_norm: true`` has this plugin's layers and keys."""
    torch.manual_seed(0)
    plugin = build("discriminator", "sn_patchgan", input_nc=6, ndf=8, n_layers=2)
    torch.manual_seed(0)
    core = build("discriminator", "nlayer", input_nc=6, ndf=8, n_layers=2, norm="none", spectral_norm=True)
    ours, theirs = plugin.state_dict(), core.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    core.load_state_dict(ours)
    plugin.eval(), core.eval()
    x = torch.randn(2, 6, 32, 32)
    assert torch.equal(plugin(x), core(x))
