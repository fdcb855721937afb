"""What can be transcribed: file paths, folders of audio, manifest entries and in-memory arrays.

Every input becomes a named mono float32 array at the model's sample rate; a failure to read it is
an ``AudioError`` that names the file, and the caller records it against that input only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

import numpy as np

from nue_core.data.audio import AudioError, load_audio, prepare_waveform
from nue_core.data.manifest import Utterance

# Extensions collected from folders. soundfile (libsndfile >= 1.1) decodes all of them; mp3/opus
# need a libsndfile built with those codecs, and a file it cannot decode is reported, not fatal.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64", ".wv"})

# One input: a path, a manifest entry, an array at the model's rate, or (array, sample_rate).
AudioInput = Union[str, Path, Utterance, np.ndarray, "torch.Tensor", tuple]  # noqa: F821


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


def describe(item: AudioInput, index: int) -> tuple[str, str | None]:
    """(source, id) shown in results: the path (and manifest id), or ``<array N>`` for arrays."""
    if isinstance(item, Utterance):
        return str(item.audio), item.id
    if isinstance(item, (str, Path)):
        return str(item), None
    return f"<array {index}>", None


def load_input(item: AudioInput, sample_rate: int, source: str) -> np.ndarray:
    """One input -> (s,) float32 at ``sample_rate``.

    Raises:
        AudioError: unreadable, empty or malformed audio; the message names ``source``.
    """
    if isinstance(item, Utterance):
        return load_audio(item.audio, sample_rate, item.start, item.end)
    if isinstance(item, (str, Path)):
        return load_audio(item, sample_rate)
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[1], (int, np.integer)):
            raise AudioError(f"{source}: a tuple input must be (array, sample_rate)")
        return prepare_waveform(_numpy(item[0], source), int(item[1]), sample_rate, source=source)
    return prepare_waveform(_numpy(item, source), sample_rate, sample_rate, source=source)


def _numpy(data: object, source: str) -> np.ndarray:
    if hasattr(data, "detach"):  # torch.Tensor, without importing torch here
        data = data.detach().float().cpu().numpy()  # type: ignore[attr-defined]
    if not isinstance(data, np.ndarray):
        raise AudioError(f"{source}: expected a path, an array or (array, sample_rate), got {type(data).__name__}")
    return data
