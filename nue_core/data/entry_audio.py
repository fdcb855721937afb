"""An utterance's audio, whatever holds it: a plain file, a member of a tar shard, a dataset row.

``read_entry_audio`` is the one reader training uses (``UtteranceSet.audio``); ``open_entry_audio``
gives the open ``soundfile.SoundFile`` to checks that read only part of a clip (``validate``).
Errors are ``AudioError`` naming the audio (``FILE``, ``SHARD.tar:MEMBER`` or ``FOLDER[ROW]``).
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from nue_core.data.audio import AudioError, decode_open, load_audio
from nue_core.data.manifest_base import DatasetRow, ManifestError, TarMember, Utterance

# What soundfile raises for audio it cannot decode (plus OverflowError: absurd header sizes).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, TypeError, OverflowError)


def audio_name(entry: Utterance) -> str:
    """How messages name an entry's audio: ``FILE``, ``SHARD.tar:MEMBER`` or ``FOLDER[ROW]``."""
    container = entry.container
    if isinstance(container, TarMember):
        return f"{entry.audio}:{container.name}"
    if isinstance(container, DatasetRow):
        return f"{entry.audio}[{container.index}]"
    return str(entry.audio)


def read_entry_audio(entry: Utterance, sample_rate: int) -> np.ndarray:
    """(s,) mono float32 samples of the entry's clip (``start``..``end``) at ``sample_rate``.

    Raises:
        AudioError: missing, unreadable, empty or non-finite audio, naming it.
    """
    if entry.container is None:  # a plain file: exactly the read nue has always made
        return load_audio(entry.audio, sample_rate, entry.start, entry.end)
    with open_entry_audio(entry) as handle:
        return decode_open(handle, audio_name(entry), sample_rate, entry.start, entry.end)


@contextmanager
def open_entry_audio(entry: Utterance) -> Iterator[Any]:
    """The entry's encoded audio as an open ``soundfile.SoundFile`` (closed on leaving).

    soundfile errors raised while it is open, by the caller's reads too, become ``AudioError``.

    Raises:
        AudioError: the audio is missing or cannot be decoded, naming it.
    """
    import soundfile as sf

    name, container = audio_name(entry), entry.container
    try:
        if container is None:
            if not Path(entry.audio).is_file():
                raise AudioError(f"audio file not found: {entry.audio}")
            with sf.SoundFile(str(entry.audio)) as handle:
                yield handle
        elif isinstance(container, TarMember):
            with open(entry.audio, "rb") as shard:
                with sf.SoundFile(_Window(shard, container.offset, container.size)) as handle:
                    yield handle
        else:
            with sf.SoundFile(_dataset_row(entry, container)) as handle:
                yield handle
    except AudioError:
        raise
    except FileNotFoundError:
        raise AudioError(f"audio file not found: {entry.audio}") from None
    except (sf.LibsndfileError, OSError, *_DECODE_ERRORS) as exc:
        raise AudioError(f"cannot read audio {name} ({exc})") from None


def _dataset_row(entry: Utterance, row: DatasetRow) -> IO[bytes] | str:
    from nue_core.data.manifest_hf import row_audio

    try:
        data = row_audio(Path(entry.audio), row)
    except ManifestError as exc:
        raise AudioError(str(exc)) from None
    except (IndexError, ValueError, KeyError) as exc:
        raise AudioError(f"cannot read audio {audio_name(entry)} ({exc})") from None
    if isinstance(data, Path):
        if not data.is_file():
            raise AudioError(f"audio file not found: {data} (named by {audio_name(entry)})")
        return str(data)
    return io.BytesIO(data)


class _Window:
    """A read-only, seekable view of ``size`` bytes at ``offset`` of an open file: one tar member.

    soundfile reads through ``read``/``readinto``/``seek``/``tell``; only the bytes asked for are
    read, so a header probe of a large member reads a few kilobytes.
    """

    def __init__(self, handle: IO[bytes], offset: int, size: int) -> None:
        self.handle, self.offset, self.size, self.position = handle, offset, size, 0

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(base + position, 0)
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, count: int = -1) -> bytes:
        left = max(self.size - self.position, 0)
        count = left if count is None or count < 0 else min(count, left)
        if count == 0:
            return b""
        self.handle.seek(self.offset + self.position)
        data = self.handle.read(count)
        self.position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)
