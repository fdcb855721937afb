"""The ``nue`` command line: one module per verb, registered on one typer app.

Exit status (also in ``nue --help`` and docs/inference.md): every expected failure is one line on
stderr naming the file, field or option at fault, and ends the command with

- 0: done;
- 1: done, but some inputs failed (each named on stderr; the others are in the output);
- 2: usage error, or an input, config, model or ``--output`` the command cannot use: nothing done;
- 70: internal error, a bug in nue-asr or a plugin (``NUE_DEBUG=1`` shows the traceback);
- 74: an output could not be written during the run (disk full ...): the previous file is
  unchanged and what was finished is kept in ``<output>.partial``;
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperCommand

from nue_core.errors import NueError, OutputError, one_line

EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERNAL, EXIT_IO, EXIT_INTERRUPTED = 1, 2, 70, 74, 130
DEBUG_VARIABLE = "NUE_DEBUG"
EXIT_STATUS_HELP = (
    f"Exit status: 0 done; {EXIT_PARTIAL} some inputs failed (named on stderr); {EXIT_USAGE} usage error or an "
    f"input/config/model/--output that cannot be used; {EXIT_INTERNAL} internal error (a bug: rerun with "
    f"{DEBUG_VARIABLE}=1 for the traceback); {EXIT_IO} an output could not be written (previous file kept, "
    f"finished results in <output>.partial); {EXIT_INTERRUPTED} interrupted."
)

app = typer.Typer(
    name="nue",
    help="nue-asr: LLM-based end-to-end speech recognition (speech encoder + bridge + decoder-only LLM).",
    epilog=EXIT_STATUS_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_verbs() -> None:
    """Import every verb module of this package; each adds its command to ``app`` on import."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):  # a verb that chose its own class keeps it
            info.cls = _VerbCommand


# The UsageError of the click that typer runs on (typer >= 0.29 bundles its own copy).
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _VerbCommand(TyperCommand):
    """A verb whose usage errors always carry its context, so its usage line is printed with them.

    click raises a few parse errors without one (``--flag=value``: "does not take a value"), which
    would print the error alone.
    """

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _UsageError as exc:
            if exc.ctx is None:
                exc.ctx, exc.cmd = ctx, ctx.command
            raise

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # typer turns it into exit status 130 without a word; say why the command stopped.
            typer.secho("interrupted", fg="red", err=True)
            raise


def main() -> None:
    """Console-script entry point: run the verb, turn what it raises into one line and a status.

    Usage errors (unknown option, missing argument, bad value) are shown by typer itself: the
    usage line and the error, exit status 2. It has to be typer that shows them: typer >= 0.29
    runs on its own copy of click (``typer._click``), whose exceptions are not ``click``'s, so
    catching ``click.ClickException`` here would miss them and print a traceback. Everything else
    that reaches here is reported in one line with the exit status of the module docstring.
    Verbs convert errors where the file is known; the ``OSError`` and ``Exception`` branches are
    the last resort for what slipped through. ``NUE_DEBUG=1`` re-raises, showing the traceback.
    """
    try:
        _register_verbs()
        # Standalone mode exits itself (typer.Exit's code, 2 for usage errors, 130 on Ctrl-C);
        # prog_name: `python -c ...` or a torchrun launch would otherwise show an odd name in "Usage:".
        app(prog_name="nue")
    except KeyboardInterrupt:  # before typer runs (while the verbs are imported)
        typer.secho("interrupted", fg="red", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last resort: no traceback reaches a user
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        message, status = _describe_failure(exc)
        typer.secho(f"error: {message}", fg="red", err=True)
        sys.exit(status)


def _describe_failure(exc: Exception) -> tuple[str, int]:
    """The line to print for ``exc`` and the exit status (see the module docstring)."""
    if isinstance(exc, OutputError):
        return str(exc), EXIT_IO
    if isinstance(exc, NueError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, OSError):  # not converted where it happened: still say which file and why
        from nue_core.errors import errno_meaning

        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{errno_meaning(exc)}", EXIT_IO
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller --batch-size, a smaller model or shorter inputs", EXIT_INTERNAL
    detail = one_line(str(exc), 300) or "(no message)"
    return (f"internal error ({type(exc).__name__}: {detail}); this is a bug in nue-asr or a plugin: "
            f"run again with {DEBUG_VARIABLE}=1 to see the traceback and report it"), EXIT_INTERNAL
