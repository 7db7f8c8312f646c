"""Helpers shared by several test modules: test modules never import from one another.

- tiny raw recipes of the three models for step-level tests (:func:`bicyclegan_recipe`...) and
  :func:`make`, which builds a model with its optimizers and :class:`Updater` as ``ganzoo train`` does;
- the BicycleGAN variant recipes at a test size (:data:`TINY`, :func:`variant`, :func:`batch`);
- :func:`tiny_run`: a run folder holding one checkpoint of an untrained, slim model;
- the toy model and networks of the recipe tests (:data:`TOYS`, :data:`TOY_RECIPE`, :func:`toy_params`),
  registered by the ``toy_registry`` fixture of ``conftest.py``.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ganzoo.errors import RecipeError
from ganzoo.models import BicycleGAN, CycleGAN, Pix2Pix
from ganzoo.models.base import ModelSpec, Option
from ganzoo.recipe import prepare_recipe, resolve_recipe
from ganzoo.recipe.schema import ModelConfig, Recipe
from ganzoo.training.trainer import TrainingParts, build_training

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SIZE = 32


# -- tiny recipes of the three models (32 px, 8 channels) -------------------------------------------------
def _train(**overrides: Any) -> dict[str, Any]:
    # step_in_backward off unless a test asks: the step-level tests read every gradient after the step
    return {"batch_size": 4, "optimizer": {"type": "adam", "lr": 2e-4, "betas": [0.5, 0.999]},
            "precision": "fp32", "seed": 0, "step_in_backward": False, **overrides}


def _data() -> dict[str, Any]:
    return {"root": "unused-root", "load_size": SIZE, "crop_size": SIZE}


def bicyclegan_recipe(norm: str = "instance", dropout: bool = False, train: dict[str, Any] | None = None,
                      **model: Any) -> dict[str, Any]:
    """BicycleGAN with G, E, D, D2; ``model`` changes model keys (``losses`` are merged into the defaults)."""
    nets = {
        "G": {"type": "unet", "num_downs": 5, "input_nc": 1, "output_nc": 3, "nz": 4, "ngf": 8, "norm": norm,
              "use_dropout": dropout, "inject": "all"},
        "E": {"type": "resnet_128", "input_nc": 3, "nz": 4, "nef": 8, "norm": norm, "vae": True},
        "D": {"type": "basic_128_multi", "input_nc": 3, "ndf": 8, "norm": norm, "num_D": 2},
        "D2": {"type": "basic_128_multi", "input_nc": 3, "ndf": 8, "norm": norm, "num_D": 2},
    }
    cfg: dict[str, Any] = {"type": "bicyclegan", "nz": 4, "networks": nets, "init": {"type": "xavier", "gain": 0.02},
                           "gan_loss": "lsgan", "losses": dict(BicycleGAN.loss_weights), "use_same_D": False,
                           "conditional_D": False}
    for key, value in model.items():
        if key == "losses":
            cfg["losses"].update(value)
        else:
            cfg[key] = value
    return {"model": cfg, "data": _data(), "train": _train(**(train or {}))}


def pix2pix_recipe(dropout: bool = False, **train: Any) -> dict[str, Any]:
    nets = {"G": {"type": "unet", "num_downs": 5, "input_nc": 3, "output_nc": 3, "ngf": 8, "norm": "batch",
                  "use_dropout": dropout},
            "D": {"type": "basic", "input_nc": 6, "ndf": 8, "norm": "batch"}}
    return {"model": {"type": "pix2pix", "networks": nets, "init": {"type": "normal", "gain": 0.02},
                      "gan_loss": "vanilla", "losses": {"gan": 1.0, "l1": 100.0}},
            "data": _data(), "train": _train(**{"batch_size": 2, **train})}


def cyclegan_recipe(pool_size: int = 50, **train: Any) -> dict[str, Any]:
    g = {"type": "resnet_6blocks", "input_nc": 3, "output_nc": 3, "ngf": 8, "norm": "instance"}
    d = {"type": "basic", "input_nc": 3, "ndf": 8, "norm": "instance"}
    return {"model": {"type": "cyclegan", "networks": {"G_A": g, "G_B": dict(g), "D_A": d, "D_B": dict(d)},
                      "init": {"type": "normal", "gain": 0.02}, "gan_loss": "lsgan",
                      "losses": dict(CycleGAN.loss_weights), "pool_size": pool_size},
            "data": _data(), "train": _train(**{"batch_size": 2, **train})}


#: name -> (model class, raw recipe maker taking train keys, input channels of A)
MODELS = {
    "bicyclegan": (BicycleGAN, lambda **train: bicyclegan_recipe(train=train), 1),
    "pix2pix": (Pix2Pix, pix2pix_recipe, 3),
    "cyclegan": (CycleGAN, cyclegan_recipe, 3),
}


def batch(n: int = 4, a_nc: int = 1, b_nc: int = 3, size: int = SIZE, seed: int = 42) -> dict[str, torch.Tensor]:
    """A fixed random batch of images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(n, a_nc, size, size, generator=g) * 2 - 1,
            "B": torch.rand(n, b_nc, size, size, generator=g) * 2 - 1}


