"""``nue train``: train a model (config, preset or saved folder) on manifests into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nue_core.cli import app
from nue_core.cli._output import OldOut, check_output, pick_output


@app.command()
def train(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model YAML, preset name, or a saved model folder (continues from its weights)"),
    train_manifest: list[str] = typer.Option(
        ..., "--train", help="training manifest: JSONL (ours, NeMo, lhotse cuts), Kaldi folder, saved HF dataset, "
        ".tar shards (a file, folder or {000..009} list); repeat --train or give a comma list for several (docs/data.md)"
    ),
    valid_manifest: Optional[list[str]] = typer.Option(
        None, "--valid", help="validation manifest(s), as --train (loss, CER/WER, best model)"
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="run folder: checkpoints/, best/, final/, metrics.jsonl (required)"),
    old_out: OldOut = None,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="train settings YAML (TrainConfig fields)"),
    override: list[str] = typer.Option(
        [], "--set", "-s", help="train setting, e.g. lr=3e-4 or augment.speed=[0.9,1.0,1.1]; model.KEY=V overrides the model config"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in --output"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="delete the run already in --output and start over (only a run's own files; refused if the folder holds others)"
    ),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip (and count) bad manifest entries, and audio found unreadable during training, instead of stopping"),
) -> None:
    """Train with AdamW, warm-up/decay, validation (CER/WER) and resumable checkpoints.

    Runs on one process, or many under `torchrun` / `accelerate launch` (DDP; see docs/scaling.md).
    SIGTERM writes a checkpoint and exits; --resume continues exactly where it stopped. A folder
    that already holds a run needs --resume or --overwrite.
    """
    from nue_core.cli._train_progress import RichTrainProgress
    from nue_core.overrides import parse_override, set_dotted
    from nue_core.train.config import TrainConfig
    from nue_core.train.run import train as run_training

    out = pick_output(ctx, output, old_out, required=True)
    check_output(out, folder=True)
    settings = TrainConfig.load(config).model_dump() if config else {}
    model_overrides = {}
    for text in override:
        key, value = parse_override(text)
        if key.startswith("model."):
            model_overrides[key[len("model."):]] = value
        else:
            settings = set_dotted(settings, key, value)
    if skip_bad:
        settings["skip_bad"] = True
    train_config = TrainConfig.from_dict(settings, source="nue train settings")
    result = run_training(model, train_manifest, valid_manifest or None, out, train_config, resume, model_overrides,
                          overwrite=overwrite, progress=RichTrainProgress)
    if result.status == "stopped":
        typer.echo(f"stopped at step {result.step}; resume with: nue train {model} ... --output {out} --resume")
        return
    line = f"finished at step {result.step}; final model: {result.final_dir}"
    if result.validation is not None:
        line += f"; valid CER {result.validation.cer:.2%} WER {result.validation.wer:.2%}"
    if result.bad_steps:
        line += f"; {result.bad_steps} non-finite step(s) skipped"
    typer.echo(line)
