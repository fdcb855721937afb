"""Manifests: JSONL files, Kaldi-style data folders and the formats of other tools, read into ``Utterance`` records.

JSONL: one object per line, ``{"audio": path, "text": ..., "duration"?, "speaker"?, "id"?}``;
audio paths are relative to the manifest's folder. Kaldi: a folder with ``wav.scp`` and ``text``
(and optionally ``segments`` and ``utt2spk``), fields separated by spaces or tabs.

Recognised and converted as they are read (docs/data.md):

* NeMo JSON-lines manifests (``audio_filepath`` ...) and lhotse CutSets (``cuts.jsonl.gz``), told
  apart from ours by the first line's keys (``manifest_jsonl``);
* a folder saved by Hugging Face ``datasets`` (``save_to_disk``: ``manifest_hf``);
* webdataset tar shards: a ``.tar`` file, a folder of them or a brace list (``manifest_tar``).

Files are UTF-8 (a BOM is allowed; gzip is read). Everything is checked as it is read, before any
audio is decoded: ``scan_manifest`` returns the usable entries and one problem per bad line
(``file:line`` and the field), which training's ``--skip-bad`` leaves out; ``read_manifest`` raises
one ``ManifestError`` listing every bad line. Several manifests make one set with ``scan_manifests``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from nue_core.data.manifest_base import ManifestError, ManifestProblem, ManifestRead, Utterance
from nue_core.data.manifest_hf import is_saved_dataset, scan_hf_dataset
from nue_core.data.manifest_jsonl import scan_jsonl
from nue_core.data.manifest_kaldi import scan_kaldi_dir
from nue_core.data.manifest_tar import scan_tar_shards, split_outside_braces, tar_paths

__all__ = ["ManifestError", "ManifestProblem", "ManifestRead", "Utterance", "read_jsonl", "read_kaldi_dir",
           "manifest_paths", "read_manifest", "scan_manifest", "scan_manifests", "split_manifest_list", "write_jsonl"]


def scan_manifest(path: str | Path, require_text: bool = True) -> ManifestRead:
    """Read a manifest to the end, keeping bad lines apart.

    Args:
        path: a JSON-lines file (ours, NeMo's, a lhotse CutSet; gzip or not), a Kaldi data folder, a
            saved Hugging Face dataset folder, a ``.tar`` shard, a folder of shards or a brace list
            of them (``train-{000..009}.tar``).
        require_text: every entry must have a transcript (evaluation, training).

    Returns:
        the usable entries and one ``ManifestProblem`` per bad line.

    Raises:
        ManifestError: the manifest as a whole cannot be read (missing, not a regular file,
            unreadable, a Kaldi folder without ``wav.scp``, an optional reader not installed).
    """
    if Path(path).is_dir() and is_saved_dataset(Path(path)):
        return scan_hf_dataset(Path(path), require_text)
    if not (Path(path) / "wav.scp").is_file():  # a Kaldi folder may hold tar files of its own
        shards = tar_paths(path)  # a .tar, a folder of them, a brace list
        if shards is not None:
            return scan_tar_shards(shards, require_text)
    path = Path(path)
    if path.is_dir():
        return scan_kaldi_dir(path, require_text)
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found")
    if not path.is_file():  # a FIFO or device would block or never end
        raise ManifestError(f"{path}: not a regular file; give a JSONL file or a Kaldi data folder")
    return scan_jsonl(path, require_text)


def scan_manifests(paths: Sequence[str | Path], require_text: bool = True) -> ManifestRead:
    """Several manifests read as one set, in the order given (``nue train --train a --train b``).

    An id met again in a later manifest is a problem of that later line (ids must stay unique:
    resuming and skipped-item reports name items by id).

    Raises:
        ManifestError: one of the manifests cannot be read at all (see ``scan_manifest``).
    """
    combined, first = ManifestRead(), {}
    for path in paths:
        read = scan_manifest(path, require_text)
        combined.problems += read.problems
        for entry in read.entries:
            if entry.id in first:
                combined.problems.append(ManifestProblem(entry.source or str(path),
                                                         f"duplicate id '{entry.id}' (first at {first[entry.id]})"))
                continue
            first[entry.id] = entry.source or str(path)
            combined.entries.append(entry)
    return combined


def manifest_paths(manifests: str | Path | Sequence[str | Path]) -> list[str]:
    """Every manifest named by a path, a comma list (``a.jsonl,b.jsonl``) or a sequence of those.

    A string that names an existing file or folder is one manifest even if it holds a comma.
    """
    items = [manifests] if isinstance(manifests, (str, Path)) else list(manifests)
    paths: list[str] = []
    for item in items:
        text = str(item)
        paths += [text] if isinstance(item, Path) or Path(text).exists() else split_manifest_list(text)
    if not paths:
        raise ManifestError("no manifest given")
    return paths


def split_manifest_list(text: str) -> list[str]:
    """``a.jsonl,b.jsonl`` -> both; commas inside braces belong to a shard list (``{a,b}.tar``)."""
    return [part.strip() for part in split_outside_braces(text) if part.strip()]


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
