"""The ``ganzoo`` command line: one module per sub-command, all attached to :data:`main`."""
from __future__ import annotations

from ganzoo.cli.app import main
from ganzoo.cli import data_cmd, info_cmd, list_cmd, train_cmd  # noqa: F401  (each import attaches its sub-command)

from ganzoo.cli import data_tools_cmd, export_cmd  # noqa: F401,E402  (download/check/edges; export)

from ganzoo.cli import eval_cmd, import_cmd, sample_cmd  # noqa: F401,E402  (sample, eval, import-official)

from ganzoo.cli import bench_cmd  # noqa: F401,E402  (bench)

from ganzoo.cli import ablate_cmd  # noqa: F401,E402  (ablate)

__all__ = ["main"]
