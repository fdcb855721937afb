"""A finished transcript as the body of each ``response_format``.

text, srt and vtt are exactly what ``nue transcribe --format text|srt|vtt`` writes for the same
file (``nue_core.inference.renderers``): srt and vtt cues come from the words when word
granularity was asked for, else one cue per segment. json is OpenAI's ``{"text", "usage"}``;
verbose_json is ``nue_core.subtitles.to_verbose_json`` plus ``usage``.
"""

from __future__ import annotations

import math
from typing import Any

from nue_core.inference.assembly import Assembled
from nue_core.inference.renderers import render, subtitles
from nue_core.inference.transcriber import TranscriptionResult
from nue_core.serve.request import TranscriptionRequest
from nue_core.subtitles import to_verbose_json

MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json", "text": "text/plain; charset=utf-8",
               "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


def usage(seconds: float) -> dict[str, Any]:
    """OpenAI's duration-billed usage: whole seconds, rounded up."""
    return {"type": "duration", "seconds": int(math.ceil(seconds))}


def body(request: TranscriptionRequest, done: Assembled, seconds: float) -> str | dict[str, Any]:
    """The response body: a dict for the JSON formats, text for the others."""
    fmt = request.response_format
    if fmt == "json":
        return {"text": done.text, "usage": usage(seconds)}
    if fmt == "verbose_json":
        out = to_verbose_json(done.text, seconds, done.segments if request.wants_segments else None,
                              done.words if request.wants_words else None, language=request.language)
        out["usage"] = usage(seconds)
        return out
    result = TranscriptionResult(source=request.filename, text=done.text, seconds=seconds, chunks=len(done.segments),
                                 segments=done.segments, words=done.words if request.wants_words else None)
    if fmt == "text":
        return render(result, "text")
    return subtitles(result, fmt)
