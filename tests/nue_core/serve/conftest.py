"""Shared fixtures: the embedded default model, example clips and a long clip made from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nue_core.checkpoint import DEFAULT_MODEL_DIR

EXAMPLES = sorted((DEFAULT_MODEL_DIR / "examples").glob("*.wav"))


@pytest.fixture(scope="session")
def model():  # type: ignore[no-untyped-def]
    import nue_core

    return nue_core.load("default")


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~40 s: the examples one after another, with short silences, long enough for several chunks."""
    import soundfile as sf

    pieces = []
    for _ in range(6):
        for path in EXAMPLES:
            data, rate = sf.read(str(path), dtype="float32")
            assert rate == 16000
            pieces += [data, np.zeros(3200, dtype=np.float32)]
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    sf.write(str(path), np.concatenate(pieces), 16000)
    return path
