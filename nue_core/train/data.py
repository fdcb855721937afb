"""Training data: validated utterances, their audio (optionally cached) and padded batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nue_core.data.audio import load_audio
from nue_core.data.augment import AugmentConfig, augment
from nue_core.data.batching import AudioBatch, pad_waveforms
from nue_core.data.manifest import Utterance, read_manifest
from nue_core.data.validate import ValidationReport, checked_entries


class UtteranceSet:
    """Validated manifest entries and a loader for their audio.

    Args:
        entries: entries with ``duration`` filled in (see ``checked_entries``).
        sample_rate: the encoder's rate; audio is resampled to it.
        cache: keep decoded audio in memory after the first read.
    """

    def __init__(self, entries: list[Utterance], sample_rate: int, cache: bool = False) -> None:
        self.entries = entries
        self.sample_rate = sample_rate
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    @classmethod
    def from_manifest(
        cls, path: Path | str, sample_rate: int, max_seconds: float | None, skip_bad: bool, cache: bool = False
    ) -> tuple["UtteranceSet", ValidationReport]:
        """Read and check a manifest (JSONL or Kaldi folder); bad entries stop or are skipped."""
        entries, report = checked_entries(read_manifest(path), str(path), max_seconds, skip_bad)
        return cls(entries, sample_rate, cache), report

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def durations(self) -> list[float]:
        return [float(e.duration or 0.0) for e in self.entries]

    def audio(self, index: int) -> np.ndarray:
        """(s,) float32 samples of entry ``index`` at ``sample_rate``."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        e = self.entries[index]
        wave = load_audio(e.audio, self.sample_rate, e.start, e.end)
        if self._cache is not None:
            self._cache[index] = wave
        return wave

    def batch(
        self, indices: list[int], aug: AugmentConfig | None = None, rng: np.random.Generator | None = None
    ) -> AudioBatch:
        """A padded batch of ``indices``; augmented when ``aug`` is enabled and ``rng`` given."""
        waves = [self.audio(i) for i in indices]
        if aug is not None and aug.enabled and rng is not None:
            waves = [augment(w, aug, rng, self.sample_rate) for w in waves]
        waveforms, lengths = pad_waveforms(waves)
        return AudioBatch(
            waveforms, lengths, [self.entries[i].text for i in indices], [self.entries[i].id for i in indices]
        )
