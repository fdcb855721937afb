"""Waveform augmentation: speed perturbation (resampling, as Kaldi's 3-way perturbation), gain,
random equalisation (a smooth random frequency response: microphone and room colouring) and
additive noise at a random signal-to-noise ratio.

With few training speakers the last two help: a new voice usually also comes through a new
microphone and room, and a model that has only heard three channels learns them as cues (the FSDD
recipe's README has the measurements).

Randomness comes from a generator the caller derives from ``(seed, step, item)``, so an augmented
batch is the same whether or not the run was interrupted and resumed in between.

Settings that cannot work are refused when the config is read, naming the field, not met as a
``ZeroDivisionError`` or NaN audio mid-run: each number is finite and within the bounds below
(which say why), and every ``[low, high]`` pair has ``low <= high``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from nue_core.config import ConfigModel

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

    @property
    def enabled(self) -> bool:
        return (bool(self.speed) or self.speed_range is not None or self.gain_db is not None
                or bool(self.eq_db) or self.noise_snr_db is not None or self.lowpass_hz is not None)


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


def augment(wave: np.ndarray, config: AugmentConfig, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One random augmentation of ``wave`` (s,) drawn from ``rng``."""
    if not config.enabled or rng.random() >= config.prob:
        return wave
    if config.speed_range is not None:
        wave = speed_perturb(wave, float(rng.uniform(*config.speed_range)), sample_rate)
    elif config.speed:
        wave = speed_perturb(wave, float(config.speed[rng.integers(len(config.speed))]), sample_rate)
    if config.eq_db:
        wave = random_eq(wave, config.eq_db, rng)
    if config.lowpass_hz is not None and rng.random() < config.lowpass_prob:
        wave = low_pass(wave, float(rng.uniform(*config.lowpass_hz)), sample_rate)
    if config.noise_snr_db is not None and rng.random() < config.noise_prob:
        wave = add_noise(wave, float(rng.uniform(*config.noise_snr_db)), rng)
    if config.gain_db is not None:
        wave = apply_gain(wave, float(rng.uniform(*config.gain_db)))
    return wave
