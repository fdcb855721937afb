"""Tiny generated data sets (tones written with soundfile) and a tiny model config for trainer tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import tiny_config

WORDS = ["low", "mid", "high"]
FREQS = {"low": 220.0, "mid": 440.0, "high": 880.0}


def write_tone(path: Path, word: str, seconds: float, rate: int = 16000, seed: int = 0) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * FREQS[word] * t) + noise).astype(np.float32), rate)


def make_dataset(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` tone clips (0.3-0.8 s) and a JSONL manifest whose text names the tone."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        word = WORDS[i % len(WORDS)]
        name = f"{seed}_{i}.wav"
        write_tone(folder / name, word, float(rng.uniform(0.3, 0.8)), seed=seed * 1000 + i)
        lines.append(json.dumps({"audio": name, "text": word, "id": f"u{seed}_{i}"}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def write_model_yaml(path: Path, **extra) -> Path:
    config = tiny_config(**extra)
    config["encoder"]["config"]["mask_time_prob"] = 0.0  # no SpecAugment: few steps, stable numbers
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def tone_data(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(model YAML, train manifest, valid manifest) in tmp_path."""
    train = make_dataset(tmp_path / "train", 12, seed=1)
    valid = make_dataset(tmp_path / "valid", 3, seed=2)
    return write_model_yaml(tmp_path / "model.yaml"), train, valid
