"""Connected-digit files with known word spans, built from the Free Spoken Digit Dataset (FSDD).

Each FSDD clip (``{digit}_{speaker}_{index}.wav``, 8 kHz) is trimmed to near-minimal silence, so
a digit's true span in a joined file is its clip's span. Files are built as the fsdd_digits recipe
builds its utterances (recipes/fsdd_digits/data.py, copied here so benchmarks need no recipe
import): clips joined with faint-noise pauses of 50-250 ms (50-200 ms at the ends), resampled
8 -> 16 kHz with soxr HQ (which compensates its own delay, so times in seconds are kept).

Speakers: jackson, nicolas, theo trained the embedded default model (their recordings with index
>= 45 were its validation set); yweweler was never heard in training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SOURCE_RATE, RATE = 8000, 16000
TRAIN_SPEAKERS = ("jackson", "nicolas", "theo")
VALID_FROM = 45  # the recipe's validation recordings: index >= 45


def default_fsdd() -> Path:
    """``$NUE_FSDD``, else /work/shared/data/fsdd (the folder holding ``recordings/``)."""
    return Path(os.environ.get("NUE_FSDD", "/work/shared/data/fsdd"))


@dataclass(frozen=True)
class TimedFile:
    """A joined file: (s,) float32 samples at 16 kHz, its words and their true (start, end) seconds."""

    name: str
    audio: np.ndarray
    words: list[str]
    spans: list[tuple[float, float]]

    @property
    def text(self) -> str:
        return " ".join(self.words)


def recordings(fsdd: Path, speakers: tuple[str, ...], min_index: int = 0) -> list[Path]:
    """Clip paths of ``speakers`` with index >= ``min_index``, sorted."""
    folder = Path(fsdd) / "recordings"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: FSDD recordings not found; pass --fsdd or set NUE_FSDD")
    found = []
    for path in sorted(folder.glob("*.wav")):
        _, speaker, index = path.stem.split("_")
        if speaker in speakers and int(index) >= min_index:
            found.append(path)
    if not found:
        raise FileNotFoundError(f"{folder}: no recordings of {speakers} with index >= {min_index}")
    return found


def read_8k(path: Path) -> np.ndarray:
    import soundfile as sf

    wave, rate = sf.read(str(path), dtype="float32")
    if rate != SOURCE_RATE or wave.ndim != 1:
        raise ValueError(f"{path}: expected mono {SOURCE_RATE} Hz, got {rate} Hz shape {wave.shape}")
    return wave


def join(parts: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """8 kHz clips -> (16 kHz file, each clip's (start, end) seconds in it)."""
    import soxr

    def pause(low: float, high: float) -> np.ndarray:
        # A faint noise floor rather than digital zeros, like the recordings' own background.
        return rng.normal(0.0, 1e-4, int(rng.uniform(low, high) * SOURCE_RATE)).astype(np.float32)

    pieces, spans = [pause(0.05, 0.2)], []
    at = len(pieces[0])
    for k, part in enumerate(parts):
        spans.append((at / SOURCE_RATE, (at + len(part)) / SOURCE_RATE))
        pieces.append(part)
        at += len(part)
        if k < len(parts) - 1:
            pieces.append(pause(0.05, 0.25))
            at += len(pieces[-1])
    pieces.append(pause(0.05, 0.2))
    wave = soxr.resample(np.concatenate(pieces), SOURCE_RATE, RATE, quality="HQ")
    return np.clip(wave, -1.0, 1.0).astype(np.float32), spans


def build(paths: list[Path], count: int, seed: int = 0, min_digits: int = 2, max_digits: int = 6) -> list[TimedFile]:
    """``count`` seeded files of ``min_digits``..``max_digits`` clips drawn from ``paths`` (one speaker each)."""
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[Path]] = {}
    for p in paths:
        by_speaker.setdefault(p.stem.split("_")[1], []).append(p)
    speakers = sorted(by_speaker)
    cache: dict[Path, np.ndarray] = {}
    files = []
    for i in range(count):
        speaker = speakers[i % len(speakers)]
        pool = by_speaker[speaker]
        chosen = [pool[j] for j in rng.choice(len(pool), size=int(rng.integers(min_digits, max_digits + 1)))]
        parts = [cache.setdefault(p, read_8k(p)) for p in chosen]
        audio, spans = join(parts, rng)
        words = [WORDS[int(p.stem.split("_")[0])] for p in chosen]
        files.append(TimedFile(f"{speaker}_{i:04d}", audio, words, spans))
    return files