def parts_of(recipe: Recipe | dict[str, Any], device: str | torch.device = "cpu", seed: int = 0) -> TrainingParts:
    """The recipe's model, optimizers and updater as ``ganzoo train`` builds them, weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return build_training(resolve_recipe(recipe), torch.device(device))


def make(name: str, device: str | torch.device = "cpu", **train: Any) -> tuple[TrainingParts, dict[str, torch.Tensor]]:
    """Model ``name`` (pix2pix, cyclegan, bicyclegan) ready to train, and a batch that fits it."""
    _, recipe_of, a_nc = MODELS[name]
    recipe = recipe_of(**train)
    return parts_of(recipe, device), batch(recipe["train"]["batch_size"], a_nc)


def step_and_grads(parts: TrainingParts, batch: dict[str, torch.Tensor]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One training step from a fixed RNG state; returns its losses and every parameter's last gradient
    (with ``train.step_in_backward`` off: gradients updated inside the backward are freed)."""
    torch.manual_seed(1)
    losses = parts.step(batch)
    grads = {f"{n}.{k}": p.grad.detach().clone() for n, net in parts.model.networks.items()
             for k, p in net.named_parameters() if p.grad is not None}
    return losses, grads


def assert_same_step(fast: tuple[dict, dict], plain: tuple[dict, dict], rtol: float, atol: float) -> None:
    """Two steps' losses and gradients agree (gradients compared as whole tensors, by norm)."""
    (fast_losses, fast_grads), (plain_losses, plain_grads) = fast, plain
    assert fast_losses.keys() == plain_losses.keys()
    for key in plain_losses:
        torch.testing.assert_close(fast_losses[key].float(), plain_losses[key].float(), rtol=rtol, atol=atol,
                                   msg=lambda m: f"loss {key}: {m}")
    assert fast_grads.keys() == plain_grads.keys() and plain_grads
    for key in plain_grads:
        # Reordered sums move single elements by float rounding: compare whole tensors by norm.
        error = (fast_grads[key] - plain_grads[key]).norm()
        assert error <= rtol * plain_grads[key].norm() + atol, f"gradient {key}: relative error {error}"


