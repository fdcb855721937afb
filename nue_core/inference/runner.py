"""One transcription run as the CLI verbs do it: load the model, shard, decode, merge.

``run_transcription`` is what ``nue transcribe`` and ``nue evaluate`` share: alone it transcribes
every input; under torchrun / accelerate each process takes its shard and rank 0 returns all
results in input order (see ``nue_core.inference.distributed``). Results are handed to a callback
as they come (a window of inputs at a time), so a verb can write them while the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Optional, Sequence

from nue_core.dtypes import AUTO, DTYPE_CHOICES
from nue_core.errors import CheckpointError, ConfigError, NueError, one_line
from nue_core.generation import GenerationConfig
from nue_core.inference.distributed import (
    barrier, dist_info, finish_distributed, init_distributed, merge_parts, part_path, shard, write_part,
)
from nue_core.inference.sources import AudioInput
from nue_core.inference.timestamps import KINDS as TIMESTAMP_KINDS
from nue_core.inference.timestamps import check_timestamps
from nue_core.inference.transcriber import Transcriber, TranscriptionResult
from nue_core.quantize import QUANTIZE_MODES

# Called with (input index, result) for each input, in input order.
OnResult = Callable[[int, TranscriptionResult], None]
# Given the number of inputs, a context yielding the callback that advances a progress bar by n
# finished inputs, or None when no bar can be shown. The CLI's is ``nue_core.cli._run_report.progress_bar``.
ProgressBar = Callable[[int], ContextManager[Optional[Callable[[int], None]]]]


@dataclass
class RunOptions:
    """Settings of a run (the CLI options)."""

    batch_size: int = 16
    num_beams: int = 1
    device: str | None = None
    dtype: str | None = AUTO  # "auto": nue_core.dtypes.plan_precision; None: as saved
    progress: bool = True
    max_new_tokens: int | None = None
    ctc_weight: float | None = None  # None: the model config's decode.ctc_weight
    repetition_limit: int | None = None  # None: the model config's decode.repetition_limit
    timestamps: str | None = None  # None, "segment" or "word" (see Transcriber)
    quantize: str | None = None  # None or "int8": the decoder's linear layers (CPU; nue_core.quantize)

    def __post_init__(self) -> None:
        # Checked before the model loads, so a typo costs nothing.
        if self.dtype is not None and self.dtype not in DTYPE_CHOICES:
            raise NueError(f"unknown --dtype '{self.dtype}'; choose {', '.join(DTYPE_CHOICES)}")
        if self.quantize is not None and self.quantize not in QUANTIZE_MODES:
            raise NueError(f"unknown --quantize '{self.quantize}'; choose {' or '.join(QUANTIZE_MODES)}")
        if self.ctc_weight is not None and not 0.0 <= self.ctc_weight <= 1.0:
            raise NueError(f"--ctc-weight {self.ctc_weight}: must be between 0 and 1")
        if self.repetition_limit is not None and self.repetition_limit < 0:
            raise NueError(f"--repetition-limit {self.repetition_limit}: must be 0 (off) or more")
        if self.timestamps is not None and self.timestamps not in TIMESTAMP_KINDS:
            raise NueError(f"unknown --timestamps '{self.timestamps}'; choose {' or '.join(TIMESTAMP_KINDS)}")


def pick_device(device: str | None, local_rank: int = 0) -> str:
    """``device`` when given, else this process's GPU when there is one, else the CPU."""
    if device:
        return device
    import torch

    return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"


def load_model(source: str):  # type: ignore[no-untyped-def]
    """``nue_core.checkpoint.load(source)``, with any failure to read the model named as such.

    Raises:
        CheckpointError: besides the loader's own errors, a ``RuntimeError`` (tensor size
            mismatch ...), ``ValueError`` or ``OSError`` met while loading, naming ``source``.
    """
    from nue_core.checkpoint import load

    try:
        return load(source)
    except NueError:
        raise
    except (RuntimeError, ValueError, OSError) as exc:
        detail = one_line(str(exc), 400)  # torch lists each mismatched tensor on a line of its own
        raise CheckpointError(f"{source}: cannot load this model ({type(exc).__name__}: {detail})") from exc


