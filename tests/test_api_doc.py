"""Every Python example of docs/api.md runs, in order, as one session against a slimmed-down quickstart run.

The examples are run as written; only the recipes they read are made tiny (few steps, slim networks, a
small shapes world) by appending overrides wherever a recipe file is prepared.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import ganzoo.recipe

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"
TINY = ["train.max_steps=2", "train.batch_size=4", "train.device=cpu",
        "log.every=1", "log.checkpoint_every=2", "log.samples_every=2", "model.networks.G.ngf=8", "model.networks.E.nef=8", "model.networks.D.ndf=8", "model.networks.D2.ndf=8",
        "data.shapes.n_train=16", "data.shapes.n_val=8", "data.shapes.n_test=0"]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_page_has_the_examples_it_promises() -> None:
    blocks = python_blocks(PAGE.read_text(encoding="utf-8"))
    code = "\n".join(blocks)
    assert len(blocks) >= 10
    for call in ("ganzoo.train(", "ganzoo.load(", "ganzoo.build(", "model.sample(", "model.encode(",
                 "interpolate_latents(", "random_latents(", "generate(", "evaluate(", "load_input_images("):
        assert call in code, call


def test_every_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    real = ganzoo.recipe.prepare_recipe

    def tiny(path, overrides=(), **kwargs):  # type: ignore[no-untyped-def]
        return real(path, [*overrides, *TINY], **kwargs)

    monkeypatch.setattr(ganzoo.recipe, "prepare_recipe", tiny)
    namespace: dict[str, object] = {"__name__": "api_doc"}
    for number, block in enumerate(python_blocks(PAGE.read_text(encoding="utf-8")), 1):
        try:
            exec(compile(block, f"docs/api.md, python block {number}", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # pragma: no cover  (the message names the block)
            raise AssertionError(f"python block {number} of docs/api.md failed:\n{block}") from exc
    assert (tmp_path / "runs" / "quickstart" / "final" / "samples.png").is_file()
    assert (tmp_path / "runs" / "quickstart" / "sheet.png").is_file()
    assert tuple(namespace["frames"].shape) == (1, 8, 3, 32, 32)  # type: ignore[attr-defined]
