"""The root ``ganzoo`` click group and the error handling every sub-command shares."""
from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape

from ganzoo import __version__
from ganzoo.errors import GanzooError

err_console = Console(stderr=True)


def _unwrap_worker_error(error: GanzooError) -> None:
    """A DataLoader worker re-raises our error with its traceback folded into the message:
    keep only the original message and hint."""
    if "Original Traceback" not in error.message:
        return
    at = error.message.rfind("\nganzoo.errors.")
    tail = error.message[at + 1:] if at >= 0 else error.message.strip().splitlines()[-1]
    text = tail.partition(": ")[2] or tail
    message, _, hint = text.partition("\n  hint: ")
    error.message = message.strip()
    error.hint = error.hint or hint.strip() or None


def print_error(error: GanzooError) -> None:
    """Print a user-facing error on one screen, without a traceback."""
    _unwrap_worker_error(error)
    # escape(): messages quote user text such as `pip install "ganzoo[onnx]"`, which is not rich markup.
    # A run stopped on purpose (Ctrl-C, SIGTERM) is no error: such errors carry ``label = "stopped"``.
    label = getattr(error, "label", "error")
    colour = "yellow" if label == "stopped" else "red"
    err_console.print(f"[bold {colour}]{label}:[/] {escape(error.message)}", highlight=False, markup=True,
                      soft_wrap=True)
    if error.hint:
        err_console.print(f"[yellow]hint:[/] {escape(error.hint)}", highlight=False, soft_wrap=True)


#: Exit code of a command stopped by Ctrl-C (128 + SIGINT, what shells report).
INTERRUPTED_EXIT_CODE = 130


def print_interrupted(interrupt: BaseException | None = None) -> None:
    """The line a Ctrl-C prints. Outside training: one line. A second Ctrl-C during training stops at
    once and carries its own message (which checkpoint is the last, how to resume) as ``args``:
    ``(message, hint)``."""
    args = getattr(interrupt, "args", ()) or ()
    if args and isinstance(args[0], str):
        hint = args[1] if len(args) > 1 and isinstance(args[1], str) else None
        print_error(_Stopped(args[0], hint=hint))
    else:
        sys.stderr.write("interrupted (Ctrl-C); nothing was left half-written\n")
    sys.stderr.flush()


class _Stopped(GanzooError):
    label = "stopped"


class GanzooGroup(click.Group):
    """A click group that turns every GanzooError into a message and its exit code.

    Ctrl-C exits 130 with one line, also while a command is still importing its modules, and a
    recursion or memory error caused by an absurd input is one line, not a thousand-line traceback.
    """

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # The sub-commands are imported on first use, so `ganzoo --version` never imports torch.
        from ganzoo.cli import load_commands

        load_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        from ganzoo.cli import load_commands

        load_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GanzooError as error:
            print_error(error)
            sys.stderr.flush()
            ctx.exit(error.exit_code)
        except KeyboardInterrupt as interrupt:
            print_interrupted(interrupt)
            ctx.exit(INTERRUPTED_EXIT_CODE)
        except RecursionError:
            print_error(GanzooError("an input is nested too deeply to process (Python's recursion limit)",
                                    hint="a recipe or file with hundreds of nested brackets or aliases"))
            ctx.exit(2)
        except MemoryError:
            print_error(GanzooError("ran out of memory", hint="the recipe or input asks for more memory than "
                                    "this machine has (image size, widths, batch size)"))
            ctx.exit(2)
        except OSError as exc:  # the machine, not ganzoo: a full or read-only disk, a folder without permission
            import errno

            hints = {errno.ENOSPC: "free some disk space", errno.EROFS: "choose a folder on a writable file system",
                     errno.EACCES: "check the permissions of the file or folder", errno.EPERM:
                     "check the permissions of the file or folder", getattr(errno, "EDQUOT", -1): "free some quota"}
            if exc.errno not in hints:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            print_error(GanzooError(f"{exc.strerror or exc}{where}", hint=hints[exc.errno]))
            ctx.exit(1)
        except RuntimeError as exc:  # torch's allocators: CPU "can't allocate memory", CUDA OutOfMemoryError
            text = str(exc)
            if type(exc).__name__ != "OutOfMemoryError" and "can't allocate memory" not in text:
                raise
            first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
            print_error(GanzooError(f"ran out of memory ({first[:300]})",
                                    hint="lower the widths (ngf/ndf/nef), the image size or the batch size"))
            ctx.exit(2)


@click.group(cls=GanzooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ganzoo")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE",
              help="Import a plugin (an installed module or a .py file) before running. Repeatable.")
def main(plugins: tuple[str, ...] = ()) -> None:
    """ganzoo: pix2pix, CycleGAN and BicycleGAN from one registry of interchangeable parts."""
    from ganzoo.plugins import activate_plugins

    activate_plugins(cli=plugins)
