"""Plugins and checkpoints (issue #28, items 1, 4 and 13): a checkpoint is data and never imports code.

One tiny pix2pix run whose discriminator ``tiny_patch`` comes from a plugin file is trained once per
module. Then every way of loading it for inference (``ganzoo.load``, ``sample``, ``eval``, ``export``)
must refuse to import the plugin its recipe names, and must name it with the way to load it; a crafted
checkpoint naming a relative ``x.py`` next to the user never runs it; ``--resume`` of the user's own run
imports its plugins and says so.
"""
from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import ganzoo
from fault_injection import SHAPES_PAIRED, tiny_recipe, write_recipe
from ganzoo import plugins
from ganzoo.cli import main as ganzoo_main
from ganzoo.data.shapes import ensure_shapes
from ganzoo.errors import CheckpointError
from ganzoo.registry import list_components, registry
from ganzoo.training.checkpoint import FORMAT, VERSION, atomic_save

PLUGIN = '''
    from pathlib import Path

    from ganzoo import register
    from ganzoo.discriminators.nlayer import NLayerDiscriminator

    Path({marker!r}).open("a").write("imported\\n")  # every import leaves a line: proof that code ran

    @register("discriminator", "tiny_patch")
    class TinyPatch(NLayerDiscriminator):
        """An nlayer discriminator under another name, from a plugin file."""
'''


@pytest.fixture
def isolated_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget imported plugins before the test and unregister what the test's plugins added after it."""
    list_components()
    before = {kind: set(registry(kind).names()) for kind in ("discriminator", "generator", "norm", "gan_loss")}
    monkeypatch.setattr(plugins, "_loaded", {})
    modules = set(sys.modules)
    yield
    for kind, names in before.items():
        for name in set(registry(kind).names()) - names:
            registry(kind).remove(name)
    for name in set(sys.modules) - modules:
        if name.startswith("ganzoo_plugin_"):
            del sys.modules[name]


