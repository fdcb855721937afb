"""``nue transcribe --output-dir DIR``: one file per input and format, as whisper's CLI writes them.

Each input gets ``DIR/<name>.<ext>`` for each format (``.txt .tsv .jsonl .json .srt .vtt``), written
atomically (a temporary file and a rename) as its result comes. ``<name>`` is the manifest id, else
the audio file's stem, made safe for a file name (``file_stem``); inputs that would share a name
(``a/x.wav`` and ``b/x.flac``; names equal but for case, which some file systems do not tell
apart) get ``-2``, ``-3`` ... in input order, so the names are the same on every run. A failed
input writes no file (the run names it on stderr and exits 1).

A json file holds that input's record (``renderers.result_record``: OpenAI's verbose_json keys
plus nue's own), one object rather than a list.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any, Sequence

from nue_core.errors import OutputError
from nue_core.inference.renderers import TSV_HEADER, render
from nue_core.inference.transcriber import TranscriptionResult
from nue_core.inference.writers import EXTENSIONS, write_atomic

_UNSAFE = set('/\\:*?"<>|')
_MAX_NAME = 200  # characters; the extension and a -N suffix must still fit the usual 255


def file_stem(result: TranscriptionResult, index: int) -> str:
    """The base name of ``result``'s files: its manifest id, else its file's stem, made safe.

    Path separators, characters Windows refuses (``: * ? " < > |``) and control characters become
    ``_``; a name that is empty, ``.`` or ``..`` after that is ``input-<index>``.
    """
    raw = result.id if result.id else Path(result.source).stem
    name = "".join("_" if c in _UNSAFE or unicodedata.category(c) == "Cc" else c for c in raw).strip()
    name = name[:_MAX_NAME]
    if name in ("", ".", ".."):
        name = f"input-{index}"
    return name


class OutputDirWriter:
    """Each result in ``formats`` to files of its own in ``folder`` (call ``add`` in input order).

    Args:
        folder: created when missing (check it first with ``check_destination(folder=True)``).
        formats: names from ``writers.FORMATS``.
        timed: the results carry timestamps (tsv gets a header and a row per segment).

    Raises:
        OutputError: the folder cannot be created, or a file cannot be written.
    """

    def __init__(self, folder: Path, formats: Sequence[str], timed: bool = False) -> None:
        self.folder, self.formats, self.timed = Path(folder), tuple(formats), timed
        self.written: list[Path] = []
        self._taken: set[str] = set()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError.from_oserror(self.folder, exc) from None

    def name_for(self, result: TranscriptionResult, index: int) -> str:
        """A name not given to an earlier input (``-2``, ``-3`` ... added when it was)."""
        base = file_stem(result, index)
        name, n = base, 1
        while name.casefold() in self._taken:
            n += 1
            name = f"{base}-{n}"
        self._taken.add(name.casefold())
        return name

    def add(self, index: int, result: TranscriptionResult) -> None:
        """Write ``result``'s files (none when it failed; its name is kept for it all the same)."""
        name = self.name_for(result, index)
        if not result.ok:
            return
        for fmt in self.formats:
            path = self.folder / f"{name}{EXTENSIONS[fmt]}"
            text = render(result, fmt, index, self.timed, indent=1)
            if fmt == "tsv" and self.timed:
                text = TSV_HEADER + "\n" + text
            write_atomic(path, text)
            self.written.append(path)

    def __enter__(self) -> OutputDirWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None
