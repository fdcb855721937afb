"""``nue export`` and ``nue merge-lora``: write a model in another layout, fold LoRA into weights."""

from __future__ import annotations

from pathlib import Path

import typer

from nue_core.cli import app
from nue_core.cli._output import check_output
from nue_core.errors import ConfigError, writing


@app.command()
def export(
    model: str = typer.Argument(..., help="model folder, adapter folder, preset or 'default'"),
    format: str = typer.Option(..., "--format", "-f", help="layout to write, e.g. nue-asr"),
    output: Path = typer.Option(..., "--output", "-o", help="folder to write"),
) -> None:
    """Write a model in a foreign layout a plugin knows (``nue plugins`` lists them)."""
    from nue_core.inference.runner import load_model
    from nue_core.plugins import get_plugins

    check_output(output, folder=True)
    exporters = get_plugins().exporters
    if format not in exporters:
        raise ConfigError(f"unknown export format '{format}'; installed: {', '.join(sorted(exporters)) or 'none'}")
    loaded = load_model(model)
    with writing(output):
        exporters[format].export(loaded, output)
    typer.echo(f"wrote {output} ({format} layout)")


@app.command("merge-lora")
def merge_lora(
    model: str = typer.Argument(..., help="model or adapter folder with LoRA adapters"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for the merged model"),
) -> None:
    """Fold LoRA adapters into the base weights and save a plain model folder."""
    from nue_core.checkpoint import save_model
    from nue_core.inference.runner import load_model
    from nue_core.trainability import merge_adapters

    check_output(output, folder=True)
    loaded = load_model(model)
    before = loaded.config
    merged = merge_adapters(loaded)
    if merged.config == before:
        raise ConfigError(f"{model}: has no LoRA adapter to merge")
    with writing(output):
        save_model(merged, output)
    typer.echo(f"merged adapters into {output}")