def assert_identical(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Tensors equal bit for bit (dtype and shape included), plain data equal, at every depth."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {list(a)} vs {list(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# -- the BicycleGAN variants at a test size ---------------------------------------------------------------
VARIANTS_DIR = RECIPES / "bicyclegan_variants"

# Small enough for a CPU test step: 32 px, 8 channels everywhere.
TINY = ["model.networks.G.num_downs=5", "model.networks.G.ngf=8", "model.networks.E.nef=8",
        "model.networks.D.ndf=8", "model.networks.D2.ndf=8", "model.nz=4", "train.batch_size=4"]


def variant(name: str, overrides: list[str] | None = None) -> Recipe:
    return prepare_recipe(VARIANTS_DIR / f"{name}.yaml", overrides or [])


def variant_batch(n: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    return batch(n, 1, 3, size, seed=3)


# -- a run folder with one untrained checkpoint -----------------------------------------------------------
BICYCLE = ("model.networks.G.ngf=8", "model.networks.E.nef=8", "model.networks.D.ndf=8", "model.networks.D2.ndf=8")


def tiny_run(tmp: Path, recipe: str, data_root: Path, *overrides: str) -> Path:
    """A run folder holding one checkpoint of an untrained, slim model."""
    from ganzoo.inference import build_model
    from ganzoo.training.checkpoint import CheckpointDir

    resolved = prepare_recipe(RECIPES / recipe, [f"data.root={data_root}", "data.shapes=null", "train.device=cpu",
                                                 *overrides])
    model = build_model(resolved, "cpu")
    run = tmp / resolved.model.type
    payload = {"step": 3, "recipe": resolved.to_dict(),
               "networks": {n: net.state_dict() for n, net in model.networks.items()}}
    CheckpointDir(run / "checkpoints").save(payload, 3)
    return run


# -- plugins ----------------------------------------------------------------------------------------------
def install_fake_distribution(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """A ``*.dist-info`` folder importlib.metadata finds on sys.path: what pip install leaves behind."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ganzoo.plugins]\n{lines}")


# -- the toy model and networks of the recipe tests -------------------------------------------------------
class ToyGenerator(nn.Module):
    """Two convolutions; size_multiple is 2**num_downs like a U-Net of that depth."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 8, nz: int = 0,
                 num_downs: int = 3, norm: str = "batch") -> None:
        super().__init__()
        self.input_nc, self.output_nc, self.nz = input_nc, output_nc, nz
        self.size_multiple = 2 ** num_downs
        self.body = nn.Sequential(nn.Conv2d(input_nc + nz, ngf, 3, padding=1), nn.Conv2d(ngf, output_nc, 3, padding=1))


class ToyDiscriminator(nn.Module):
    """One strided convolution per layer."""

    def __init__(self, input_nc: int = 3, ndf: int = 8, n_layers: int = 2) -> None:
        super().__init__()
        self.input_nc, self.size_multiple = input_nc, 2 ** n_layers
        self.body = nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1)


class ToyEncoder(nn.Module):
    """A convolution and a linear head."""

    def __init__(self, input_nc: int = 3, nef: int = 8, nz: int = 8, vae: bool = True) -> None:
        super().__init__()
        self.input_nc, self.nz, self.vae, self.size_multiple = input_nc, nz, vae, 1
        self.conv = nn.Conv2d(input_nc, nef, 3)
        self.head = nn.Linear(nef, nz * (2 if vae else 1))


class ToyModel(ModelSpec):
    """A fake model: G and D always, E when use_E."""

    network_kinds = {"G": "generator", "D": "discriminator", "E": "encoder"}
    options = {
        "nz": Option(4, int, "latent size", minimum=0),
        "use_E": Option(False, bool, "train an encoder too"),
        "mode": Option("a", str, "a choice", choices=("a", "b")),
        "lambda_x": Option(1.0, float, "a float option", minimum=0.0),
    }
    loss_weights = {"gan": 1.0, "l1": 10.0}
    recipe_defaults = {"model.init": {"type": "xavier"}}
    default_gan_loss = "vanilla"

    @classmethod
    def required_networks(cls, model: ModelConfig) -> list[str]:
        return ["G", "D", "E"] if model.options.use_E else ["G", "D"]

    @classmethod
    def derived_network_args(cls, model: ModelConfig) -> dict[str, dict[str, Any]]:
        return {"G": {"nz": model.options.nz}, "E": {"nz": model.options.nz}}

    @classmethod
    def check_recipe(cls, recipe: Recipe, networks: dict[str, nn.Module]) -> None:
        if recipe.model.options.use_E and recipe.train.batch_size % 2:
            raise RecipeError("train.batch_size", "must be even when model.use_E is true")


def toy_step(optimizer: Any, total_steps: int, step_size: int = 10, gamma: float = 0.5) -> Any:
    """A fake step schedule."""


TOYS: list[tuple[str, str, Any]] = [
    ("model", "toy_gan", ToyModel),
    ("generator", "toy_gen", ToyGenerator),
    ("discriminator", "toy_patch", ToyDiscriminator),
    ("encoder", "toy_enc", ToyEncoder),
    ("scheduler", "toy_step", toy_step),
]

TOY_RECIPE = """\
name: toy
model:
  type: toy_gan
  networks:
    G: {type: toy_gen, input_nc: 1, output_nc: 3, ngf: 8}
    D: {type: toy_patch, input_nc: 4}
  losses: {l1: 5}
data:
  root: datasets/toy
  load_size: 36
  crop_size: 32
train:
  batch_size: 2
  max_steps: 10
"""


def toy_params(input_nc: int, output_nc: int, ngf: int, nz: int) -> int:
    """Parameters of a ToyGenerator."""
    return (input_nc + nz) * ngf * 9 + ngf + ngf * output_nc * 9 + output_nc


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path
