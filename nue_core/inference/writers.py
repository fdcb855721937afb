"""Result files: plain text, TSV, JSONL, JSON, SRT and WebVTT, chosen by name suffix or explicitly.

- text: one transcript per input line (a failed input leaves an empty line, so lines stay aligned).
- tsv: ``id<TAB>transcript`` (id: the manifest id, else the path); a field holding a tab,
  newline, carriage return or double quote is put in double quotes (its quotes doubled), so
  ``csv.reader(open(f, newline=""), delimiter="\\t")`` reads back exactly what was written.
  With timestamps: the header ``id<TAB>start<TAB>end<TAB>text``, then one row per segment.
- jsonl: one JSON object per input with every field of ``TranscriptionResult``, ``index`` and
  OpenAI's verbose_json keys (``duration``; ``segments`` / ``words`` when asked for); this is
  also the format of data-parallel parts. See ``nue_core.inference.renderers``.
- json: ONE JSON document, a list of the jsonl objects in input order (``json.load`` reads it).
- srt, vtt: the subtitles of ONE input (``--output-dir`` writes one file per input).

A file is written atomically and as results come: rows go to ``<name>.partial`` (flushed after
each window of inputs), which replaces ``<name>`` only when complete, so a previous file stays
intact until then and a run that stops early keeps what it finished in ``<name>.partial`` (json:
the jsonl records; the json document is written at the end). Characters that UTF-8 cannot hold
(lone surrogates, e.g. from a file name that is not UTF-8) are written as ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any, Sequence

from nue_core.atomic import temp_prefix
from nue_core.errors import OutputError
from nue_core.inference.renderers import (
    SUBTITLE_FORMATS, TSV_HEADER, render, result_from_record, result_record,
)
from nue_core.inference.transcriber import TranscriptionResult

log = logging.getLogger(__name__)

FORMATS = ("text", "tsv", "jsonl", "json", "srt", "vtt")
ALL_FORMATS = ("text", "tsv", "srt", "vtt", "json")  # --format all (with --output-dir), as whisper's
EXTENSIONS = {"text": ".txt", "tsv": ".tsv", "jsonl": ".jsonl", "json": ".json", "srt": ".srt", "vtt": ".vtt"}
_SUFFIXES = {".txt": "text", ".text": "text", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".srt": "srt",
             ".vtt": "vtt"}
_CHOICES = " | ".join(FORMATS)
PARTIAL_SUFFIX = ".partial"


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
    raise ValueError(f"unknown output format {shown}; formats: {_CHOICES}")


def check_destination(path: Path, folder: bool = False) -> None:
    """Check, creating nothing, that ``path`` (a file, or a folder when ``folder``) can be written.

    What must be writable is the folder that will hold ``path`` (or its nearest existing
    ancestor, where missing folders will be created): files are replaced by renaming, not
    overwritten in place.

    Raises:
        OutputError: ``path`` is a folder where a file is wanted (or the reverse), a part of it is
            a file, or the folder is not writable; the message says which.
    """
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; give a folder", path)
    if not folder and path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name, e.g. {path / 'results.tsv'}", path)
    holder = path if folder else path.parent
    existing = next(p for p in (holder, *holder.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        raise OutputError(f"{existing} is not a folder (it is in the path of {path})", existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{existing} is not writable; choose a location you can write to", existing)


def prepare_destination(path: Path) -> None:
    """Check that results can be written to the file ``path``, creating missing parent folders.

    Called before decoding starts, so a bad ``--output`` costs seconds, not a whole run.

    Raises:
        OutputError: see ``check_destination``; or a parent folder cannot be created.
    """
    check_destination(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError.from_oserror(path.parent, exc) from None


def format_result(result: TranscriptionResult, fmt: str, index: int | None = None, timed: bool = False) -> str:
    """The text for ``result`` in a line-per-input format (text, tsv, jsonl), without the final newline.

    A tsv field holding a newline is quoted, so that row spans lines; text and jsonl rows never do.
    ``timed``: tsv rows with start and end, one per segment (``renderers.tsv_rows``).
    """
    if fmt not in ("text", "tsv", "jsonl"):
        raise ValueError(f"'{fmt}' is not a line-per-input format")
    return render(result, fmt, index, timed)[:-1]


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
                out.append((int(obj["index"]), result_from_record(obj)))
    return out


def _open_text(path: Path) -> IO[str]:
    """A new UTF-8 text file; what UTF-8 cannot hold (lone surrogates) is written as \\uXXXX."""
    return open(path, "w", encoding="utf-8", errors="backslashreplace", newline="")


def partial_path(path: Path) -> Path:
    """Where ``path`` is written until it is complete: ``<name>.partial`` beside it."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename.

    Raises:
        OutputError: the write failed (e.g. disk full); ``path`` is unchanged, no temporary is left.
    """
    tmp = path.with_name(f"{temp_prefix(path.name)}{os.getpid()}")  # the naming rule of folders too
    try:
        with _open_text(tmp) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        note = f"{path} is unchanged" if path.exists() else ""
        raise OutputError.from_oserror(path, exc, note) from None


class LineFile:
    """Lines written to ``<path>.partial`` as they come, which replaces ``path`` once complete.

    ``write`` is called once per result (``written`` counts them). Until ``commit`` a previous
    ``path`` stays as it was; a run that stops early keeps what was written so far in ``<path>.partial`` (removed when it holds none). Use as a context manager:
    a block that ends normally commits, one that raises keeps the partial file and re-raises.

    Raises:
        OutputError: from the constructor, ``write`` or ``commit`` when the disk refuses (full,
            read-only ...); the message names ``path`` and the partial file.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.partial, self.written = Path(path), partial_path(Path(path)), 0
        self._failed = False
        try:
            self._handle = _open_text(self.partial)
        except OSError as exc:
            raise OutputError.from_oserror(self.partial, exc) from None

    def write(self, text: str) -> None:
        """Append ``text`` (whole lines) and flush it, so a crash keeps it."""
        try:
            self._handle.write(text)
            self._handle.flush()
        except OSError as exc:
            raise self._failure(exc) from None
        self.written += 1

    def commit(self) -> None:
        """Make the partial file durable and rename it to ``path``."""
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise self._failure(exc) from None

    def keep(self) -> Path | None:
        """Close after a failure: the partial file when it holds lines, else remove it (None)."""
        try:
            self._handle.close()
        except OSError:
            pass  # the data that did not fit is lost either way; the lines before it are on disk
        if self.written == 0:
            self.partial.unlink(missing_ok=True)
            return None
        return self.partial

    def _failure(self, exc: OSError) -> OutputError:
        self._failed = True
        kept = self.keep()
        note = f"{self.path} is unchanged" if self.path.exists() else f"{self.path} was not written"
        if kept is not None:
            note += f"; the {self.written} result(s) finished before this are in {kept}"
        return OutputError.from_oserror(self.path, exc, note)

    def __enter__(self) -> LineFile:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        elif not self._failed:  # our own failure already named the partial file in its message
            kept = self.keep()
            if kept is not None:
                log.warning("%s: the %d result(s) finished before the run stopped are kept here; %s is unchanged",
                            kept, self.written, self.path)


