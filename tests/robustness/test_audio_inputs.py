"""Property tests over generated audio: every input gives a transcript or a clear error naming it.

Empty, one-sample, silent, clipped, NaN/Inf samples, 8-48 kHz, mono to 6 channels, int16/int32/
float, long clips, truncated headers and random bytes with a .wav name. None crashes the process
or the batch it is in.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nue_core.composer import compose
from nue_core.data.audio import AudioError, load_audio
from nue_core.inference import Transcriber
from tests.conftest import tiny_config

RATES = [8000, 16000, 22050, 44100, 48000]
SUBTYPES = {"int16": "PCM_16", "int32": "PCM_32", "float": "FLOAT"}
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def transcriber():
    torch.manual_seed(0)
    model = compose(tiny_config()).eval()
    return Transcriber(model, batch_size=4)


@st.composite
def waveforms(draw):
    kind = draw(st.sampled_from(["noise", "silent", "clipped", "one-sample", "nan", "inf", "tone"]))
    rate = draw(st.sampled_from(RATES))
    channels = draw(st.sampled_from([1, 2, 6]))
    seconds = draw(st.floats(0.05, 1.5))
    n = 1 if kind == "one-sample" else max(1, int(seconds * rate))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = rng.normal(0, 0.1, (n, channels)).astype(np.float32)
    if kind == "silent":
        data[:] = 0
    elif kind == "clipped":
        data = np.clip(data * 50, -1, 1)
    elif kind == "tone":
        data[:, 0] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    elif kind in ("nan", "inf"):
        data[n // 2, 0] = np.nan if kind == "nan" else np.inf
    return kind, rate, data, draw(st.sampled_from(list(SUBTYPES)))


def _write(folder: Path, index: int, rate: int, data: np.ndarray, subtype: str) -> Path:
    path = folder / f"clip{index}.wav"
    sf.write(str(path), data, rate, subtype=SUBTYPES[subtype])
    return path


@PROPS
@given(st.lists(waveforms(), min_size=1, max_size=4))
def test_generated_files_transcribe_or_fail_by_name(transcriber, tmp_path_factory, clips):
    folder = tmp_path_factory.mktemp("audio")
    paths = [_write(folder, i, rate, data, sub) for i, (_, rate, data, sub) in enumerate(clips)]
    results = transcriber.transcribe(paths)
    assert [r.source for r in results] == [str(p) for p in paths]
    for (kind, rate, data, subtype), path, result in zip(clips, paths, results):
        if result.error is not None:
            assert path.name in result.error
        else:
            assert isinstance(result.text, str)
        if kind == "nan" and subtype == "float":
            assert result.error is not None and "NaN" in result.error


@PROPS
@given(st.binary(min_size=0, max_size=400), st.integers(0, 60))
def test_random_bytes_and_truncated_headers_are_named_errors(tmp_path_factory, junk, cut):
    folder = tmp_path_factory.mktemp("bad")
    good = io.BytesIO()
    sf.write(good, np.zeros(1600, dtype=np.float32), 16000, format="WAV")
    truncated = folder / "truncated.wav"
    truncated.write_bytes(good.getvalue()[:cut])
    random_bytes = folder / "random.wav"
    random_bytes.write_bytes(junk)
    for path in (truncated, random_bytes):
        try:
            load_audio(path, 16000)
        except AudioError as exc:
            assert path.name in str(exc)


def test_bad_files_do_not_fail_their_batch(transcriber, tmp_path):
    good = [_write(tmp_path, i, 16000, np.random.default_rng(i).normal(0, 0.1, (8000, 1)).astype(np.float32), "float")
            for i in range(3)]
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), dtype=np.float32), 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    results = transcriber.transcribe([good[0], empty, good[1], junk, good[2]])
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert "empty.wav" in results[1].error and "junk.wav" in results[3].error


def test_very_long_clip_is_chunked_not_truncated(transcriber):
    long = (np.random.default_rng(0).normal(0, 0.1, 16000 * 40).astype(np.float32), 16000)
    (result,) = transcriber.transcribe([long])
    assert result.ok and result.chunks >= 3 and result.seconds == pytest.approx(40.0)
