"""``nue transcribe MODEL AUDIO... | --manifest M``: transcripts of files, folders or a manifest.

Files that cannot be read are named on stderr and skipped; the others are transcribed; the exit
status is 1 when any input failed. ``--output`` is checked before anything is decoded and written
as results come, atomically (see ``nue_core.inference.writers``). Runs data-parallel under
torchrun / accelerate launch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from nue_core.cli import _decode_options as opt
from nue_core.cli import app
from nue_core.cli._output import check_output
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
    from nue_core.inference.distributed import dist_info
    from nue_core.cli._run_report import exit_on_failures, progress_bar
    from nue_core.inference.runner import RunOptions, run_transcription
    from nue_core.inference.sources import collect_audio, read_entries
    from nue_core.inference.writers import ResultWriter

    _output_format(output, fmt, default="tsv")  # a bad --output or --format: found before anything else
    if output is not None:
        check_output(output, create_parents=True)
    options = RunOptions(batch_size, num_beams, device, dtype, progress, max_new_tokens, ctc_weight, repetition_limit)
    inputs: list = read_entries(manifest, require_text=False) if manifest else []
    inputs += collect_audio(audio or [])
    if not inputs and model == DEFAULT_MODEL_NAME and not manifest:
        # `nue transcribe default`: the embedded model on its own example recordings.
        inputs = collect_audio([DEFAULT_MODEL_DIR / "examples"])
    if not inputs:
        raise NueError("nothing to transcribe: give audio files, folders or --manifest (folders hold no audio?)")
    kind = _output_format(output, fmt, default="text" if len(inputs) == 1 and output is None else "tsv")
    if not dist_info().is_main:  # a data-parallel rank other than 0: rank 0 writes and reports
        run_transcription(model, inputs, options, output)
        return
    if output is None and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # a non-UTF-8 file name must not end the run
    # The output file is opened (as <output>.partial) before the model loads: each result is
    # written as it comes, and the file replaces a previous one only once complete.
    with ResultWriter(output, kind, stream=sys.stdout) as writer:
        results = run_transcription(model, inputs, options, output, on_result=writer.add, progress_bar=progress_bar)
    assert results is not None
    exit_on_failures(results, "{failed} of {total} input(s) failed:")


def _output_format(output: Optional[Path], fmt: Optional[str], default: str) -> str:
    """The output format from ``--format`` or ``--output``'s suffix, else ``default``.

    Raises:
        typer.BadParameter: a usage error (exit 2) naming the option at fault.
    """
    from nue_core.inference.writers import infer_format

    try:
        return infer_format(output, fmt, default)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--format'" if fmt else "'--output'") from None
