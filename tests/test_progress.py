"""What a run prints while it trains: a two-row bar on a terminal, plain unwrapped lines otherwise."""
from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from rich.text import Text

from ganzoo.training.run_log import RunLog, status, training_progress

LOSSES = {name: torch.tensor(1.3123) for name in
          ("gan", "l1", "kl", "gan2", "latent", "D", "D2", "D_real", "D_fake", "D2_real", "D2_fake", "G_total")}
ETA = re.compile(r"eta \d+:\d\d:\d\d")


def terminal(width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(width=width, file=buffer, force_terminal=True), buffer


def last_frame(buffer: io.StringIO, rows: int = 2) -> list[str]:
    """The last ``rows`` lines the live display drew, without colours or cursor moves."""
    lines = [line for line in Text.from_ansi(buffer.getvalue()).plain.splitlines() if line.strip()]
    return lines[-rows:]


def run_bar(console: Console, total: int, steps: list[int]) -> None:
    with training_progress(total, 0, console=console) as progress:
        for step in steps:
            progress.last_time -= 1.0  # as if a second passed: the losses row is refreshed
            progress.advance(step, LOSSES)
            time.sleep(0.01)


@pytest.mark.parametrize("width", [80, 120])
def test_the_bar_row_keeps_step_total_and_eta_and_the_losses_get_their_own_row(width: int) -> None:
    console, buffer = terminal(width)
    run_bar(console, 14000, [1000, 2000, 3000])
    bar, losses = last_frame(buffer)
    assert "3000/14000" in bar and ETA.search(bar), bar
    assert "it/s" in bar and "━" in bar
    assert "gan=" not in bar
    assert losses.startswith("gan=1.312 l1=1.312")
    assert "G_total" not in losses
    assert len(bar) <= width and len(losses) <= width
    if width == 80:  # eleven losses do not fit 80 columns: the row is cut, not wrapped
        assert losses.endswith("…")


def test_a_start_up_phase_shows_under_the_bar_until_the_first_losses() -> None:
    console, buffer = terminal(80)
    with training_progress(300, 0, console=console) as progress:
        progress.status("tuning convolutions…")
        frame = last_frame(buffer)
        progress.last_time -= 1.0
        progress.advance(1, LOSSES)
    assert "0/300" in frame[0] and frame[1] == "tuning convolutions…"
    assert last_frame(buffer)[1].startswith("gan=")


def test_plain_lines_one_per_log_step_never_wrapped_at_80_columns() -> None:
    buffer = io.StringIO()
    console = Console(width=80, file=buffer)  # a pipe: not a terminal
    with training_progress(300, 0, console=console, bar=False, every=100) as progress:
        progress.status("building networks…")
        for step in range(1, 301):
            progress.advance(step, LOSSES)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "building networks…"
    assert [line.split()[1] for line in lines[1:]] == ["100/300", "200/300", "300/300"]
    first = lines[1]
    assert len(first) > 80  # one line however long: it greps
    assert first.startswith("step 100/300  gan=1.312 l1=1.312 ") and ETA.search(first) and "it/s" in first
    assert "eta" not in lines[-1]  # nothing left at the last step


def test_a_console_that_is_not_a_terminal_gets_plain_lines_even_when_a_bar_is_asked_for() -> None:
    buffer = io.StringIO()
    with training_progress(4, 0, console=Console(width=80, file=buffer), every=2) as progress:
        for step in range(1, 5):
            progress.advance(step, LOSSES)
    assert [line.split()[1] for line in buffer.getvalue().splitlines()] == ["2/4", "4/4"]
    assert "━" not in buffer.getvalue()


def test_run_log_progress_keeps_the_trainer_interface(tmp_path: Path) -> None:
    buffer = io.StringIO()
    recipe = {"name": "t", "log": {"every": 3}}
    log = RunLog(tmp_path / "run", recipe, console=Console(width=80, file=buffer))
    with log.progress(6, 0, enabled=False) as progress:  # --no-progress: lines every log.every steps
        for step in range(1, 7):
            progress.advance(step, LOSSES)
    assert [line.split()[1] for line in buffer.getvalue().splitlines()] == ["3/6", "6/6"]
    log.writer.close()

    quiet = io.StringIO()
    other_rank = RunLog(tmp_path / "rank1", recipe, enabled=False, console=Console(file=quiet))
    with other_rank.status("building networks…"), other_rank.progress(6, 0, enabled=True) as progress:
        for step in range(1, 7):
            progress.advance(step, LOSSES)
            progress.status("still here")
    assert quiet.getvalue() == ""


def test_status_spins_on_a_terminal_and_prints_one_line_otherwise() -> None:
    buffer = io.StringIO()
    with status("generating shapes world…", Console(file=buffer, width=80)):
        pass
    with status("building networks…", Console(file=buffer, width=80), spinner=False):
        pass
    with status("not shown", Console(file=buffer, width=80), enabled=False):
        pass
    assert buffer.getvalue().splitlines() == ["generating shapes world…", "building networks…"]

    console, spun = terminal(80)
    with status("generating shapes world…", console):
        time.sleep(0.05)
    assert "generating shapes world…" in Text.from_ansi(spun.getvalue()).plain
