"""What a decoding verb shows on the terminal: a progress bar while it runs, failed inputs at the end.

The library (``nue_core.inference.runner``) only reports progress through a callback and returns
results; the bar, the wording on stderr and the exit status are the command line's, so they live here.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import typer

from nue_core.cli import EXIT_PARTIAL
from nue_core.inference.transcriber import TranscriptionResult


@contextlib.contextmanager
def progress_bar(total: int) -> Iterator[Callable[[int], None] | None]:
    """A rich bar on stderr over ``total`` inputs; yields its advance(n) callback, or None off a terminal.

    Passed as ``progress_bar`` to ``run_transcription`` (see ``nue_core.inference.runner.ProgressBar``).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:  # a log file gets no redraws
        yield None
        return
    columns = (TextColumn("transcribing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("transcribe", total=total)
        yield lambda n: bar.advance(task, n)


def report_failures(results: Sequence[TranscriptionResult]) -> list[str]:
    """One line per failed input (each names its file)."""
    return [r.error or r.source for r in results if not r.ok]


def exit_on_failures(results: Sequence[TranscriptionResult], headline: str) -> None:
    """Name every failed input on stderr under ``headline`` and exit with status 1 if any failed.

    ``headline`` may use ``{failed}`` and ``{total}``.
    """
    failures = report_failures(results)
    if failures:
        typer.secho(headline.format(failed=len(failures), total=len(results)), fg="red", err=True)
        for line in failures:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(EXIT_PARTIAL)
