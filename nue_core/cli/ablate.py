"""``nue ablate SWEEP.yaml``: run a sweep of config permutations and tabulate the results."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nue_core.cli import app
from nue_core.cli._output import OldOut, check_output, pick_output


@app.command()
def ablate(
    ctx: typer.Context,
    sweep: Path = typer.Argument(..., help="sweep YAML (base config + axes or variants)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="output folder (default: runs/<sweep file name>)"),
    old_out: OldOut = None,
    cell: Optional[str] = typer.Option(None, "--cell", help="run only this cell"),
    list_cells: bool = typer.Option(False, "--list", help="print the cells and exit"),
) -> None:
    """Train and evaluate each cell (finished cells are skipped), then write results.md/.csv/.png."""
    from nue_core.sweep import expand, load_sweep
    from nue_core.sweep_run import run_sweep

    target = pick_output(ctx, output, old_out) or Path("runs") / sweep.stem
    if list_cells:
        spec, root = load_sweep(sweep)
        for c in expand(spec, root):
            typer.echo(c.name)
        return
    check_output(target, folder=True)
    results = run_sweep(sweep, target, only=cell, say=typer.echo)
    typer.echo((target / "results.md").read_text(encoding="utf-8") if results else "no finished cells yet")
