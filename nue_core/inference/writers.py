"""Result files: plain text, TSV and JSONL, chosen by name suffix or explicitly.

- text: one transcript per input line (a failed input leaves an empty line, so lines stay aligned).
- tsv: ``id<TAB>transcript`` (id: the manifest id, else the path).
- jsonl: every field of ``TranscriptionResult`` (this is also the format of data-parallel parts).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import IO

from nue_core.inference.transcriber import TranscriptionResult

FORMATS = ("text", "tsv", "jsonl")
_SUFFIXES = {".txt": "text", ".text": "text", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def infer_format(path: Path | None, fmt: str | None, default: str = "text") -> str:
    """``fmt`` when given, else from ``path``'s suffix (.txt .tsv .jsonl), else ``default``."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format '{fmt}'; choose one of {', '.join(FORMATS)}")
        return fmt
    if path is not None and path.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[path.suffix.lower()]
    return default


def _one_line(text: str) -> str:
    # Tabs and newlines inside a transcript would break the line-per-input formats.
    return " ".join(text.split())


def format_result(result: TranscriptionResult, fmt: str, index: int | None = None) -> str:
    """One output line (without the newline) for ``result``."""
    if fmt == "text":
        return _one_line(result.text)
    if fmt == "tsv":
        return f"{result.id or result.source}\t{_one_line(result.text)}"
    obj = asdict(result)
    if index is not None:
        obj["index"] = index
    return json.dumps(obj, ensure_ascii=False)


def write_line(handle: IO[str], result: TranscriptionResult, fmt: str, index: int | None = None) -> None:
    handle.write(format_result(result, fmt, index) + "\n")


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
