"""The ``nue`` command line: one module per verb, registered on one typer app."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperCommand

from nue_core.errors import NueError

app = typer.Typer(
    name="nue",
    help="nue-asr: LLM-based end-to-end speech recognition (speech encoder + bridge + decoder-only LLM).",
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


def main() -> None:
    """Console-script entry point.

    Usage errors (unknown option, missing argument, bad value) are shown by typer itself: the
    usage line and the error, exit status 2. It has to be typer that shows them: typer >= 0.29
    runs on its own copy of click (``typer._click``), whose exceptions are not ``click``'s, so
    catching ``click.ClickException`` here would miss them and print a traceback. Errors in what
    the user asked for that only show later (``NueError``: unknown model, bad config ...) print one
    line and also exit with status 2.
    """
    _register_verbs()
    try:
        # Standalone mode exits itself (typer.Exit's code, 2 for usage errors, 1 for Abort);
        # prog_name: `python -c ...` or a torchrun launch would otherwise show an odd name in "Usage:".
        app(prog_name="nue")
    except NueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
