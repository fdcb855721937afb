"""Tar shards in the webdataset layout, read as manifests: ``KEY.flac`` (or wav ...) + ``KEY.txt`` / ``KEY.json``.

A sample is the run of adjacent members that share a key (the member name up to the first dot of
its last component, as webdataset splits it). Its audio is the one member with an audio extension
(``AUDIO_MEMBERS``); its transcript is ``KEY.txt`` (UTF-8; one trailing line end dropped) or, without
one, the ``text`` of ``KEY.json`` (whose ``duration`` and ``speaker`` are used too; other keys are
ignored). Other members (``.cls``, ``.npy`` ...) are ignored. The id is the key; a key met twice,
in one shard or two, is a problem. Problems name ``SHARD:KEY``.

Each tar is indexed once by a sequential walk over its headers (``tarfile``): the audio members'
offsets and sizes are kept and their data is not read; the small text members are read as the walk
passes them. Training then reads each audio member by offset (``nue_core.data.entry_audio``).
Batches are length-bucketed across the whole set, so reads inside a shard are random-access: right
on local disks and SSDs, slower than a stream on network file systems and tape-like storage.
Compressed tars (``.tar.gz``) cannot be read by offset and are refused.

A manifest can name one ``.tar`` file, a folder of them (all ``*.tar`` in it, sorted), or a brace
list (``shards/train-{000000..000099}.tar``, ``{a,b}.tar``).
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import IO

from nue_core.data.audio_files import AUDIO_EXTENSIONS
from nue_core.data.manifest_base import (
    GZIP_MAGIC, MAX_LINE_BYTES, ManifestError, ManifestProblem, ManifestRead, TarMember, Utterance, text_problem,
)

# A member KEY.EXT is the sample's audio when .EXT is an audio extension nue reads.
AUDIO_MEMBERS = tuple(sorted(ext.lstrip(".") for ext in AUDIO_EXTENSIONS))
MAX_SHARDS = 1_000_000  # one brace range; far above real shard counts, far below what exhausts memory
# webdataset's split: the key is the path up to the first dot of the last component.
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")


def expand_braces(pattern: str) -> list[str]:
    """``a{1..3}.tar`` -> a1.tar a2.tar a3.tar (zero padding kept: ``{000..002}``), ``{x,y}`` -> both.

    Raises:
        ManifestError: an unmatched brace.
    """
    start = pattern.find("{")
    if start < 0 or -1 < pattern.find("}") < start:
        if "}" in pattern:
            raise ManifestError(f"{pattern}: unmatched '}}' in the shard list")
        return [pattern]
    depth = 0
    for end in range(start, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[end], 0)
        if depth == 0:
            break
    else:
        raise ManifestError(f"{pattern}: unmatched '{{' in the shard list")
    inner = pattern[start + 1:end]
    numeric = _RANGE.fullmatch(inner)
    if numeric:
        first, last = int(numeric.group(1)), int(numeric.group(2))
        if abs(last - first) >= MAX_SHARDS:
            raise ManifestError(f"{pattern}: {{{inner}}} names more than {MAX_SHARDS:,} shards")
        width, step = len(numeric.group(1)), 1 if last >= first else -1
        choices = [str(n).zfill(width) for n in range(first, last + step, step)]
    else:
        choices = split_outside_braces(inner)
    # The choice and the rest may hold braces of their own: expanded in turn.
    return [out for choice in choices for out in expand_braces(pattern[:start] + choice + pattern[end + 1:])]


def split_outside_braces(text: str) -> list[str]:
    """``a,b{c,d}`` -> ['a', 'b{c,d}']: split at the commas outside braces."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    return parts + ["".join(current)]


def tar_paths(spec: str | Path) -> list[Path] | None:
    """The tar files a manifest names (a ``.tar``, a folder holding ``*.tar``, a brace list), else None."""
    text = str(spec)
    path = Path(spec)
    if "{" in text and not path.exists():
        paths = [Path(p) for p in expand_braces(text)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ManifestError(f"{text}: {len(missing)} of {len(paths)} shards not found (first: {missing[0]})")
        return paths
    if path.is_file() and path.suffix == ".tar":
        return [path]
    if path.is_dir():
        found = sorted(path.glob("*.tar"))
        return found or None
    return None


def scan_tar_shards(paths: list[Path], require_text: bool = True) -> ManifestRead:
    """Every sample of the shards, in order, as an entry or a problem (``SHARD:KEY``).

    Raises:
        ManifestError: a shard cannot be opened or is not an uncompressed tar.
    """
    read, seen = ManifestRead(), {}
    for path in paths:
        _scan_one(path, require_text, read, seen)
    return read


def _scan_one(path: Path, require_text: bool, read: ManifestRead, seen: dict[str, str]) -> None:
    resolved = path.resolve()
    try:
        with open(path, "rb") as handle:
            if handle.read(2) == GZIP_MAGIC:
                raise ManifestError(f"{path}: a compressed tar; members are read by offset, which needs an "
                                    "uncompressed tar (decompress it: gunzip)")
            handle.seek(0)
            with tarfile.open(fileobj=handle, mode="r:") as tar:
                for key, members in _samples(tar, path, read):
                    where = f"{path}:{key}"
                    try:
                        entry = _sample(key, members, tar, where, resolved, require_text)
                    except _BadSample as exc:
                        read.problems.append(ManifestProblem(where, str(exc)))
                        continue
                    if key in seen:
                        read.problems.append(ManifestProblem(where, f"duplicate id '{key}' (first in {seen[key]})"))
                        continue
                    seen[key] = str(path)
                    read.entries.append(entry)
    except tarfile.TarError as exc:
        raise ManifestError(f"{path}: not a readable tar file ({exc})") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror or exc})") from None


