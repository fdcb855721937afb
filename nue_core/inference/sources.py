"""What can be transcribed: file paths, folders of audio, manifest entries and in-memory arrays.

Every input becomes a named mono float32 array at the model's sample rate; a failure to read it is
an ``AudioError`` that names the file, and the caller records it against that input only. That
holds for any input, however odd: a FIFO or a folder given as a file, an array of strings,
objects or complex numbers, a dict; even an unexpected error while reading one input.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Union

import numpy as np

from nue_core.data.audio import AudioError, load_audio, prepare_waveform
from nue_core.data.entry_audio import read_entry_audio
from nue_core.data.manifest import Utterance, read_manifest
from nue_core.errors import errno_meaning, reading

# One input: a path, a manifest entry, an array at the model's rate, or (array, sample_rate).
AudioInput = Union[str, Path, Utterance, np.ndarray, "torch.Tensor", tuple]  # noqa: F821


def read_entries(manifest: str | Path, require_text: bool) -> list[Utterance]:
    """The entries of a JSONL manifest or Kaldi data folder (``read_manifest``).

    Raises:
        ManifestError: a malformed entry (names file and line).
        InputError: the manifest cannot be read (permission, not UTF-8, nested too deeply),
            naming it, instead of the bare ``OSError`` / ``UnicodeDecodeError`` / ``RecursionError``.
    """
    with reading(manifest):
        return read_manifest(manifest, require_text=require_text)


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
        AudioError: unreadable, empty or malformed audio, or an input that is not audio at all;
            the message names ``source``.
    """
    try:
        return _load(item, sample_rate, source)
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd input must not end a run, as in decoding
        raise AudioError(f"{source}: cannot use this input ({type(exc).__name__}: {exc})") from exc


def _load(item: AudioInput, sample_rate: int, source: str) -> np.ndarray:
    if isinstance(item, Utterance):
        if item.container is None:  # a tar member or dataset row is checked by its reader
            check_audio_file(item.audio)
        return read_entry_audio(item, sample_rate)
    if isinstance(item, (str, Path)):
        check_audio_file(item)
        return load_audio(item, sample_rate)
    if isinstance(item, tuple):
        rate = item[1] if len(item) == 2 else None
        if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool):
            raise AudioError(f"{source}: a tuple input must be (array, sample_rate)")
        return prepare_waveform(_numpy(item[0], source), int(rate), sample_rate, source=source)
    return prepare_waveform(_numpy(item, source), sample_rate, sample_rate, source=source)


def check_audio_file(path: str | Path) -> None:
    """Raise ``AudioError`` unless ``path`` is a regular file this process may read.

    Checked before opening: opening a FIFO would block until something writes to it.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise AudioError(f"{path}: audio file not found") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({errno_meaning(exc)})") from None
    if stat.S_ISDIR(mode):
        raise AudioError(f"{path}: is a folder, not an audio file (give the folder itself on the command line "
                         "to transcribe the audio in it)")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise AudioError(f"{path}: not a regular file ({kind}); give an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: cannot read (permission denied); check its permissions")


# Sample dtypes that are audio: signed and unsigned integers (scaled to [-1, 1]) and floats.
_NUMERIC_KINDS = frozenset("iuf")


def _numpy(data: object, source: str) -> np.ndarray:
    if hasattr(data, "detach") and hasattr(data, "is_complex"):  # torch.Tensor, without importing torch here
        tensor = data.detach().cpu()  # type: ignore[attr-defined]
        if tensor.is_floating_point():
            data = tensor.float().numpy()  # bfloat16 has no numpy dtype
        elif not tensor.is_complex():
            data = tensor.numpy()  # integer samples are scaled like an integer numpy array
        else:
            raise AudioError(f"{source}: expected real audio samples, got a tensor of {tensor.dtype}")
    if not isinstance(data, np.ndarray):
        raise AudioError(f"{source}: expected a path, an array or (array, sample_rate), got {type(data).__name__}")
    if data.dtype.kind not in _NUMERIC_KINDS:
        raise AudioError(f"{source}: expected numeric audio samples (integers or floats), got an array of {data.dtype}")
    return data
