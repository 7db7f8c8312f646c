"""Route choice: timed once and final, per table, kept in a per-machine cache file."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from cpu_kernels_testing import conv_pair

from ganzoo_cpu_kernels import conv_routes, route_cache
from ganzoo_cpu_kernels.conv_routes import RouteTable
from ganzoo_cpu_kernels.cpu_convs import _signature
from ganzoo_cpu_kernels.route_cache import RouteCache, machine_signature


def taking(seconds: float) -> Any:
    return lambda: time.sleep(seconds)


def test_fastest_route_takes_the_fastest_and_keeps_native_within_the_margin() -> None:
    assert conv_routes.fastest_route({"native": taking(0.03), "gemm": taking(0.005), "winograd": taking(0.015)},
                                     rounds=2) == "gemm"
    assert conv_routes.fastest_route({"native": taking(0.005), "gemm": taking(0.03)}, rounds=2) == "native"
    # a rewrite within the margin of the native kernels is not worth leaving them for
    assert conv_routes.fastest_route({"native": taking(0.0200), "gemm": taking(0.0199)}, rounds=2) == "native"


def test_choose_measures_once_for_good_and_skips_small_layers(table: RouteTable) -> None:
    calls: list[str] = []

    def timed_routes() -> dict[str, Any]:
        calls.append("measured")
        return {"native": lambda: None, "gemm": lambda: None}

    assert not conv_routes.worth_timing(conv_routes.TIMED_MIN_FLOPS - 1, conv_routes.TIMED_MIN_WEIGHTS - 1)
    assert conv_routes.worth_timing(conv_routes.TIMED_MIN_FLOPS, 0)
    assert conv_routes.worth_timing(0, conv_routes.TIMED_MIN_WEIGHTS)
    assert table.choose("small", False, timed_routes) == "native"
    assert calls == [] and table.choices() == {} and table.used() == {}
    first = table.choose("big", True, timed_routes)
    assert calls == ["measured"] and table.choices() == table.used() == {"big": first} and table.timed == 1
    for _ in range(3):  # never timed again: no re-timing, however long the run
        assert table.choose("big", True, timed_routes) == first
    assert len(calls) == 1
    assert not hasattr(conv_routes, "RETIME_AFTER_SECONDS") and not hasattr(conv_routes, "retiming")


def test_tables_are_separate() -> None:
    """Two accelerators (two models in one process) keep their own choices: nothing module-global."""
    one, other = RouteTable(), RouteTable()
    one.choose("layer", True, lambda: {"native": lambda: None})
    assert one.choices() == {"layer": "native"} and other.choices() == {}


def test_restored_choices_take_precedence_as_asked(table: RouteTable) -> None:
    def never() -> dict[str, Any]:
        raise AssertionError("timed")

    table.restore({"cached": "gemm", "both": "gemm"}, override=False, used=False)  # a cache's
    assert table.used() == {}  # not this run's until a call takes them
    table.restore({"both": "winograd", "checkpoint": "native"}, override=True, used=True)  # a checkpoint's
    table.restore({"both": "gemm", "checkpoint": "gemm"}, override=False, used=False)  # a cache read later
    assert table.choices() == {"cached": "gemm", "both": "winograd", "checkpoint": "native"}
    assert table.used() == {"both": "winograd", "checkpoint": "native"}
    assert table.choose("cached", True, never) == "gemm"
    assert table.used() == {"both": "winograd", "cached": "gemm", "checkpoint": "native"}
    table.clear()
    assert table.choices() == table.used() == {}


def test_two_threads_meeting_one_signature_time_it_once(table: RouteTable) -> None:
    timings: list[int] = []
    errors: list[BaseException] = []

    def timed_routes() -> dict[str, Any]:
        timings.append(1)
        return {"native": lambda: time.sleep(0.001), "gemm": lambda: time.sleep(0.002)}

    def worker() -> None:
        try:
            for _ in range(20):
                assert table.choose("shared", True, timed_routes) == "native"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(timings) == 1


def test_a_real_layer_is_measured_and_its_choice_recorded_without_moving_the_random_stream() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    table = RouteTable()
    fast, plain = conv_pair(128, 128, 3, 0, table)
    x = torch.randn(2, 128, 18, 18, requires_grad=True)  # 2 * 128 * 128 * 9 * 2 * 16 * 16 flops: measured
    with FlopCounterMode(display=False):  # the FLOP counter must not see (or count) the probes
        fast(x)
    assert table.choices() == {}
    torch.manual_seed(5)
    out = fast(x)
    after_timing = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(after_timing, torch.rand(4))  # timing drew nothing from the run's generator
    (signature, route), = table.choices().items()
    assert route in fast.routes(x) and "x(2, 128, 18, 18) grads111" in signature and table.timed == 1
    torch.testing.assert_close(out, plain(x), rtol=1e-4, atol=1e-4)
    assert x.grad is None and fast.weight.grad is None  # the probes leave no gradients behind


def test_a_route_that_cannot_compute_the_call_falls_back_to_native() -> None:
    table = RouteTable()
    fast, plain = conv_pair(128, 128, 5, 2, table)  # 5x5: no Winograd
    x = torch.randn(1, 128, 16, 16, requires_grad=True)
    table.restore({_signature(fast, x): "winograd", "unrelated": "no-such-route"}, override=True, used=True)
    out = fast(x)
    assert "ConvolutionBackward" in type(out.grad_fn).__name__
    torch.testing.assert_close(out, plain(x), rtol=0, atol=0)


def test_small_convolutions_keep_pytorchs_own_function() -> None:
    table = RouteTable()
    fast, _ = conv_pair(8, 8, 3, 1, table)  # far below the measured size: no custom function, nothing timed
    out = fast(torch.randn(2, 8, 6, 6, requires_grad=True))
    assert "ConvolutionBackward" in type(out.grad_fn).__name__
    assert table.choices() == {} and table.timed == 0


# -- the cache file ----------------------------------------------------------------------------------------
def test_machine_signature_names_the_cpu_torch_and_threads(torch_threads: Any) -> None:
    torch_threads(1)
    one = machine_signature()
    torch_threads(2)
    two = machine_signature()
    assert one != two and "1 threads" in one and "2 threads" in two
    assert torch.__version__ in two and route_cache.cpu_model() in two and route_cache.cpu_model()


def test_cache_keeps_routes_per_machine_and_never_replaces_one(tmp_path: Path) -> None:
    cache = RouteCache(tmp_path / "deep" / "routes.json")  # its folder is made on the first write
    assert cache.load() == {}
    cache.add({"a": "gemm"})
    cache.add({"a": "winograd", "b": "native"})  # "a" is in the file already: every reader saw gemm
    cache.add({"a": "native"}, machine="another CPU | torch 0 | 1 threads")
    assert cache.load() == {"a": "gemm", "b": "native"}
    assert RouteCache(cache.path).load("another CPU | torch 0 | 1 threads") == {"a": "native"}
    data = json.loads(cache.path.read_text())
    assert data["format"] == route_cache.FORMAT and data["version"] == route_cache.VERSION
    assert set(data["machines"]) == {machine_signature(), "another CPU | torch 0 | 1 threads"}
    assert sorted(p.name for p in cache.path.parent.iterdir()) == ["routes.json", "routes.json.lock"]  # no temp files


def test_a_table_adds_each_timed_choice_to_its_cache(tmp_path: Path) -> None:
    cache = RouteCache(tmp_path / "routes.json")
    table = RouteTable(cache)
    table.choose("small", False, lambda: {"native": lambda: None})  # not timed: not cached
    assert not cache.path.exists()
    chosen = table.choose("big", True, lambda: {"native": lambda: None, "gemm": lambda: None})
    assert cache.load() == {"big": chosen}


def test_home_folder_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert RouteCache("~/.cache/ganzoo/x.json").path == tmp_path / ".cache" / "ganzoo" / "x.json"


@pytest.mark.parametrize("content", ["{not json", '{"format": "something else", "version": 1, "machines": {}}',
                                     '{"format": "ganzoo-cpu-kernels routes", "version": 1, "machines": []}'])
def test_a_broken_cache_is_ignored_with_a_warning_and_rewritten(tmp_path: Path, content: str) -> None:
    cache = RouteCache(tmp_path / "routes.json")
    cache.path.write_text(content)
    with pytest.warns(RuntimeWarning, match="ignoring the route cache"):
        assert cache.load() == {}
    with pytest.warns(RuntimeWarning, match="ignoring the route cache"):
        cache.add({"a": "gemm"})
    assert cache.load() == {"a": "gemm"}


def test_an_unwritable_cache_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cache = RouteCache(blocker / "routes.json")  # its folder would be a file
    table = RouteTable(cache)
    with pytest.warns(RuntimeWarning, match="cannot write the route cache"):
        assert table.choose("big", True, lambda: {"native": lambda: None}) == "native"
    assert table.choices() == {"big": "native"}
