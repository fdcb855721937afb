"""Read audio files into mono float32 at the encoder's sample rate.

soundfile (libsndfile) reads wav, flac, ogg and the rest; soxr resamples. torchaudio is not needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nue_core.errors import NueError


class AudioError(NueError):
    """An audio file or array cannot be used; the message names the file."""


def load_audio(path: str | Path, sample_rate: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``.

    Args:
        start, end: optional segment bounds in seconds (Kaldi ``segments``).

    Returns:
        (s,) samples in [-1, 1] (integer formats are scaled by soundfile).

    Raises:
        AudioError: missing, unreadable, empty or non-finite audio, naming the file.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            first = int(round((start or 0.0) * rate))
            last = int(round(end * rate)) if end is not None else handle.frames
            handle.seek(min(first, handle.frames))
            data = handle.read(max(last - first, 0), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    return prepare_waveform(data, rate, sample_rate, source=str(path))


def prepare_waveform(data: np.ndarray, rate: int, sample_rate: int, source: str = "<array>") -> np.ndarray:
    """Mix down, check and resample an array.

    Args:
        data: (s,) or (s, channels) samples; integer dtypes are scaled to [-1, 1].
        rate: sample rate of ``data``.
        sample_rate: wanted rate.
    """
    array = np.asarray(data)
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
    if rate <= 0:
        raise AudioError(f"{source}: invalid sample rate {rate}")
    if rate != sample_rate:
        array = resample(array, rate, sample_rate)
    return np.ascontiguousarray(array, dtype=np.float32)


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
    return info.frames / float(info.samplerate)