def invoke(args: list[str], cwd: Path | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> Any:
    if cwd is not None and monkeypatch is not None:
        monkeypatch.chdir(cwd)
    return CliRunner(env={"COLUMNS": "400"}).invoke(ganzoo_main, args)


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished 2-step run whose D is the plugin component ``tiny_patch`` (plugin file outside the run)."""
    base = tmp_path_factory.mktemp("plugin_run")
    data = base / "data"
    ensure_shapes(data, **SHAPES_PAIRED)
    marker = base / "imports.log"
    plugin = base / "parts" / "tiny_parts.py"
    plugin.parent.mkdir()
    plugin.write_text(textwrap.dedent(PLUGIN.format(marker=str(marker))))
    raw = tiny_recipe("pix2pix", data, max_steps=2)
    raw["log"] = {"every": 1, "samples_every": 100, "checkpoint_every": 1, "keep_last": 3}
    raw["model"]["networks"]["D"]["type"] = "tiny_patch"
    raw["plugins"] = ["parts/tiny_parts.py"]  # relative to the recipe file
    recipe = write_recipe(raw, base / "recipe.yaml")
    run = base / "run"
    list_components()
    before = set(registry("discriminator").names())
    saved = dict(plugins._loaded)
    try:
        result = CliRunner().invoke(ganzoo_main, ["train", str(recipe), "--out", str(run), "--no-progress"])
        assert result.exit_code == 0, result.output
    finally:
        for name in set(registry("discriminator").names()) - before:
            registry("discriminator").remove(name)
        plugins._loaded.clear()
        plugins._loaded.update(saved)
    marker.unlink()
    return {"run": run, "plugin": plugin, "marker": marker, "data": data, "recipe": recipe}


# -- item 1: loading a checkpoint for inference never imports the plugins it names ------------------
def test_load_never_imports_the_checkpoints_plugins_and_names_them(plugin_run: dict[str, Path],
                                                                   isolated_plugins: None) -> None:
    with pytest.raises(CheckpointError) as info:
        ganzoo.load(plugin_run["run"], device="cpu")
    message = str(info.value)
    assert "tiny_patch" in message and str(plugin_run["plugin"]) in message
    assert "--plugin" in message and "trust_checkpoint_plugins=True" in message and "plugins=[...]" in message
    assert not plugin_run["marker"].exists()


def test_load_with_the_plugin_named_or_trusted_works(plugin_run: dict[str, Path], isolated_plugins: None) -> None:
    model = ganzoo.load(plugin_run["run"], device="cpu", plugins=[str(plugin_run["plugin"])])
    assert type(model.networks["D"]).__name__ == "TinyPatch"
    assert plugin_run["marker"].read_text().count("imported") == 1
    registry("discriminator").remove("tiny_patch")
    plugins._loaded.clear()
    model = ganzoo.load(plugin_run["run"], device="cpu", trust_checkpoint_plugins=True)
    assert type(model.networks["D"]).__name__ == "TinyPatch"
    plugin_run["marker"].unlink()


@pytest.mark.parametrize("command", ["sample", "eval", "export"])
def test_inference_commands_never_import_the_checkpoints_plugins(plugin_run: dict[str, Path], tmp_path: Path,
                                                                 command: str, isolated_plugins: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    args = {"sample": ["sample", str(plugin_run["run"]), "--input", str(plugin_run["data"] / "val"),
                       "--out", str(tmp_path / "s")],
            "eval": ["eval", str(plugin_run["run"]), "--metrics", "reconstruction", "--num-inputs", "2"],
            "export": ["export", str(plugin_run["run"]), "--out", str(tmp_path / "g.pt")]}[command]
    result = invoke(args, cwd=tmp_path, monkeypatch=monkeypatch)
    assert result.exit_code == 2, result.output
    assert "tiny_parts.py" in result.output and f"ganzoo --plugin {plugin_run['plugin']} {command}" in result.output
    assert "--trust-checkpoint-plugins" in result.output and "Traceback" not in result.output
    assert not plugin_run["marker"].exists()
    # The opt-ins import it: --plugin names the file, --trust-checkpoint-plugins takes the checkpoint's word.
    for opt_in in (["--plugin", str(plugin_run["plugin"]), *args], [*args, "--trust-checkpoint-plugins"]):
        result = invoke(opt_in)
        assert result.exit_code == 0 and "were not imported" not in result.output, result.output
        assert plugin_run["marker"].read_text().count("imported") == 1
        plugin_run["marker"].unlink()
        registry("discriminator").remove("tiny_patch")
        plugins._loaded.clear()


def test_a_crafted_checkpoint_naming_a_file_next_to_the_user_never_runs_it(tmp_path: Path, isolated_plugins: None,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The hostile case: weights_only passes, the recipe says plugins: [x.py], x.py lies in the folder."""
    marker = tmp_path / "pwned"
    (tmp_path / "x.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    recipe = {"name": "x", "plugins": ["x.py", "x"], "model": {"type": "pix2pix", "networks": {
        "G": {"type": "unet", "num_downs": 5, "input_nc": 1, "output_nc": 3, "ngf": 4},
        "D": {"type": "evil_d", "input_nc": 4}}}, "data": {"root": str(tmp_path / "data")}}
    atomic_save({"format": FORMAT, "version": VERSION, "step": 1, "recipe": recipe,
                 "networks": {"G": {}, "D": {}}}, tmp_path / "model.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # even a module name that the working directory could serve
    with pytest.raises(CheckpointError, match=r"x\.py"):
        ganzoo.load("model.pt", device="cpu")
    for command in (["sample", "model.pt", "--input", "nothing.png"], ["eval", "model.pt"], ["export", "model.pt"]):
        result = invoke(command)
        assert result.exit_code == 2 and "x.py" in result.output and "Traceback" not in result.output, result.output
    assert not marker.exists()
    # Trusting the checkpoint still never resolves a relative path against the working directory.
    with pytest.raises(Exception, match="relative path"):
        ganzoo.load("model.pt", device="cpu", trust_checkpoint_plugins=True)
    assert not marker.exists()


# -- item 4: --resume of the user's own run imports its plugins, and says so ------------------------
@pytest.mark.parametrize("how", ["recipe", "cli"])
def test_plain_resume_of_a_run_with_plugins_loads_and_announces_them(plugin_run: dict[str, Path], tmp_path: Path,
                                                                     how: str, isolated_plugins: None) -> None:
    recipe = plugin_run["recipe"]
    run = tmp_path / "run"
    if how == "cli":  # the plugin came from --plugin, not from the recipe
        import yaml

        raw = yaml.safe_load(recipe.read_text())
        raw.pop("plugins")
        recipe = write_recipe(raw, tmp_path / "recipe.yaml")
        first = invoke(["--plugin", str(plugin_run["plugin"]), "train", str(recipe), "--out", str(run),
                        "--no-progress", "--set", "train.max_steps=1"])
    else:
        first = invoke(["train", str(recipe), "--out", str(run), "--no-progress", "--set", "train.max_steps=1"])
    assert first.exit_code == 0, first.output
    registry("discriminator").remove("tiny_patch")  # a new process: nothing imported yet
    plugins._loaded.clear()
    plugin_run["marker"].unlink()
    result = invoke(["train", "--resume", str(run), "--no-progress", "--set", "train.max_steps=2"])
    assert result.exit_code == 0, result.output
    assert f"loading plugin tiny_parts.py named by {run / 'recipe.yaml'}" in result.output
    registry("discriminator").remove("tiny_patch")
    plugins._loaded.clear()
    result = invoke(["train", "--resume", str(run), "--no-progress"])  # no --set at all: nothing left to do
    assert result.exit_code == 0, result.output
    assert plugin_run["marker"].exists()
    plugin_run["marker"].unlink()


# -- item 13: a plugin calling sys.exit() at import --------------------------------------------------
@pytest.mark.parametrize("code", ["0", "3", "None"])
def test_a_plugin_calling_sys_exit_at_import_is_an_error_naming_it(tmp_path: Path, code: str,
                                                                   isolated_plugins: None) -> None:
    plugin = tmp_path / "quits.py"
    plugin.write_text(f"import sys\nsys.exit({code})\n")
    result = invoke(["--plugin", str(plugin), "list"])
    assert result.exit_code == 2, result.output
    assert "quits.py" in result.output and "sys.exit" in result.output
    with pytest.raises(plugins.PluginError, match="sys.exit"):
        plugins.load_plugin(str(plugin))


def test_untrusted_activation_reports_what_it_did_not_import(tmp_path: Path, isolated_plugins: None) -> None:
    plugin = tmp_path / "p.py"
    plugin.write_text("raise SystemExit('must not run')\n")
    pending = plugins.activate_plugins(recipe={"plugins": [str(plugin), "some.module", 3]}, trust_recipe=False)
    assert pending == [str(plugin), "some.module"]
    assert str(plugin.resolve()) not in plugins.loaded_plugins()


def test_corrupt_run_folder_falls_back_for_inference_too(plugin_run: dict[str, Path], tmp_path: Path,
                                                        isolated_plugins: None) -> None:
    """``ganzoo.load(RUN)`` skips a damaged newest checkpoint with a warning, as --resume does (item 2)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(plugin_run["run"], run)
    newest = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    (run / "checkpoints" / "latest.pt").unlink()
    newest.write_bytes(b"")
    warnings: list[str] = []
    model = ganzoo.inference.load(run, device="cpu", plugins=[str(plugin_run["plugin"])], warn=warnings.append)
    assert model.step == 1 and len(warnings) == 1 and newest.name in warnings[0]
    assert torch.is_tensor(next(model.networks["G"].parameters()))
    plugin_run["marker"].unlink()


def test_an_installed_plugin_calling_sys_exit_is_an_error_naming_it(tmp_path: Path, isolated_plugins: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Next to item 13: the same for an entry-point plugin, which every command imports at start."""
    from helpers import install_fake_distribution

    site = tmp_path / "site"
    install_fake_distribution(site, "quitter", {"quit": "my_quitting_plugin"})
    (site / "my_quitting_plugin.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    result = invoke(["list"])
    assert result.exit_code == 2 and "quitter:quit" in result.output and "sys.exit" in result.output, result.output
    sys.modules.pop("my_quitting_plugin", None)
