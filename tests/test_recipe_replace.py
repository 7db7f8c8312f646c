"""``base:`` inheritance that can replace: a changed component ``type`` drops the base's arguments, and
``KEY!`` replaces any mapping whole."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch.nn as nn

from ganzoo.errors import RecipeError
from ganzoo.recipe import load_recipe, prepare_recipe
from ganzoo.recipe.load import deep_merge

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


class NormFreePatch(nn.Module):
    """A two-conv PatchGAN without a norm argument (as a plugin's spectral-norm D)."""

    def __init__(self, input_nc: int = 3, ndf: int = 8) -> None:
        super().__init__()
        self.input_nc = input_nc
        self.size_multiple = 4
        self.net = nn.Sequential(nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(ndf, 1, 4, 2, 1))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.net(x)


def test_a_derived_recipe_swaps_d_for_a_plugin_discriminator_without_norm(tmp_path: Path, temp_register) -> None:
    temp_register("discriminator", "norm_free_patch", NormFreePatch)
    child = tmp_path / "project.yaml"
    child.write_text(f"base: {RECIPES / 'quickstart_pix2pix.yaml'}\n"
                     "model:\n  networks:\n    D: {type: norm_free_patch, input_nc: 4, ndf: 16}\n")
    recipe = prepare_recipe(child)
    assert dict(recipe.model.networks["D"]) == {"type": "norm_free_patch", "input_nc": 4, "ndf": 16}
    base_g = prepare_recipe(RECIPES / "quickstart_pix2pix.yaml").model.networks["G"]
    assert recipe.model.networks["G"] == base_g  # the other network still merges as before


def test_the_same_type_still_merges(tmp_path: Path) -> None:
    child = tmp_path / "c.yaml"
    child.write_text(f"base: {RECIPES / 'quickstart_pix2pix.yaml'}\nmodel:\n  networks:\n    D: {{ndf: 8}}\n")
    D = load_recipe(child)["model"]["networks"]["D"]
    assert D["ndf"] == 8 and D["norm"] == "batch" and D["type"] == "basic"


def test_a_bang_key_replaces_any_mapping_whole(tmp_path: Path) -> None:
    child = tmp_path / "c.yaml"
    child.write_text(f"base: {RECIPES / 'quickstart_pix2pix.yaml'}\n"
                     "model:\n  networks:\n    D!: {type: basic, input_nc: 4}\n  losses!: {gan: 2.0}\n")
    raw = load_recipe(child)
    assert raw["model"]["networks"]["D"] == {"type": "basic", "input_nc": 4}
    assert raw["model"]["losses"] == {"gan": 2.0}
    assert "D!" not in raw["model"]["networks"]
    resolved = prepare_recipe(child)
    assert resolved.model.networks["D"]["ndf"] == 64  # the component's default, not the base's 32
    assert resolved.model.losses["gan"] == 2.0


def test_the_top_level_sections_merge_even_when_model_type_changes() -> None:
    base = {"model": {"type": "a", "networks": {"G": {"type": "unet"}}}}
    assert deep_merge(base, {"model": {"type": "b"}})["model"]["networks"] == {"G": {"type": "unet"}}
    assert deep_merge({"train": {"optimizer": {"type": "adam", "betas": [0.5, 0.9]}}},
                      {"train": {"optimizer": {"type": "sgd", "lr": 0.1}}}) == \
        {"train": {"optimizer": {"type": "sgd", "lr": 0.1}}}


def test_marks_in_a_recipe_without_base_are_dropped_and_both_forms_are_an_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text((RECIPES / "quickstart_pix2pix.yaml").read_text().replace("    D: {", "    D!: {"))
    assert "D" in load_recipe(plain)["model"]["networks"]
    both = tmp_path / "both.yaml"
    both.write_text(f"base: {RECIPES / 'quickstart_pix2pix.yaml'}\n"
                    "model:\n  networks:\n    D: {ndf: 8}\n    D!: {type: basic}\n")
    with pytest.raises(RecipeError, match="written both as 'D' and 'D!'"):
        load_recipe(both)


def test_the_rule_is_in_the_generated_recipes_reference() -> None:
    from ganzoo.docs_gen import recipes_reference

    text = recipes_reference()
    assert "whose `type` changes is replaced whole" in text and "trailing `!`" in text
