"""The ``nue`` command line: one module per verb, registered on one typer app."""

from __future__ import annotations

import sys

import typer

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


def main() -> None:
    """Console-script entry point: user errors print one clear message and exit with status 2."""
    _register_verbs()
    try:
        # standalone_mode=False returns typer.Exit's code instead of exiting: pass it on.
        sys.exit(app(standalone_mode=False) or 0)
    except NueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
