"""From the decoded chunks of one file to its transcript, segments and words.

One home for the rule that joins chunks, used by the batch ``Transcriber`` and by the server:

- each chunk owns the audio from the middle of the overlap before it to the middle of the overlap
  after it (``segments_of``); those regions tile the file without gaps or overlap;
- when every chunk has timed words (a model with a CTC head), a chunk keeps the words whose
  midpoint lies in its own region and its text is the decoding of their tokens: a word heard in an
  overlap is kept once, by time, however repetitive the speech ("one one one ...");
- otherwise the chunk texts are joined by matching the words the overlap produced twice
  (``chunking.join_all``, capped by what the overlap's length can hold).

A file within the model's limit is one chunk: its text is exactly its decoded text. The text of a
chunked file does not depend on whether timestamps were asked for: with a CTC head the words are
aligned for the join in any case, and only returned when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from nue_core.inference.chunking import join_all
from nue_core.inference.engine import EngineResult
from nue_core.inference.timestamps import Segment, item_words, segments_of
from nue_core.subtitles import join_words
from nue_core.word_timing import Word


@dataclass
class ChunkOutput:
    """One decoded chunk of a file.

    Attributes:
        bounds: (start, end) samples of the chunk in the file.
        ids: decoded token ids (eos removed).
        text: the decoding of ``ids``, stripped.
        words: timed words with times from the chunk's start and their token ids, or None (no
            CTC head, not aligned, or the alignment failed).
    """

    bounds: tuple[int, int]
    ids: list[int]
    text: str
    words: list[Word] | None = None


@dataclass
class Assembled:
    """A file's transcript from its chunks (see the module docstring)."""

    text: str
    segments: list[Segment]
    words: list[Word] | None  # absolute times; None when some chunk had no words


def should_align(model: Any, words_wanted: bool, chunks: int) -> bool:
    """Whether a file's chunks are force-aligned: word timestamps asked for, or a file of several
    chunks (joined by time), on a model with a CTC head."""
    return getattr(model.bridge, "ctc_blank_id", None) is not None and (words_wanted or chunks > 1)


def decoded_chunk(model: Any, bounds: tuple[int, int], samples: np.ndarray, result: EngineResult, align: bool) -> ChunkOutput:
    """A chunk's ``ChunkOutput`` from its engine result.

    Args:
        model: the SpeechLM that decoded it.
        bounds: (start, end) samples of the chunk in its file.
        samples: (s,) the chunk's audio (the energy evidence of word edges).
        result: its ``EngineResult``.
        align: time its words (``should_align``).
    """
    words = None
    if align and result.ctc_log_probs is not None:
        words = item_words(model, result.ctc_log_probs, result.ctc_length, result.encoder_frames, result.ids,
                           waves_item=torch.from_numpy(samples))
    return ChunkOutput(bounds, list(result.ids), model.tokenizer.decode(result.ids).strip(), words)


def assemble(chunks: Sequence[ChunkOutput], sample_rate: int, overlap_seconds: float, decode) -> Assembled:  # type: ignore[no-untyped-def]
    """Join the chunks of one file, in file order.

    Args:
        chunks: the file's chunks in order (one for a file within the model's limit).
        sample_rate: of the samples in ``bounds``.
        overlap_seconds: audio shared by consecutive chunks (caps the text join without words).
        decode: token ids -> text (the model's ``tokenizer.decode``).
    """
    bounds = [c.bounds for c in chunks]
    regions = segments_of(bounds, ["" for _ in chunks], sample_rate)
    if len(chunks) == 1:
        only = chunks[0]
        words = None if only.words is None else _shifted(only.words, only.bounds[0] / sample_rate)
        return Assembled(only.text, [replace(regions[0], text=only.text)], words)
    if any(c.words is None for c in chunks):
        text = join_all([c.text for c in chunks], overlap_seconds=overlap_seconds)
        return Assembled(text, [replace(r, text=c.text) for r, c in zip(regions, chunks)], None)
    kept_words: list[Word] = []
    segments = []
    last = len(chunks) - 1
    for k, (region, chunk) in enumerate(zip(regions, chunks)):
        # The file's own edges are not cuts: a word refined past them still belongs to its chunk.
        mine = [w for w in _shifted(chunk.words or [], chunk.bounds[0] / sample_rate)
                if (k == 0 or _mid(w) >= region.start) and (k == last or _mid(w) < region.end)]
        kept_words += mine
        segments.append(replace(region, text=decode([t for w in mine for t in w.tokens]).strip()))
    text = join_words(s.text for s in segments if s.text)
    return Assembled(text, segments, kept_words)


def _mid(word: Word) -> float:
    return (word.start + word.end) / 2


def _shifted(words: Sequence[Word], offset: float) -> list[Word]:
    return [replace(w, start=w.start + offset, end=w.end + offset) for w in words]
