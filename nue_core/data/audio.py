"""Read audio files into mono float32 at the encoder's sample rate.

soundfile (libsndfile) reads wav, flac, ogg and the rest; soxr resamples. torchaudio is not needed.

Every size is bounded before it is allocated, from the header alone: a sample rate outside
``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` (a header claiming 1 Hz would be upsampled 16,000-fold to
16 kHz and end the process in ``std::bad_alloc``), and a decoded or resampled length beyond
``MAX_SAMPLES`` or the memory there is. Each is an ``AudioError`` naming the file, which a batch
records against that file alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nue_core.errors import InputError
from nue_core.size_check import available_memory, human_bytes

# 1 kHz: below it no speech band survives (telephone audio, the lowest in use, is 8 kHz).
# 384 kHz: the highest rate audio interfaces record.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
# Samples held at once (decoded, all channels; or after resampling): 4 GiB as float32, 18.6 hours
# at 16 kHz. A longer recording is refused with a hint to split it.
MAX_SAMPLES = 2**30


class AudioError(InputError):
    """An audio file or array cannot be used; the message names the file."""


def load_audio(path: str | Path, sample_rate: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``.

    Args:
        start, end: optional segment bounds in seconds (Kaldi ``segments``).

    Returns:
        (s,) samples in [-1, 1] (integer formats are scaled by soundfile).

    Raises:
        AudioError: missing, unreadable, empty or non-finite audio, a sample rate out of range or a
            length that cannot be held in memory, naming the file.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        with sf.SoundFile(str(path)) as handle:
            data, rate = _read_open(handle, str(path), sample_rate, start, end)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    return prepare_waveform(data, rate, sample_rate, source=str(path))


def decode_open(handle, source: str, sample_rate: int, start: float | None = None,  # type: ignore[no-untyped-def]
                end: float | None = None) -> np.ndarray:
    """(s,) mono float32 samples at ``sample_rate`` of an open ``soundfile.SoundFile`` between ``start`` and ``end`` s.

    What ``load_audio`` does once the file is open, for audio that is not a plain file (a tar
    member, bytes): ``nue_core.data.entry_audio``. soundfile errors are the caller's to wrap.
    """
    data, rate = _read_open(handle, source, sample_rate, start, end)
    return prepare_waveform(data, rate, sample_rate, source=source)


def _read_open(handle, source: str, sample_rate: int, start: float | None = None, end: float | None = None,  # type: ignore[no-untyped-def]
               max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 samples of an open soundfile between ``start`` and ``end`` s, and the rate.

    The rate, the length limit (``max_seconds``: AudioTooLong) and the memory the read needs are
    checked from the header before anything is decoded.
    """
    rate = handle.samplerate
    check_sample_rate(rate, source)
    first = min(int(round((start or 0.0) * rate)), handle.frames)
    last = min(int(round(end * rate)) if end is not None else handle.frames, handle.frames)
    count = max(last - first, 0)
    _check_duration(count, rate, source, max_seconds)
    # soundfile allocates the whole (count, channels) array before it reads a byte; the mono mix
    # and the resampled copy follow, so all three are counted now
    decoded, out = count * handle.channels, resampled_length(count, rate, sample_rate)
    check_length(source, max(decoded, out), 4 * (decoded + count + out))
    handle.seek(first)
    try:
        data = handle.read(count, dtype="float32", always_2d=True)
    except MemoryError:  # the bound above leaves room, but memory can run out meanwhile
        raise AudioError(f"{source}: not enough memory to decode {decoded:,} samples") from None
    # A header may not know, or may understate, the length.
    _check_duration(data.shape[0], rate, source, max_seconds)
    return data, rate


