"""The output option, spelled alike on every verb: ``--output`` / ``-o``.

``nue evaluate``, ``nue train`` and ``nue ablate`` used to spell it ``--out``; they keep that as a
hidden alias (``OldOut``) so existing scripts still run, while help shows one spelling.
``check_output`` checks the path before a verb starts its work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

OldOut = Annotated[Optional[Path], typer.Option("--out", hidden=True, help="old spelling of --output")]


def pick_output(
    ctx: typer.Context, output: Optional[Path], old_out: Optional[Path], required: bool = False
) -> Optional[Path]:
    """The path given as ``--output`` or as its old spelling ``--out``.

    Args:
        ctx: the verb's context, so that a problem is a usage error (usage line, exit status 2).
        required: a missing path is a usage error.

    Returns:
        the path, or None when neither was given and it is not required.
    """
    if output is not None and old_out is not None and output != old_out:
        ctx.fail(f"--output {output} and --out {old_out}: give one (--out is the old spelling of --output)")
    chosen = output if output is not None else old_out
    if chosen is None and required:
        ctx.fail("Missing option '--output' / '-o'.")
    return chosen


def check_output(path: Path, folder: bool = False, create_parents: bool = False, option: str = "--output") -> None:
    """A usage error naming ``option`` (exit 2) unless ``path`` can be written; call it first.

    Args:
        folder: ``path`` is a folder to write into (else a file).
        create_parents: create the missing folders that will hold the file ``path``.
        option: the option that gave ``path`` (``--output``, ``--output-dir`` ...).

    Raises:
        typer.BadParameter: what is wrong (a file in the way, not writable ...) and the path.
    """
    from nue_core.errors import OutputError
    from nue_core.inference.writers import check_destination, prepare_destination

    try:
        if create_parents and not folder:
            prepare_destination(path)
        else:
            check_destination(path, folder=folder)
    except OutputError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None
