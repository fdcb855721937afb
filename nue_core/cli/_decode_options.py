"""Decoding options shared by ``nue transcribe`` and ``nue evaluate`` (one definition, one help text).

Each is an ``Annotated`` type: a verb declares ``batch_size: BatchSize = 16`` and typer reads the
option's flags and help from here.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="clips decoded together")]
NumBeams = Annotated[int, typer.Option("--num-beams", min=1, help="1 = greedy")]
CTCWeight = Annotated[Optional[float], typer.Option(
    "--ctc-weight",
    help="joint CTC/decoder scoring weight 0..1 (bridges with a CTC head; default: the model's decode.ctc_weight)",
)]
MaxNewTokens = Annotated[Optional[int], typer.Option(
    "--max-new-tokens", min=1, help="cap per clip (default: int(4 * seconds + 20.5), as Nue-ASR)"
)]
RepetitionLimit = Annotated[Optional[int], typer.Option(
    "--repetition-limit", min=0,
    help="loop guard: stop an output ending in one n-gram (n <= 4) repeated N times; 0 = off "
         "(default: the model's decode.repetition_limit; 12, or 0 for a released Nue-ASR folder)",
)]
Device = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: GPU if any)")]
DType = Annotated[Optional[str], typer.Option(
    "--dtype",
    help="auto | float32 | bfloat16 | float16; auto: bfloat16 decoder where the CPU computes it natively and "
         "measurably faster (float32 on other CPUs), bfloat16/float16 on a GPU; says on stderr what it picked",
)]
Quantize = Annotated[Optional[str], typer.Option(
    "--quantize", help="int8: the decoder's linear layers in int8 (CPU only; faster on large decoders)"
)]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on a terminal")]


def report_precision(line: str) -> None:
    """What ``--dtype auto`` / ``--quantize`` made of the model: one line on stderr."""
    typer.echo(line, err=True)
