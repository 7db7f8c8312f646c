"""Argument and input checks shared by every network family, so each says clearly what is wrong
before a layer fails deep inside with a shape mismatch."""
from __future__ import annotations

import torch

from ganzoo.errors import ComponentError


def check_positive(owner: str, **values: int) -> None:
    """Raise a ComponentError naming the first argument that is not a positive integer."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ComponentError(f"{owner}: {key} must be a positive integer, got {value!r}")


def check_choice(owner: str, argument: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a ComponentError when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ComponentError(f"{owner}: {argument}={value!r} is not supported; choose one of {', '.join(choices)}")


def check_image_batch(owner: str, x: torch.Tensor, input_nc: int, role: str) -> None:
    """Raise a ComponentError unless ``x`` is an (N, C, H, W) batch with ``input_nc`` channels."""
    if x.dim() != 4:
        raise ComponentError(f"{owner} expects a batch of images (N, C, H, W), got a tensor of shape {tuple(x.shape)}")
    if x.shape[1] != input_nc:
        raise ComponentError(f"{owner} was built with input_nc={input_nc} but got {x.shape[1]} channels",
                             hint=f"set the {role}'s input_nc to {x.shape[1]} or check the dataset's channels")


def check_min_size(owner: str, x: torch.Tensor, min_size: int, why: str, fix: str) -> None:
    """Raise a ComponentError when ``x`` is smaller than ``min_size`` pixels on either side."""
    height, width = x.shape[-2:]
    if height < min_size or width < min_size:
        raise ComponentError(f"{owner} needs images of at least {min_size}x{min_size} pixels {why}, "
                             f"got {height}x{width}", hint=f"use a larger crop size or {fix}")
