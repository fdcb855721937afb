"""JSONL manifests: one object per line, ``{"audio": path, "text": ..., "duration"?, "speaker"?, "id"?, "words"?}``.

``words`` (optional, for ``nue evaluate --timestamps``) lists the true word times:
``[{"word": "seven", "start": 0.42, "end": 0.81}, ...]``, seconds from the start of the audio.

Audio paths are relative to the manifest's folder. Every line is checked on its own: a bad line
becomes a ``ManifestProblem`` naming ``file:line`` and the field, and the other lines are still read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from nue_core.data.manifest_base import (
    ManifestProblem, ManifestRead, ReferenceWord, Utterance, read_lines, text_problem,
)

KEYS = ("audio", "text", "duration", "speaker", "id", "words")
WORD_KEYS = ("word", "start", "end")
MAX_WORDS = 100_000  # per entry; a day of speech holds fewer
# An entry is one flat object (depth 1); the bound is far above that and far below where
# json.loads recurses out of stack (it raises RecursionError near depth 1000).
MAX_JSON_DEPTH = 64
# A JSON string (possibly unterminated: it then runs to the end of the line) or one bracket. Strings
# are matched whole so brackets inside them do not count; the pattern never backtracks.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class _BadLine(Exception):
    """Internal: the current line is unusable; the message names the field."""


def scan_jsonl(path: Path, require_text: bool = True) -> ManifestRead:
    """Every line of a JSONL manifest, as an entry or as a problem.

    Args:
        path: the manifest file.
        require_text: every entry must have a ``text`` (evaluation, training).

    Returns:
        the entries and one problem per bad line (duplicate ids: the later line is the problem).

    Raises:
        ManifestError: the file cannot be read at all.
    """
    read, seen = ManifestRead(), set()
    for line in read_lines(path):
        try:
            if line.problem:
                raise _BadLine(line.problem)
            entry = _entry(line.text, line.where, path.parent, require_text)
            if entry.id in seen:
                raise _BadLine(f"duplicate id '{entry.id}'")
        except _BadLine as exc:
            read.problems.append(ManifestProblem(line.where, str(exc)))
            continue
        seen.add(entry.id)
        read.entries.append(entry)
    return read


def too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays/objects deeper than ``limit`` (brackets in strings ignored)."""
    if text.count("[") + text.count("{") <= limit:  # the common case, at C speed
        return False
    depth = 0
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif bracket in ("]", "}"):
            depth -= 1
    return False


def _parse(text: str) -> object:
    if too_deep(text):
        raise _BadLine(f"JSON nested deeper than {MAX_JSON_DEPTH} levels; an entry is one flat object")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not valid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise _BadLine(f"not valid JSON ({str(exc).split(';')[0]})") from None


def _entry(text: str, where: str, base: Path, require_text: bool) -> Utterance:
    obj = _parse(text)
    if not isinstance(obj, dict):
        raise _BadLine("expected a JSON object")
    unknown = set(obj) - set(KEYS)
    if unknown:
        # repr() keeps the message printable whatever the keys hold.
        raise _BadLine(f"unknown key(s) {', '.join(sorted(map(repr, unknown)))}; allowed: {', '.join(KEYS)}")
    audio = obj.get("audio")
    if not isinstance(audio, str) or not audio:
        raise _BadLine("'audio' must be a non-empty string path")
    if not isinstance(obj.get("text", ""), str) or (require_text and "text" not in obj):
        raise _BadLine("'text' must be a string")
    for key in ("audio", "text"):
        _check_text(obj.get(key, ""), key)
    return Utterance(
        id=_label(obj, "id", where), audio=_resolve(base, audio), text=obj.get("text", ""),
        duration=_duration(obj.get("duration")), speaker=_label(obj, "speaker", None), source=where,
        words=_words(obj.get("words")),
    )


def _check_text(value: str, key: str) -> None:
    problem = text_problem(value, f"'{key}'")
    if problem:
        raise _BadLine(problem)


def _label(obj: dict, key: str, default: str | None) -> str | None:
    """An ``id`` or ``speaker``: a non-empty string or an integer (as written)."""
    if key not in obj:
        return default
    value = obj[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise _BadLine(f"'{key}' must be a non-empty string")
    _check_text(value, key)
    return value


def _duration(value: object) -> float | None:
    if value is None:
        return None
    return _seconds(value, "'duration'")


def _seconds(value: object, name: str) -> float:
    """A finite, non-negative number of seconds, else _BadLine naming ``name``."""
    message = f"{name} must be a finite, non-negative number of seconds"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _BadLine(message)
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond float range
        raise _BadLine(message) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise _BadLine(message)
    return seconds


def _words(value: object) -> tuple[ReferenceWord, ...] | None:
    """The ``words`` list: objects with a non-empty ``word`` and ``start`` <= ``end`` in seconds."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _BadLine("'words' must be a list of {\"word\", \"start\", \"end\"} objects")
    if len(value) > MAX_WORDS:
        raise _BadLine(f"'words' holds {len(value)} items; at most {MAX_WORDS} per entry")
    out = []
    for k, item in enumerate(value):
        name = f"'words'[{k}]"
        if not isinstance(item, dict) or set(item) != set(WORD_KEYS):
            raise _BadLine(f"{name} must be an object with exactly the keys word, start, end")
        word = item["word"]
        if not isinstance(word, str) or not word.strip():
            raise _BadLine(f"{name}.word must be a non-empty string")
        _check_text(word, f"words[{k}].word")
        start, end = _seconds(item["start"], f"{name}.start"), _seconds(item["end"], f"{name}.end")
        if end < start:
            raise _BadLine(f"{name}: end {end} is before start {start}")
        out.append(ReferenceWord(word, start, end))
    return tuple(out)


def _resolve(base: Path, audio: str) -> Path:
    try:
        return (base / audio).resolve()
    except (OSError, ValueError) as exc:  # e.g. a name too long for the file system
        raise _BadLine(f"'audio' is not a usable path ({exc})") from None
