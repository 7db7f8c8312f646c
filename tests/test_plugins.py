"""Plugins: entry points, recipe ``plugins:`` lists, ``--plugin``, errors, collisions, provenance."""
from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ganzoo import plugins
from ganzoo.cli import main
from ganzoo.plugins import PluginError, load_entry_point_plugins, load_plugin
from ganzoo.cli.options import recipe_with_plugins
from ganzoo.registry import get_component, list_components, registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "plugins"


@pytest.fixture
def clean_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Isolate plugin state: forget loaded plugins and unregister what they added afterwards."""
    list_components()  # the built-ins first, so they are not mistaken for plugin registrations
    # The example plugins may already be imported in this process (their own tests): set them
    # aside, so each test here imports them afresh, and put them back afterwards.
    examples = {("discriminator", "sn_patchgan"), ("gan_loss", "smooth_hinge")}
    stashed = {(k, n): registry(k).get(n) for k, n in examples if n in registry(k)}
    for kind, name in stashed:
        registry(kind).remove(name)
    example_modules = {m: sys.modules.pop(m) for m in list(sys.modules)
                       if m.startswith(("ganzoo_sn_patchgan", "ganzoo_smooth_hinge"))}
    before = {kind: set(registry(kind).names()) for kind in ("discriminator", "gan_loss", "generator", "norm")}
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    modules = set(sys.modules)
    yield []
    for kind, names in before.items():
        for name in set(registry(kind).names()) - names:
            registry(kind).remove(name)
    for name in set(sys.modules) - modules:
        if name.startswith(("ganzoo_plugin_", "ganzoo_sn_patchgan", "ganzoo_smooth_hinge", "my_")):
            del sys.modules[name]
    sys.modules.update(example_modules)
    for (kind, name), entry in stashed.items():
        registry(kind).add(name, entry.factory, description=entry.description, override=True)


def install_fake_distribution(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """A ``*.dist-info`` folder importlib.metadata finds on sys.path: what pip install leaves behind."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ganzoo.plugins]\n{lines}")


