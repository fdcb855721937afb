"""Transcriber: many inputs -> transcripts, batched by length, long clips chunked, failures per input.

Inputs are read a window at a time (bounded memory for huge lists), cut into chunks when longer
than the model's limit, sorted by length so each batch holds similar lengths (little padding, few
steps wasted on finished items), decoded with ``SpeechLM.generate`` and returned in input order.
A file that cannot be read, or an item that fails to decode, gets ``error`` set; the rest go on.
Running out of memory halves the batch size and retries.

Shape legend: b = batch, s = samples.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from nue_core.data.audio import AudioError
from nue_core.dtypes import PrecisionPlan, apply_precision
from nue_core.generation import GenerationConfig
from nue_core.inference.assembly import ChunkOutput, assemble, decoded_chunk, should_align
from nue_core.inference.chunking import ChunkPlan, split_points
from nue_core.inference.sources import AudioInput, describe, load_input
from nue_core.inference.engine import Engine, EngineLimits, EngineResult, RequestHandle, RequestRejected
from nue_core.inference.engine_rows import supports_joining
from nue_core.inference.timestamps import Segment, check_timestamps, word_times
from nue_core.word_timing import Word

log = logging.getLogger(__name__)

UNTRAINED_WARNING = ("untrained model: it was composed and never trained (at least its bridge is random), so its "
                     "transcripts are meaningless; train it with `nue train`, or use a trained model folder")


@dataclass
class TranscriptionResult:
    """The transcript of one input.

    Attributes:
        source: the file path, or ``<array N>`` for the N-th input when it was an array.
        text: the transcript ('' when ``error`` is set).
        seconds: duration of the audio (0 when it could not be read).
        elapsed: wall seconds spent on this input: reading it plus its share of each batch it was
            decoded in (the batch time split evenly over the batch's items).
        error: why this input failed (naming the file), or None.
        id: the manifest id when the input was a manifest entry.
        chunks: number of chunks a long input was cut into (1 for clips within the limit).
        segments: with ``timestamps`` set, one Segment per chunk (absolute times); else None.
        words: with ``timestamps="word"``, the timed words of the file (absolute times, a word
            read twice in a chunk overlap kept once); None otherwise, or when the transcript
            could not be aligned to the audio.
    """

    source: str
    text: str = ""
    seconds: float = 0.0
    elapsed: float = 0.0
    error: str | None = None
    id: str | None = None
    chunks: int = 1
    segments: list[Segment] | None = None
    words: list[Word] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Chunk:
    """One chunk to decode; filled in by the batch loop."""

    item: int
    samples: np.ndarray  # (s,)
    bounds: tuple[int, int] = (0, 0)  # (start, end) samples in the file
    timed: bool = False  # align its words (word timestamps, or joining a chunked file by time)
    ids: list[int] = field(default_factory=list)
    text: str = ""
    error: str | None = None
    elapsed: float = 0.0
    words: list[Word] | None = None  # times from the chunk's start


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OOM error on any device, or a RuntimeError saying 'out of memory'."""
    oom = getattr(torch, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


@dataclass
class Transcriber:
    """Batched transcription with a SpeechLM.

    Args:
        model: the model; ``device``/``dtype`` move and cast it in place (as ``model.to`` does).
        batch_size: chunks decoded together (halved automatically on out-of-memory).
        generation: decoding settings (default: greedy with the released Nue-ASR limits).
        num_beams: shortcut overriding ``generation.num_beams``.
        device: e.g. "cpu", "cuda:0"; None keeps the model where it is.
        dtype: "float32", "bfloat16", "float16" (or a torch dtype) for every part; "auto" for what
            suits the device (``nue_core.dtypes.plan_precision``: float32 on a CPU without native
            bfloat16); None keeps the model's. The plan applied is ``precision`` (logged once).
        chunking: how to cut clips longer than ``model.config.max_audio_seconds``.
        window: inputs read and sorted together (bounds memory on long lists).
        repetition_limit: shortcut overriding ``generation.repetition_limit`` (0 = no loop guard).
        timestamps: None, "segment" (``TranscriptionResult.segments``) or "word" (also
            ``words``; needs a CTC head, see ``nue_core.inference.timestamps``).
        quantize: None, or "int8": the decoder's linear layers in int8 (CPU, float32 decoder;
            ``nue_core.quantize``).
    """

    model: torch.nn.Module
    batch_size: int = 16
    generation: GenerationConfig | None = None  # None: the model config's decode settings
    num_beams: int | None = None
    device: str | torch.device | None = None
    dtype: str | torch.dtype | None = None
    chunking: ChunkPlan | None = None
    window: int | None = None
    repetition_limit: int | None = None  # last, so positional arguments above keep their places
    timestamps: str | None = None
    quantize: str | None = None
    precision: PrecisionPlan | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.generation is None:
            self.generation = GenerationConfig.for_model(self.model.config)
        if self.num_beams is not None:
            self.generation = replace(self.generation, num_beams=self.num_beams)
        if self.repetition_limit is not None:
            self.generation = replace(self.generation, repetition_limit=self.repetition_limit)
        self.precision = apply_precision(self.model, self.dtype, self.device, self.quantize)
        self.model.eval()
        warn_if_untrained(self.model)
        check_timestamps(self.model, self.timestamps)
        if self.chunking is None:
            self.chunking = default_plan(float(self.model.config.max_audio_seconds))
        self.window = self.window or max(256, 16 * self.batch_size)

    def transcribe(self, inputs: Iterable[AudioInput]) -> list[TranscriptionResult]:
        """Transcripts of ``inputs`` in input order (see ``stream``)."""
        return list(self.stream(inputs))

    def stream(
        self, inputs: Iterable[AudioInput], progress: Callable[[int], None] | None = None
    ) -> Iterator[TranscriptionResult]:
        """Yield one result per input, in input order, a window of inputs at a time.

        Args:
            inputs: paths, manifest entries, arrays at the model's rate or (array, rate) pairs.
            progress: called with the number of inputs finished after each window.
        """
        iterator, offset = iter(inputs), 0
        while window := list(itertools.islice(iterator, self.window)):
            yield from self._window(window, offset)
            offset += len(window)
            if progress is not None:
                progress(len(window))

    def _window(self, items: list[AudioInput], offset: int) -> list[TranscriptionResult]:
        results, segments = [], []
        for i, item in enumerate(items):
            source, uid = describe(item, offset + i)
            start = time.perf_counter()
            try:
                samples = load_input(item, self.model.sample_rate, source)
                check_long_enough(self.model, samples.shape[0], source)
            except AudioError as exc:
                results.append(TranscriptionResult(source, error=str(exc), id=uid, elapsed=time.perf_counter() - start))
                continue
            bounds = split_points(samples, self.model.sample_rate, self.chunking)  # type: ignore[arg-type]
            # Chunks of a long file are joined by their words' times when the model can time them.
            timed = should_align(self.model, self.timestamps == "word", len(bounds))
            segments += [_Chunk(i, samples[a:b], (a, b), timed=timed) for a, b in bounds]
            seconds = samples.shape[0] / self.model.sample_rate
            results.append(TranscriptionResult(source, seconds=seconds, id=uid, chunks=len(bounds),
                                               elapsed=time.perf_counter() - start))
        self._decode_all(segments)
        by_item: dict[int, list[_Chunk]] = {}
        for seg in segments:  # appended in chunk order, so each list is in chunk order too
            by_item.setdefault(seg.item, []).append(seg)
        for i, result in enumerate(results):
            mine = by_item.get(i)
            if not mine:
                continue
            result.elapsed += sum(s.elapsed for s in mine)
            errors = [s.error for s in mine if s.error]
            if errors:
                result.error = f"{result.source}: {errors[0]}"
                continue
            joined = assemble([ChunkOutput(c.bounds, c.ids, c.text, c.words) for c in mine], self.model.sample_rate,
                              self.chunking.overlap_seconds, self.model.tokenizer.decode)  # type: ignore[union-attr]
            result.text = joined.text
            if self.timestamps is not None:
                result.segments = joined.segments
            if self.timestamps == "word":
                result.words = joined.words
        return results

    def _decode_all(self, segments: list[_Chunk]) -> None:
        # Longest first: an out-of-memory error shows up on the first batch, not after hours.
        order = sorted(range(len(segments)), key=lambda k: -segments[k].samples.shape[0])
        if supports_joining(self.model.decoder):
            self._decode_continuous(segments, order)
            return
        # A decoder that cannot join KV caches (a third-party one without SupportsCacheJoining):
        # static batches of similar lengths.
        pos = 0
        while pos < len(order):
            group = order[pos : pos + self.batch_size]
            self._decode_group(segments, group)
            pos += len(group)

    def _decode_continuous(self, chunks: list[_Chunk], order: list[int]) -> None:
        """Decode ``chunks`` (submitted in ``order``) on a continuous-batching engine.

        ``batch_size`` chunks decode together; a finished chunk's rows go to the next one at once
        instead of idling until the longest of a static batch ends. The wall time is shared among
        the chunks in proportion to their audio. Out of memory: the failed chunks are decoded again
        with half the rows (and ``batch_size`` stays halved). Any other failure: the failed chunks
        are decoded again one at a time, so one bad chunk fails alone.
        """
        pending, rows = order, self.batch_size
        while pending:
            oom, other = self._run_engine(chunks, pending, rows)
            if oom and rows > 1:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                log.warning("out of memory at batch size %d; retrying with %d", rows, rows // 2)
                rows = self.batch_size = rows // 2
                pending = sorted([k for k, _ in oom + other], key=order.index)
            elif other and rows > 1:
                pending, rows = sorted([k for k, _ in other], key=order.index), 1
            else:
                for k, exc in oom + other:
                    chunks[k].error = f"decoding failed ({type(exc).__name__}: {exc})"
                pending = []

    def _run_engine(self, chunks: list[_Chunk], pending: list[int], rows: int
                    ) -> tuple[list[tuple[int, BaseException]], list[tuple[int, BaseException]]]:
        """Decode ``pending`` with ``rows`` requests at a time; keep the results of those that
        finished; return the (chunk, error) pairs that failed on out-of-memory, and the others."""
        engine = Engine(self.model, self.generation, EngineLimits(
            max_rows=rows * max(1, self.generation.num_beams),  # type: ignore[union-attr]
            max_prefill=rows, max_queued_seconds=math.inf))
        start = time.perf_counter()
        handles: dict[int, RequestHandle] = {}
        for k in pending:
            try:
                handles[k] = engine.submit(chunks[k].samples)
            except RequestRejected as exc:
                chunks[k].error = f"cannot be decoded ({exc})"
        stopping = False
        while engine.has_work():
            finished = engine.step()
            if not stopping and any(h.error is not None and is_out_of_memory(h.error) for h in finished):
                stopping = True  # the rest is retried with fewer rows, not tried at this size
                for handle in handles.values():
                    engine.cancel(handle)
        wall = time.perf_counter() - start
        audio = sum(h.seconds for h in handles.values()) or 1.0
        oom: list[tuple[int, BaseException]] = []
        other: list[tuple[int, BaseException]] = []
        for k, handle in handles.items():
            chunks[k].elapsed += wall * handle.seconds / audio
            if handle.cancelled:
                oom.append((k, handle.error or RuntimeError("stopped after an out-of-memory error")))
            elif handle.error is None:
                self._keep(chunks[k], handle.result)  # type: ignore[arg-type]
            else:
                (oom if is_out_of_memory(handle.error) else other).append((k, handle.error))
        return oom, other

    def _keep(self, chunk: _Chunk, result: EngineResult) -> None:
        """Store a chunk's decoded ids and text, and its words when it is to be timed."""
        out = decoded_chunk(self.model, chunk.bounds, chunk.samples, result, chunk.timed)
        chunk.ids, chunk.text, chunk.words = out.ids, out.text, out.words

    def _decode_group(self, segments: list[_Chunk], group: list[int]) -> None:
        """Decode ``group`` as one batch; on failure split it (halves on OOM, singles otherwise)."""
        start = time.perf_counter()
        try:
            ids, words = self._decode_batch([segments[k].samples for k in group], [segments[k].timed for k in group])
        except Exception as exc:  # noqa: BLE001 - one bad item must not end the whole run
            oom = is_out_of_memory(exc)
            if oom and torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(group) == 1:
                segments[group[0]].error = f"decoding failed ({type(exc).__name__}: {exc})"
                return
            size = (len(group) + 1) // 2 if oom else 1
            if oom:
                self.batch_size = min(self.batch_size, size)
                log.warning("out of memory at batch size %d; retrying with %d", len(group), size)
            k = 0
            while k < len(group):  # a deeper OOM may lower batch_size while this loop runs
                step = min(size, self.batch_size)
                self._decode_group(segments, group[k : k + step])
                k += step
            return
        share = (time.perf_counter() - start) / len(group)
        for k, item_ids, found in zip(group, ids, words):
            chunk = segments[k]
            chunk.ids, chunk.words, chunk.elapsed = item_ids, found, share
            chunk.text = self.model.tokenizer.decode(item_ids).strip()

    def decode_arrays(self, arrays: list[np.ndarray]) -> list[str]:
        """Transcribe one batch of clips, each (s,) float32 at the model's rate and within its limit."""
        ids, _ = self._decode_batch(arrays, [False] * len(arrays))
        return [self.model.tokenizer.decode(x).strip() for x in ids]

    @torch.inference_mode()
    def _decode_batch(self, arrays: list[np.ndarray], timed: list[bool]) -> tuple[list[list[int]], list[list[Word] | None]]:
        """Token ids of one batch, and the words of each clip marked in ``timed`` (None for the others)."""
        lengths = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
        waves = torch.zeros(len(arrays), int(lengths.max()), dtype=self.model.input_dtype)  # (b, s), right-padded
        for i, a in enumerate(arrays):
            waves[i, : a.shape[0]] = torch.from_numpy(a)
        device = self.model.device
        waves, lengths = waves.to(device), lengths.to(device)
        ids = self.model.generate(waves, lengths, self.generation)
        if not any(timed):
            return ids, [None] * len(ids)
        words = word_times(self.model, waves, lengths, ids)
        return ids, [w if t else None for w, t in zip(words, timed)]


def transcribe(model: torch.nn.Module, inputs: Iterable[AudioInput], **options: Any) -> list[TranscriptionResult]:
    """Transcripts of files, arrays or (array, rate) pairs, in input order.

    ``Transcriber(model, **options).transcribe(inputs)`` in one call; also ``nue_core.transcribe``.

    Args:
        model: a SpeechLM (from ``nue_core.load`` or ``nue_core.compose``).
        inputs: paths, manifest entries, arrays at the model's rate or (array, rate) pairs.
        options: ``Transcriber`` fields (batch_size, num_beams, generation, device, dtype,
            chunking, repetition_limit, timestamps ...). ``timestamps="segment"`` fills each
            result's ``segments``; ``"word"`` also its ``words`` (models with a CTC head only).

    Returns:
        one ``TranscriptionResult`` (text, seconds, elapsed, error, segments, words) per input.
    """
    return Transcriber(model, **options).transcribe(inputs)


def warn_if_untrained(model: torch.nn.Module) -> None:
    """Log ``UNTRAINED_WARNING`` once per model when ``model.is_trained`` is False.

    A log record, not ``warnings.warn``: with logging unconfigured Python prints just the message,
    one line on stderr (what the CLI shows), where a warning would add its file and source line;
    an application routes it like its other records.
    """
    if getattr(model, "is_trained", True) or getattr(model, "_warned_untrained", False):
        return
    model._warned_untrained = True  # once per model, not once per transcribe() call
    log.warning(UNTRAINED_WARNING)


def default_plan(max_seconds: float) -> ChunkPlan:
    """Chunking for a model limit: cut within the last quarter (at most 4 s), overlap <= 0.5 s."""
    return ChunkPlan(max_seconds=max_seconds, overlap_seconds=min(0.5, 0.05 * max_seconds),
                     search_seconds=min(4.0, 0.25 * max_seconds))


def check_long_enough(model: torch.nn.Module, samples: int, source: str) -> None:
    """Raise AudioError when a clip is too short to give the LLM even one speech vector."""
    if int(model.speech_lengths(torch.tensor([samples]))[0]) < 1:
        raise AudioError(f"{source}: audio too short ({samples / model.sample_rate:.3f} s) for this model")
