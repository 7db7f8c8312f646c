"""How a latent code z of length ``nz`` is laid out over an image: one global code, or a grid of local codes.

BicycleGAN's z is *global*: the same ``nz`` numbers are repeated over every pixel, so one code must
say everything that varies, everywhere in the image. With ``z_grid = g > 1`` the same flat code
(still ``(N, nz)`` everywhere outside the networks: sampling, KL, latent regression, export) is read as
``nz / g**2`` channels on a ``g x g`` grid of cells, each cell's numbers repeated over its part of
the image. The encoder then predicts one code per cell from that cell's features, and a random code
varies each region independently: the fit for data whose modes are local (the colour of each shape
of the shapes world, chosen independently per shape), at the price of a larger ``nz``.

The flat layout is channel-major, ``z.view(N, nz // g**2, g, g)``, identical in encoder and generator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganzoo.errors import ComponentError


def check_z_grid(network: str, nz: int, z_grid: int) -> None:
    """Raise a ComponentError unless ``z_grid`` is a positive integer whose square divides ``nz``."""
    if not isinstance(z_grid, int) or isinstance(z_grid, bool) or z_grid < 1:
        raise ComponentError(f"{network}: z_grid must be an integer >= 1 (1: one global code); got {z_grid!r}")
    cells = z_grid * z_grid
    if nz > 0 and nz % cells:
        lower, upper = nz // cells * cells, (nz // cells + 1) * cells
        raise ComponentError(
            f"{network}: nz={nz} does not split over a {z_grid}x{z_grid} z_grid ({cells} cells)",
            hint=f"use an nz that is a multiple of {cells} (e.g. {lower or upper} or {upper}), "
                 "the same in model.nz, G and E",
        )


def latent_channels(nz: int, z_grid: int) -> int:
    """Channels a generator receives for a code of length ``nz`` laid out on a ``z_grid`` grid."""
    return nz // (z_grid * z_grid)


def latent_map(z: torch.Tensor, z_grid: int, height: int, width: int) -> torch.Tensor:
    """The code ``z`` (N, nz) as a (N, nz / z_grid**2, height, width) map: each cell's numbers over its region."""
    if z_grid == 1:
        return z[:, :, None, None].expand(-1, -1, height, width)
    cells = z.view(z.size(0), -1, z_grid, z_grid)
    if height < z_grid or width < z_grid:
        # A level coarser than the grid sees each pixel's share of the cells, averaged.
        return F.adaptive_avg_pool2d(cells, (height, width))
    return F.interpolate(cells, size=(height, width), mode="nearest")


def tile_latent(x: torch.Tensor, z: torch.Tensor, z_grid: int = 1) -> torch.Tensor:
    """``x`` with the latent code ``z`` (N, nz) laid over its pixels (see :func:`latent_map`) as extra channels."""
    return torch.cat([x, latent_map(z, z_grid, x.size(2), x.size(3))], dim=1)
