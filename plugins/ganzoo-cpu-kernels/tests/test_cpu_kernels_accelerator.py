"""The accelerator ``cpu_kernels``: registration, what prepare changes where, notices, repeatable routes, state."""
from __future__ import annotations

import copy
import importlib
import importlib.metadata
import io
import platform
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn as nn

import ganzoo_cpu_kernels
from ganzoo.registry import registry
from ganzoo_cpu_kernels import accelerator, cpu_allocator
from ganzoo_cpu_kernels.accelerator import CpuKernels
from ganzoo_cpu_kernels.cpu_convs import TunedConv2d, TunedConvTranspose2d

PLUGIN = Path(__file__).resolve().parents[1]


class TinyModel(nn.Module):
    """What the core hands ``prepare``: a module with its networks in ``networks``."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.networks = nn.ModuleDict({
            "G": nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(channels, 3, 4, 2, 1)),
            "D": nn.Sequential(nn.Conv2d(3, channels, 4, 2, 1), nn.Conv2d(channels, 1, 3, padding="same")),
        })


def recipe(**train: Any) -> SimpleNamespace:
    return SimpleNamespace(train=SimpleNamespace(**{"precision": "fp32", "compile": False, **train}))


def kinds(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


@pytest.fixture
def no_allocator_change(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record the allocator setting instead of making it (it is the test process's for good)."""
    calls: list[bool] = []
    monkeypatch.setattr(cpu_allocator, "reuse_freed_memory", lambda: calls.append(True) or True)
    return calls


# -- registration --------------------------------------------------------------------------------------
def test_the_entry_point_names_the_module_that_registers_the_accelerator() -> None:
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    assert project["project"]["name"] == "ganzoo-cpu-kernels"
    (name, target), = project["project"]["entry-points"]["ganzoo.plugins"].items()
    assert name == "cpu_kernels"
    assert importlib.import_module(target) is ganzoo_cpu_kernels
    entry = registry("accelerator").get("cpu_kernels")
    assert entry.factory is CpuKernels and "Winograd" in entry.description
    assert entry.defaults() == {"cache": "~/.cache/ganzoo/cpu_kernels_routes.json", "reuse_freed_memory": True,
                                "side_by_side": True}
    installed = [ep for ep in importlib.metadata.entry_points(group="ganzoo.plugins") if ep.name == "cpu_kernels"]
    for ep in installed:  # where the plugin is pip-installed, the installed metadata says the same
        assert ep.value == target


def test_the_registry_builds_it_with_recipe_arguments(tmp_path: Path) -> None:
    built = registry("accelerator").build("cpu_kernels", cache=None)
    assert isinstance(built, CpuKernels) and built.cache is None
    built = registry("accelerator").build("cpu_kernels", cache=str(tmp_path / "r.json"), reuse_freed_memory=False)
    assert built.cache.path == tmp_path / "r.json" and not built.reuse_freed_memory


# -- what prepare changes ------------------------------------------------------------------------------
def test_prepare_switches_the_eligible_convolutions_on_the_cpu(tmp_path: Path, no_allocator_change: list) -> None:
    model = TinyModel()
    kernels = CpuKernels(cache=str(tmp_path / "routes.json"))
    kernels.prepare(model, recipe(), torch.device("cpu"))
    assert kinds(model) == ["TunedConv2d", "TunedConvTranspose2d", "TunedConv2d", "Conv2d"]  # padding="same" stays
    assert kernels.switched == 3 and no_allocator_change == [True]
    assert all(m.route_table is kernels.routes for m in model.modules()
               if isinstance(m, (TunedConv2d, TunedConvTranspose2d)))
    x = torch.randn(1, 3, 16, 16)
    reference = TinyModel()
    torch.testing.assert_close(model.networks["G"](x), reference.networks["G"](x), rtol=0, atol=0)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps", "meta"])
