"""Which files are audio: the extensions nue reads, and folders expanded to their audio files.

One home for both, used by transcription inputs (``nue_core.inference.sources``), augmentation
folders (``nue_core.data.augment``) and tar shards (``nue_core.data.manifest_tar``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

# soundfile (libsndfile >= 1.1) decodes all of them; mp3/opus need a libsndfile built with those
# codecs, and a file it cannot decode is reported, not fatal.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64", ".wv"})


def collect_audio(paths: Iterable[str | Path], extensions: frozenset[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Files as given, folders expanded recursively to their audio files (sorted, by extension).

    A path that does not exist is kept, so it is reported by name when it fails to load.
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions))
        else:
            out.append(path)
    return out
