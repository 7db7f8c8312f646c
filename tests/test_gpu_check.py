"""``benchmarks/gpu_check.sh`` on a machine without CUDA: one line saying so, exit 0, in seconds.

The checks themselves need a GPU (docs/performance.md, "GPU check"); here CUDA is hidden even where
there is one, so the test means the same everywhere.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_check_without_cuda_says_skipped_and_exits_0() -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    started = time.perf_counter()
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and "skipped" in lines[0] and "no CUDA device" in lines[0]
    assert time.perf_counter() - started < 60
