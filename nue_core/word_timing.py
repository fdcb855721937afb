"""From aligned token spans to timed words (chunks of a long file are joined in ``nue_core.inference.assembly``).

Shape legend: t = CTC frames (the frames ``forced_align`` ran over).

Word boundaries come from the token pieces (``piece_of(token_id)``):

- a piece starting with "▁" (sentencepiece), "Ġ" (byte-level BPE) or a space (a tokenizer whose
  pieces are decoded text) starts a new word, the marker is dropped from the text; the first
  piece always starts a word;
- when no piece of the transcript carries a marker (a character vocabulary, or a script written
  without spaces such as Japanese), ``unmarked="token"`` makes each token a word and
  ``unmarked="join"`` makes the whole transcript one word;
- a word whose text is empty (a lone "▁" at the end) is dropped.

A CTC head fires on a spike of one or two frames, usually near a word's onset, so raw spans end
too early (default model, 80 ms CTC frames: raw starts +69 ms late, ends 220 ms early on held-out
speech). ``Refinement`` lists the edge refinements; each can be switched off so a benchmark
(benchmarks/word_timestamps.py) can measure what it buys. "Evidence" is a (t,) bool array, True
on frames with speech (``nue_core.inference.timestamps`` derives it from frame energy):

1. ``trim`` (evidence only): a word's span loses the frames without speech at both of its ends
   (a span with no speech frame is kept whole).
2. ``extend_start`` (evidence only): a word's start moves back over speech frames, at most
   ``max_start_extension_s`` and never before the previous word's (refined) end.
3. ``extend_end``: a word's end moves up to the next word's first token frame (never past it),
   at most ``max_end_extension_s`` seconds and never past the last frame.
4. ``use_evidence``: whether the evidence is used at all; with it, the end extension also stops
   at the first frame without speech. Without (switched off, or no array given) ``trim`` and
   ``extend_start`` do nothing and the end extension runs to its limits.

The frames may be finer than the CTC frames (spans scaled by an integer factor, ``frame_s``
divided by it) so that evidence places edges closer than one CTC frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np

from nue_core.alignment import TokenSpan

MARKERS = ("▁", "Ġ", " ")


@dataclass(frozen=True)
class Word:
    """A word with times in seconds, a confidence in (0, 1] and the token ids it was read from.

    ``tokens`` let a caller rebuild text exactly as the tokenizer decodes it (a chunked file's
    transcript is the decoding of the words it keeps; see ``nue_core.inference.assembly``).
    """

    word: str
    start: float
    end: float
    confidence: float
    tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class Refinement:
    """Switches of the edge refinements (module docstring); all off gives raw CTC spans."""

    extend_end: bool = True
    max_end_extension_s: float = 0.5
    use_evidence: bool = True
    extend_start: bool = True
    max_start_extension_s: float = 0.2
    trim: bool = True


RAW = Refinement(extend_end=False, use_evidence=False, extend_start=False, trim=False)


def group_words(
    spans: Sequence[TokenSpan], piece_of: Callable[[int], str], unmarked: Literal["token", "join"] = "token"
) -> list[tuple[str, list[TokenSpan]]]:
    """Join token spans into (word text, its spans) by the piece rules of the module docstring."""
    pieces = [piece_of(s.token) for s in spans]
    marked = any(p.startswith(MARKERS) for p in pieces)
    groups: list[tuple[str, list[TokenSpan]]] = []
    for i, (span, piece) in enumerate(zip(spans, pieces)):
        starts = i == 0 or (piece.startswith(MARKERS) if marked else unmarked == "token")
        text = piece[1:] if piece.startswith(MARKERS) else piece
        if starts:
            groups.append((text, [span]))
        else:
            groups[-1] = (groups[-1][0] + text, groups[-1][1] + [span])
    return [(text.strip(), group) for text, group in groups if text.strip()]


def words_from_spans(
    spans: Sequence[TokenSpan],
    piece_of: Callable[[int], str],
    frame_s: float,
    offset_s: float = 0.0,
    *,
    num_frames: int | None = None,
    speech_evidence: np.ndarray | None = None,
    refine: Refinement = Refinement(),
    unmarked: Literal["token", "join"] = "token",
) -> list[Word]:
    """Timed words of one aligned item.

    Args:
        spans: the item's token spans (``forced_align`` output), in order.
        piece_of: token id -> piece string (e.g. sentencepiece ``id_to_piece``).
        frame_s: seconds per CTC frame (1 / (encoder frame rate / bridge downsampling)).
        offset_s: start of the item's audio in the file (the chunk start), added to every time.
        num_frames: t, frames the alignment ran over; bounds end extension (None: unbounded).
        speech_evidence: (t,) bool, True where speech is present; frames past its end count as
            no speech. Only used with ``refine.use_evidence``.
        refine: which edge refinements to apply.
        unmarked: rule for transcripts without word markers (module docstring).

    Returns:
        Words in order; frame f covers [offset + f * frame_s, offset + (f + 1) * frame_s).
    """
    groups = group_words(spans, piece_of, unmarked)
    raw = [(g[0].start_frame, g[-1].end_frame) for _, g in groups]
    edges = refine_edges(raw, frame_s, num_frames, speech_evidence if refine.use_evidence else None, refine)
    words = []
    for (text, group), (start, end) in zip(groups, edges):
        # Each token counts once: a token held over many frames does not outweigh the others.
        confidence = float(np.mean([s.confidence for s in group]))
        words.append(Word(text, offset_s + start * frame_s, offset_s + end * frame_s, confidence,
                          tuple(int(s.token) for s in group)))
    return words


def refine_edges(
    raw: list[tuple[int, int]],
    frame_s: float,
    num_frames: int | None,
    evidence: np.ndarray | None,
    refine: Refinement,
) -> list[tuple[int, int]]:
    """Refined (start, end) frames (end exclusive) of words given their raw (start, end) frames."""
    max_end = round(refine.max_end_extension_s / frame_s)
    max_start = round(refine.max_start_extension_s / frame_s)
    limit_all = num_frames if num_frames is not None else max((e for _, e in raw), default=0) + max_end
    speech = None if evidence is None else np.asarray(evidence, dtype=bool)
    has_speech = (lambda f: 0 <= f < len(speech) and bool(speech[f])) if speech is not None else None
    out: list[tuple[int, int]] = []
    for i, (start, end) in enumerate(raw):
        if refine.trim and has_speech is not None:
            start, end = trimmed(start, end, has_speech)
        floor = max(out[-1][1] if out else 0, 0)
        if refine.extend_start and has_speech is not None:
            floor = max(floor, start - max_start)
            while start > floor and has_speech(start - 1):
                start -= 1
        if refine.extend_end:
            limit = min(end + max_end, limit_all)
            if i + 1 < len(raw):
                limit = min(limit, raw[i + 1][0])
            while end < limit and (has_speech is None or has_speech(end)):
                end += 1
        out.append((start, end))
    return out


def trimmed(start: int, end: int, has_speech: Callable[[int], bool]) -> tuple[int, int]:
    """Drop the frames without speech at both ends of [start, end); a span with none is kept whole."""
    voiced = [f for f in range(start, end) if has_speech(f)]
    return (voiced[0], voiced[-1] + 1) if voiced else (start, end)
