"""``nue plot RUN_DIR``: loss and CER/WER curves of a training run to a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nue_core.cli import app
from nue_core.cli._output import check_output


def plot_run(run_dir: Path, output: Path) -> Path:
    """Draw training/validation loss and validation CER/WER from ``metrics.jsonl`` into ``output``."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    from nue_core.errors import NueError, reading, writing
    from nue_core.train.logs import METRICS_FILE, read_metrics

    with reading(run_dir / METRICS_FILE):
        metrics = read_metrics(run_dir)
    if not metrics:
        raise NueError(f"{run_dir / METRICS_FILE}: no metrics to plot (is this a run folder of `nue train`?)")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for split, style in (("train", "-"), ("valid", "o-")):
        rows = metrics.get(split, [])
        if rows:
            left.plot([r["step"] for r in rows], [r["loss"] for r in rows], style, label=f"{split} loss")
    left.set(xlabel="step", ylabel="loss", title="loss")
    left.legend()
    valid = metrics.get("valid", [])
    for key in ("cer", "wer"):
        if valid:
            right.plot([r["step"] for r in valid], [100 * r[key] for r in valid], "o-", label=key.upper())
    right.set(xlabel="step", ylabel="%", title="validation error rates")
    if valid:
        right.legend()
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    try:
        with writing(output):
            output.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(output, dpi=100)
    finally:
        plt.close(fig)
    return output


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="run folder written by `nue train`"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="PNG path (default RUN_DIR/curves.png)"),
) -> None:
    """Plot loss and CER/WER curves of a training run to a PNG."""
    if output is not None:  # the default (inside RUN_DIR) is checked with RUN_DIR itself
        check_output(output)
    path = plot_run(run_dir, output or run_dir / "curves.png")
    typer.echo(f"wrote {path}")