def test_prepare_off_the_cpu_swaps_nothing_and_changes_nothing(device: str, tmp_path: Path,
                                                               no_allocator_change: list) -> None:
    model = TinyModel()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kernels = CpuKernels(cache=str(tmp_path / "routes.json"))
    kernels.prepare(model, recipe(), torch.device(device))
    assert all(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    assert not any("route_table" in vars(m) for m in model.modules())
    assert no_allocator_change == [] and kernels.switched == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not (tmp_path / "routes.json").exists()
    assert kernels.notice is not None and "off on" in kernels.notice


@pytest.mark.parametrize("train, why", [({"compile": True}, "train.compile"), ({"precision": "bf16"}, "bf16"),
                                        ({"precision": "fp16"}, "fp16")])
def test_prepare_leaves_convolutions_to_pytorch_under_compile_or_low_precision(
        train: dict, why: str, no_allocator_change: list) -> None:
    model = TinyModel()
    kernels = CpuKernels(cache=None)
    kernels.prepare(model, recipe(**train), torch.device("cpu"))
    assert "Tuned" not in " ".join(kinds(model)) and kernels.switched == 0
    assert why in kernels.notice
    assert no_allocator_change == [True]  # the allocator setting is no convolution: it still applies


@pytest.mark.parametrize("recipe_like", [None, object(), {"train": {"precision": "fp32"}}, SimpleNamespace(train=None)],
                         ids=["none", "opaque", "mapping", "no train"])
def test_prepare_reads_the_recipe_only_where_it_can(recipe_like: Any, no_allocator_change: list) -> None:
    model = TinyModel()
    CpuKernels(cache=None).prepare(model, recipe_like, torch.device("cpu"))
    assert kinds(model).count("TunedConv2d") == 2


def test_a_mapping_recipe_asking_for_compile_is_honoured(no_allocator_change: list) -> None:
    model = TinyModel()
    CpuKernels(cache=None).prepare(model, {"train": {"compile": True}}, torch.device("cpu"))
    assert "Tuned" not in " ".join(kinds(model))


def test_reuse_freed_memory_false_leaves_the_allocator_alone(no_allocator_change: list) -> None:
    CpuKernels(cache=None, reuse_freed_memory=False).prepare(TinyModel(), recipe(), torch.device("cpu"))
    assert no_allocator_change == []


# -- notices ---------------------------------------------------------------------------------------------
def test_notice_says_whether_routes_are_repeatable(tmp_path: Path, no_allocator_change: list) -> None:
    path = tmp_path / "routes.json"
    first = CpuKernels(cache=str(path))
    assert first.notice is None  # nothing to say before prepare
    first.prepare(TinyModel(), recipe(), torch.device("cpu"))
    assert first.notice.startswith("cpu_kernels: timing convolution routes on first use")
    assert str(path) in first.notice and "may round differently" in first.notice and "\n" not in first.notice
    first.routes.choose("some layer", True, lambda: {"native": lambda: None})  # timed: now in the cache
    second = CpuKernels(cache=str(path))
    second.prepare(TinyModel(), recipe(), torch.device("cpu"))
    assert second.notice.startswith(f"cpu_kernels: convolution routes from {path}")
    assert "repeatable on this machine" in second.notice and "\n" not in second.notice
    uncached = CpuKernels(cache=None)
    uncached.prepare(TinyModel(), recipe(), torch.device("cpu"))
    assert "may round differently" in uncached.notice and "cache" in uncached.notice


# -- repeatable routes -----------------------------------------------------------------------------------
def _timed_pass(kernels: CpuKernels, plain: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepare a copy of ``plain`` and run one forward + backward big enough for its routes to be timed."""
    model = nn.Module()
    model.networks = nn.ModuleDict({"D": copy.deepcopy(plain)})
    kernels.prepare(model, recipe(), torch.device("cpu"))
    x = torch.randn(1, 128, 11, 11, generator=torch.Generator().manual_seed(1))  # 24 MFLOP a layer: timed
    out = model.networks["D"](x)
    out.square().sum().backward()
    return out.detach(), model.networks["D"][0].weight.grad


def test_two_accelerators_with_one_cache_choose_the_same_routes_and_compute_bit_for_bit(
        tmp_path: Path, no_allocator_change: list) -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(128, 128, 3), nn.Conv2d(128, 128, 3, padding=1))  # both timed
    cache = str(tmp_path / "routes.json")
    first = CpuKernels(cache=cache)
    first_out, first_grad = _timed_pass(first, plain)
    assert first.routes.timed == 2 and len(first.routes.used()) == 2
    second = CpuKernels(cache=cache)
    second_out, second_grad = _timed_pass(second, plain)
    assert second.routes.timed == 0  # every route from the cache: nothing timed
    assert second.routes.used() == first.routes.used()
    assert torch.equal(first_out, second_out) and torch.equal(first_grad, second_grad)


def test_without_a_cache_every_accelerator_times_its_own(no_allocator_change: list, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # nothing may land in a home folder either way
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(128, 128, 3))
    for _ in range(2):
        kernels = CpuKernels(cache=None)
        _timed_pass(kernels, plain)
        assert kernels.routes.timed == 1
    assert not (tmp_path / ".cache").exists()


def test_state_round_trip_restores_the_routes_ahead_of_the_cache(tmp_path: Path, no_allocator_change: list) -> None:
    cache = tmp_path / "routes.json"
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(128, 128, 3))
    run = CpuKernels(cache=str(cache))
    _timed_pass(run, plain)
    state = run.state_dict()
    (signature, route), = state["routes"].items()
    # the checkpoint is loaded with weights_only=True: plain data only
    buffer = io.BytesIO()
    torch.save({"accelerators": {"cpu_kernels": state}}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["accelerators"]["cpu_kernels"]
    assert loaded == state
    other = "gemm" if route != "gemm" else "native"
    resumed = CpuKernels(cache=str(cache))
    resumed.load_state_dict({**loaded, "routes": {signature: other}})  # a checkpoint says otherwise
    _timed_pass(resumed, plain)
    assert resumed.routes.used() == {signature: other} and resumed.routes.timed == 0  # the checkpoint's wins
    assert resumed.state_dict()["routes"] == {signature: other}
    before_prepare = CpuKernels(cache=str(cache))  # load_state_dict before prepare: the same outcome
    before_prepare.load_state_dict(loaded)
    _timed_pass(before_prepare, plain)
    assert before_prepare.state_dict()["routes"] == state["routes"]


def test_state_holds_only_the_routes_this_run_used(tmp_path: Path, no_allocator_change: list) -> None:
    from ganzoo_cpu_kernels.route_cache import RouteCache

    cache = tmp_path / "routes.json"
    RouteCache(cache).add({"a layer of another recipe": "gemm"})
    kernels = CpuKernels(cache=str(cache))
    kernels.prepare(TinyModel(), recipe(), torch.device("cpu"))
    assert kernels.state_dict()["routes"] == {}
    kernels.load_state_dict({"routes": {"restored": "native"}})
    assert kernels.state_dict()["routes"] == {"restored": "native"}
    with pytest.raises(ValueError, match="mapping"):
        kernels.load_state_dict({"routes": ["not", "a", "table"]})


def test_default_cache_lives_under_the_home_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert CpuKernels().cache.path == tmp_path / ".cache" / "ganzoo" / "cpu_kernels_routes.json"
    assert accelerator.DEFAULT_CACHE.startswith("~/.cache/ganzoo/")


# -- the allocator ---------------------------------------------------------------------------------------
_FAULTS_OF_REPEATED_STEPS = """
import importlib.util, resource, sys, torch
spec = importlib.util.spec_from_file_location("cpu_allocator", sys.argv[2])  # the module alone, not ganzoo
allocator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(allocator)
if sys.argv[1] == "reuse":
    assert allocator.reuse_freed_memory()
x = torch.ones(16 << 20)  # 64 MiB
faults = []
for _ in range(12):  # a "step" makes and frees two tensors of that size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = x * 2
    z = y + 1
    del y, z
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults[2:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the allocator setting is glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    """Once steps repeat, their tensors take memory freed by the last step instead of pages the
    kernel maps and zeroes afresh (32768 page faults a step here). The median step, because the
    heap's layout varies from process to process: now and then one step of the reusing process
    still places a tensor partly beyond the memory it had, and more rarely half of them do, so the
    reusing process gets three tries."""
    def median_faults(mode: str) -> tuple[float, list[int]]:
        done = subprocess.run([sys.executable, "-c", _FAULTS_OF_REPEATED_STEPS, mode, cpu_allocator.__file__],
                              capture_output=True, text=True, check=True)
        steps = [int(count) for count in done.stdout.split()]
        return statistics.median(steps), steps

    default, default_steps = median_faults("default")
    tries = []
    for _ in range(3):
        tries.append(median_faults("reuse"))
        if tries[-1][0] < 1000:
            break
    assert default > 16384 and min(median for median, _ in tries) < 1000, (default_steps, tries)
