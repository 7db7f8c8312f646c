"""z_grid: the latent code laid out as a grid of local codes (ganzoo.layers.latent), in E, G and BicycleGAN."""
from __future__ import annotations

import pytest
import torch

from ganzoo.encoders.conv import ConvEncoder, LatentHead
from ganzoo.encoders.resnet import ResNetEncoder
from ganzoo.errors import ComponentError, RecipeError
from ganzoo.generators.resnet import ResnetGenerator
from ganzoo.generators.unet import UNetGenerator
from ganzoo.layers.latent import latent_map, tile_latent
from ganzoo.models import BicycleGAN
from helpers import TINY, parts_of, variant, variant_batch


def test_a_one_cell_grid_is_the_global_code_repeated_everywhere() -> None:
    z = torch.randn(2, 6)
    x = torch.zeros(2, 1, 5, 7)
    tiled = tile_latent(x, z)
    assert tiled.shape == (2, 7, 5, 7)
    assert torch.equal(tiled[:, 1:], z[:, :, None, None].expand(-1, -1, 5, 7))


def test_each_cell_covers_its_region_channel_major() -> None:
    z = torch.arange(2 * 8, dtype=torch.float32).view(2, 8)  # 2 channels on a 2x2 grid
    maps = latent_map(z, 2, 4, 6)
    assert maps.shape == (2, 2, 4, 6)
    cells = z.view(2, 2, 2, 2)
    for row in range(2):
        for col in range(2):
            region = maps[:, :, 2 * row:2 * row + 2, 3 * col:3 * col + 3]
            assert torch.equal(region, cells[:, :, row, col, None, None].expand_as(region))
    # A level coarser than the grid gets the cells' mean.
    assert torch.allclose(latent_map(z, 2, 1, 1)[..., 0, 0], cells.mean((2, 3)))


def test_the_encoder_head_gives_every_cell_its_own_code_in_the_generator_layout() -> None:
    torch.manual_seed(0)
    head = LatentHead(5, nz=12, vae=True, z_grid=2)  # 3 numbers per cell
    features = torch.zeros(1, 5, 4, 4)
    features[:, :, :2, 2:] = torch.randn(1, 5, 1, 1)  # only the top-right cell sees anything
    mu, logvar = head(features)
    assert mu.shape == logvar.shape == (1, 12)
    cells = mu.view(1, 3, 2, 2)
    bias = head.fc_mu.bias[None, :]
    expected = head.fc_mu(features[:, :, 0, 2].reshape(1, 5))
    assert torch.allclose(cells[:, :, 0, 1], expected)
    for row, col in ((0, 0), (1, 0), (1, 1)):
        assert torch.allclose(cells[:, :, row, col], bias)
    # The generator reads the same cell where the encoder wrote it.
    placed = latent_map(mu, 2, 4, 4)
    assert torch.allclose(placed[:, :, 0, 3], expected)


@pytest.mark.parametrize("make", [
    lambda: UNetGenerator(1, 3, nz=12, num_downs=5, ngf=4, inject="input", z_grid=2),
    lambda: UNetGenerator(1, 3, nz=12, num_downs=5, ngf=4, inject="all", z_grid=2),
    lambda: ResnetGenerator(1, 3, ngf=4, n_blocks=1, nz=12, z_grid=2),
])
def test_generators_read_a_grid_code_and_each_cell_steers_the_output(make) -> None:
    torch.manual_seed(0)
    G = make()
    x, z = torch.randn(2, 1, 32, 32), torch.randn(2, 12)
    out = G(x, z)
    assert out.shape == (2, 3, 32, 32)
    changed = z.clone()
    changed[:, 3] += 3.0  # channel 0 of cell (1, 1): only that cell's region gets new input
    assert not torch.allclose(G(x, changed), out)


@pytest.mark.parametrize("make", [lambda: ConvEncoder(3, nz=16, nef=4, n_layers=3, z_grid=4),
                                  lambda: ResNetEncoder(3, nz=16, nef=4, n_blocks=3, z_grid=4)])
def test_encoders_predict_one_code_per_cell(make) -> None:
    mu, logvar = make()(torch.randn(2, 3, 32, 32))
    assert mu.shape == logvar.shape == (2, 16)


def test_bad_grids_are_refused_with_what_would_fit() -> None:
    with pytest.raises(ComponentError, match=r"nz=10 does not split over a 2x2 z_grid") as error:
        UNetGenerator(1, 3, nz=10, num_downs=5, z_grid=2)
    assert "8 or 12" in str(error.value)
    with pytest.raises(ComponentError, match="z_grid must be an integer >= 1"):
        ConvEncoder(3, nz=8, z_grid=0)
    with pytest.raises(ComponentError, match=r"at least 4x4; this input gives 2x2"):
        ConvEncoder(3, nz=16, nef=4, n_layers=4, z_grid=4)(torch.randn(1, 3, 32, 32))


def test_bicyclegan_refuses_an_encoder_and_generator_on_different_grids() -> None:
    grid = [*TINY, "model.nz=16", "model.networks.G.z_grid=2"]
    with pytest.raises(RecipeError, match=r"model.networks.E.z_grid.*G.z_grid is 2"):
        BicycleGAN(variant("bicyclegan", grid))


def test_bicyclegan_trains_and_samples_with_a_grid_code() -> None:
    recipe = variant("bicyclegan", [*TINY, "model.nz=16", "model.networks.G.z_grid=2",
                                    "model.networks.E.z_grid=2"])
    parts = parts_of(recipe, seed=0)
    model = parts.model
    before = {k: v.clone() for k, v in model.networks["E"].state_dict().items()}
    losses = parts.step(variant_batch())
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["kl"] > 0 and losses["latent"] > 0
    assert any(not torch.equal(v, model.networks["E"].state_dict()[k]) for k, v in before.items())
    samples = model.sample(variant_batch()["A"][:2], num_z=3)
    assert samples.shape == (2, 3, 3, 32, 32)
    assert not torch.allclose(samples[:, 0], samples[:, 1])
