"""Waveform augmentation: speed perturbation (resampling, as Kaldi's 3-way perturbation) and gain.

Randomness comes from a generator the caller derives from ``(seed, step, item)``, so an augmented
batch is the same whether or not the run was interrupted and resumed in between.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class AugmentConfig(BaseModel):
    """Training-time augmentation (off by default)."""

    model_config = ConfigDict(extra="forbid")

    speed: list[float] = Field(
        default_factory=list,
        description="speed factors to draw from uniformly, e.g. [0.9, 1.0, 1.1]; empty = off",
    )
    speed_range: tuple[float, float] | None = Field(
        None, description="draw a continuous speed factor from [low, high] instead of a list"
    )
    gain_db: tuple[float, float] | None = Field(None, description="random gain in dB drawn from [low, high]")
    prob: float = Field(1.0, ge=0.0, le=1.0, description="chance that an utterance is augmented at all")

    @property
    def enabled(self) -> bool:
        return bool(self.speed) or self.speed_range is not None or self.gain_db is not None


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


def augment(wave: np.ndarray, config: AugmentConfig, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One random augmentation of ``wave`` (s,) drawn from ``rng``."""
    if not config.enabled or rng.random() >= config.prob:
        return wave
    if config.speed_range is not None:
        wave = speed_perturb(wave, float(rng.uniform(*config.speed_range)), sample_rate)
    elif config.speed:
        wave = speed_perturb(wave, float(config.speed[rng.integers(len(config.speed))]), sample_rate)
    if config.gain_db is not None:
        wave = apply_gain(wave, float(rng.uniform(*config.gain_db)))
    return wave
