"""Waveform augmentation: speed perturbation (resampling, as Kaldi's 3-way perturbation), gain,
random equalisation (a smooth random frequency response: microphone and room colouring),
reverberation by a room impulse response from the user's folder, and additive noise at a random
signal-to-noise ratio (white, or excerpts of the user's noise recordings: MUSAN style).

With few training speakers the last two help: a new voice usually also comes through a new
microphone and room, and a model that has only heard three channels learns them as cues (the FSDD
recipe's README has the measurements).

Randomness comes from a generator the caller derives from ``(seed, step, item)``, so an augmented
batch is the same whether or not the run was interrupted and resumed in between. The noise and
impulse-response folders are listed once, when the config is read, and sorted, so a draw picks the
same file on every machine and in every data-loading worker; the audio itself is decoded when first
drawn and kept in a per-process cache of bounded size (``FILE_CACHE_BYTES``).

Settings that cannot work are refused when the config is read, naming the field, not met as a
``ZeroDivisionError`` or NaN audio mid-run: each number is finite and within the bounds below
(which say why), and every ``[low, high]`` pair has ``low <= high``.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import ConfigDict, Field, GetCoreSchemaHandler, ValidationInfo, field_validator, model_validator
from pydantic_core import core_schema

from nue_core.config import ConfigModel
from nue_core.data.audio import AudioError, load_audio

# Bounds of every number in a field, and why (the error says it). Speed: 0.25 already holds 4x
# the samples, and perturbation in use stays within 0.8..1.2. SNR: below -30 dB no speech is left,
# above 100 dB the noise is far below 16-bit audio's own. Gain: far out, 10 ** (dB / 20) overflows.
_BOUNDS = {
    "speed": (0.25, 4.0, "a speed factor scales the clip's length by its inverse; 0 would divide by zero"),
    "speed_range": (0.25, 4.0, "a speed factor scales the clip's length by its inverse; 0 would divide by zero"),
    "gain_db": (-100.0, 100.0, "beyond that a clip is silence or a clipped square wave"),
    "noise_snr_db": (-30.0, 100.0, "0 dB and below are fine: noise as loud as the speech, or louder"),
    "lowpass_hz": (0.0, float("inf"), "a cutoff at or below 0 Hz removes every frequency"),
}


# Decoded noise and impulse responses kept per process: MUSAN's noise part is ~1 GiB as float32 at
# 16 kHz, more than a data-loading worker should hold; its most used files fit in this.
FILE_CACHE_BYTES = 256 * 2**20


class AudioFolder:
    """A folder of audio files (searched recursively), listed once and sorted by path.

    A config field of this type reads as the folder's path (YAML, ``--set``) and writes back as
    it; the listing travels with the config (to data-loading workers too), so every process draws
    from the same list whatever order the filesystem gives.
    """

    def __init__(self, path: Path, files: tuple[Path, ...]) -> None:
        self.path, self.files = path, files

    @classmethod
    def scan(cls, value: "str | Path | AudioFolder") -> "AudioFolder":
        """List the audio files under ``value``; ValueError when it is missing or holds none."""
        if isinstance(value, AudioFolder):
            return value
        from nue_core.data.audio_files import AUDIO_EXTENSIONS, collect_audio

        if not isinstance(value, (str, Path)):
            raise ValueError(f"expected a folder path, got {value!r}")
        path = Path(value).expanduser().absolute()
        if not path.is_dir():
            raise ValueError(f"{path}: {'not a folder' if path.exists() else 'folder not found'}")
        files = tuple(collect_audio([path]))  # sorted by path, recursive, audio extensions only
        if not files:
            raise ValueError(f"{path} holds no audio files (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")
        return cls(path, files)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        scan = core_schema.no_info_plain_validator_function(cls.scan, json_schema_input_schema=core_schema.str_schema())
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([core_schema.str_schema(), scan]),
            python_schema=scan,
            # JSON/YAML: the path; Python (``model_dump()``): the folder itself, as pydantic keeps a Path,
            # so a config dumped and validated again is not listed again
            serialization=core_schema.plain_serializer_function_ser_schema(lambda f: str(f.path), when_used="json"),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AudioFolder) and (self.path, self.files) == (other.path, other.files)

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"AudioFolder({str(self.path)!r}, {len(self.files)} files)"


class AugmentConfig(ConfigModel):
    """Training-time augmentation (off by default)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    speed: list[float] = Field(
        default_factory=list,
        description="speed factors (each 0.25..4) to draw from uniformly, e.g. [0.9, 1.0, 1.1]; empty = off",
    )
    speed_range: tuple[float, float] | None = Field(
        None, description="draw a continuous speed factor from [low, high] (within 0.25..4) instead of a list"
    )
    gain_db: tuple[float, float] | None = Field(
        None, description="random gain in dB drawn from [low, high] (within -100..100)"
    )
    eq_db: float | None = Field(
        None, ge=0.0, le=30.0,
        description="random smooth equaliser: a spectral tilt plus one broad bump, each with this standard deviation in dB (0..30)",
    )
    noise_snr_db: tuple[float, float] | None = Field(
        None, description="add white noise at a signal-to-noise ratio (dB, against the clip's RMS; -30..100, "
        "0 = as loud as the speech) drawn from [low, high]"
    )
    noise_prob: float = Field(0.5, ge=0.0, le=1.0, description="chance that noise is added to an augmented utterance")
    noise_dir: AudioFolder | None = Field(
        None, description="folder (searched recursively) of noise recordings (MUSAN style; any format soundfile reads): "
        "noise is then a random excerpt of a random file (looped when shorter than the clip) at noise_snr_db, "
        "instead of white noise; a relative path is relative to the working directory"
    )
    rir_dir: AudioFolder | None = Field(
        None, description="folder (searched recursively) of room impulse responses: the clip is convolved with a "
        "random one, its direct path kept at the clip's level and time"
    )
    rir_prob: float = Field(0.5, ge=0.0, le=1.0, description="chance that an augmented utterance is reverberated (with rir_dir)")
    lowpass_hz: tuple[float, float] | None = Field(
        None, description="low-pass the clip at a cutoff (Hz, > 0) drawn from [low, high]: a band-limited channel"
    )
    lowpass_prob: float = Field(0.3, ge=0.0, le=1.0, description="chance that an augmented utterance is low-passed")
    prob: float = Field(1.0, ge=0.0, le=1.0, description="chance that an utterance is augmented at all")

    @field_validator("speed", "speed_range", "gain_db", "noise_snr_db", "lowpass_hz")
    @classmethod
    def _within_bounds(cls, value: Any, info: ValidationInfo) -> Any:
        """Each number within its field's bounds; a ``[low, high]`` pair in that order."""
        if value is None:
            return None
        low, high, why = _BOUNDS[str(info.field_name)]
        for x in value:
            if not (low < x if low == 0.0 else low <= x) or x > high:
                span = f"above {low:g}" if high == float("inf") else f"within {low:g}..{high:g}"
                raise ValueError(f"{x:g} is not {span} ({why})")
        if isinstance(value, tuple) and value[0] > value[1]:
            raise ValueError(f"must be [low, high] with low <= high, got [{value[0]:g}, {value[1]:g}]")
        # -0.0 becomes 0.0: numpy's uniform(0.0, -0.0) refuses the pair
        return type(value)(x + 0.0 for x in value)

    @model_validator(mode="after")
    def _noise_dir_has_a_range(self) -> "AugmentConfig":
        if self.noise_dir is not None and self.noise_snr_db is None:
            raise ValueError("noise_dir needs noise_snr_db, the range of signal-to-noise ratios (dB) to add its "
                             "noise at, e.g. [0, 20]")
        return self

    @property
    def enabled(self) -> bool:
        return (bool(self.speed) or self.speed_range is not None or self.gain_db is not None
                or bool(self.eq_db) or self.noise_snr_db is not None or self.lowpass_hz is not None
                or self.rir_dir is not None)


