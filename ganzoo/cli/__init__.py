"""The ``ganzoo`` command line: one module per sub-command, all attached to :data:`main`.

The sub-command modules are imported when a command is looked up (:func:`load_commands`), not when
this package is: ``ganzoo --version`` answers without importing torch.
"""
from __future__ import annotations

import importlib
import os
import sys

#: The modules whose imports attach the sub-commands to :data:`main`, in the order they load.
COMMAND_MODULES = ("data_cmd", "info_cmd", "list_cmd", "train_cmd", "data_tools_cmd", "export_cmd", "eval_cmd",
                   "import_cmd", "sample_cmd", "bench_cmd", "ablate_cmd")


def _running_as_the_command() -> bool:
    """Whether this process is the ``ganzoo`` command (console script or ``python -m ganzoo``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    return name in ("ganzoo", "ganzoo.exe") or argv0.replace(os.sep, "/").endswith("ganzoo/__main__.py")


def load_commands() -> None:
    """Import every sub-command module (each import attaches its command); a no-op after the first call."""
    try:
        for name in COMMAND_MODULES:
            importlib.import_module(f"ganzoo.cli.{name}")
    except KeyboardInterrupt:
        # Ctrl-C while the command is still importing torch: one line and exit 130, no traceback. In a
        # Python session importing ganzoo.cli, the interrupt stays an interrupt.
        if not _running_as_the_command():
            raise
        sys.stderr.write("interrupted (Ctrl-C) while starting; nothing was done\n")
        raise SystemExit(130) from None


from ganzoo.cli.app import main  # noqa: E402  (app.py calls load_commands when a command is looked up)

__all__ = ["COMMAND_MODULES", "load_commands", "main"]