class _BadSample(Exception):
    """Internal: a sample is unusable; the message names the member or field."""


def _samples(tar: tarfile.TarFile, path: Path, read: ManifestRead):  # type: ignore[no-untyped-def]
    """(key, {extension: TarInfo}) per run of adjacent members with one key, walking headers only."""
    key, members, done = None, {}, set()
    while (info := tar.next()) is not None:
        tar.members.clear()  # tarfile keeps every header it walked; a shard of 100k members need not
        if not info.isfile():
            continue
        match = _KEY.match(info.name)
        if match is None:
            read.problems.append(ManifestProblem(f"{path}:{info.name}", "member name has no extension; "
                                                 "expected KEY.EXT (webdataset layout)"))
            continue
        name_key, ext = match.group(1), match.group(2).lower()
        if name_key != key:
            if key is not None:
                yield key, members
                done.add(key)
            if name_key in done:
                read.problems.append(ManifestProblem(f"{path}:{info.name}", f"members of '{name_key}' are not "
                                                     "adjacent; a webdataset tar keeps one sample's members together"))
                key, members = None, {}
                continue
            key, members = name_key, {}
        members[ext] = info
    if key is not None:
        yield key, members


def _sample(key: str, members: dict[str, tarfile.TarInfo], tar: tarfile.TarFile, where: str, path: Path,
            require_text: bool) -> Utterance:
    audio = [ext for ext in members if ext in AUDIO_MEMBERS]
    if len(audio) != 1:
        raise _BadSample(f"{'no' if not audio else 'several'} audio members ({', '.join(audio) or 'none'}); "
                         f"expected one of {key}.{{{','.join(AUDIO_MEMBERS)}}}")
    meta = _json(tar, members["json"]) if "json" in members else {}
    if "txt" in members:
        text: object = _member_text(tar, members["txt"]).removesuffix("\n").removesuffix("\r")
    else:
        text = meta.get("text")
    if text is None:
        if require_text:
            raise _BadSample(f"no transcript: expected {key}.txt, or a 'text' in {key}.json")
        text = ""
    if not isinstance(text, str):
        raise _BadSample(f"{key}.json: 'text' must be a string")
    duration, speaker = meta.get("duration"), meta.get("speaker")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                 or not 0 <= duration < float("inf")):
        raise _BadSample(f"{key}.json: 'duration' must be a finite, non-negative number of seconds")
    if speaker is not None and not isinstance(speaker, str):
        speaker = str(speaker) if isinstance(speaker, int) else None
    for value, name in ((text, "text"), (key, "key"), (speaker or "", "speaker")):
        bad = text_problem(value, f"'{name}'")
        if bad:
            raise _BadSample(bad)
    info = members[audio[0]]
    return Utterance(id=key, audio=path, text=text, duration=None if duration is None else float(duration),
                     speaker=speaker or None, source=where, container=TarMember(info.name, info.offset_data, info.size))


def _member_text(tar: tarfile.TarFile, info: tarfile.TarInfo) -> str:
    if info.size > MAX_LINE_BYTES:
        raise _BadSample(f"{info.name}: {info.size} bytes is too long for a transcript")
    handle: IO[bytes] | None = tar.extractfile(info)
    data = handle.read() if handle is not None else b""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadSample(f"{info.name}: byte {exc.start + 1} is not UTF-8; transcripts must be UTF-8") from None


def _json(tar: tarfile.TarFile, info: tarfile.TarInfo) -> dict:
    try:
        obj = json.loads(_member_text(tar, info))
    except (ValueError, RecursionError) as exc:
        raise _BadSample(f"{info.name}: not valid JSON ({str(exc).split(';')[0]})") from None
    if not isinstance(obj, dict):
        raise _BadSample(f"{info.name}: expected a JSON object")
    return obj
