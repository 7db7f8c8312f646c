"""The ``ganzoo`` command line: one module per sub-command, all attached to :data:`main`."""
from __future__ import annotations

import os
import sys


def _running_as_the_command() -> bool:
    """Whether this process is the ``ganzoo`` command (console script or ``python -m ganzoo``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    return name in ("ganzoo", "ganzoo.exe") or argv0.replace(os.sep, "/").endswith("ganzoo/__main__.py")


try:
    from ganzoo.cli.app import main
    from ganzoo.cli import data_cmd, info_cmd, list_cmd, train_cmd  # noqa: F401  (each import attaches its sub-command)

    from ganzoo.cli import data_tools_cmd, export_cmd  # noqa: F401,E402  (download/check/edges; export)

    from ganzoo.cli import eval_cmd, import_cmd, sample_cmd  # noqa: F401,E402  (sample, eval, import-official)

    from ganzoo.cli import bench_cmd  # noqa: F401,E402  (bench)

    from ganzoo.cli import ablate_cmd  # noqa: F401,E402  (ablate)
except KeyboardInterrupt:
    # Ctrl-C while the command is still importing torch: one line and exit 130, no traceback. In a
    # Python session importing ganzoo.cli, the interrupt stays an interrupt.
    if not _running_as_the_command():
        raise
    sys.stderr.write("interrupted (Ctrl-C) while starting; nothing was done\n")
    raise SystemExit(130) from None

__all__ = ["main"]
