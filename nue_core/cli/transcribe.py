"""``nue transcribe MODEL AUDIO... | --manifest M``: transcripts of files, folders or a manifest.

Files that cannot be read are named on stderr and skipped; the others are transcribed; the exit
status is 1 when any input failed. ``--output`` (one file) or ``--output-dir`` (one file per input
and format, ``nue_core.inference.output_dir``) is checked before anything is decoded and written
as results come, atomically (see ``nue_core.inference.writers``). ``--timestamps segment|word``
adds times; srt and vtt use segment times when it is not given. Runs data-parallel under
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
from nue_core.subtitles import TIMESTAMP_KINDS  # torch-free home: checked before anything heavy loads


@app.command()
def transcribe(
    model: str = typer.Argument(..., help="model folder, preset, 'default' (the embedded model; alone it transcribes its example recordings), a released Nue-ASR folder, or a Hugging Face repo id org/name"),
    audio: list[Path] = typer.Argument(None, help="audio files or folders (searched recursively)"),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="JSONL manifest or Kaldi data folder"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write results here (default: stdout)"),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", help="write one file per input and format here: NAME.txt, NAME.srt ... (NAME: the "
                                   "file's stem or manifest id)"),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="text | tsv | jsonl | json | srt | vtt, or all (txt tsv srt vtt json; "
                                     "--output-dir only) (default: from --output's suffix; all with --output-dir)"),
    timestamps: Optional[str] = typer.Option(
        None, "--timestamps", help="segment | word: add times to tsv, json, jsonl (srt and vtt have segment times "
                                   "without it); word needs a model with a CTC head"),
    batch_size: opt.BatchSize = 16,
    num_beams: opt.NumBeams = 1,
    ctc_weight: opt.CTCWeight = None,
    max_new_tokens: opt.MaxNewTokens = None,
    repetition_limit: opt.RepetitionLimit = None,
    device: opt.Device = None,
    dtype: opt.DType = "auto",
    quantize: opt.Quantize = None,
    progress: opt.Progress = True,
) -> None:
    """Transcribe audio files (wav flac ogg mp3 opus ...) with a speech LM."""
    from nue_core.checkpoint import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME
    from nue_core.inference.distributed import dist_info
    from nue_core.cli._run_report import exit_on_failures, progress_bar
    from nue_core.inference.runner import RunOptions, run_transcription
    from nue_core.data.audio_files import collect_audio
    from nue_core.inference.sources import read_entries
    from nue_core.inference.output_dir import OutputDirWriter
    from nue_core.inference.writers import SUBTITLE_FORMATS, ResultWriter

    if output is not None and output_dir is not None:
        raise typer.BadParameter("give --output (one file) or --output-dir (a file per input), not both",
                                 param_hint="'--output-dir'")
    if timestamps is not None and timestamps not in TIMESTAMP_KINDS:
        raise typer.BadParameter(f"'{timestamps}': choose {' or '.join(TIMESTAMP_KINDS)}", param_hint="'--timestamps'")
    # A bad --output or --format: found before anything else.
    formats = _output_formats(output, output_dir, fmt, default="tsv")
    if output is not None:
        check_output(output, create_parents=True)
    if output_dir is not None:
        check_output(output_dir, folder=True, option="--output-dir")
    if timestamps is None and any(f in SUBTITLE_FORMATS for f in formats):
        timestamps = "segment"  # subtitles need times: segment times come with every model
    options = RunOptions(batch_size, num_beams, device, dtype, progress, max_new_tokens, ctc_weight, repetition_limit,
                         timestamps, quantize)
    inputs: list = read_entries(manifest, require_text=False) if manifest else []
    inputs += collect_audio(audio or [])
    if not inputs and model == DEFAULT_MODEL_NAME and not manifest:
        # `nue transcribe default`: the embedded model on its own example recordings.
        inputs = collect_audio([DEFAULT_MODEL_DIR / "examples"])
    if not inputs:
        raise NueError("nothing to transcribe: give audio files, folders or --manifest (folders hold no audio?)")
    if output_dir is None:
        kind = _output_formats(output, None, fmt, default="text" if len(inputs) == 1 and output is None else "tsv")[0]
        if kind in SUBTITLE_FORMATS and len(inputs) > 1:
            where = str(output) if output is not None else "stdout"
            raise typer.BadParameter(
                f"{kind} holds the subtitles of one input and {len(inputs)} were given: use --output-dir DIR to "
                f"write one {kind} file per input ({where} would hold only one)", param_hint="'--format'")
    parts_base = output if output_dir is None else output_dir / "transcribe"
    if not dist_info().is_main:  # a data-parallel rank other than 0: rank 0 writes and reports
        run_transcription(model, inputs, options, parts_base, on_precision=opt.report_precision)
        return
    writer: ResultWriter | OutputDirWriter
    if output_dir is not None:
        writer = OutputDirWriter(output_dir, formats, timed=timestamps is not None)
    else:
        if output is None and hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="backslashreplace")  # a non-UTF-8 file name must not end the run
        # The output file is opened (as <output>.partial) before the model loads: each result is
        # written as it comes, and the file replaces a previous one only once complete.
        writer = ResultWriter(output, kind, stream=sys.stdout, timed=timestamps is not None)
    with writer:
        results = run_transcription(model, inputs, options, parts_base, on_precision=opt.report_precision, on_result=writer.add,
                                    progress_bar=progress_bar)
    assert results is not None
    exit_on_failures(results, "{failed} of {total} input(s) failed:")


def _output_formats(
    output: Optional[Path], output_dir: Optional[Path], fmt: Optional[str], default: str
) -> tuple[str, ...]:
    """The output formats: ``--format`` (``all``: ``ALL_FORMATS``, with ``--output-dir`` only), else
    ``--output``'s suffix, else ``default`` (with ``--output-dir``: all).

    Raises:
        typer.BadParameter: a usage error (exit 2) naming the option at fault.
    """
    from nue_core.inference.writers import ALL_FORMATS, infer_format

    if (fmt is not None and fmt.lower() == "all") or (fmt is None and output_dir is not None):
        if output_dir is None:
            raise typer.BadParameter("all writes a file per input and format: give --output-dir DIR",
                                     param_hint="'--format'")
        return ALL_FORMATS
    try:
        return (infer_format(output, fmt, default),)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--format'" if fmt else "'--output'") from None
