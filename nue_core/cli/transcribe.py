"""``nue transcribe MODEL AUDIO... | --manifest M``: transcripts of files, folders or a manifest.

Files that cannot be read are named on stderr and skipped; the others are transcribed; the exit
status is 1 when any input failed. Runs data-parallel under torchrun / accelerate launch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from nue_core.cli import _decode_options as opt
from nue_core.cli import app
from nue_core.errors import NueError


@app.command()
def transcribe(
    model: str = typer.Argument(..., help="model folder, preset, 'default' (the embedded model; alone it transcribes its example recordings), a released Nue-ASR folder, or a Hugging Face repo id org/name"),
    audio: list[Path] = typer.Argument(None, help="audio files or folders (searched recursively)"),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="JSONL manifest or Kaldi data folder"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write results here (default: stdout)"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="text | tsv | jsonl | json (default: from --output's suffix)"),
    batch_size: opt.BatchSize = 16,
    num_beams: opt.NumBeams = 1,
    ctc_weight: opt.CTCWeight = None,
    max_new_tokens: opt.MaxNewTokens = None,
    repetition_limit: opt.RepetitionLimit = None,
    device: opt.Device = None,
    dtype: opt.DType = None,
    progress: opt.Progress = True,
) -> None:
    """Transcribe audio files (wav flac ogg mp3 opus ...) with a speech LM."""
    from nue_core.checkpoint import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME
    from nue_core.data.manifest import read_manifest
    from nue_core.inference.runner import RunOptions, exit_on_failures, run_transcription
    from nue_core.inference.sources import collect_audio
    from nue_core.inference.writers import write_results

    options = RunOptions(batch_size, num_beams, device, dtype, progress, max_new_tokens, ctc_weight, repetition_limit)
    inputs: list = read_manifest(manifest, require_text=False) if manifest else []
    inputs += collect_audio(audio or [])
    if not inputs and model == DEFAULT_MODEL_NAME and not manifest:
        # `nue transcribe default`: the embedded model on its own example recordings.
        inputs = collect_audio([DEFAULT_MODEL_DIR / "examples"])
    if not inputs:
        raise NueError("nothing to transcribe: give audio files, folders or --manifest (folders hold no audio?)")
    kind = _output_format(output, fmt, default="text" if len(inputs) == 1 and output is None else "tsv")
    results = run_transcription(model, inputs, options, output)
    if results is None:  # a data-parallel rank other than 0: rank 0 writes and reports
        return
    handle = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        write_results(handle, results, kind)
    finally:
        if output:
            handle.close()
    exit_on_failures(results, "{failed} of {total} input(s) failed:")


def _output_format(output: Optional[Path], fmt: Optional[str], default: str) -> str:
    """The output format, with ``output`` checked writable: both before decoding, which can take minutes.

    Raises:
        typer.BadParameter: a usage error (exit 2) naming the option at fault.
    """
    from nue_core.inference.writers import infer_format, prepare_destination

    try:
        kind = infer_format(output, fmt, default)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--format'" if fmt else "'--output'") from None
    if output is not None:
        try:
            prepare_destination(output)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--output'") from None
    return kind
