"""Result files: plain text, TSV, JSONL and JSON, chosen by name suffix or explicitly.

- text: one transcript per input line (a failed input leaves an empty line, so lines stay aligned).
- tsv: ``id<TAB>transcript`` (id: the manifest id, else the path).
- jsonl: one JSON object per input with every field of ``TranscriptionResult`` and ``index``
  (this is also the format of data-parallel parts).
- json: ONE JSON document, a list of the jsonl objects in input order (``json.load`` reads it).

Subtitle formats (srt, vtt) need timestamps, which decoding does not give yet: they are refused
with a message rather than written as something else under their name.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Sequence

from nue_core.inference.transcriber import TranscriptionResult

FORMATS = ("text", "tsv", "jsonl", "json")
TIMESTAMP_FORMATS = ("srt", "vtt")
_SUFFIXES = {".txt": "text", ".text": "text", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json"}
_CHOICES = " | ".join(FORMATS)


def infer_format(path: Path | None, fmt: str | None, default: str = "text") -> str:
    """The output format: ``fmt`` when given, else from ``path``'s suffix, else ``default``.

    An explicit ``fmt`` wins over the suffix (``-o results.log --format tsv``); a path without a
    suffix gets ``default``.

    Raises:
        ValueError: ``fmt`` or the suffix names no known format (the message lists them).
    """
    if fmt is not None:
        return _known(fmt.lower(), f"'{fmt}'")
    if path is None or not path.suffix:
        return default
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    return _known(suffix[1:], f"'{path.suffix}' (from {path.name}); give --format to choose one for this name")


def _known(fmt: str, shown: str) -> str:
    if fmt in FORMATS:
        return fmt
    if fmt in TIMESTAMP_FORMATS:
        raise ValueError(f"{fmt} needs timestamps, which are not available yet; formats: {_CHOICES}")
    raise ValueError(f"unknown output format {shown}; formats: {_CHOICES}")


def prepare_destination(path: Path) -> None:
    """Check that results can be written to ``path`` (creating missing parent folders).

    Called before decoding starts, so a bad ``--output`` costs seconds, not a whole run.

    Raises:
        ValueError: ``path`` is a folder, its parent is not a folder, or either is not writable.
    """
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name, e.g. {path / 'results.tsv'}")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create {parent}: {exc.strerror or exc}") from None
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise ValueError(f"{target} is not writable")


def _one_line(text: str) -> str:
    # Tabs and newlines inside a transcript would break the line-per-input formats.
    return " ".join(text.split())


def result_record(result: TranscriptionResult, index: int | None = None) -> dict[str, Any]:
    """Every field of ``result`` (plus ``index`` when given) as a JSON-ready dict."""
    obj = asdict(result)
    if index is not None:
        obj["index"] = index
    return obj


def format_result(result: TranscriptionResult, fmt: str, index: int | None = None) -> str:
    """One output line (without the newline) for ``result`` in a line-per-input format."""
    if fmt == "text":
        return _one_line(result.text)
    if fmt == "tsv":
        return f"{result.id or result.source}\t{_one_line(result.text)}"
    if fmt == "jsonl":
        return json.dumps(result_record(result, index), ensure_ascii=False)
    raise ValueError(f"'{fmt}' is not a line-per-input format")


def write_line(handle: IO[str], result: TranscriptionResult, fmt: str, index: int | None = None) -> None:
    handle.write(format_result(result, fmt, index) + "\n")


def write_results(handle: IO[str], results: Sequence[TranscriptionResult], fmt: str) -> None:
    """All ``results`` in ``fmt`` (jsonl and json records carry their input ``index``)."""
    if fmt == "json":
        json.dump([result_record(r, i) for i, r in enumerate(results)], handle, ensure_ascii=False, indent=1)
        handle.write("\n")
        return
    for index, result in enumerate(results):
        write_line(handle, result, fmt, index if fmt == "jsonl" else None)


def read_jsonl_results(path: Path) -> list[tuple[int, TranscriptionResult]]:
    """(index, result) pairs from a JSONL file written with indices (a data-parallel part)."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                obj = json.loads(line)
                index = obj.pop("index")
                out.append((int(index), TranscriptionResult(**obj)))
    return out