class ResultWriter:
    """Results in one format, each written as it comes, to a file (atomically) or a stream.

    Args:
        path: the output file (written through ``LineFile``), or None to write to ``stream``.
        fmt: one of ``FORMATS``; json collects the records and writes one document at the end
            (its partial file holds the jsonl records meanwhile); srt and vtt hold one input.
        stream: where results go when ``path`` is None (e.g. ``sys.stdout``).
        timed: the results carry timestamps: tsv gets the header ``TSV_HEADER`` and a row per segment.
    """

    def __init__(self, path: Path | None, fmt: str, stream: IO[str] | None = None, timed: bool = False) -> None:
        self.path, self.fmt, self.stream, self.timed = path, fmt, stream, timed
        self._records: list[dict[str, Any]] = []
        self._count = 0
        self._file = LineFile(path) if path is not None else None

    def add(self, index: int, result: TranscriptionResult) -> None:
        """Write ``result``, the ``index``-th input (call in input order)."""
        if self.fmt in SUBTITLE_FORMATS and self._count:
            raise ValueError(f"{self.fmt} holds the subtitles of one input; write each to a file of its own")
        line_fmt = "jsonl" if self.fmt == "json" else self.fmt
        text = render(result, line_fmt, index if line_fmt == "jsonl" else None, self.timed)
        if self.fmt == "tsv" and self.timed and not self._count:
            text = TSV_HEADER + "\n" + text
        self._count += 1
        if self.fmt == "json":
            self._records.append(result_record(result, index))
        if self._file is not None:
            self._file.write(text)
        elif self.fmt != "json" and self.stream is not None:
            self.stream.write(text)
            self.stream.flush()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None and self.fmt == "json":
            try:
                self._write_document()
            except OutputError as err:
                kept = self._file.keep() if self._file is not None else None
                if kept is None:
                    raise
                raise OutputError(f"{err}; the {self._file.written} finished result(s) are in {kept} (as jsonl)",
                                  err.path, err.errno) from None
        if self._file is None:
            return
        if exc_type is None and self.fmt == "json":  # the document is in place: its records are not needed
            self._file.keep()
            self._file.partial.unlink(missing_ok=True)
            return
        self._file.__exit__(exc_type, exc, tb)

    def _write_document(self) -> None:
        document = json.dumps(self._records, ensure_ascii=False, indent=1) + "\n"
        if self.path is not None:
            write_atomic(self.path, document)
        elif self.stream is not None:
            self.stream.write(document)
