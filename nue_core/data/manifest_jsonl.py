"""JSONL manifests: one object per line, ``{"audio": path, "text": ..., "duration"?, "speaker"?, "id"?, "words"?}``.

``words`` (optional, for ``nue evaluate --timestamps``) lists the true word times:
``[{"word": "seven", "start": 0.42, "end": 0.81}, ...]``, seconds from the start of the audio.

Audio paths are relative to the manifest's folder. Every line is checked on its own: a bad line
becomes a ``ManifestProblem`` naming ``file:line`` and the field, and the other lines are still read.
Unknown keys are errors in this format: they catch typos.

Manifests of other tools are recognised by the keys of the first line that is a JSON object (a file
holds one format): NeMo (``audio_filepath``: ``manifest_nemo``) and lhotse CutSets (``"type":
"MonoCut"``, or ``recording`` and ``supervisions``: ``manifest_lhotse``). Their problems say which
format the file was read as, and from which line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nue_core.data.manifest_base import ManifestProblem, ManifestRead, ReferenceWord, Utterance, read_lines
from nue_core.data.manifest_fields import (
    MAX_JSON_DEPTH, BadLine, PathResolver, check_text, label, optional_seconds, parse_object, seconds, string_field,
    too_deep,
)

__all__ = ["KEYS", "MAX_JSON_DEPTH", "JsonFormat", "detect_format", "scan_jsonl", "too_deep"]

KEYS = ("audio", "text", "duration", "speaker", "id", "words")
WORD_KEYS = ("word", "start", "end")
MAX_WORDS = 100_000  # per entry; a day of speech holds fewer

# (object, "file:line", paths relative to the manifest, require_text) -> the entry, or BadLine
EntryParser = Callable[[dict, str, PathResolver, bool], Utterance]


@dataclass(frozen=True)
class JsonFormat:
    """A JSON-lines manifest format: its name for messages and the parser of one line's object."""

    name: str
    parse: EntryParser
    native: bool = False


def scan_jsonl(path: Path, require_text: bool = True) -> ManifestRead:
    """Every line of a JSON-lines manifest (ours, NeMo's or a lhotse CutSet), as an entry or as a problem.

    Args:
        path: the manifest file (gzip-compressed or not).
        require_text: every entry must have a transcript (evaluation, training).

    Returns:
        the entries and one problem per bad line (duplicate ids: the later line is the problem).

    Raises:
        ManifestError: the file cannot be read at all.
        InputError: the file is a lhotse CutSet and lhotse is not installed.
    """
    read, seen = ManifestRead(), set()
    resolve = PathResolver(path.parent)
    form: JsonFormat | None = None
    recognised = ""  # " (NeMo manifest, recognised by line 1's keys)", for problems of other formats
    for line in read_lines(path):
        try:
            if line.problem:
                raise BadLine(line.problem)
            obj = parse_object(line.text)
            if form is None:
                form = detect_format(obj)
                if not form.native:
                    recognised = f" ({form.name} manifest, recognised by line {line.number}'s keys)"
            entry = form.parse(obj, line.where, resolve, require_text)
            if entry.id in seen:
                raise BadLine(f"duplicate id '{entry.id}'")
        except BadLine as exc:
            read.problems.append(ManifestProblem(line.where, str(exc) + recognised))
            continue
        seen.add(entry.id)
        read.entries.append(entry)
    return read


def detect_format(obj: dict) -> JsonFormat:
    """The format a manifest's first object is written in (ours when no other tool's keys are there)."""
    from nue_core.data import manifest_lhotse, manifest_nemo

    if "audio_filepath" in obj:
        return JsonFormat("NeMo", manifest_nemo.nemo_entry)
    if manifest_lhotse.is_cut(obj):
        return JsonFormat("lhotse CutSet", manifest_lhotse.cut_entry)
    return NATIVE


def native_entry(obj: dict, where: str, resolve: PathResolver, require_text: bool) -> Utterance:
    """An entry of our own format; unknown keys are errors (they catch typos)."""
    unknown = set(obj) - set(KEYS)
    if unknown:
        # repr() keeps the message printable whatever the keys hold.
        raise BadLine(f"unknown key(s) {', '.join(sorted(map(repr, unknown)))}; allowed: {', '.join(KEYS)}")
    audio = obj.get("audio")
    if not isinstance(audio, str) or not audio:
        raise BadLine("'audio' must be a non-empty string path")
    check_text(audio, "audio")
    text = string_field(obj, "text", require_text)
    return Utterance(
        id=label(obj, "id", where), audio=resolve(audio, "audio"), text=text,
        duration=optional_seconds(obj, "duration"), speaker=label(obj, "speaker", None), source=where,
        words=_words(obj.get("words")),
    )


NATIVE = JsonFormat("nue JSONL", native_entry, native=True)


def _words(value: object) -> tuple[ReferenceWord, ...] | None:
    """The ``words`` list: objects with a non-empty ``word`` and ``start`` <= ``end`` in seconds."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadLine("'words' must be a list of {\"word\", \"start\", \"end\"} objects")
    if len(value) > MAX_WORDS:
        raise BadLine(f"'words' holds {len(value)} items; at most {MAX_WORDS} per entry")
    out = []
    for k, item in enumerate(value):
        name = f"'words'[{k}]"
        if not isinstance(item, dict) or set(item) != set(WORD_KEYS):
            raise BadLine(f"{name} must be an object with exactly the keys word, start, end")
        word = item["word"]
        if not isinstance(word, str) or not word.strip():
            raise BadLine(f"{name}.word must be a non-empty string")
        check_text(word, f"words[{k}].word")
        start, end = seconds(item["start"], f"{name}.start"), seconds(item["end"], f"{name}.end")
        if end < start:
            raise BadLine(f"{name}: end {end} is before start {start}")
        out.append(ReferenceWord(word, start, end))
    return tuple(out)

