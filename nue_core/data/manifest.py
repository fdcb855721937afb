"""Manifests: JSONL files and Kaldi-style data folders, read into ``Utterance`` records.

JSONL: one object per line, ``{"audio": path, "text": ..., "duration"?, "speaker"?, "id"?}``;
audio paths are relative to the manifest's folder. Kaldi: a folder with ``wav.scp`` and ``text``
(and optionally ``segments`` and ``utt2spk``), fields separated by spaces or tabs.

Files are UTF-8 (a BOM is allowed). Everything is checked as it is read, before any audio is
decoded: ``scan_manifest`` returns the usable entries and one problem per bad line (``file:line``
and the field), which training's ``--skip-bad`` leaves out; ``read_manifest`` raises one
``ManifestError`` listing every bad line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nue_core.data.manifest_base import ManifestError, ManifestProblem, ManifestRead, Utterance
from nue_core.data.manifest_jsonl import scan_jsonl
from nue_core.data.manifest_kaldi import scan_kaldi_dir

__all__ = ["ManifestError", "ManifestProblem", "ManifestRead", "Utterance", "read_jsonl", "read_kaldi_dir",
           "read_manifest", "scan_manifest", "write_jsonl"]


def scan_manifest(path: str | Path, require_text: bool = True) -> ManifestRead:
    """Read a JSONL manifest or a Kaldi data folder to the end, keeping bad lines apart.

    Args:
        path: a ``.jsonl`` file or a Kaldi data folder.
        require_text: every entry must have a transcript (evaluation, training).

    Returns:
        the usable entries and one ``ManifestProblem`` per bad line.

    Raises:
        ManifestError: the manifest as a whole cannot be read (missing, not a regular file,
            unreadable, a Kaldi folder without ``wav.scp``).
    """
    path = Path(path)
    if path.is_dir():
        return scan_kaldi_dir(path, require_text)
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found")
    if not path.is_file():  # a FIFO or device would block or never end
        raise ManifestError(f"{path}: not a regular file; give a JSONL file or a Kaldi data folder")
    return scan_jsonl(path, require_text)


def read_manifest(path: str | Path, require_text: bool = True) -> list[Utterance]:
    """Read a JSONL manifest or a Kaldi data folder; any bad line is an error.

    Raises:
        ManifestError: naming every bad line (``file:line`` and the field), or the whole manifest.
    """
    return _strict(scan_manifest(path, require_text), path)


def read_jsonl(path: Path, require_text: bool = True) -> list[Utterance]:
    """Read a JSONL manifest; any bad line is a ``ManifestError``."""
    return _strict(scan_jsonl(Path(path), require_text), path)


def read_kaldi_dir(folder: Path, require_text: bool = True) -> list[Utterance]:
    """Read a Kaldi data folder; any bad line is a ``ManifestError``."""
    return _strict(scan_kaldi_dir(Path(folder), require_text), folder)


def _strict(read: ManifestRead, path: str | Path) -> list[Utterance]:
    if read.problems:
        raise ManifestError(read.summary(str(path)), read.problems)
    return read.entries


def write_jsonl(entries: list[Utterance], path: Path) -> None:
    """Write entries as a JSONL manifest with audio paths relative to ``path``'s folder when possible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for e in entries:
            obj = {"id": e.id, "audio": os.path.relpath(e.audio, path.parent), "text": e.text}
            if e.duration is not None:
                obj["duration"] = round(e.duration, 4)
            if e.speaker is not None:
                obj["speaker"] = e.speaker
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