def run_transcription(
    model_source: str,
    inputs: Sequence[AudioInput],
    options: RunOptions,
    parts_base: Path | None,
    on_result: OnResult | None = None,
    progress_bar: ProgressBar | None = None,
    on_precision: Callable[[str], None] | None = None,
) -> list[TranscriptionResult] | None:
    """Transcribe ``inputs`` with the model at ``model_source``.

    Args:
        model_source: what ``nue_core.checkpoint.load`` accepts: a model folder, a preset,
            "default", a folder a loader plugin recognises, or a hub id ``org/name``. An untrained
            model (a preset, a composed folder) logs one warning (see ``Transcriber``).
        parts_base: data-parallel runs write ``<parts_base>.part-R-of-W.jsonl`` files (required
            when WORLD_SIZE > 1).
        on_result: called with (input index, result) in input order as results come; in a
            data-parallel run on rank 0 only, once the parts are merged.
        progress_bar: shows progress when ``options.progress`` is set, on rank 0 (None: no bar).
        on_precision: called on rank 0 with one line saying what ``--dtype auto`` picked and why
            (or what ``--quantize`` did), once the model is cast; not called for an explicit dtype.

    Returns:
        all results in input order; None on ranks other than 0 of a data-parallel run.
    """
    info = dist_info()
    if info.world > 1 and parts_base is None:
        raise NueError("a data-parallel run needs an output path: each process writes its part next to it")
    device = pick_device(options.device, info.local_rank)
    if options.quantize is not None and not device.startswith("cpu"):  # before the model loads
        raise NueError(f"--quantize {options.quantize} runs on the CPU only (torch's int8 linear kernels have no GPU "
                       f"version): decode with --device cpu, or on {device} with --dtype auto (bfloat16 or float16)")
    init_distributed(info, device)
    try:
        model = load_model(model_source)
        generation = GenerationConfig.for_model(model.config, num_beams=options.num_beams, max_new_tokens=options.max_new_tokens,
                                                ctc_weight=options.ctc_weight, repetition_limit=options.repetition_limit)
        try:  # before the first batch: otherwise every batch would fail alike
            model.check_generation(generation)
        except ValueError as exc:
            raise NueError(f"{model_source}: {exc}") from None
        try:  # word timestamps on a model without a CTC head: one line naming the option, not a traceback
            check_timestamps(model, options.timestamps)
        except ConfigError as exc:
            raise NueError(f"--timestamps {options.timestamps}: {model_source}: {exc}") from None
        transcriber = Transcriber(model, batch_size=options.batch_size, generation=generation,
                                  device=device, dtype=options.dtype, timestamps=options.timestamps,
                                  quantize=options.quantize)
        if on_precision is not None and info.is_main and transcriber.precision is not None and (
                options.dtype == AUTO or options.quantize is not None):
            on_precision(transcriber.precision.describe())
        mine = shard(inputs, info)
        bar = progress_bar if options.progress and info.is_main else None
        results = _decode(transcriber, [item for _, item in mine], bar, on_result if info.world == 1 else None)
        if info.world == 1:
            return results
        assert parts_base is not None
        write_part(part_path(parts_base, info), [(i, r) for (i, _), r in zip(mine, results)])
        barrier()
        if not info.is_main:
            return None
        merged = merge_parts(parts_base, info.world, len(inputs))
        for index, result in enumerate(merged):
            if on_result is not None:
                on_result(index, result)
        return merged
    finally:
        finish_distributed()


def _decode(
    transcriber: Transcriber, items: list[AudioInput], progress_bar: ProgressBar | None, on_result: OnResult | None
) -> list[TranscriptionResult]:
    """All results, each handed to ``on_result`` as it comes; ``progress_bar`` advanced per window."""
    results: list[TranscriptionResult] = []

    def collect(stream: Iterable[TranscriptionResult]) -> list[TranscriptionResult]:
        for result in stream:
            if on_result is not None:
                on_result(len(results), result)
            results.append(result)
        return results

    if progress_bar is None or len(items) < 2:
        return collect(transcriber.stream(items))
    with progress_bar(len(items)) as advance:
        if advance is None:
            return collect(transcriber.stream(items))
        # Windows are smaller than the default so the bar moves while a long list is decoded.
        transcriber.window = max(transcriber.batch_size * 4, 32)
        return collect(transcriber.stream(items, progress=advance))
