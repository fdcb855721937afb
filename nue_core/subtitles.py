"""Subtitle lines from timed words or segments, and the SRT, WebVTT and verbose JSON writers.

Pure Python (stdlib only): no torch, so writers and their tests run anywhere.

Rules every output follows (``sanitize_times`` applies them, every writer calls it):

- times are never negative and, when ``duration`` is given, never past it;
- a cue (or word) starting before the previous one ends is moved to start at that end, and an
  end before its start is raised to the start; so times are monotonic, cues never overlap, and a
  cue squeezed against the end of the file may last zero seconds (its text is kept, not dropped);
- non-finite times (NaN, inf) are a bug upstream and raise ``ValueError``.

Text: whitespace runs (newlines included) collapse to one space and control characters are
dropped, so an SRT cue never holds a blank line; "-->" (which would read as a timing line) is
broken up in SRT, and WebVTT escapes ``&``, ``<`` and ``>`` (which also defuses "-->"). A cue
whose text is empty after cleaning is not written.

Joining words: pieces are joined with one space unless the character on either side of the join
is CJK (Han, kana, CJK punctuation, full-width forms), so Japanese and Chinese read without
spaces while mixed "GPU を" still reads naturally on the Latin side. Hangul is not in this set:
Korean separates words with spaces.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

# What times a transcript can carry: "segment" (every model), "word" (a model with a CTC head).
TIMESTAMP_KINDS = ("segment", "word")

# Code point ranges written without spaces between words.
_CJK_RANGES = (
    (0x3000, 0x303F),  # CJK symbols and punctuation (、。「」)
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x31F0, 0x31FF),  # katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # half- and full-width forms (！、ｶﾀｶﾅ)
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)


class TimedWord(Protocol):
    """Anything with a word and its times in seconds (``nue_core.word_timing.Word`` fits)."""

    @property
    def word(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


class TimedText(Protocol):
    """Anything with text and its times in seconds (``Segment`` here, or another segment class)."""

    @property
    def text(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


@dataclass(frozen=True)
class Segment:
    """A timed piece of transcript: a subtitle line, or a chunk of long audio.

    ``id`` counts from 0 as in OpenAI's verbose JSON; SRT numbers its cues from 1 by position.
    """

    id: int
    start: float
    end: float
    text: str


def is_cjk(char: str) -> bool:
    """True for a character of a script written without spaces between words."""
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def clean_text(text: str) -> str:
    """Collapse whitespace (newlines too) to single spaces, drop control characters, strip."""
    # Controls go first: tab and newline are controls too, and must become spaces, not vanish.
    text = "".join(c for c in text if c.isspace() or unicodedata.category(c) != "Cc")
    return " ".join(text.split())


def join_words(pieces: Iterable[str]) -> str:
    """Join cleaned pieces with " ", or with nothing where either side of the join is CJK."""
    out = ""
    for piece in pieces:
        if not piece:
            continue
        glue = "" if not out or is_cjk(out[-1]) or is_cjk(piece[0]) else " "
        out += glue + piece
    return out


def sanitize_times(spans: Sequence[tuple[float, float]], duration: float | None = None) -> list[tuple[float, float]]:
    """Clamp (start, end) pairs to [0, duration] and make them monotonic (module docstring rules).

    Raises:
        ValueError: on a non-finite time or duration.
    """
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        raise ValueError(f"duration must be a finite number >= 0, got {duration!r}")
    top = math.inf if duration is None else duration
    out: list[tuple[float, float]] = []
    floor = 0.0  # the previous end: nothing may start before it
    for start, end in spans:
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"times must be finite, got start={start!r} end={end!r}")
        start = min(max(start, floor), top)
        end = min(max(end, start), top)
        out.append((start, end))
        floor = end
    return out


def _renumbered(segments: Sequence[TimedText], duration: float | None) -> list[Segment]:
    """Cleaned, non-empty segments with sanitized times and ids 0..n-1."""
    kept = [(s, clean_text(s.text)) for s in segments]
    kept = [(s, text) for s, text in kept if text]
    times = sanitize_times([(s.start, s.end) for s, _ in kept], duration)
    return [Segment(i, start, end, text) for i, ((start, end), (_, text)) in enumerate(zip(times, kept))]


def subtitle_lines(
    words: Sequence[TimedWord], max_chars: int = 42, max_seconds: float = 7.0, duration: float | None = None
) -> list[Segment]:
    """Group timed words into subtitle lines, splitting only at word boundaries.

    A line holds at most ``max_chars`` characters (as joined by ``join_words``) and spans at most
    ``max_seconds`` from its earliest start to its latest end; a single word over either limit
    gets a line of its own. ``max_chars`` counts characters, so pass a smaller one (~16) for
    Japanese or Chinese. Words whose text is empty after ``clean_text`` are skipped.

    Returns:
        Segments with ids 0..n-1 and times sanitized as the module docstring says (not yet
        rounded: the writers round to milliseconds).
    """
    if max_chars < 1 or not max_seconds > 0:
        raise ValueError(f"max_chars must be >= 1 and max_seconds > 0, got {max_chars}, {max_seconds}")
    lines: list[Segment] = []
    text, lo, hi = "", 0.0, 0.0
    for w in words:
        piece = clean_text(w.word)
        if not piece:
            continue
        joined = join_words([text, piece])
        # min/max: word times from an aligner may overlap or come slightly out of order.
        span = max(hi, w.end) - min(lo, w.start)
        if text and (len(joined) > max_chars or span > max_seconds):
            lines.append(Segment(len(lines), lo, hi, text))
            text, lo, hi = piece, w.start, w.end
        elif text:
            text, lo, hi = joined, min(lo, w.start), max(hi, w.end)
        else:
            text, lo, hi = piece, w.start, w.end
    if text:
        lines.append(Segment(len(lines), lo, hi, text))
    return _renumbered(lines, duration)


def lines_from_segments(segments: Sequence[TimedText], duration: float | None = None) -> list[Segment]:
    """Subtitle lines for a model without word times: each segment (chunk) is one line as it is.

    Text is cleaned, empty segments dropped, ids renumbered 0..n-1 and times sanitized; long
    segments are not split, since without word times any split point would be a guess.
    """
    return _renumbered(segments, duration)


def _ms(seconds: float) -> int:
    """Whole milliseconds, rounded down so a time never passes the (sanitized) duration.

    The 1e-6 ms slack absorbs float error (4.35 * 1000 == 4349.999...).
    """
    return math.floor(seconds * 1000 + 1e-6)


def _timestamp(seconds: float, sep: str) -> str:
    """HH:MM:SS{sep}mmm; hours grow past two digits rather than wrap."""
    ms = _ms(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def srt_text(text: str) -> str:
    """Cue text safe for SRT: one line, and no arrow a parser could take for a timing line."""
    return re.sub(r"-{2,}>", "->", clean_text(text))


def vtt_text(text: str) -> str:
    """Cue text safe for WebVTT: one line, with &, < and > escaped (which also defuses "-->")."""
    return clean_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_srt(segments: Sequence[TimedText], duration: float | None = None) -> str:
    """SubRip text: per cue its number (from 1), ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text, blank line."""
    cues = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{srt_text(s.text)}\n"
        for i, s in enumerate(_renumbered(segments, duration), start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: Sequence[TimedText], duration: float | None = None) -> str:
    """WebVTT text: a ``WEBVTT`` header, then per cue ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` and text."""
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{vtt_text(s.text)}\n"
        for s in _renumbered(segments, duration)
    ]
    return "\n".join(["WEBVTT\n", *cues])


def to_verbose_json(
    text: str,
    duration: float,
    segments: Sequence[TimedText] | None,
    words: Sequence[TimedWord] | None,
    language: str | None = None,
    task: str = "transcribe",
) -> dict:
    """A dict in the shape of OpenAI's transcription ``verbose_json`` response.

    Keys: ``task``, ``language`` (None when unknown; OpenAI always names one), ``duration``,
    ``text``, ``segments`` [{id, start, end, text}] and ``words`` [{word, start, end}]. A list
    passed as None is left out, as OpenAI leaves out ``words`` unless word timestamps were asked
    for. OpenAI's segments also carry decoder statistics (``seek``, ``tokens``, ``avg_logprob``,
    ...) that an LLM decoder does not have; they are not invented here. Times are in whole
    milliseconds, as in SRT and WebVTT.
    """
    out: dict = {"task": task, "language": language, "duration": _ms(duration) / 1000, "text": text.strip()}
    if segments is not None:
        out["segments"] = [
            {"id": s.id, "start": _ms(s.start) / 1000, "end": _ms(s.end) / 1000, "text": s.text}
            for s in _renumbered(segments, duration)
        ]
    if words is not None:
        kept = [(w, clean_text(w.word)) for w in words]
        kept = [(w, t) for w, t in kept if t]
        times = sanitize_times([(w.start, w.end) for w, _ in kept], duration)
        out["words"] = [
            {"word": t, "start": _ms(a) / 1000, "end": _ms(b) / 1000} for (a, b), (_, t) in zip(times, kept)
        ]
    return out
