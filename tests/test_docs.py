"""The reference pages in docs/ are what the code says, and every documentation link resolves."""
from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from ganzoo import docs_gen
from ganzoo.recipe import schema

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANZOO_NO_PLUGINS", "1")


def test_generated_pages_are_up_to_date() -> None:
    stale = docs_gen.stale_pages(DOCS)
    diff = ""
    if stale:
        name = stale[0]
        committed = (DOCS / name).read_text(encoding="utf-8").splitlines() if (DOCS / name).is_file() else []
        diff = "\n".join(list(difflib.unified_diff(committed, docs_gen.PAGES[name]().splitlines(), "committed",
                                                   "generated", lineterm=""))[:40])
    assert not stale, f"{', '.join(stale)} out of date: run `python -m ganzoo.docs_gen` and commit the result\n{diff}"


def _schema_paths(fields: dict, prefix: str) -> list[str]:
    paths = []
    for name, key in fields.items():
        paths.append(prefix + name)
        if key.fields is not None and name != "model":
            paths += _schema_paths(dict(key.fields), prefix + name + ".")
    return paths


def test_recipes_reference_lists_every_schema_key_and_model_option() -> None:
    text = docs_gen.recipes_reference()
    paths = _schema_paths({k: v for k, v in schema.TOP.items() if k != "model"}, "")
    paths += ["model." + k for k in schema.MODEL]
    missing = [p for p in paths if f"| `{p}` |" not in text]
    assert not missing
    for option in ("model.nz", "model.use_same_D", "model.losses.latent", "model.losses.l1"):
        assert f"| `{option}` |" in text


def test_components_and_cli_references_cover_the_registry_and_commands() -> None:
    components = docs_gen.components_reference()
    for name in ("`unet_256`", "`basic_128_multi`", "`timm:<model_name>`", "`lsgan`", "`aligned`"):
        assert name in components
    cli = docs_gen.cli_reference()
    for command in ("`ganzoo train`", "`ganzoo data download`", "`ganzoo data check`", "`ganzoo export`",
                    "`--plugin MODULE_OR_FILE`"):
        assert command in cli


def test_check_mode_reports_a_stale_page(tmp_path: Path) -> None:
    for name in docs_gen.PAGES:
        (tmp_path / name).write_text("old\n")
    assert docs_gen.main(["--check", "--docs", str(tmp_path)]) == 1
    assert docs_gen.main(["--docs", str(tmp_path)]) == 0
    assert docs_gen.main(["--check", "--docs", str(tmp_path)]) == 0


def link_targets(markdown: str) -> list[str]:
    """The targets of a page's markdown links; code is not markdown (``self.networks["G"](A)`` is no link)."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)


def test_every_relative_link_in_the_docs_and_readme_resolves() -> None:
    pages = [REPO / "README.md", *DOCS.glob("*.md")]
    broken = []
    for page in pages:
        for target in link_targets(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.name} -> {target}")
    assert not broken


def test_the_link_check_skips_code_but_not_links() -> None:
    text = "[ok](cli.md) `x['a'](b)` and\n```python\nnet = self.networks['G'](A.to(dev))\n```\n[bad](gone.md)\n"
    assert link_targets(text) == ["cli.md", "gone.md"]


def test_readme_links_the_docs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for page in ("getting-started.md", "recipes.md", "components.md", "cli.md", "datasets.md", "plugins.md",
                 "bicyclegan.md"):
        assert f"docs/{page}" in readme
