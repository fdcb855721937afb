"""One ``TranscriptionResult`` as text in each output format (the files are ``writers``' job).

- text: the transcript on one line.
- tsv: ``id<TAB>transcript``; with timestamps (``timed``) one row per segment,
  ``id<TAB>start<TAB>end<TAB>text``, under the header ``TSV_HEADER`` (a failed input: one row with
  its id and empty start, end and text). Fields are quoted as the csv module's excel-tab dialect
  reads them back.
- jsonl / json: ``result_record``: every field of the result, its input ``index``, and the keys of
  OpenAI's ``verbose_json`` (``text``, ``duration``, ``segments`` [{id, start, end, text}],
  ``words`` [{word, start, end, confidence}]); ``segments`` / ``words`` only when they were asked for.
- srt / vtt: a subtitle document: cues from the words when there are words (lines of at most
  ``MAX_LINE_CHARS`` characters and ``MAX_LINE_SECONDS`` seconds, split at word boundaries), else
  one cue per segment (see ``nue_core.subtitles``).

Times are seconds with millisecond resolution, rounded down (as SRT and WebVTT write them), made
monotonic and kept within the input's duration (``nue_core.subtitles.sanitize_times``).
``result_from_record`` reads a record back (data-parallel parts are jsonl records).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from typing import Any

from nue_core.errors import one_line
from nue_core.inference.transcriber import TranscriptionResult
from nue_core.subtitles import Segment, lines_from_segments, sanitize_times, subtitle_lines, to_srt, to_vtt
from nue_core.word_timing import Word

MAX_LINE_CHARS, MAX_LINE_SECONDS = 42, 7.0
TSV_HEADER = "id\tstart\tend\ttext"
SUBTITLE_FORMATS = ("srt", "vtt")
_FIELDS = {f.name for f in fields(TranscriptionResult)}


def ms(seconds: float) -> float:
    """``seconds`` rounded down to whole milliseconds (the 1e-6 ms absorbs float error)."""
    return math.floor(seconds * 1000 + 1e-6) / 1000


def _timed(spans: list[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    return [(ms(a), ms(b)) for a, b in sanitize_times(spans, duration)]


def result_record(result: TranscriptionResult, index: int | None = None) -> dict[str, Any]:
    """``result`` as a JSON-ready dict: a superset of OpenAI's ``verbose_json`` (module docstring).

    ``duration`` is ``seconds`` in milliseconds; ``segments`` and ``words`` appear when the result
    has them (their times sanitized and rounded to milliseconds, ``words`` keep ``confidence``).
    """
    obj = asdict(result)
    segments, words = obj.pop("segments"), obj.pop("words")
    obj["duration"] = ms(max(result.seconds, 0.0))
    if result.segments is not None:
        times = _timed([(s.start, s.end) for s in result.segments], result.seconds)
        obj["segments"] = [{"id": s["id"], "start": a, "end": b, "text": s["text"]}
                           for s, (a, b) in zip(segments, times)]
    if result.words is not None:
        times = _timed([(w.start, w.end) for w in result.words], result.seconds)
        obj["words"] = [{"word": w["word"], "start": a, "end": b, "confidence": w["confidence"]}
                        for w, (a, b) in zip(words, times)]
    if index is not None:
        obj["index"] = index
    return obj


def result_from_record(obj: dict[str, Any]) -> TranscriptionResult:
    """The ``TranscriptionResult`` of a ``result_record`` (keys it does not hold are ignored)."""
    known = {k: v for k, v in obj.items() if k in _FIELDS}
    if known.get("segments") is not None:
        known["segments"] = [Segment(id=int(s["id"]), start=float(s["start"]), end=float(s["end"]), text=s["text"])
                             for s in known["segments"]]
    if known.get("words") is not None:
        known["words"] = [Word(word=w["word"], start=float(w["start"]), end=float(w["end"]),
                               confidence=float(w.get("confidence", 1.0))) for w in known["words"]]
    return TranscriptionResult(**known)


def tsv_field(text: str) -> str:
    """``text`` quoted as the csv module's excel-tab dialect reads it back.

    A field holding a tab, a quote, \\r or \\n goes in double quotes, its quotes doubled.
    (csv.writer itself leaves a lone \\r unquoted when rows end in \\n, and csv.reader then
    splits the row there.)
    """
    if any(c in text for c in '\t\n\r"'):
        return '"' + text.replace('"', '""') + '"'
    return text


def tsv_rows(result: TranscriptionResult, timed: bool = False) -> str:
    """The tsv row(s) of ``result`` without the final newline (module docstring)."""
    uid = tsv_field(result.id or result.source)
    if not timed:
        return f"{uid}\t{tsv_field(result.text)}"
    if not result.segments:
        return f"{uid}\t\t\t{tsv_field(result.text)}"
    times = _timed([(s.start, s.end) for s in result.segments], result.seconds)
    return "\n".join(f"{uid}\t{a:.3f}\t{b:.3f}\t{tsv_field(s.text)}" for s, (a, b) in zip(result.segments, times))


def cues(result: TranscriptionResult) -> list[Segment]:
    """The subtitle lines of ``result``: from its words when it has any, else one per segment."""
    if result.words:
        return subtitle_lines(result.words, MAX_LINE_CHARS, MAX_LINE_SECONDS, duration=result.seconds)
    return lines_from_segments(result.segments or [], duration=result.seconds)


def subtitles(result: TranscriptionResult, fmt: str) -> str:
    """The SRT or WebVTT document of ``result`` (a failed input: a document without cues)."""
    lines = cues(result) if result.ok else []
    return to_srt(lines) if fmt == "srt" else to_vtt(lines)


def render(result: TranscriptionResult, fmt: str, index: int | None = None, timed: bool = False,
           indent: int | None = None) -> str:
    """``result`` in ``fmt`` as text, ending in a newline (srt and vtt: a whole document).

    ``indent`` is json's (the record of a ``--output-dir`` json file); jsonl is one line.
    """
    if fmt == "text":
        return one_line(result.text) + "\n"
    if fmt == "tsv":
        return tsv_rows(result, timed) + "\n"
    if fmt in ("jsonl", "json"):
        record = result_record(result, index)
        return json.dumps(record, ensure_ascii=False, indent=indent if fmt == "json" else None) + "\n"
    if fmt in SUBTITLE_FORMATS:
        return subtitles(result, fmt)
    raise ValueError(f"unknown output format '{fmt}'")
