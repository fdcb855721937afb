"""Kaldi data folders: ``wav.scp`` and ``text``, optionally ``segments`` and ``utt2spk``.

Each file holds ``key<sep>rest`` lines, where a separator is any run of spaces and tabs (Kaldi
splits on both). A bad line becomes a ``ManifestProblem`` naming ``file:line``; an utterance whose
line in any of the files is bad is left out and reported once, so ``--skip-bad`` counts it once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from nue_core.data.manifest_base import (
    ManifestError, ManifestProblem, ManifestRead, Utterance, read_lines, text_problem,
)

_SEP = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class _Row:
    """The rest of one ``key rest`` line, where it is, and what is wrong with it (if anything)."""

    rest: str
    where: str
    problem: str | None = None


class _Table:
    """One Kaldi file as ``{key: _Row}``; duplicate keys are problems and the first line wins."""

    def __init__(self, path: Path, required: bool) -> None:
        self.rows: dict[str, _Row] = {}
        self.problems: list[ManifestProblem] = []
        self.reported: set[str] = set()  # keys whose bad row an utterance has already reported
        if not path.is_file():
            if required:
                raise ManifestError(f"{path}: missing (a Kaldi data folder needs wav.scp and text)")
            return
        for line in read_lines(path):
            key, _, rest = _SEP.sub(" ", line.text.strip(" \t\r\n"), count=1).partition(" ")
            if key in self.rows:
                self.problems.append(ManifestProblem(line.where, f"duplicate key '{key}' "
                                                     f"(first at line {self.rows[key].where.rsplit(':', 1)[1]})"))
                continue
            self.rows[key] = _Row(rest, line.where, line.problem or text_problem(line.text, "the line"))

    def get(self, key: str, utterance: str | None = None) -> _Row | None:
        """The usable row of ``key`` (None if absent); a bad row raises ``_BadRow``.

        ``utterance``: the utterance that needs this row when it is not ``key`` (a segment's recording).
        """
        row = self.rows.get(key)
        if row is not None and row.problem:
            self.reported.add(key)
            needed = f" (needed by '{utterance}')" if utterance not in (None, key) else ""
            raise _BadRow(ManifestProblem(row.where, row.problem + needed))
        return row

    def unreported(self) -> list[ManifestProblem]:
        """Problems of bad rows no utterance asked for (a line whose key is unreadable, say)."""
        bad = [ManifestProblem(row.where, str(row.problem))
               for key, row in self.rows.items() if row.problem and key not in self.reported]
        return self.problems + bad


class _BadRow(Exception):
    """Internal: an utterance cannot be used; carries the problem to report."""

    def __init__(self, problem: ManifestProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def scan_kaldi_dir(folder: Path, require_text: bool = True) -> ManifestRead:
    """Every utterance of a Kaldi data folder, as an entry or as a problem.

    Args:
        folder: holds ``wav.scp``, ``text`` (unless ``require_text`` is False), ``segments``, ``utt2spk``.
        require_text: every utterance must have a transcript.

    Raises:
        ManifestError: ``wav.scp`` (or a required ``text``) is missing or cannot be read.
    """
    tables = {name: _Table(folder / name, required=name == "wav.scp" or (name == "text" and require_text))
              for name in ("wav.scp", "text", "segments", "utt2spk")}
    keys = tables["segments"].rows if tables["segments"].rows else tables["wav.scp"].rows
    read = ManifestRead()
    for key in list(keys):
        try:
            read.entries.append(_utterance(key, folder, tables, require_text))
        except _BadRow as exc:
            read.problems.append(exc.problem)
    for table in tables.values():
        read.problems += table.unreported()
    return read


def _utterance(key: str, folder: Path, tables: dict[str, _Table], require_text: bool) -> Utterance:
    segments = tables["segments"]
    start = end = None
    recording, where = key, ""
    if segments.rows:
        row = segments.get(key)
        assert row is not None  # keys come from this table
        recording, start, end = _segment(key, row)
        where = row.where
    wav = tables["wav.scp"].get(recording, key)
    if wav is None:
        raise _BadRow(ManifestProblem(where, f"recording '{recording}' is not in {folder / 'wav.scp'}"))
    where = where or wav.where
    if not wav.rest:
        raise _BadRow(ManifestProblem(wav.where, f"no audio path for '{recording}'"))
    if wav.rest.endswith("|"):
        raise _BadRow(ManifestProblem(wav.where, "piped commands in wav.scp are not supported; give a file path"))
    text = tables["text"].get(key)
    if require_text and text is None:
        raise _BadRow(ManifestProblem(where, f"no transcript for '{key}' in {folder / 'text'}"))
    speaker = tables["utt2spk"].get(key)
    return Utterance(
        id=key, audio=_resolve(folder, wav), text=text.rest if text else "", speaker=speaker.rest if speaker else None,
        start=start, end=end, duration=(end - start) if start is not None and end is not None else None, source=where,
    )


def _segment(key: str, row: _Row) -> tuple[str, float, float | None]:
    """(recording, start, end) of a ``segments`` line; end None: to the end of the recording."""
    fields = _SEP.split(row.rest) if row.rest else []
    if len(fields) == 4:  # Kaldi allows a channel; we read all channels mixed, which is not what it asks
        raise _BadRow(ManifestProblem(row.where, f"segment '{key}': a channel field is not supported; "
                                                 "split the recording into one file per channel"))
    if len(fields) != 3:
        raise _BadRow(ManifestProblem(row.where, "expected 'utt recording start end'"))
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        start = end = math.nan
    if not (math.isfinite(start) and math.isfinite(end)):
        raise _BadRow(ManifestProblem(row.where, f"segment '{key}': start and end must be finite seconds"))
    if start < 0:
        raise _BadRow(ManifestProblem(row.where, f"segment '{key}': start {start:g} s is negative"))
    if end == -1:  # Kaldi's convention (extract-segments): to the end of the recording
        return fields[0], start, None
    if start >= end:
        raise _BadRow(ManifestProblem(row.where, f"segment '{key}': start {start:g} s is not before end {end:g} s"))
    return fields[0], start, end


def _resolve(folder: Path, wav: _Row) -> Path:
    audio = Path(wav.rest)
    try:
        return (audio if audio.is_absolute() else folder / audio).resolve()
    except (OSError, ValueError) as exc:  # e.g. a name too long for the file system
        raise _BadRow(ManifestProblem(wav.where, f"not a usable audio path ({exc})")) from None
