"""Progress of a long run, one bar per stage on a terminal, one log line per step elsewhere.

    with stage_progress("validate+stage", total=len(drops)) as advance:
        for fut in futures:
            ...
            advance(f"{name}: staged")

On a terminal (stderr is a TTY) a rich progress bar shows the stage's done/total and elapsed time;
in a scheduled run or CI, where nobody watches a bar, each step is one plain log line instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("fusionlake")


@contextmanager
def stage_progress(stage: str, total: int, logger: logging.Logger | logging.LoggerAdapter = log,
                   console: Console | None = None) -> Iterator[Callable[[str], None]]:
    """Yield ``advance(note)``, to be called once per finished step of the stage.

    ``logger`` takes the plain lines when there is no terminal (in a flow: its run logger).
    """
    console = console or Console(stderr=True)
    if total == 0:
        yield lambda note="": None
        return
    if not console.is_terminal:
        done = 0

        def advance(note: str = "") -> None:
            nonlocal done
            done += 1
            logger.info("%s %d/%d %s", stage, done, total, note)

        yield advance
        return
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[note]}"))
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(stage, total=total, note="")
        yield lambda note="": bar.update(task, advance=1, note=note)