def speed_perturb(wave: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``wave`` ``factor`` times faster (pitch moves with it, as tape speed does).

    Shapes: (s,) -> (round(s / factor),).
    """
    if abs(factor - 1.0) < 1e-6:
        return wave
    import soxr

    # Resampling from rate r to r / factor and playing at r shortens the clip by ``factor``.
    out = soxr.resample(wave, sample_rate, int(round(sample_rate / factor)), quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def apply_gain(wave: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels, clipped to [-1, 1] as a real recording would be."""
    return np.clip(wave * np.float32(10.0 ** (db / 20.0)), -1.0, 1.0).astype(np.float32, copy=False)


def random_eq(wave: np.ndarray, std_db: float, rng: np.random.Generator) -> np.ndarray:
    """Filter ``wave`` (s,) through a random smooth frequency response (zero phase).

    The response in dB is ``a * x + b * cos(pi * k * x)`` over the band, x from -1 (DC) to 1
    (Nyquist), with a, b ~ N(0, std_db) and k ~ U(1, 3): a tilt and one broad bump or notch, what
    different microphones and rooms do to a voice. The output keeps the input's RMS level.
    """
    if len(wave) < 2 or std_db <= 0:
        return wave
    spectrum = np.fft.rfft(wave)
    x = np.linspace(-1.0, 1.0, len(spectrum))
    db = rng.normal(0.0, std_db) * x + rng.normal(0.0, std_db) * np.cos(np.pi * x * rng.uniform(1.0, 3.0))
    out = np.fft.irfft(spectrum * 10.0 ** (db / 20.0), n=len(wave))
    rms_in, rms_out = float(np.sqrt(np.mean(wave**2))), float(np.sqrt(np.mean(out**2)))
    if rms_out > 0:
        out *= rms_in / rms_out
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def low_pass(wave: np.ndarray, cutoff_hz: float, sample_rate: int, rolloff_hz: float = 300.0) -> np.ndarray:
    """Remove what lies above ``cutoff_hz`` (a raised-cosine roll-off ``rolloff_hz`` wide, zero phase); (s,) kept."""
    if len(wave) < 2:
        return wave
    spectrum = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(len(wave), 1.0 / sample_rate)
    ramp = np.clip((freqs - cutoff_hz) / rolloff_hz, 0.0, 1.0)
    out = np.fft.irfft(spectrum * 0.5 * (1.0 + np.cos(np.pi * ramp)), n=len(wave))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise ``snr_db`` below the clip's RMS level; shape (s,) kept."""
    rms = float(np.sqrt(np.mean(wave**2))) if len(wave) else 0.0
    if rms == 0.0:
        return wave
    noise = rng.normal(0.0, rms * 10.0 ** (-snr_db / 20.0), len(wave))
    return np.clip(wave + noise, -1.0, 1.0).astype(np.float32)


def add_noise_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add an excerpt of ``noise`` (n,) at a random offset (looped when shorter than the clip),
    scaled to ``snr_db`` below the clip's RMS level; shape (s,) kept.

    A silent clip, or a silent excerpt (nothing to scale), comes back unchanged.
    """
    rms = float(np.sqrt(np.mean(wave**2))) if len(wave) else 0.0
    if rms == 0.0 or len(noise) == 0:
        return wave
    start = int(rng.integers(len(noise)))
    excerpt = np.take(noise, np.arange(start, start + len(wave)) % len(noise)).astype(np.float64)
    noise_rms = float(np.sqrt(np.mean(excerpt**2)))
    if noise_rms == 0.0:
        return wave
    out = wave + excerpt * (rms * 10.0 ** (-snr_db / 20.0) / noise_rms)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve ``wave`` (s,) with the room impulse response ``rir`` (r,); shape (s,) kept.

    The direct path (the response's largest-magnitude sample) gets gain 1 and stays where the dry
    sound was: the output is the convolution from that sample on, so a delta gives back the input
    and the transcript's timing does not move. The reverberant tail past the clip's end is cut.
    """
    peak = int(np.argmax(np.abs(rir))) if len(rir) else 0
    if len(wave) == 0 or len(rir) == 0 or rir[peak] == 0:
        return wave
    full = _convolver()(wave.astype(np.float64), rir.astype(np.float64) / float(rir[peak]))
    return np.clip(full[peak:peak + len(wave)], -1.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _convolver() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """scipy's ``fftconvolve`` where scipy is installed (faster sizes), else the same with numpy's FFT."""
    try:
        from scipy.signal import fftconvolve

        return fftconvolve
    except ImportError:
        return _numpy_fftconvolve


def _numpy_fftconvolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full linear convolution of (n,) and (m,) -> (n + m - 1,) through a real FFT."""
    length = len(a) + len(b) - 1
    size = 1 << (length - 1).bit_length()  # a power of two: no circular wrap, a fast FFT
    return np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:length]


class _FileCache:
    """Decoded audio by (path, sample rate), least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # a loader may read batches on threads

    def get(self, path: Path, sample_rate: int, field: str) -> np.ndarray:
        """(n,) float32 samples of ``path`` at ``sample_rate`` (read-only).

        Raises:
            AudioError: the file cannot be read, naming the augment field and the file.
        """
        key = (str(path), sample_rate)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            wave = load_audio(path, sample_rate)
        except (AudioError, OSError) as exc:
            raise AudioError(f"augment.{field}: {exc}") from None
        wave.flags.writeable = False  # shared by every later draw of this file
        with self._lock:
            if wave.nbytes <= self.max_bytes and key not in self._items:
                self._items[key] = wave
                self._bytes += wave.nbytes
                while self._bytes > self.max_bytes:
                    self._bytes -= self._items.popitem(last=False)[1].nbytes
        return wave


_FILES = _FileCache(FILE_CACHE_BYTES)


def _draw_file(folder: AudioFolder, field: str, rng: np.random.Generator, sample_rate: int) -> tuple[Path, np.ndarray]:
    path = folder.files[int(rng.integers(len(folder.files)))]
    return path, _FILES.get(path, sample_rate, field)


def augment(wave: np.ndarray, config: AugmentConfig, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One random augmentation of ``wave`` (s,) drawn from ``rng``.

    Raises:
        AudioError: a noise or impulse-response file drawn cannot be read (the message names it).
    """
    if not config.enabled or rng.random() >= config.prob:
        return wave
    if config.speed_range is not None:
        wave = speed_perturb(wave, float(rng.uniform(*config.speed_range)), sample_rate)
    elif config.speed:
        wave = speed_perturb(wave, float(config.speed[rng.integers(len(config.speed))]), sample_rate)
    # Draws of features a config leaves off are never made, so adding one keeps the others' draws.
    if config.rir_dir is not None and rng.random() < config.rir_prob:
        path, rir = _draw_file(config.rir_dir, "rir_dir", rng, sample_rate)
        if not np.any(rir):
            raise AudioError(f"augment.rir_dir: {path}: the impulse response is silent (all samples zero)")
        wave = reverberate(wave, rir)
    if config.eq_db:
        wave = random_eq(wave, config.eq_db, rng)
    if config.lowpass_hz is not None and rng.random() < config.lowpass_prob:
        wave = low_pass(wave, float(rng.uniform(*config.lowpass_hz)), sample_rate)
    if config.noise_snr_db is not None and rng.random() < config.noise_prob:
        snr_db = float(rng.uniform(*config.noise_snr_db))
        if config.noise_dir is not None:
            wave = add_noise_at_snr(wave, _draw_file(config.noise_dir, "noise_dir", rng, sample_rate)[1], snr_db, rng)
        else:
            wave = add_noise(wave, snr_db, rng)
    if config.gain_db is not None:
        wave = apply_gain(wave, float(rng.uniform(*config.gain_db)))
    return wave
