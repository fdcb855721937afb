"""Manifests: JSONL files and Kaldi-style data folders, read into ``Utterance`` records.

JSONL: one object per line, ``{"audio": path, "text": ..., "duration"?, "speaker"?, "id"?}``;
audio paths are relative to the manifest's folder. Kaldi: a folder with ``wav.scp`` and ``text``
(and optionally ``segments`` and ``utt2spk``). Every error names the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nue_core.errors import NueError


class ManifestError(NueError, ValueError):
    """A manifest is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Utterance:
    """One manifest entry.

    Attributes:
        id: utterance id (JSONL: ``id`` or ``<file>:<line>``).
        audio: absolute path of the audio file.
        text: transcript ('' when the manifest has none, e.g. for transcription).
        duration: seconds, if the manifest gives it.
        speaker: speaker label, if given.
        start, end: segment bounds in seconds within ``audio`` (Kaldi ``segments``), or None.
        source: ``file:line`` the entry came from, for error messages.
    """

    id: str
    audio: Path
    text: str = ""
    duration: float | None = None
    speaker: str | None = None
    start: float | None = None
    end: float | None = None
    source: str = ""


def read_manifest(path: str | Path, require_text: bool = True) -> list[Utterance]:
    """Read a JSONL manifest or a Kaldi data folder."""
    path = Path(path)
    if path.is_dir():
        return read_kaldi_dir(path, require_text)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    return read_jsonl(path, require_text)


def read_jsonl(path: Path, require_text: bool = True) -> list[Utterance]:
    entries, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            entry = _jsonl_entry(line, where, path.parent, require_text)
            if entry.id in seen:
                raise ManifestError(f"{where}: duplicate id '{entry.id}'")
            seen.add(entry.id)
            entries.append(entry)
    return entries


def _jsonl_entry(line: str, where: str, base: Path, require_text: bool) -> Utterance:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    unknown = set(obj) - {"audio", "text", "duration", "speaker", "id"}
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: audio, text, duration, speaker, id")
    audio = obj.get("audio")
    if not isinstance(audio, str) or not audio:
        raise ManifestError(f"{where}: 'audio' must be a non-empty string path")
    text = obj.get("text", "")
    if not isinstance(text, str) or (require_text and "text" not in obj):
        raise ManifestError(f"{where}: 'text' must be a string")
    duration = obj.get("duration")
    if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0):
        raise ManifestError(f"{where}: 'duration' must be a non-negative number of seconds")
    speaker = obj.get("speaker")
    uid = obj.get("id", where)
    return Utterance(
        id=str(uid), audio=(base / audio).resolve(), text=text,
        duration=float(duration) if duration is not None else None,
        speaker=str(speaker) if speaker is not None else None, source=where,
    )


def _kaldi_table(path: Path, required: bool = True) -> dict[str, tuple[str, str]]:
    """``key rest`` lines -> {key: (rest, "file:line")}."""
    if not path.is_file():
        if required:
            raise ManifestError(f"{path}: missing (a Kaldi data folder needs wav.scp and text)")
        return {}
    table: dict[str, tuple[str, str]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            key, _, rest = line.strip().partition(" ")
            where = f"{path}:{number}"
            if key in table:
                raise ManifestError(f"{where}: duplicate key '{key}'")
            table[key] = (rest.strip(), where)
    return table


def read_kaldi_dir(folder: Path, require_text: bool = True) -> list[Utterance]:
    wavs = _kaldi_table(folder / "wav.scp")
    texts = _kaldi_table(folder / "text", required=require_text)
    segments = _kaldi_table(folder / "segments", required=False)
    speakers = _kaldi_table(folder / "utt2spk", required=False)
    keys = list(segments) if segments else list(wavs)
    entries = []
    for key in keys:
        start = end = None
        recording, where = key, wavs.get(key, ("", ""))[1]
        if segments:
            fields, where = segments[key]
            parts = fields.split()
            if len(parts) != 3:
                raise ManifestError(f"{where}: expected 'utt recording start end'")
            recording = parts[0]
            try:
                start, end = float(parts[1]), float(parts[2])
            except ValueError:
                raise ManifestError(f"{where}: start and end must be seconds") from None
        if recording not in wavs:
            raise ManifestError(f"{where}: recording '{recording}' is not in {folder / 'wav.scp'}")
        audio_field, wav_where = wavs[recording]
        if audio_field.endswith("|"):
            raise ManifestError(f"{wav_where}: piped commands in wav.scp are not supported; give a file path")
        if require_text and key not in texts:
            raise ManifestError(f"{folder / 'text'}: no transcript for '{key}'")
        audio = Path(audio_field)
        entries.append(Utterance(
            id=key, audio=(audio if audio.is_absolute() else folder / audio).resolve(),
            text=texts.get(key, ("", ""))[0], speaker=speakers.get(key, (None, ""))[0],
            start=start, end=end, duration=(end - start) if start is not None and end is not None else None,
            source=where,
        ))
    return entries


def write_jsonl(entries: list[Utterance], path: Path) -> None:
    """Write entries as a JSONL manifest with audio paths relative to ``path``'s folder when possible."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for e in entries:
            obj = {"id": e.id, "audio": os.path.relpath(e.audio, path.parent), "text": e.text}
            if e.duration is not None:
                obj["duration"] = round(e.duration, 4)
            if e.speaker is not None:
                obj["speaker"] = e.speaker
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