def write_plugin(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


PART = """
    import torch.nn as nn
    from ganzoo import register

    @register("norm", "{name}")
    class Custom(nn.Identity):
        \"\"\"A do-nothing norm from a plugin file.\"\"\"
        conv_bias = True
        def __init__(self, num_features):
            super().__init__()
"""


def test_py_file_plugin_registers_and_is_attributed(tmp_path: Path, clean_plugins: list) -> None:
    path = write_plugin(tmp_path, "my_parts.py", PART.format(name="my_norm"))
    load_plugin(str(path))
    entry = get_component("norm", "my_norm")
    assert entry.source == "my_parts.py"
    assert entry.description == "A do-nothing norm from a plugin file."
    load_plugin(str(path))  # a second load is a no-op, not a collision


def test_module_plugin_never_comes_from_the_working_directory(tmp_path: Path, clean_plugins: list,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_plugin(tmp_path, "my_cwd_plugin.py", PART.format(name="cwd_norm"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")  # what `python -c` / an interactive session put first
    with pytest.raises(PluginError, match="not installed") as info:
        load_plugin("my_cwd_plugin")
    assert "./my_parts.py" in (info.value.hint or "")
    assert "cwd_norm" not in registry("norm")
    load_plugin("./my_cwd_plugin.py")  # an explicit path is fine
    assert "cwd_norm" in registry("norm")


def test_broken_plugin_names_itself_and_its_exception(tmp_path: Path, clean_plugins: list) -> None:
    path = write_plugin(tmp_path, "my_broken.py", "import torch\nraise RuntimeError('boom at import')\n")
    with pytest.raises(PluginError, match=r"my_broken\.py failed to load: RuntimeError: boom at import") as info:
        load_plugin(str(path))
    assert info.value.exit_code == 2


def test_name_collision_is_an_error_unless_override(tmp_path: Path, clean_plugins: list) -> None:
    clash = write_plugin(tmp_path, "my_clash.py", PART.format(name="instance"))
    with pytest.raises(PluginError, match="norm 'instance' is already registered") as info:
        load_plugin(str(clash))
    assert "override=True" in (info.value.hint or "")
    assert get_component("norm", "instance").source == "ganzoo"
    original = get_component("norm", "instance")
    replacing = write_plugin(tmp_path, "my_override.py",
                             PART.format(name="instance").replace('"instance")', '"instance", override=True)'))
    try:
        load_plugin(str(replacing))
        assert get_component("norm", "instance").source == "my_override.py"
    finally:
        registry("norm").add("instance", original.factory, description=original.description, override=True)


def test_missing_plugin_file_is_a_clear_error(tmp_path: Path, clean_plugins: list) -> None:
    with pytest.raises(PluginError, match="does not exist"):
        load_plugin(str(tmp_path / "nowhere.py"))


def test_entry_point_plugins_load_on_start_and_show_in_list(tmp_path: Path, clean_plugins: list,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_fake_distribution(site, "ganzoo-sn-patchgan", {"sn_patchgan": "ganzoo_sn_patchgan"})
    install_fake_distribution(site, "ganzoo-smooth-hinge",
                              {"smooth_hinge": "ganzoo_smooth_hinge:register_components"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLES / "ganzoo-sn-patchgan"))
    monkeypatch.syspath_prepend(str(EXAMPLES / "ganzoo-smooth-hinge"))
    result = CliRunner().invoke(main, ["list", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert get_component("discriminator", "sn_patchgan").source == "ganzoo-sn-patchgan:sn_patchgan"
    assert get_component("gan_loss", "smooth_hinge").source == "ganzoo-smooth-hinge:smooth_hinge"
    table = CliRunner().invoke(main, ["list", "gan_loss"], catch_exceptions=False, terminal_width=200).output
    assert "smooth_hinge" in table and "ganzoo-smooth-hinge" in table


def test_broken_entry_point_fails_the_cli_with_its_name(tmp_path: Path, clean_plugins: list,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_fake_distribution(site, "bad-plugin", {"bad": "my_missing_module_xyz"})
    monkeypatch.syspath_prepend(str(site))
    result = CliRunner().invoke(main, ["list", "--json"])
    assert result.exit_code == 2
    assert "bad-plugin:bad" in result.output and "ModuleNotFoundError" in result.output
    assert plugins.DISABLE_ENV in result.output
    monkeypatch.setenv(plugins.DISABLE_ENV, "1")
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    assert CliRunner().invoke(main, ["list", "--json"]).exit_code == 0


def test_cli_plugin_option(tmp_path: Path, clean_plugins: list) -> None:
    path = write_plugin(tmp_path, "my_cli_parts.py", PART.format(name="cli_norm"))
    result = CliRunner().invoke(main, ["--plugin", str(path), "list", "norm"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "cli_norm" in result.output and "my_cli_parts.py" in result.output
    result = CliRunner().invoke(main, ["--plugin", "my_not_installed_xyz", "list"])
    assert result.exit_code == 2 and "my_not_installed_xyz" in result.output


def _tiny_recipe(tmp_path: Path, plugin_entries: list[str]) -> Path:
    recipe = {
        "name": "plugin_pix2pix",
        "plugins": plugin_entries,
        "model": {
            "type": "pix2pix",
            "networks": {
                "G": {"type": "unet", "num_downs": 5, "input_nc": 1, "output_nc": 3, "ngf": 8},
                "D": {"type": "sn_patchgan", "input_nc": 4, "ndf": 8, "n_layers": 2},
            },
            "gan_loss": "smooth_hinge",
        },
        "data": {"root": str(tmp_path / "data"), "preprocess": "none", "flip": False, "workers": 0,
                 "load_size": 32, "crop_size": 32,
                 "shapes": {"flavour": "shapes-deterministic", "size": 32, "n_train": 4, "n_val": 2, "n_test": 0}},
        "train": {"batch_size": 2, "max_steps": 3, "device": "cpu"},
        "log": {"every": 1, "samples_every": 3, "checkpoint_every": 3},
    }
    path = tmp_path / "recipes" / "plugin_pix2pix.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_recipe_plugins_are_imported_before_validation_and_train(tmp_path: Path, clean_plugins: list,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # One plugin as a module (made importable as if pip-installed), one as a .py file relative to the recipe.
    monkeypatch.syspath_prepend(str(EXAMPLES / "ganzoo-sn-patchgan"))
    recipe_path = _tiny_recipe(tmp_path, ["ganzoo_sn_patchgan", "../loss_plugin.py"])
    (tmp_path / "loss_plugin.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXAMPLES / 'ganzoo-smooth-hinge')!r})\n"
        "import ganzoo_smooth_hinge\nganzoo_smooth_hinge.register_components()\n")
    resolved = recipe_with_plugins(recipe_path)  # what every command reading a recipe file does
    assert resolved.plugins == ("ganzoo_sn_patchgan", str((tmp_path / "loss_plugin.py").resolve()))
    assert resolved.model.networks["D"]["type"] == "sn_patchgan"
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(recipe_path), "--out", str(out), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "latest.pt").is_file()
    assert "sn_patchgan" in (out / "recipe.yaml").read_text()


def test_recipe_naming_an_unknown_plugin_fails_before_anything_runs(tmp_path: Path, clean_plugins: list) -> None:
    recipe_path = _tiny_recipe(tmp_path, ["my_plugin_that_is_not_there"])
    result = CliRunner().invoke(main, ["train", str(recipe_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "my_plugin_that_is_not_there" in result.output
    assert not (tmp_path / "run").exists()


def test_loading_a_checkpoint_whose_plugin_is_gone_names_the_recipe_key(tmp_path: Path) -> None:
    """ganzoo.load never imports a stored recipe's plugins unless trusted; trusted, a missing one is an
    error keyed plugins[i]; untrusted, the error names the plugins it did not import."""
    import ganzoo
    from ganzoo.errors import CheckpointError, RecipeError
    from ganzoo.training.checkpoint import FORMAT, VERSION, atomic_save

    gone = tmp_path / "gone_parts.py"
    path = atomic_save({"format": FORMAT, "version": VERSION, "networks": {},
                        "recipe": {"model": {"type": "pix2pix"}, "plugins": [str(gone)]}},
                       tmp_path / "run.pt")
    with pytest.raises(RecipeError, match=r"plugins\[0\]: plugin file .*gone_parts\.py does not exist"):
        ganzoo.load(path, device="cpu", trust_checkpoint_plugins=True)
    with pytest.raises(CheckpointError, match=r"lists plugin\(s\) .*gone_parts\.py, which were not imported"):
        ganzoo.load(path, device="cpu")
