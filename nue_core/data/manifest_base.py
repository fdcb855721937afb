"""What the manifest readers share: the entry and problem records, and reading lines as UTF-8 text.

Manifests are read as bytes and decoded line by line, so one line in another encoding is that
line's problem (with its byte offset) rather than a ``UnicodeDecodeError`` for the whole file, and
a line too long to be a manifest entry is skipped without being held in memory.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from nue_core.errors import InputError

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real entry, small enough to hold

# A str holds a surrogate code point only when it is lone (JSON "\ud800"); it cannot be written as
# UTF-8, so a transcript holding one would crash whatever writes results. NUL ends C strings (paths).
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


class ManifestError(InputError, ValueError):
    """A manifest is malformed; the message names the file and line of every bad entry.

    Attributes:
        problems: the bad lines, one ``ManifestProblem`` each (empty when the whole file is unusable).
    """

    def __init__(self, message: str, problems: list[ManifestProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class ReferenceWord:
    """A word of a reference transcript with its true times, seconds from the audio's start."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class TarMember:
    """Audio stored as a member of an uncompressed tar file (webdataset shards), read by offset.

    Attributes:
        name: the member's name in the tar (for messages).
        offset: byte offset of the member's data in the tar file.
        size: the member's size in bytes.
    """

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class DatasetRow:
    """Audio in one row of a Hugging Face dataset saved with ``save_to_disk`` (its folder is ``audio``).

    Attributes:
        index: the row.
        column: the audio column (an ``Audio`` feature: encoded bytes, or a path to a file).
    """

    index: int
    column: str


@dataclass(frozen=True)
class Utterance:
    """One manifest entry.

    Attributes:
        id: utterance id (JSONL: ``id`` or ``<file>:<line>``).
        audio: absolute path of the audio file (or of the tar file / dataset folder that holds the
            audio, see ``container``).
        text: transcript ('' when the manifest has none, e.g. for transcription).
        duration: seconds, if the manifest gives it.
        speaker: speaker label, if given.
        start, end: segment bounds in seconds within ``audio`` (Kaldi ``segments``), or None; an end
            of None with a start runs to the end of the recording.
        source: ``file:line`` the entry came from, for error messages.
        words: the true words with their times (JSONL ``words``), for timing evaluation, or None.
        container: where inside ``audio`` the encoded audio is (a tar member, a dataset row); None:
            ``audio`` is itself an audio file. ``nue_core.data.entry_audio`` reads every kind.
    """

    id: str
    audio: Path
    text: str = ""
    duration: float | None = None
    speaker: str | None = None
    start: float | None = None
    end: float | None = None
    source: str = ""
    words: tuple[ReferenceWord, ...] | None = None
    container: TarMember | DatasetRow | None = None


@dataclass(frozen=True)
class ManifestProblem:
    """One bad manifest line: where it is (``file:line``) and what is wrong, naming the field."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass
class ManifestRead:
    """A manifest read to the end: the usable entries and one problem per bad line."""

    entries: list[Utterance] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)

    def summary(self, name: str, limit: int = 50) -> str:
        """The problems as one message: the single problem, or a count and one line each."""
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{name}: {len(self.problems)} bad lines"] + [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def text_problem(value: str, name: str) -> str | None:
    """What makes ``value`` unusable as text (a lone surrogate, a NUL), naming field ``name``; else None."""
    bad = _NOT_TEXT.search(value)
    if bad is None:
        return None
    char = bad.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate U+{ord(char):04X} (not valid Unicode)"
    return f"{name} contains {what} at character {bad.start()}; give plain UTF-8 text"


@dataclass(frozen=True)
class Line:
    """One non-blank line: its number, ``file:line``, its text and, if unusable, why.

    ``text`` of a line that is not UTF-8 is decoded with replacement characters, so a reader can
    still tell which key it was about; ``problem`` is then set.
    """

    number: int
    where: str
    text: str
    problem: str | None = None


def read_lines(path: Path) -> Iterator[Line]:
    """The non-blank lines of a UTF-8 text file (a leading BOM is dropped; ``\\r\\n`` ends are fine).

    A gzip-compressed file (``cuts.jsonl.gz``, known by its magic bytes) is decompressed as it is read.

    Raises:
        ManifestError: the file cannot be opened or read at all (or its gzip stream is damaged).
    """
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            with (gzip.GzipFile(fileobj=raw) if gzipped else raw) as handle:
                yield from _lines(handle, path)
    except (OSError, EOFError, zlib.error) as exc:  # EOFError, zlib.error: a truncated or damaged gzip stream
        raise ManifestError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def _lines(handle: BinaryIO, path: Path) -> Iterator[Line]:
    offset = 0  # byte offset of the current line in the file, for messages about bad bytes
    number = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        where, start = f"{path}:{number}", offset
        if not raw.endswith(b"\n") and len(raw) > MAX_LINE_BYTES:
            offset += len(raw) + _skip_rest_of_line(handle)
            yield Line(number, where, "", f"line is longer than {MAX_LINE_BYTES >> 20} MiB; is this a manifest?")
            continue
        offset += len(raw)
        if number == 1 and raw.startswith(BOM):
            raw, start = raw[len(BOM):], start + len(BOM)
        raw = raw.rstrip(b"\r\n")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Line(number, where, raw.decode("utf-8", "replace"), _decode_problem(raw, exc, start))
            continue
        if text.strip():
            yield Line(number, where, text)


def _skip_rest_of_line(handle: BinaryIO) -> int:
    """Read past the end of an over-long line in bounded chunks; returns the bytes skipped."""
    skipped = 0
    while chunk := handle.readline(MAX_LINE_BYTES):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _decode_problem(raw: bytes, exc: UnicodeDecodeError, line_start: int) -> str:
    # No guessing of the encoding: a wrong guess silently changes transcripts, and so the scores.
    return (f"byte 0x{raw[exc.start]:02x} at byte offset {line_start + exc.start} (byte {exc.start + 1} of the line) "
            "is not UTF-8; manifests must be UTF-8 (convert the file, e.g. iconv -f <its encoding> -t utf-8)")