def check_sample_rate(rate: int | float, source: str) -> None:
    """Raise AudioError for a sample rate outside MIN_SAMPLE_RATE..MAX_SAMPLE_RATE."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{source}: sample rate {rate} Hz is outside the range nue reads ({MIN_SAMPLE_RATE:,}.."
                         f"{MAX_SAMPLE_RATE:,} Hz); the header may be damaged, or resample the file")


def resampled_length(samples: int, rate: int, sample_rate: int) -> int:
    """Samples after resampling ``samples`` from ``rate`` to ``sample_rate`` (rounded up)."""
    return samples if rate == sample_rate else -(-samples * sample_rate // rate)


def check_length(source: str, samples: int, need: int) -> None:
    """Raise AudioError when one array would hold more than MAX_SAMPLES samples or the arrays
    held at once need ``need`` bytes, more than the available memory."""
    if samples > MAX_SAMPLES:
        raise AudioError(f"{source}: {samples:,} samples are more than nue holds at once ({MAX_SAMPLES:,}, "
                         f"{MAX_SAMPLES / 16000 / 3600:.1f} hours at 16 kHz); split the recording")
    room = available_memory()
    if room is not None and need > room:
        raise AudioError(f"{source}: reading {samples:,} samples needs {human_bytes(need)}, more than the available "
                         f"memory ({human_bytes(room)}); split the recording or free memory")


def prepare_waveform(data: np.ndarray, rate: int, sample_rate: int, source: str = "<array>") -> np.ndarray:
    """Mix down, check and resample an array.

    Args:
        data: (s,) or (s, channels) samples; integer dtypes are scaled to [-1, 1].
        rate: sample rate of ``data``.
        sample_rate: wanted rate.

    Raises:
        AudioError: bad shape, empty, non-finite, rate out of range or too long to resample.
    """
    check_sample_rate(rate, source)
    try:
        array = _mono_float32(np.asarray(data), source)
        if rate != sample_rate:
            out = resampled_length(array.size, rate, sample_rate)
            check_length(source, out, 4 * (array.size + out))
            array = resample(array, rate, sample_rate)
    except MemoryError:  # soxr's std::bad_alloc arrives as MemoryError: this input's problem alone
        raise AudioError(f"{source}: not enough memory to prepare this audio") from None
    return np.ascontiguousarray(array, dtype=np.float32)


def _mono_float32(array: np.ndarray, source: str) -> np.ndarray:
    """(s,) float32 from (s,) or (s, channels) of any numeric dtype, checked non-empty and finite."""
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    array = array.astype(np.float32, copy=False)
    if array.ndim == 2:
        array = array.mean(axis=1)  # stereo and multichannel are mixed down
    if array.ndim != 1:
        raise AudioError(f"{source}: expected (samples,) or (samples, channels), got shape {array.shape}")
    if array.size == 0:
        raise AudioError(f"{source}: audio is empty")
    if not np.isfinite(array).all():
        raise AudioError(f"{source}: audio contains NaN or infinite samples")
    return array


def resample(array: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """High-quality resampling (soxr, 'HQ')."""
    import soxr

    return soxr.resample(array, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)


def audio_duration(path: str | Path) -> float:
    """Seconds of audio from the header only (no decoding)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot read audio header ({exc})") from None
    check_sample_rate(info.samplerate, str(path))
    return info.frames / float(info.samplerate)


class AudioTooLong(AudioError):
    """Audio longer than a caller's limit (a server's upload limit); the message names the limit."""


def read_audio_bytes(data: bytes, sample_rate: int, source: str = "<upload>",
                     max_seconds: float | None = None) -> np.ndarray:
    """Decode an audio file held in memory (an upload) as mono float32 at ``sample_rate``.

    Any container soundfile reads from a file reads here (wav, flac, ogg/vorbis, opus, mp3 ...).
    The duration limit is checked from the header's frame count before anything is decoded, and
    again on the decoded length (a header may not know or may understate it).

    Args:
        data: the file's bytes.
        source: how messages name the input (the upload's file name).
        max_seconds: refuse audio longer than this (``AudioTooLong``); None: no limit.

    Returns:
        (s,) samples in [-1, 1].

    Raises:
        AudioTooLong: longer than ``max_seconds``.
        AudioError: empty, undecodable, damaged or non-finite audio, a sample rate out of range or
            a length that cannot be held in memory, naming ``source``.
    """
    import io

    import soundfile as sf

    if not data:
        raise AudioError(f"{source}: the file is empty (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            array, rate = _read_open(handle, source, sample_rate, max_seconds=max_seconds)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise AudioError(f"{source}: cannot decode audio ({_soundfile_reason(exc)}); send a file in a format "
                         f"libsndfile reads: wav, flac, ogg, opus, mp3") from None
    return prepare_waveform(array, rate, sample_rate, source=source)


def _check_duration(frames: int, rate: int, source: str, max_seconds: float | None) -> None:
    if max_seconds is not None and frames > max_seconds * rate:
        raise AudioTooLong(f"{source}: {frames / rate:.1f} s of audio is more than this server takes "
                           f"({max_seconds:g} s); split the recording")


def _soundfile_reason(exc: BaseException) -> str:
    """libsndfile's message without the ``<_io.BytesIO object at 0x...>`` it names the stream by."""
    import re

    return re.sub(r"Error opening <_io\.BytesIO object at 0x[0-9a-f]+>:?\s*", "", str(exc)).strip() or type(exc).__name__
